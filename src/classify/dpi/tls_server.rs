//! TLS server side: the host names a server's certificate carries, and the
//! protocol version and ALPN protocol it chose, read from the start of its
//! TCP byte stream.
//!
//! For clients that send no SNI, or an IP literal as SNI (older clients,
//! TLS 1.0 conferencing apps, relays, remote-desktop tools), the server's
//! leaf certificate is the only place the flow's name is in clear. It is in
//! clear up to TLS 1.2 only: from TLS 1.3 on the Certificate message (and
//! the server's ALPN choice) is encrypted, so for TLS 1.3 only the version
//! is returned.
//!
//! [`server_flight`] reads without copying; [`server_flight_with`] copies
//! what straddles a record boundary into a caller's scratch buffer (at most
//! [`SCRATCH_LEN`] bytes are used). [`best_name`] picks the name to classify
//! by.
//!
//! Nothing here allocates, panics or loops longer than the input: every loop
//! consumes at least one byte per turn, every read is bounds-checked. The
//! certificate is walked as DER just far enough to reach the subject and the
//! extensions (a few dozen lines, rather than a general X.509 crate that
//! would need the whole certificate, allocate, and bring a large dependency
//! tree into a path that reads hostile bytes).
//!
//! Limits:
//! - Only the first certificate (the leaf) is read; the rest of the chain
//!   and the other messages of the flight are not needed nor checked.
//! - A leaf longer than [`MAX_LEAF_LEN`] is skipped (the flight is still
//!   [`Parse::Found`], without names), as is a ServerHello longer than
//!   [`MAX_SERVER_HELLO_LEN`] ([`Parse::NotThis`]).
//! - Without scratch, a leaf (or the ALPN protocol) that straddles a record
//!   boundary is reported as absent.
//! - A resumed session (ChangeCipherSpec or NewSessionTicket after the
//!   ServerHello) and anonymous or PSK suites carry no certificate: they are
//!   [`Parse::Found`] without names.
//! - Names are checked with [`super::tls::plausible_host`] (ASCII host
//!   names), plus a `*.` first label for wildcards; a commonName that is not
//!   a host name ("Example Corp") or not in an ASCII string type
//!   (BMPString) is absent. SAN entries other than dNSName (IP addresses,
//!   URIs) are skipped.

use std::net::Ipv4Addr;

use super::Parse;
use super::tls::{Ints, MAX_RECORD_LEN, RECORD_HEADER_LEN, Res, Stop, plausible_host};
use super::tls::{record_len, record_prefix_ok};

/// How many subjectAltName dNSName entries [`ServerNames`] keeps (later
/// ones are ignored: the first few name the service, CDN certificates list
/// hundreds).
pub const MAX_DNS_NAMES: usize = 8;
/// Longest leaf certificate read (16 KiB; real leaves are 1 to 3 KiB, CDN
/// certificates with hundreds of names stay under this).
pub const MAX_LEAF_LEN: usize = 16_384;
/// Longest ServerHello body accepted (a real one is under 200 bytes, under
/// 1.3 KiB with a post-quantum key share).
pub const MAX_SERVER_HELLO_LEN: usize = MAX_RECORD_LEN;
/// Scratch [`server_flight_with`] may use: a leaf at its longest and an
/// ALPN protocol at its longest.
pub const SCRATCH_LEN: usize = MAX_LEAF_LEN + 255;

const CONTENT_CHANGE_CIPHER_SPEC: u8 = 20;
const CONTENT_HANDSHAKE: u8 = 22;
const HANDSHAKE_SERVER_HELLO: u8 = 2;
const HANDSHAKE_NEW_SESSION_TICKET: u8 = 4;
const HANDSHAKE_CERTIFICATE: u8 = 11;
const HANDSHAKE_SERVER_KEY_EXCHANGE: u8 = 12;
const HANDSHAKE_CERTIFICATE_REQUEST: u8 = 13;
const HANDSHAKE_SERVER_HELLO_DONE: u8 = 14;
const EXT_ALPN: u16 = 16;
const EXT_SUPPORTED_VERSIONS: u16 = 43;
/// Shortest ServerHello body: version, random, empty session id, cipher
/// suite, compression method.
const MIN_SERVER_HELLO_LEN: usize = 2 + 32 + 1 + 2 + 1;
const TLS13: u16 = 0x0304;

/// The subjectAltName dNSName entries kept from a certificate: at most
/// [`MAX_DNS_NAMES`], in certificate order, each a plausible host name or
/// wildcard (`*.example.com`).
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct DnsNames<'a> {
    names: [&'a str; MAX_DNS_NAMES],
    len: u8,
}

impl<'a> DnsNames<'a> {
    /// The names, in certificate order.
    pub fn as_slice(&self) -> &[&'a str] {
        self.names.get(..usize::from(self.len)).unwrap_or_default()
    }

    /// Keeps `name` if there is room; returns whether it was kept.
    fn push(&mut self, name: &'a str) -> bool {
        match self.names.get_mut(usize::from(self.len)) {
            Some(slot) => {
                *slot = name;
                self.len += 1;
                true
            }
            None => false,
        }
    }
}

impl core::fmt::Debug for DnsNames<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_list().entries(self.as_slice()).finish()
    }
}

/// What the server's first flight (ServerHello, Certificate) tells a
/// classifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerNames<'a> {
    /// The protocol the server chose by ALPN (`h2`, `http/1.1`), if any.
    /// Always `None` for TLS 1.3, where the choice is encrypted.
    pub alpn: Option<&'a [u8]>,
    /// The leaf's subject commonName, when it is a plausible host name or
    /// wildcard (the first commonName if the subject has several).
    pub common_name: Option<&'a str>,
    /// The leaf's subjectAltName dNSName entries.
    pub dns_names: DnsNames<'a>,
    /// The negotiated version: the supported_versions extension's when
    /// present (0x0304 for TLS 1.3), else the ServerHello's version
    /// (0x0303 for TLS 1.2, 0x0301 for TLS 1.0).
    pub version: u16,
    /// Whether the leaf certificate was read (and was well-formed enough to
    /// look for names in). False for TLS 1.3, resumed sessions, suites
    /// without certificates, overlong leaves, and leaves that straddle a
    /// record boundary when there is no scratch.
    pub certificate: bool,
}

/// Parses the server's first flight at the start of its TCP byte stream,
/// without copying.
///
/// `stream` is what the server sent first, possibly only the first
/// segments. Returns [`Parse::NeedMore`] while the ServerHello or the leaf
/// certificate is incomplete, [`Parse::Found`] once the leaf has been read
/// (or as soon as the ServerHello shows TLS 1.3, or a flight without
/// certificate), [`Parse::NotThis`] when the stream is not a TLS server
/// flight. A leaf that straddles a record boundary is skipped
/// ([`ServerNames::certificate`] false); [`server_flight_with`] reads it.
pub fn server_flight(stream: &[u8]) -> Parse<ServerNames<'_>> {
    server_flight_with(stream, &mut [])
}

/// [`server_flight`], but a leaf certificate or ALPN protocol that
/// straddles record boundaries is copied, without the record headers, into
/// `scratch` (which must have [`SCRATCH_LEN`] bytes for every leaf to fit;
/// a leaf that does not fit is skipped). The names then borrow from
/// `scratch`.
pub fn server_flight_with<'a>(stream: &'a [u8], scratch: &'a mut [u8]) -> Parse<ServerNames<'a>> {
    let mut r = Reader {
        stream,
        at: 0,
        record_end: 0,
        pos: 0,
        scratch,
    };
    match flight(&mut r) {
        Ok(names) => Parse::Found(names),
        Err(Stop::Short) => Parse::NeedMore,
        Err(Stop::Bad) => Parse::NotThis,
    }
}

/// The most useful name for classification: the commonName if it is a host
/// name, else the first subjectAltName that is one, else a wildcard (the
/// commonName's first), returned as written (`*.zoom.us`). IPv4 literals
/// are skipped: they name no service.
///
/// A wildcard is kept whole rather than stripped to its base domain
/// because it names some host *under* that domain, and that is what the
/// catalog's patterns see in it: `CompiledCatalog::app_for_host` tries
/// each parent domain of a name against the `*.` patterns, and
/// `HostPattern::matches` wants a name longer than the base, so
/// `*.zoom.us` matches the pattern `*.zoom.us` (as any `x.zoom.us` would)
/// but not the exact pattern `zoom.us`, which names a host the certificate
/// may not serve. Stripped to `zoom.us` it would do the opposite, and miss
/// catalogs that list only `*.zoom.us`. (Certificates for a bare domain
/// usually list it beside the wildcard, and then that name is chosen.)
pub fn best_name<'a>(n: &ServerNames<'a>) -> Option<&'a str> {
    let names = || {
        n.common_name
            .into_iter()
            .chain(n.dns_names.as_slice().iter().copied())
    };
    names()
        .find(|h| !is_wildcard(h) && h.parse::<Ipv4Addr>().is_err())
        .or_else(|| names().find(|h| is_wildcard(h)))
}

fn is_wildcard(name: &str) -> bool {
    name.starts_with("*.")
}

/// `name` as text if it is a plausible host name, or `*.` and one.
fn plausible_name(name: &[u8]) -> Option<&str> {
    match name.strip_prefix(b"*.") {
        Some(base) => plausible_host(base).and_then(|_| core::str::from_utf8(name).ok()),
        None => plausible_host(name),
    }
}

/// A forward-only reader over the handshake bytes carried by the
/// consecutive records of a stream (possibly cut short).
struct Reader<'a> {
    stream: &'a [u8],
    /// Stream offset of the next unread byte.
    at: usize,
    /// Stream offset where the current record's payload ends.
    record_end: usize,
    /// Offset within the handshake bytes (record headers not counted).
    pos: usize,
    /// What is left of the caller's scratch.
    scratch: &'a mut [u8],
}

impl<'a> Reader<'a> {
    /// Enters the handshake record whose header starts at `self.at`.
    fn next_record(&mut self) -> Res<()> {
        let avail = self.stream.get(self.at..).unwrap_or_default();
        let Some(header) = avail.get(..RECORD_HEADER_LEN) else {
            return Err(if record_prefix_ok(avail) {
                Stop::Short
            } else {
                Stop::Bad
            });
        };
        let len = record_len(header)?;
        self.at += RECORD_HEADER_LEN;
        self.record_end = self.at + len;
        Ok(())
    }

    /// The content type of the next record if the current one is used up,
    /// `None` while it has bytes left.
    fn next_content_type(&self) -> Res<Option<u8>> {
        if self.at < self.record_end {
            return Ok(None);
        }
        self.stream
            .get(self.at)
            .copied()
            .map(Some)
            .ok_or(Stop::Short)
    }

    /// Advances over `n` handshake bytes. Returns them when they are
    /// contiguous in the stream, or when `keep` and they fit in the
    /// scratch (copied there); `None` otherwise.
    fn advance(&mut self, n: usize, keep: bool) -> Res<Option<&'a [u8]>> {
        if n == 0 {
            return Ok(Some(&[]));
        }
        if self.at == self.record_end {
            self.next_record()?;
        }
        if n <= self.record_end - self.at {
            let bytes = self.stream.get(self.at..self.at + n).ok_or(Stop::Short)?;
            self.at += n;
            self.pos += n;
            return Ok(Some(bytes));
        }
        let copy = keep && n <= self.scratch.len();
        let (mut filled, mut left) = (0usize, n);
        // Each turn consumes at least one byte (records are never empty).
        while left > 0 {
            if self.at == self.record_end {
                self.next_record()?;
            }
            let step = left.min(self.record_end - self.at);
            let piece = self
                .stream
                .get(self.at..self.at + step)
                .ok_or(Stop::Short)?;
            if copy && let Some(dst) = self.scratch.get_mut(filled..filled + step) {
                dst.copy_from_slice(piece);
            }
            filled += step;
            self.at += step;
            self.pos += step;
            left -= step;
        }
        if !copy {
            return Ok(None);
        }
        let scratch = core::mem::take(&mut self.scratch);
        Ok(match scratch.split_at_mut_checked(n) {
            Some((used, rest)) => {
                self.scratch = rest;
                Some(used)
            }
            None => None,
        })
    }
}

impl<'a> Ints<'a> for Reader<'a> {
    fn take(&mut self, n: usize) -> Res<Option<&'a [u8]>> {
        self.advance(n, true)
    }
    /// Skipped bytes are never copied, even when they straddle records.
    fn skip(&mut self, n: usize) -> Res<()> {
        self.advance(n, false).map(drop)
    }
}

/// ServerHello, then the leaf of the Certificate message when one follows.
fn flight<'a>(r: &mut Reader<'a>) -> Res<ServerNames<'a>> {
    if r.u8()? != HANDSHAKE_SERVER_HELLO {
        return Err(Stop::Bad);
    }
    let len = r.u24()?;
    if !(MIN_SERVER_HELLO_LEN..=MAX_SERVER_HELLO_LEN).contains(&len) {
        return Err(Stop::Bad);
    }
    let mut names = server_hello(r, r.pos + len)?;
    if names.version >= TLS13 {
        return Ok(names); // the Certificate is encrypted
    }
    match r.next_content_type()? {
        None | Some(CONTENT_HANDSHAKE) => {}
        // A resumed session: no certificate.
        Some(CONTENT_CHANGE_CIPHER_SPEC) => return Ok(names),
        Some(_) => return Err(Stop::Bad),
    }
    match r.u8()? {
        HANDSHAKE_CERTIFICATE => {}
        // Resumed with a ticket, or a suite without certificate.
        HANDSHAKE_NEW_SESSION_TICKET
        | HANDSHAKE_SERVER_KEY_EXCHANGE
        | HANDSHAKE_CERTIFICATE_REQUEST
        | HANDSHAKE_SERVER_HELLO_DONE => return Ok(names),
        _ => return Err(Stop::Bad),
    }
    let msg_len = r.u24()?;
    if msg_len < 3 {
        return Err(Stop::Bad);
    }
    let list_len = r.u24()?;
    if list_len + 3 != msg_len {
        return Err(Stop::Bad);
    }
    if list_len == 0 {
        return Ok(names); // no certificate at all
    }
    let leaf_len = r.u24()?;
    if leaf_len == 0 || leaf_len + 3 > list_len {
        return Err(Stop::Bad);
    }
    if leaf_len > MAX_LEAF_LEN {
        return Ok(names);
    }
    if let Some((common_name, dns_names)) = r.take(leaf_len)?.and_then(leaf_names) {
        names.common_name = common_name;
        names.dns_names = dns_names;
        names.certificate = true;
    }
    Ok(names)
}

/// The ServerHello body, ending at handshake offset `end`.
fn server_hello<'a>(r: &mut Reader<'a>, end: usize) -> Res<ServerNames<'a>> {
    let legacy_version = r.u16()?;
    if !(0x0300..=0x0303).contains(&legacy_version) {
        return Err(Stop::Bad);
    }
    r.skip(32)?; // random
    let session_id = r.u8()?;
    if session_id > 32 {
        return Err(Stop::Bad);
    }
    r.skip(session_id.into())?;
    r.skip(2 + 1)?; // cipher suite, compression method
    let mut names = ServerNames {
        alpn: None,
        common_name: None,
        dns_names: DnsNames::default(),
        version: legacy_version,
        certificate: false,
    };
    if r.pos == end {
        return Ok(names); // no extensions (allowed up to TLS 1.2)
    }
    let ext_len = usize::from(r.u16()?);
    if r.pos + ext_len != end {
        return Err(Stop::Bad);
    }
    // Each turn consumes at least the 4-byte extension header.
    while r.pos < end {
        let ty = r.u16()?;
        let len = usize::from(r.u16()?);
        let ext_end = r.pos + len;
        if ext_end > end {
            return Err(Stop::Bad);
        }
        match ty {
            EXT_ALPN => {
                // A list holding exactly the one protocol chosen.
                let list = usize::from(r.u16()?);
                let proto = usize::from(r.u8()?);
                if list + 2 != len || proto == 0 || proto + 1 != list {
                    return Err(Stop::Bad);
                }
                names.alpn = r.take(proto)?;
            }
            EXT_SUPPORTED_VERSIONS => {
                if len != 2 {
                    return Err(Stop::Bad);
                }
                names.version = r.u16()?;
            }
            _ => {}
        }
        r.skip(ext_end.checked_sub(r.pos).ok_or(Stop::Bad)?)?;
    }
    Ok(names)
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const INTEGER: u8 = 0x02;
const OID: u8 = 0x06;
const BOOLEAN: u8 = 0x01;
const OCTET_STRING: u8 = 0x04;
const UTF8_STRING: u8 = 0x0c;
const PRINTABLE_STRING: u8 = 0x13;
const TELETEX_STRING: u8 = 0x14;
const IA5_STRING: u8 = 0x16;
/// `[0] EXPLICIT` (the TBSCertificate's version).
const CONTEXT_0: u8 = 0xa0;
/// `[3] EXPLICIT` (the TBSCertificate's extensions).
const CONTEXT_3: u8 = 0xa3;
/// `[2] IMPLICIT IA5String` (a GeneralName's dNSName).
const DNS_NAME: u8 = 0x82;
/// 2.5.4.3, id-at-commonName.
const OID_COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];
/// 2.5.29.17, id-ce-subjectAltName.
const OID_SUBJECT_ALT_NAME: &[u8] = &[0x55, 0x1d, 0x11];

/// One DER element off the front of `data`: its tag, its content and what
/// follows it. `None` when malformed (or using what a certificate's
/// fields never need: high tag numbers, lengths over 3 bytes, BER's
/// indefinite length).
fn tlv(data: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = data.split_first()?;
    if tag & 0x1f == 0x1f {
        return None;
    }
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let (bytes, rest) = rest.split_at_checked(usize::from(first & 0x7f))?;
        if bytes.is_empty() || bytes.len() > 3 {
            return None;
        }
        let len = bytes
            .iter()
            .fold(0usize, |len, &b| len << 8 | usize::from(b));
        (len, rest)
    };
    let (content, rest) = rest.split_at_checked(len)?;
    Some((tag, content, rest))
}

/// The element at the front of `data` if its tag is `tag`: its content and
/// what follows.
fn tagged(data: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    match tlv(data)? {
        (t, content, rest) if t == tag => Some((content, rest)),
        _ => None,
    }
}

/// The commonName and dNSName entries of a DER certificate; `None` when it
/// is malformed on the way to them.
fn leaf_names(der: &[u8]) -> Option<(Option<&str>, DnsNames<'_>)> {
    let (cert, rest) = tagged(der, SEQUENCE)?;
    if !rest.is_empty() {
        return None;
    }
    let (tbs, _) = tagged(cert, SEQUENCE)?;
    let mut rest = tbs;
    if let Some((version, after)) = tagged(rest, CONTEXT_0) {
        tagged(version, INTEGER)?;
        rest = after;
    }
    let (_serial, rest) = tagged(rest, INTEGER)?;
    let (_signature, rest) = tagged(rest, SEQUENCE)?;
    let (_issuer, rest) = tagged(rest, SEQUENCE)?;
    let (_validity, rest) = tagged(rest, SEQUENCE)?;
    let (subject, rest) = tagged(rest, SEQUENCE)?;
    let (_key, mut rest) = tagged(rest, SEQUENCE)?;
    let common_name = common_name(subject)?;
    let mut dns_names = DnsNames::default();
    // Then the optional unique ids ([1], [2]) and extensions ([3]); each
    // turn consumes one element.
    while !rest.is_empty() {
        let (tag, content, after) = tlv(rest)?;
        if tag == CONTEXT_3 {
            dns_names = subject_alt_names(content)?;
        }
        rest = after;
    }
    Some((common_name, dns_names))
}

/// The first commonName of a Name (a SEQUENCE OF SET OF
/// AttributeTypeAndValue), if a plausible host name; `None` when the Name
/// is malformed.
fn common_name(name: &[u8]) -> Option<Option<&str>> {
    let mut rdns = name;
    // Each turn consumes one element.
    while !rdns.is_empty() {
        let (rdn, after) = tagged(rdns, SET)?;
        rdns = after;
        let mut atvs = rdn;
        while !atvs.is_empty() {
            let (atv, after) = tagged(atvs, SEQUENCE)?;
            atvs = after;
            let (oid, value) = tagged(atv, OID)?;
            if oid != OID_COMMON_NAME {
                continue;
            }
            let (tag, text, _) = tlv(value)?;
            let ascii = matches!(
                tag,
                UTF8_STRING | PRINTABLE_STRING | TELETEX_STRING | IA5_STRING
            );
            return Some(if ascii { plausible_name(text) } else { None });
        }
    }
    Some(None)
}

/// The dNSName entries of the first subjectAltName in `[3] Extensions`;
/// `None` when malformed.
fn subject_alt_names(extensions: &[u8]) -> Option<DnsNames<'_>> {
    let mut names = DnsNames::default();
    let (mut exts, _) = tagged(extensions, SEQUENCE)?;
    // Each turn consumes one element.
    while !exts.is_empty() {
        let (ext, after) = tagged(exts, SEQUENCE)?;
        exts = after;
        let (oid, mut rest) = tagged(ext, OID)?;
        if oid != OID_SUBJECT_ALT_NAME {
            continue;
        }
        if let Some((_critical, after)) = tagged(rest, BOOLEAN) {
            rest = after;
        }
        let (value, _) = tagged(rest, OCTET_STRING)?;
        let (mut general_names, _) = tagged(value, SEQUENCE)?;
        while !general_names.is_empty() {
            let (tag, content, after) = tlv(general_names)?;
            general_names = after;
            if tag == DNS_NAME
                && let Some(name) = plausible_name(content)
                && !names.push(name)
            {
                break;
            }
        }
        break;
    }
    Some(names)
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Arc;

    use proptest::prelude::*;

    use super::super::test_util::hex;
    use super::*;
    use crate::config::HostPattern;

    /// A self-signed ECDSA P-256 certificate made with `openssl req -x509`:
    /// subject O=Example Meetings, CN=meet.example.com; subjectAltName
    /// DNS:meet.example.com, DNS:*.media.example.com, IP:192.0.2.7,
    /// DNS:example.net; a critical basicConstraints after it.
    const CERT: &str = "
        30820207308201ada0030201020214571f4d9afab8a891831de07412e0fe0f6a
        dc51ea300a06082a8648ce3d040302303631193017060355040a0c104578616d
        706c65204d656574696e67733119301706035504030c106d6565742e6578616d
        706c652e636f6d3020170d3236313230353135303834375a180f323132363131
        31313135303834375a303631193017060355040a0c104578616d706c65204d65
        6574696e67733119301706035504030c106d6565742e6578616d706c652e636f
        6d3059301306072a8648ce3d020106082a8648ce3d03010703420004e7b1042d
        78d7c4a6004c2c7d4685af107465f753077ee901e9c0bf45464510445fb3a254
        a5cfa06dc8291a1a9eba16d9b7611d012ffa7cca008479b9c5e3af11a3819630
        8193301d0603551d0e041604141bfddcae98abd0ec31243309a2ebe0195f84cf
        b8301f0603551d230418301680141bfddcae98abd0ec31243309a2ebe0195f84
        cfb830430603551d11043c303a82106d6565742e6578616d706c652e636f6d82
        132a2e6d656469612e6578616d706c652e636f6d8704c0000207820b6578616d
        706c652e6e6574300c0603551d130101ff04023000300a06082a8648ce3d0403
        02034800304502200a1b8be22b0c040b0a0fee465ea213052b7dc72eb74779c7
        8e97b6129ce164b2022100fb5ce812726ac25f8f72a6e8a0bcd40c5274729a08
        be85fb4e636f09d19ac25b";
    /// Its private key (PKCS#8), for rustls to sign with.
    const KEY: &str = "
        308187020100301306072a8648ce3d020106082a8648ce3d030107046d306b02
        010104205cb8f351181ff66ef5178dc9d6bf9fc54d63c87c6314380afe147fe1
        45e8e2cca14403420004e7b1042d78d7c4a6004c2c7d4685af107465f753077e
        e901e9c0bf45464510445fb3a254a5cfa06dc8291a1a9eba16d9b7611d012ffa
        7cca008479b9c5e3af11";

    /// The bytes a rustls server (ALPN h2, this module's certificate,
    /// records of at most `max_fragment` plaintext bytes) writes first to a
    /// rustls client that offers h2 and http/1.1 and connects to an IP
    /// address, so sends no SNI.
    fn rustls_server_flight(tls12_only: bool, max_fragment: Option<usize>) -> Vec<u8> {
        use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let versions: &[&rustls::SupportedProtocolVersion] = if tls12_only {
            &[&rustls::version::TLS12]
        } else {
            &[&rustls::version::TLS13, &rustls::version::TLS12]
        };
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(hex(KEY)));
        let mut server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![CertificateDer::from(hex(CERT))], key)
            .unwrap();
        server.alpn_protocols = vec![b"h2".to_vec()];
        server.max_fragment_size = max_fragment;
        let mut client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        client.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let name = ServerName::try_from("192.0.2.7").unwrap();
        let mut c = rustls::ClientConnection::new(Arc::new(client), name).unwrap();
        let mut hello = Vec::new();
        while c.wants_write() {
            c.write_tls(&mut hello).unwrap();
        }
        let mut s = rustls::ServerConnection::new(Arc::new(server)).unwrap();
        s.read_tls(&mut &hello[..]).unwrap();
        s.process_new_packets().unwrap();
        let mut out = Vec::new();
        while s.wants_write() {
            s.write_tls(&mut out).unwrap();
        }
        out
    }

    /// A DER element (definite length, long form when needed).
    fn der(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut e = vec![tag];
        let n = content.len();
        match n {
            0..=0x7f => e.push(n as u8),
            0x80..=0xff => e.extend([0x81, n as u8]),
            _ => e.extend([0x82, (n >> 8) as u8, n as u8]),
        }
        e.extend(content);
        e
    }

    /// A Name holding one attribute per RDN.
    fn name(attrs: &[(&[u8], u8, &[u8])]) -> Vec<u8> {
        let mut rdns = Vec::new();
        for (oid, tag, value) in attrs {
            let mut atv = der(OID, oid);
            atv.extend(der(*tag, value));
            rdns.extend(der(SET, &der(SEQUENCE, &atv)));
        }
        der(SEQUENCE, &rdns)
    }

    /// A certificate in shape (nothing here checks keys or signatures)
    /// with `subject` and, when given, a subjectAltName of `(tag, value)`
    /// GeneralNames.
    fn cert(subject: &[u8], sans: Option<&[(u8, &[u8])]>) -> Vec<u8> {
        let alg = der(
            SEQUENCE,
            &der(OID, &[0x2a, 0x86, 0x48, 0xce, 0x3d, 4, 3, 2]),
        );
        let mut tbs = der(CONTEXT_0, &der(INTEGER, &[2]));
        tbs.extend(der(INTEGER, &[0x01, 0x23]));
        tbs.extend(&alg);
        tbs.extend(name(&[(&[0x55, 4, 10], UTF8_STRING, b"Issuer")]));
        tbs.extend(der(SEQUENCE, &[]));
        tbs.extend(subject);
        tbs.extend(der(SEQUENCE, &der(0x03, &[0, 4, 1, 2])));
        if let Some(sans) = sans {
            let mut general = Vec::new();
            for (tag, value) in sans {
                general.extend(der(*tag, value));
            }
            // Another extension first, then the SAN marked critical.
            let mut exts = der(
                SEQUENCE,
                &[der(OID, &[0x55, 0x1d, 0x13]), der(OCTET_STRING, &[0x30, 0])].concat(),
            );
            let mut san = der(OID, OID_SUBJECT_ALT_NAME);
            san.extend(der(BOOLEAN, &[0xff]));
            san.extend(der(OCTET_STRING, &der(SEQUENCE, &general)));
            exts.extend(der(SEQUENCE, &san));
            tbs.extend(der(CONTEXT_3, &der(SEQUENCE, &exts)));
        }
        let mut c = der(SEQUENCE, &tbs);
        c.extend(alg);
        c.extend(der(0x03, &[0, 1, 2, 3]));
        der(SEQUENCE, &c)
    }

    fn cn(value: &[u8]) -> Vec<u8> {
        name(&[
            (&[0x55, 4, 10], UTF8_STRING, b"Example Corp"),
            (OID_COMMON_NAME, PRINTABLE_STRING, value),
        ])
    }

    fn handshake(ty: u8, body: &[u8]) -> Vec<u8> {
        let mut m = vec![ty];
        m.extend(&(body.len() as u32).to_be_bytes()[1..]);
        m.extend(body);
        m
    }

    /// A ServerHello message with `exts` (none at all when `None`).
    fn server_hello_msg(version: u16, exts: Option<&[u8]>) -> Vec<u8> {
        let mut b = version.to_be_bytes().to_vec();
        b.extend([0x5a; 32]);
        b.push(32);
        b.extend([0x77; 32]);
        b.extend([0xc0, 0x2b, 0x00]);
        if let Some(exts) = exts {
            b.extend((exts.len() as u16).to_be_bytes());
            b.extend(exts);
        }
        handshake(HANDSHAKE_SERVER_HELLO, &b)
    }

    fn ext(ty: u16, body: &[u8]) -> Vec<u8> {
        let mut e = ty.to_be_bytes().to_vec();
        e.extend((body.len() as u16).to_be_bytes());
        e.extend(body);
        e
    }

    fn alpn_ext(proto: &[u8]) -> Vec<u8> {
        let mut list = ((proto.len() + 1) as u16).to_be_bytes().to_vec();
        list.push(proto.len() as u8);
        list.extend(proto);
        ext(EXT_ALPN, &list)
    }

    fn certificate_msg(certs: &[&[u8]]) -> Vec<u8> {
        let mut list: Vec<u8> = Vec::new();
        for c in certs {
            list.extend(&(c.len() as u32).to_be_bytes()[1..]);
            list.extend(*c);
        }
        let mut body = (list.len() as u32).to_be_bytes()[1..].to_vec();
        body.extend(list);
        handshake(HANDSHAKE_CERTIFICATE, &body)
    }

    /// A TLS 1.2 flight: ServerHello (ALPN h2), Certificate (`leaf` and a
    /// second certificate), ServerHelloDone, as handshake bytes.
    fn tls12_handshake(leaf: &[u8]) -> Vec<u8> {
        let mut exts = ext(0xff01, &[0]);
        exts.extend(alpn_ext(b"h2"));
        let mut hs = server_hello_msg(0x0303, Some(&exts));
        let other = cert(&cn(b"Example CA"), None);
        hs.extend(certificate_msg(&[leaf, &other]));
        hs.extend(handshake(HANDSHAKE_SERVER_HELLO_DONE, &[]));
        hs
    }

    /// Handshake bytes in records cut at the offsets `cuts`.
    fn records_cut(hs: &[u8], cuts: &[usize]) -> Vec<u8> {
        let mut s = Vec::new();
        let mut from = 0;
        for &to in cuts.iter().chain([&hs.len()]) {
            let chunk = &hs[from..to];
            if chunk.is_empty() {
                continue;
            }
            s.extend([22, 3, 3]);
            s.extend((chunk.len() as u16).to_be_bytes());
            s.extend(chunk);
            from = to;
        }
        s
    }

    /// A TLS 1.2 server flight in one record whose leaf certificate has
    /// the commonName `common_name` and no other names (for the
    /// classifier's tests).
    pub(crate) fn flight_for(common_name: &str) -> Vec<u8> {
        records(
            &tls12_handshake(&cert(&cn(common_name.as_bytes()), None)),
            16_000,
        )
    }

    /// Handshake bytes in records of at most `frag` bytes.
    fn records(hs: &[u8], frag: usize) -> Vec<u8> {
        let cuts: Vec<usize> = (frag..hs.len()).step_by(frag).collect();
        records_cut(hs, &cuts)
    }

    fn found(p: Parse<ServerNames<'_>>) -> ServerNames<'_> {
        match p {
            Parse::Found(n) => n,
            other => panic!("{other:?}"),
        }
    }

    fn assert_meet_names(n: &ServerNames<'_>) {
        assert!(n.certificate);
        assert_eq!(n.common_name, Some("meet.example.com"));
        assert_eq!(
            n.dns_names.as_slice(),
            ["meet.example.com", "*.media.example.com", "example.net"]
        );
        assert_eq!(best_name(n), Some("meet.example.com"));
    }

    #[test]
    fn rustls_tls12_flight_names() {
        let stream = rustls_server_flight(true, None);
        let n = found(server_flight(&stream));
        assert_eq!(n.version, 0x0303);
        assert_eq!(n.alpn, Some(&b"h2"[..]));
        assert_meet_names(&n);
        // Zero-copy: the name is the stream's own bytes.
        let at = n.common_name.unwrap().as_ptr() as usize;
        assert!((stream.as_ptr() as usize..stream.as_ptr() as usize + stream.len()).contains(&at));
        let mut scratch = [0u8; SCRATCH_LEN];
        assert_eq!(server_flight_with(&stream, &mut scratch), Parse::Found(n));
    }

    #[test]
    fn rustls_tls13_server_hello_has_version_only() {
        let stream = rustls_server_flight(false, None);
        let n = found(server_flight(&stream));
        assert_eq!(n.version, TLS13);
        assert_eq!(n.alpn, None, "TLS 1.3 encrypts the server's ALPN");
        assert!(!n.certificate);
        assert_eq!(n.common_name, None);
        assert!(n.dns_names.as_slice().is_empty());
        assert_eq!(best_name(&n), None);
        // Found as soon as the ServerHello is complete.
        let sh_end = 5
            + 4
            + (usize::from(stream[6]) << 16 | usize::from(stream[7]) << 8)
            + usize::from(stream[8]);
        for cut in 0..sh_end {
            assert_eq!(server_flight(&stream[..cut]), Parse::NeedMore, "cut {cut}");
        }
        assert_eq!(server_flight(&stream[..sh_end]), Parse::Found(n));
    }

    /// Every prefix is NeedMore until the leaf is in, then Found with what
    /// the whole flight gives.
    fn check_prefixes(stream: &[u8], scratch: bool) {
        let mut buf = vec![0u8; if scratch { SCRATCH_LEN } else { 0 }];
        let whole = server_flight_with(stream, &mut buf);
        let Parse::Found(whole) = whole else {
            panic!("{whole:?}")
        };
        let mut seen_found = false;
        for cut in 0..=stream.len() {
            let mut buf = vec![0u8; if scratch { SCRATCH_LEN } else { 0 }];
            match server_flight_with(&stream[..cut], &mut buf) {
                Parse::NeedMore => assert!(!seen_found, "cut {cut}: NeedMore after Found"),
                Parse::Found(n) => {
                    seen_found = true;
                    assert_eq!(n, whole, "cut {cut}");
                }
                Parse::NotThis => panic!("cut {cut}: NotThis"),
            }
        }
    }

    #[test]
    fn truncated_flights_need_more_then_find() {
        check_prefixes(&rustls_server_flight(true, None), false);
        check_prefixes(&rustls_server_flight(true, Some(100)), true);
        check_prefixes(&rustls_server_flight(false, None), false);
        let hs = tls12_handshake(&cert(&cn(b"a.example"), Some(&[(DNS_NAME, b"b.example")])));
        check_prefixes(&records(&hs, 16_384), false);
        check_prefixes(&records(&hs, 7), true);
    }

    #[test]
    fn rustls_certificate_split_across_records() {
        let stream = rustls_server_flight(true, Some(200));
        let n = found(server_flight(&stream));
        assert_eq!((n.version, n.alpn), (0x0303, Some(&b"h2"[..])));
        assert!(
            !n.certificate,
            "the leaf straddles records: skipped without scratch"
        );
        assert_eq!(best_name(&n), None);
        let mut scratch = vec![0u8; SCRATCH_LEN];
        let n = found(server_flight_with(&stream, &mut scratch));
        assert_meet_names(&n);
        // Too little scratch: skipped, not an error.
        let mut small = [0u8; 100];
        assert!(!found(server_flight_with(&stream, &mut small)).certificate);
    }

    #[test]
    fn certificate_split_across_two_records_at_every_offset() {
        let leaf = cert(
            &cn(b"conf.example.org"),
            Some(&[
                (DNS_NAME, b"conf.example.org"),
                (DNS_NAME, b"*.conf.example.org"),
            ]),
        );
        let hs = tls12_handshake(&leaf);
        let unsplit = records(&hs, 16_384);
        let whole = found(server_flight(&unsplit));
        assert_eq!(whole.common_name, Some("conf.example.org"));
        assert_eq!(
            whole.dns_names.as_slice(),
            ["conf.example.org", "*.conf.example.org"]
        );
        let leaf_start = hs.windows(leaf.len()).position(|w| w == leaf).unwrap();
        for cut in 1..hs.len() {
            let stream = records_cut(&hs, &[cut]);
            let mut scratch = [0u8; SCRATCH_LEN];
            let n = found(server_flight_with(&stream, &mut scratch));
            assert_eq!(n, whole, "cut {cut}");
            let n = found(server_flight(&stream));
            let inside_leaf = (leaf_start + 1..leaf_start + leaf.len()).contains(&cut);
            let alpn_at = hs.windows(2).position(|w| w == b"h2").unwrap();
            let inside_alpn = cut == alpn_at + 1;
            assert_eq!(n.certificate, !inside_leaf, "cut {cut}");
            assert_eq!(n.alpn.is_none(), inside_alpn, "cut {cut}");
            if !inside_leaf {
                assert_eq!(n.common_name, whole.common_name);
            }
        }
    }

    #[test]
    fn wildcards_and_best_name() {
        let flight = |leaf: Vec<u8>| records(&tls12_handshake(&leaf), 16_384);

        // Only wildcards: kept whole.
        let s = flight(cert(&cn(b"*.zoom.us"), Some(&[(DNS_NAME, b"*.zoom.us")])));
        let n = found(server_flight(&s));
        assert_eq!(n.common_name, Some("*.zoom.us"));
        let best = best_name(&n).unwrap();
        assert_eq!(best, "*.zoom.us");
        // What the catalog makes of it: names under zoom.us.
        assert!("*.zoom.us".parse::<HostPattern>().unwrap().matches(best));
        assert!("*.us".parse::<HostPattern>().unwrap().matches(best));
        assert!(!"zoom.us".parse::<HostPattern>().unwrap().matches(best));

        // A host name in the SANs beats a wildcard CN.
        let s = flight(cert(
            &cn(b"*.zoom.us"),
            Some(&[(DNS_NAME, b"*.zoom.us"), (DNS_NAME, b"zoom.us")]),
        ));
        assert_eq!(best_name(&found(server_flight(&s))), Some("zoom.us"));

        // A CN that is no host name, an IPv4 literal CN: the SANs decide.
        for subject in [cn(b"Zoom Video Communications"), cn(b"192.0.2.1")] {
            let s = flight(cert(
                &subject,
                Some(&[(DNS_NAME, b"10.0.0.1"), (DNS_NAME, b"*.zoom.us")]),
            ));
            assert_eq!(best_name(&found(server_flight(&s))), Some("*.zoom.us"));
        }
        let s = flight(cert(&cn(b"192.0.2.1"), None));
        let n = found(server_flight(&s));
        assert_eq!(n.common_name, Some("192.0.2.1"));
        assert_eq!(best_name(&n), None);

        for bad in [&b"*"[..], b"*.", b"**.a.b", b"a.*.b", b"*a.b", b"*.a..b"] {
            assert_eq!(plausible_name(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn sans_are_filtered_and_capped() {
        let mut sans: Vec<(u8, &[u8])> = vec![
            (0x87, &[192, 0, 2, 1]),           // iPAddress
            (0x86, b"https://x.example/"),     // URI
            (DNS_NAME, b"not a host"),         // implausible: skipped
            (DNS_NAME, b""),                   // empty: skipped
            (0xa0, &[0x06, 0x01, 0x2a, 0x80]), // otherName
        ];
        let names: Vec<String> = (0..12).map(|i| format!("h{i}.example")).collect();
        for n in &names {
            sans.push((DNS_NAME, n.as_bytes()));
        }
        let s = records(
            &tls12_handshake(&cert(&cn(b"Not A Host"), Some(&sans))),
            16_384,
        );
        let n = found(server_flight(&s));
        assert_eq!(n.common_name, None);
        assert_eq!(n.dns_names.as_slice().len(), MAX_DNS_NAMES);
        assert_eq!(n.dns_names.as_slice(), &names[..MAX_DNS_NAMES]);
        assert_eq!(best_name(&n), Some("h0.example"));
        assert_eq!(
            format!("{:?}", n.dns_names),
            format!("{:?}", &names[..MAX_DNS_NAMES])
        );
    }

    #[test]
    fn common_name_forms() {
        let flight = |subject: Vec<u8>| records(&tls12_handshake(&cert(&subject, None)), 16_384);
        let cases: [(Vec<u8>, Option<&str>); 5] = [
            // First of two CNs.
            (
                name(&[
                    (OID_COMMON_NAME, UTF8_STRING, b"one.example"),
                    (OID_COMMON_NAME, UTF8_STRING, b"two.example"),
                ]),
                Some("one.example"),
            ),
            (
                name(&[(OID_COMMON_NAME, IA5_STRING, b"ia5.example")]),
                Some("ia5.example"),
            ),
            // BMPString: not read.
            (name(&[(OID_COMMON_NAME, 0x1e, b"\0a\0.\0b")]), None),
            // No CN at all.
            (name(&[(&[0x55, 4, 6], PRINTABLE_STRING, b"SE")]), None),
            // Empty subject.
            (der(SEQUENCE, &[]), None),
        ];
        for (subject, want) in cases {
            let s = flight(subject);
            let n = found(server_flight(&s));
            assert!(n.certificate);
            assert_eq!(n.common_name, want);
            assert!(n.dns_names.as_slice().is_empty());
        }
    }

    #[test]
    fn flights_without_certificate() {
        let sh = server_hello_msg(0x0301, None);
        // Resumed by session id: ChangeCipherSpec follows.
        let mut s = records(&sh, 16_384);
        assert_eq!(server_flight(&s), Parse::NeedMore);
        s.extend([20, 3, 1, 0, 1, 1]);
        let n = found(server_flight(&s));
        assert_eq!((n.version, n.alpn, n.certificate), (0x0301, None, false));
        // Resumed by ticket, anonymous suite, empty certificate list.
        for next in [
            handshake(HANDSHAKE_NEW_SESSION_TICKET, &[0; 6]),
            handshake(HANDSHAKE_SERVER_KEY_EXCHANGE, &[0; 8]),
            certificate_msg(&[]),
        ] {
            let s = records(&[sh.clone(), next].concat(), 16_384);
            assert!(!found(server_flight(&s)).certificate);
        }
        // A leaf too long to read: found from its header alone.
        let mut hs = sh.clone();
        hs.extend([HANDSHAKE_CERTIFICATE, 0x00, 0x50, 0x06, 0x00, 0x50, 0x03]);
        hs.extend([0x00, 0x50, 0x00]);
        let s = records(&hs, 16_384);
        const { assert!(MAX_LEAF_LEN < 0x5000) };
        assert!(!found(server_flight(&s)).certificate);
        // A malformed leaf: found, no names.
        let s = records(
            &[sh.clone(), certificate_msg(&[&[0x30, 0x03, 1, 2, 3]])].concat(),
            99,
        );
        assert!(!found(server_flight(&s)).certificate);
        // supported_versions saying 1.2 (no server should): read on.
        let sv = ext(EXT_SUPPORTED_VERSIONS, &[3, 3]);
        let mut hs = server_hello_msg(0x0303, Some(&sv));
        hs.extend(certificate_msg(&[&cert(&cn(b"x.example"), None)]));
        let s = records(&hs, 16_384);
        let n = found(server_flight(&s));
        assert_eq!(n.common_name, Some("x.example"));
    }

    #[test]
    fn not_a_server_flight() {
        assert_eq!(server_flight(&[]), Parse::NeedMore);
        assert_eq!(server_flight(&[22, 3, 3]), Parse::NeedMore);
        assert_eq!(server_flight(b"HTTP/1.1 200 OK\r\n"), Parse::NotThis);
        assert_eq!(server_flight(&[21, 3, 3, 0, 2, 2, 40]), Parse::NotThis); // alert
        assert_eq!(server_flight(&[22, 3, 3, 0, 0]), Parse::NotThis); // empty record
        // A client's first flight.
        let hello = crate::classify::tests::tls_record(
            &crate::classify::dpi::quic::tests::hello_message(b"x.example", 300),
        );
        assert_eq!(server_flight(&hello), Parse::NotThis);
        // ServerHello with a bad version, an overlong one.
        let s = records(&server_hello_msg(0x0200, None), 16_384);
        assert_eq!(server_flight(&s), Parse::NotThis);
        let s = [22, 3, 3, 0, 4, HANDSHAKE_SERVER_HELLO, 0, 0x40, 1];
        assert_eq!(server_flight(&s), Parse::NotThis);
        // An alert after the ServerHello, a ClientHello-typed message.
        let sh = server_hello_msg(0x0303, None);
        let mut s = records(&sh, 16_384);
        s.extend([21, 3, 3, 0, 2, 2, 40]);
        assert_eq!(server_flight(&s), Parse::NotThis);
        let s = records(&[sh.clone(), handshake(1, &[0; 4])].concat(), 16_384);
        assert_eq!(server_flight(&s), Parse::NotThis);
        // Extension lengths that disagree.
        let mut bad = server_hello_msg(0x0303, Some(&alpn_ext(b"h2")));
        let n = bad.len();
        bad[n - 4] = 9;
        assert_eq!(server_flight(&records(&bad, 16_384)), Parse::NotThis);
        // Two ALPN protocols (a server chooses one).
        let two = ext(EXT_ALPN, &[0, 6, 2, b'h', b'2', 2, b'h', b'3']);
        let s = records(&server_hello_msg(0x0303, Some(&two)), 16_384);
        assert_eq!(server_flight(&s), Parse::NotThis);
    }

    fn check_names(n: &ServerNames<'_>) -> Result<(), TestCaseError> {
        for name in n.common_name.iter().chain(n.dns_names.as_slice()) {
            prop_assert_eq!(plausible_name(name.as_bytes()), Some(*name));
        }
        if let Some(best) = best_name(n) {
            prop_assert!(plausible_name(best.as_bytes()).is_some());
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..600)) {
            let mut scratch = [0u8; 300];
            for r in [server_flight(&b), server_flight_with(&b, &mut scratch)] {
                if b.first().is_some_and(|&t| t != 22) {
                    prop_assert_eq!(r, Parse::NotThis);
                }
                if let Parse::Found(n) = r {
                    check_names(&n)?;
                }
            }
        }

        #[test]
        fn mutated_flights_never_panic(
            frag in 1usize..300,
            muts in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
            cut in any::<usize>(),
        ) {
            let leaf = cert(&cn(b"m.example"), Some(&[(DNS_NAME, b"*.m.example")]));
            let mut s = records(&tls12_handshake(&leaf), frag);
            for (i, v) in muts {
                let n = s.len();
                s[i % n] = v;
            }
            let n = s.len();
            s.truncate(cut % (n + 1));
            let mut scratch = vec![0u8; SCRATCH_LEN];
            if let Parse::Found(n) = server_flight(&s) {
                check_names(&n)?;
            }
            if let Parse::Found(n) = server_flight_with(&s, &mut scratch) {
                check_names(&n)?;
            }
        }

        #[test]
        fn fragmentation_keeps_names_with_scratch(frag in 1usize..400) {
            let leaf = cert(&cn(b"f.example"), Some(&[(DNS_NAME, b"g.example")]));
            let hs = tls12_handshake(&leaf);
            let s = records(&hs, frag);
            let mut scratch = vec![0u8; SCRATCH_LEN];
            let n = found(server_flight_with(&s, &mut scratch));
            prop_assert_eq!(n.common_name, Some("f.example"));
            prop_assert_eq!(n.dns_names.as_slice(), &["g.example"][..]);
            prop_assert_eq!(n.alpn, Some(&b"h2"[..]));
        }
    }
}
