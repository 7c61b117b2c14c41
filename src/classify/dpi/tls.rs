//! TLS ClientHello: the server name (SNI) and first ALPN protocol a client
//! asks for, read from the start of its TCP byte stream.
//!
//! Three entry points share one checked, zero-copy walker:
//!
//! - [`client_hello`] reads the record layer (content type 22, versions
//!   0x0300..=0x0304), the handshake header and the ClientHello, including a
//!   ClientHello fragmented over several records;
//! - [`client_hello_message`] reads a bare handshake message (QUIC CRYPTO
//!   frames carry these);
//! - [`parse_client_hello_body`] reads a ClientHello body without any header
//!   (what a DTLS parser has after its own handshake header).
//!
//! [`hello_len`] tells a caller how many stream bytes to buffer.
//!
//! Nothing here allocates, panics or loops longer than the input: every loop
//! consumes at least one byte per turn, every read is bounds-checked.
//!
//! Limits: SSLv2-format ClientHellos (first byte 0x80, no extensions
//! possible) are reported as [`Parse::NotThis`]. When a ClientHello is
//! fragmented over several records and the host name (or the first ALPN
//! protocol) itself straddles a record boundary, it cannot be returned
//! without copying, so it is reported as absent; everything else is still
//! checked.

use super::Parse;

/// TLS record header length (type, version, length).
pub const RECORD_HEADER_LEN: usize = 5;
/// Largest plaintext record payload a sender may produce (2^14).
pub const MAX_RECORD_LEN: usize = 16_384;
/// Handshake header length (type, 24-bit length).
pub const HANDSHAKE_HEADER_LEN: usize = 4;
/// Largest ClientHello body the wire format allows: version, random,
/// session id, cipher suites, compression methods and extensions at their
/// maximum sizes. Longer declared lengths are rejected outright.
pub const MAX_HELLO_BODY_LEN: usize = 2 + 32 + 1 + 32 + 2 + 65_534 + 1 + 255 + 2 + 65_535;

const CONTENT_HANDSHAKE: u8 = 22;
const HANDSHAKE_CLIENT_HELLO: u8 = 1;
const EXT_SERVER_NAME: u16 = 0;
const EXT_ALPN: u16 = 16;
const EXT_ECH: u16 = 0xfe0d;
const NAME_TYPE_HOST: u8 = 0;
/// Shortest possible body: version, random, empty session id, one cipher
/// suite, one compression method.
const MIN_HELLO_BODY_LEN: usize = 2 + 32 + 1 + 2 + 2 + 1 + 1;

/// What a ClientHello tells a classifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientHello<'a> {
    /// The first `host_name` of the server_name extension, if present and a
    /// plausible DNS name (letters, digits, `-`, `_`, dot-separated labels
    /// of 1..=63 bytes, at most 253 bytes, no trailing dot). Case is as
    /// sent. With ECH this is the outer, public name.
    pub sni: Option<&'a str>,
    /// The first protocol of the ALPN extension (e.g. `h2`, `h3`), if any.
    pub alpn: Option<&'a [u8]>,
    /// The body's `legacy_version` (0x0303 for TLS 1.2 and 1.3, 0x0301 for
    /// TLS 1.0, 0xfefd for DTLS 1.2 and 1.3).
    pub legacy_version: u16,
    /// Whether an `encrypted_client_hello` extension is present (the real
    /// server name is then encrypted and `sni` is the public name).
    pub ech: bool,
}

/// Parses the ClientHello at the start of a client's TCP byte stream.
///
/// `stream` is what the client sent first, possibly only the first
/// segment. Returns [`Parse::NeedMore`] while `stream` is a valid prefix of
/// a ClientHello (see [`hello_len`] for how much to wait for),
/// [`Parse::NotThis`] when it is not a TLS ClientHello or is malformed.
/// A ClientHello fragmented over several handshake records is followed
/// across them.
pub fn client_hello(stream: &[u8]) -> Parse<ClientHello<'_>> {
    verdict(message(&mut Records::new(stream)))
}

/// Parses a bare handshake message (type 1, 24-bit length, body), as
/// carried in QUIC CRYPTO frames. [`Parse::NeedMore`] when `msg` is a
/// prefix of a ClientHello message; bytes after the message are ignored.
pub fn client_hello_message(msg: &[u8]) -> Parse<ClientHello<'_>> {
    verdict(message(&mut Flat {
        data: msg,
        pos: 0,
        limit: usize::MAX,
    }))
}

/// Parses a complete ClientHello body (from `legacy_version` to the end of
/// the extensions, without record or handshake header). `body` must be
/// exactly the body: trailing bytes make it malformed. DTLS bodies
/// (`legacy_version` 0xfeff, 0xfefd or 0xfefc) have their cookie skipped.
pub fn parse_client_hello_body(body: &[u8]) -> Option<ClientHello<'_>> {
    let mut r = Flat {
        data: body,
        pos: 0,
        limit: body.len(),
    };
    hello_body(&mut r, body.len()).ok()
}

/// How many stream bytes the whole ClientHello occupies, record headers
/// included, read from the record and handshake headers at the start of
/// `stream`.
///
/// Exact once every record that carries the ClientHello has its header in
/// `stream`; before that (a ClientHello fragmented over records not yet
/// received) a lower bound that assumes full-size records, so call again as
/// bytes arrive. `None` when `stream` is too short to tell (fewer than 9
/// bytes) or does not start like a ClientHello.
pub fn hello_len(stream: &[u8]) -> Option<usize> {
    let mut r = Records::new(stream);
    if r.u8().ok()? != HANDSHAKE_CLIENT_HELLO {
        return None;
    }
    let body_len = r.u24().ok()?;
    if !(MIN_HELLO_BODY_LEN..=MAX_HELLO_BODY_LEN).contains(&body_len) {
        return None;
    }
    let total = HANDSHAKE_HEADER_LEN + body_len;
    // Walk the record headers present; each turn advances by at least 6.
    let (mut at, mut carried) = (0usize, 0usize);
    while let Some(header) = stream.get(at..at + RECORD_HEADER_LEN) {
        let len = record_len(header).ok()?;
        at += RECORD_HEADER_LEN;
        if carried + len >= total {
            return Some(at + (total - carried));
        }
        carried += len;
        at += len;
    }
    let missing = total - carried;
    Some(at + missing + RECORD_HEADER_LEN * missing.div_ceil(MAX_RECORD_LEN))
}

/// Why a walk stopped (shared with the server-side parser, `tls_server`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stop {
    /// The input ended inside the message: more bytes may complete it.
    Short,
    /// The bytes are not a (well-formed) ClientHello.
    Bad,
}

pub(super) type Res<T> = Result<T, Stop>;

fn verdict(r: Res<ClientHello<'_>>) -> Parse<ClientHello<'_>> {
    match r {
        Ok(hello) => Parse::Found(hello),
        Err(Stop::Short) => Parse::NeedMore,
        Err(Stop::Bad) => Parse::NotThis,
    }
}

/// Big-endian integers and skips over a forward-only reader of handshake
/// bytes (shared with the server side's reader, `tls_server`).
pub(super) trait Ints<'a> {
    /// Advances over `n` bytes; returns them when they are contiguous.
    fn take(&mut self, n: usize) -> Res<Option<&'a [u8]>>;

    fn u8(&mut self) -> Res<u8> {
        match self.take(1)? {
            Some(&[b]) => Ok(b),
            _ => Err(Stop::Bad),
        }
    }
    fn u16(&mut self) -> Res<u16> {
        Ok(u16::from(self.u8()?) << 8 | u16::from(self.u8()?))
    }
    fn u24(&mut self) -> Res<usize> {
        let hi = usize::from(self.u8()?);
        Ok(hi << 16 | usize::from(self.u16()?))
    }
    fn skip(&mut self, n: usize) -> Res<()> {
        self.take(n).map(drop)
    }
}

/// A forward-only reader over a handshake message that may be split in
/// pieces. Positions are offsets within the message.
trait Input<'a>: Ints<'a> {
    /// Offset of the next byte within the message.
    fn pos(&self) -> usize;
    /// Sets the message length once the handshake header is read.
    fn set_limit(&mut self, limit: usize);
}

/// A message in one contiguous slice (possibly cut short).
struct Flat<'a> {
    data: &'a [u8],
    pos: usize,
    limit: usize,
}

impl<'a> Input<'a> for Flat<'a> {
    fn pos(&self) -> usize {
        self.pos
    }
    fn set_limit(&mut self, limit: usize) {
        self.limit = limit;
    }
}

impl<'a> Ints<'a> for Flat<'a> {
    fn take(&mut self, n: usize) -> Res<Option<&'a [u8]>> {
        let end = self.pos.checked_add(n).ok_or(Stop::Bad)?;
        if end > self.limit {
            return Err(Stop::Bad);
        }
        let bytes = self.data.get(self.pos..end).ok_or(Stop::Short)?;
        self.pos = end;
        Ok(Some(bytes))
    }
}

/// A handshake message carried by consecutive handshake records of a
/// stream (possibly cut short).
struct Records<'a> {
    stream: &'a [u8],
    /// Stream offset of the next unread byte.
    at: usize,
    /// Stream offset where the current record's payload ends.
    record_end: usize,
    /// Offset within the message.
    pos: usize,
    limit: usize,
}

impl<'a> Records<'a> {
    fn new(stream: &'a [u8]) -> Self {
        Records {
            stream,
            at: 0,
            record_end: 0,
            pos: 0,
            limit: usize::MAX,
        }
    }

    /// Enters the record whose header starts at `self.at`.
    fn next_record(&mut self) -> Res<()> {
        let avail = self.stream.get(self.at..).unwrap_or_default();
        let Some(header) = avail.get(..RECORD_HEADER_LEN) else {
            return if record_prefix_ok(avail) {
                Err(Stop::Short)
            } else {
                Err(Stop::Bad)
            };
        };
        let len = record_len(header)?;
        self.at += RECORD_HEADER_LEN;
        self.record_end = self.at + len;
        Ok(())
    }
}

impl<'a> Input<'a> for Records<'a> {
    fn pos(&self) -> usize {
        self.pos
    }
    fn set_limit(&mut self, limit: usize) {
        self.limit = limit;
    }
}

impl<'a> Ints<'a> for Records<'a> {
    fn take(&mut self, n: usize) -> Res<Option<&'a [u8]>> {
        let end = self.pos.checked_add(n).ok_or(Stop::Bad)?;
        if end > self.limit {
            return Err(Stop::Bad);
        }
        if n == 0 {
            return Ok(Some(&[]));
        }
        if self.at == self.record_end {
            self.next_record()?;
        }
        let start = self.at;
        let mut contiguous = true;
        let mut left = n;
        // Each turn consumes at least one byte (records are never empty).
        while left > 0 {
            if self.at == self.record_end {
                self.next_record()?;
                contiguous = false;
            }
            let step = left.min(self.record_end - self.at);
            if self.at + step > self.stream.len() {
                return Err(Stop::Short);
            }
            self.at += step;
            self.pos += step;
            left -= step;
        }
        Ok(if contiguous {
            self.stream.get(start..self.at)
        } else {
            None
        })
    }
}

/// Checks a record header and returns its payload length.
pub(super) fn record_len(header: &[u8]) -> Res<usize> {
    let &[ty, major, minor, hi, lo] = header else {
        return Err(Stop::Bad);
    };
    let len = usize::from(hi) << 8 | usize::from(lo);
    if ty != CONTENT_HANDSHAKE || major != 3 || minor > 4 || !(1..=MAX_RECORD_LEN).contains(&len) {
        return Err(Stop::Bad);
    }
    Ok(len)
}

/// Whether a record header cut short could still become a handshake
/// record header.
pub(super) fn record_prefix_ok(prefix: &[u8]) -> bool {
    match *prefix {
        [] => true,
        [ty, ..] if ty != CONTENT_HANDSHAKE => false,
        [_, major, ..] if major != 3 => false,
        [_, _, minor, ..] if minor > 4 => false,
        [_, _, _, hi, ..] => usize::from(hi) << 8 <= MAX_RECORD_LEN,
        _ => true,
    }
}

/// Handshake header then ClientHello body.
fn message<'a>(r: &mut impl Input<'a>) -> Res<ClientHello<'a>> {
    if r.u8()? != HANDSHAKE_CLIENT_HELLO {
        return Err(Stop::Bad);
    }
    let len = r.u24()?;
    if !(MIN_HELLO_BODY_LEN..=MAX_HELLO_BODY_LEN).contains(&len) {
        return Err(Stop::Bad);
    }
    let end = r.pos() + len;
    r.set_limit(end);
    hello_body(r, end)
}

/// The ClientHello body, ending at message offset `end`.
fn hello_body<'a>(r: &mut impl Input<'a>, end: usize) -> Res<ClientHello<'a>> {
    let legacy_version = r.u16()?;
    let dtls = match legacy_version {
        0x0300..=0x0304 => false,
        0xfefc..=0xfeff => true,
        _ => return Err(Stop::Bad),
    };
    r.skip(32)?; // random
    let session_id = r.u8()?;
    if session_id > 32 {
        return Err(Stop::Bad);
    }
    r.skip(session_id.into())?;
    if dtls {
        let cookie = r.u8()?;
        r.skip(cookie.into())?;
    }
    let suites = usize::from(r.u16()?);
    if suites < 2 || suites % 2 != 0 {
        return Err(Stop::Bad);
    }
    r.skip(suites)?;
    let compression = r.u8()?;
    if compression == 0 {
        return Err(Stop::Bad);
    }
    r.skip(compression.into())?;

    let mut hello = ClientHello {
        sni: None,
        alpn: None,
        legacy_version,
        ech: false,
    };
    if r.pos() == end {
        return Ok(hello); // no extensions (SSL 3.0 to TLS 1.2 allow it)
    }
    let ext_len = usize::from(r.u16()?);
    if r.pos() + ext_len != end {
        return Err(Stop::Bad);
    }
    let (mut seen_sni, mut seen_alpn) = (false, false);
    // Each turn consumes at least the 4-byte extension header.
    while r.pos() < end {
        let ty = r.u16()?;
        let len = usize::from(r.u16()?);
        let ext_end = r.pos() + len;
        if ext_end > end {
            return Err(Stop::Bad);
        }
        match ty {
            EXT_SERVER_NAME if !seen_sni => {
                seen_sni = true;
                hello.sni = server_name(r, ext_end)?;
            }
            EXT_ALPN if !seen_alpn => {
                seen_alpn = true;
                hello.alpn = alpn(r, ext_end)?;
            }
            EXT_ECH => hello.ech = true,
            _ => {}
        }
        r.skip(ext_end.checked_sub(r.pos()).ok_or(Stop::Bad)?)?;
    }
    Ok(hello)
}

/// A 16-bit length-prefixed list filling the extension up to `ext_end`;
/// returns where the list ends.
fn list_end<'a>(r: &mut impl Input<'a>, ext_end: usize) -> Res<usize> {
    let len = usize::from(r.u16()?);
    if len == 0 || r.pos() + len != ext_end {
        return Err(Stop::Bad);
    }
    Ok(ext_end)
}

/// server_name extension: the first plausible host_name entry.
fn server_name<'a>(r: &mut impl Input<'a>, ext_end: usize) -> Res<Option<&'a str>> {
    let end = list_end(r, ext_end)?;
    let mut found = None;
    let mut first_host = true;
    while r.pos() < end {
        let name_type = r.u8()?;
        let len = usize::from(r.u16()?);
        if r.pos() + len > end {
            return Err(Stop::Bad);
        }
        let name = r.take(len)?;
        if name_type == NAME_TYPE_HOST && first_host {
            first_host = false;
            found = name.and_then(plausible_host);
        }
    }
    Ok(found)
}

/// ALPN extension: the first protocol name.
fn alpn<'a>(r: &mut impl Input<'a>, ext_end: usize) -> Res<Option<&'a [u8]>> {
    let end = list_end(r, ext_end)?;
    let mut first = None;
    let mut seen = false;
    while r.pos() < end {
        let len = usize::from(r.u8()?);
        if len == 0 || r.pos() + len > end {
            return Err(Stop::Bad);
        }
        let proto = r.take(len)?;
        if !seen {
            seen = true;
            first = proto;
        }
    }
    Ok(first)
}

/// `name` as text if it looks like a DNS host name (see
/// [`ClientHello::sni`]).
pub fn plausible_host(name: &[u8]) -> Option<&str> {
    if name.is_empty() || name.len() > 253 {
        return None;
    }
    let mut label = 0usize;
    for &b in name {
        match b {
            b'.' if label > 0 => label = 0,
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' if label < 63 => label += 1,
            _ => return None,
        }
    }
    if label == 0 {
        return None;
    }
    core::str::from_utf8(name).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal TLS 1.2-style ClientHello body with the given extensions.
    fn body(exts: &[u8]) -> Vec<u8> {
        let mut b = vec![0x03, 0x03];
        b.extend([0x11; 32]);
        b.push(0);
        b.extend([0x00, 0x02, 0x13, 0x01]);
        b.extend([0x01, 0x00]);
        b.extend((exts.len() as u16).to_be_bytes());
        b.extend(exts);
        b
    }

    fn sni_ext(name: &[u8]) -> Vec<u8> {
        let mut e = vec![0x00, 0x00];
        e.extend(((name.len() + 5) as u16).to_be_bytes());
        e.extend(((name.len() + 3) as u16).to_be_bytes());
        e.push(0);
        e.extend((name.len() as u16).to_be_bytes());
        e.extend(name);
        e
    }

    fn alpn_ext(protos: &[&[u8]]) -> Vec<u8> {
        let mut list = Vec::new();
        for p in protos {
            list.push(p.len() as u8);
            list.extend(*p);
        }
        let mut e = vec![0x00, 0x10];
        e.extend(((list.len() + 2) as u16).to_be_bytes());
        e.extend((list.len() as u16).to_be_bytes());
        e.extend(list);
        e
    }

    fn message_of(body: &[u8]) -> Vec<u8> {
        let mut m = vec![1];
        m.extend(&(body.len() as u32).to_be_bytes()[1..]);
        m.extend(body);
        m
    }

    /// Wraps a handshake message in records of at most `frag` bytes.
    fn records(msg: &[u8], frag: usize) -> Vec<u8> {
        let mut s = Vec::new();
        for chunk in msg.chunks(frag) {
            s.extend([22, 3, 1]);
            s.extend((chunk.len() as u16).to_be_bytes());
            s.extend(chunk);
        }
        s
    }

    #[test]
    fn synthetic_hello_with_sni_and_alpn() {
        let mut exts = sni_ext(b"Example.COM");
        exts.extend(alpn_ext(&[b"h2", b"http/1.1"]));
        let b = body(&exts);
        let hello = parse_client_hello_body(&b).unwrap();
        assert_eq!(hello.sni, Some("Example.COM"));
        assert_eq!(hello.alpn, Some(&b"h2"[..]));
        assert_eq!(hello.legacy_version, 0x0303);
        assert!(!hello.ech);

        let msg = message_of(&b);
        assert_eq!(client_hello_message(&msg), Parse::Found(hello));
        let stream = records(&msg, 16384);
        assert_eq!(client_hello(&stream), Parse::Found(hello));
        assert_eq!(hello_len(&stream), Some(stream.len()));
        for cut in 0..stream.len() {
            assert_eq!(client_hello(&stream[..cut]), Parse::NeedMore, "cut {cut}");
        }
    }

    #[test]
    fn fragmented_records() {
        let mut exts = sni_ext(b"a.example.net");
        exts.extend(alpn_ext(&[b"h2"]));
        let msg = message_of(&body(&exts));
        for frag in 1..msg.len() {
            let stream = records(&msg, frag);
            assert_eq!(hello_len(&stream), Some(stream.len()), "frag {frag}");
            match client_hello(&stream) {
                Parse::Found(h) => {
                    // The name is 13 bytes at a fixed offset: whole when no
                    // record boundary falls inside it.
                    let start = msg.len() - exts.len() + 9;
                    let split = (start / frag) != ((start + 12) / frag);
                    assert_eq!(h.sni, if split { None } else { Some("a.example.net") });
                }
                other => panic!("frag {frag}: {other:?}"),
            }
            // Lower bound before the later record headers arrive.
            if frag >= 4 {
                let first = 5 + frag.min(msg.len());
                assert!(hello_len(&stream[..first]).unwrap() <= stream.len());
            }
            assert_eq!(client_hello(&stream[..stream.len() - 1]), Parse::NeedMore);
        }
    }

    #[test]
    fn no_extensions_is_found_without_sni() {
        let mut b = body(&[]);
        b.truncate(b.len() - 2);
        let h = parse_client_hello_body(&b).unwrap();
        assert_eq!(h.sni, None);
        assert_eq!(h.alpn, None);
    }

    #[test]
    fn implausible_names_are_dropped() {
        for bad in [
            &b""[..],
            b".",
            b"a..b",
            b"example.com.",
            b".example.com",
            b"exa mple.com",
            b"ex\0ample.com",
            b"\xc3\xa9t\xc3\xa9.fr",
            &[b'a'; 64],
            &[b'a'; 254],
        ] {
            assert_eq!(plausible_host(bad), None, "{bad:?}");
            let b = body(&sni_ext(bad));
            if !bad.is_empty() {
                assert_eq!(parse_client_hello_body(&b).unwrap().sni, None);
            }
        }
        for good in [
            &b"x"[..],
            b"_dmarc.example.com",
            b"xn--bcher-kva.de",
            &[b'a'; 63],
        ] {
            assert!(plausible_host(good).is_some(), "{good:?}");
        }
        let mut long = Vec::new();
        for _ in 0..63 {
            long.extend(b"abc.");
        }
        long.extend(b"a");
        assert_eq!(long.len(), 253);
        assert!(plausible_host(&long).is_some());
    }

    #[test]
    fn not_a_hello() {
        assert_eq!(client_hello(b"GET / HTTP/1.1\r\n"), Parse::NotThis);
        assert_eq!(client_hello(&[22, 3, 1, 0, 5, 2]), Parse::NotThis); // ServerHello
        assert_eq!(client_hello(&[22, 2]), Parse::NotThis);
        assert_eq!(client_hello(&[23, 3, 3, 0, 10]), Parse::NotThis);
        assert_eq!(client_hello(&[22, 3, 1, 0, 0]), Parse::NotThis); // empty record
        assert_eq!(client_hello(&[22, 3, 1, 0x40, 1]), Parse::NotThis); // too long
        assert_eq!(client_hello(&[22, 3, 1]), Parse::NeedMore);
        assert_eq!(client_hello(&[]), Parse::NeedMore);
        // SSLv2-format hello.
        assert_eq!(
            client_hello(&[0x80, 0x2e, 0x01, 0x03, 0x01]),
            Parse::NotThis
        );
        assert_eq!(hello_len(&[22, 3, 1, 0, 5, 1, 0, 0]), None);
        // Trailing bytes after the extensions.
        let mut b = body(&sni_ext(b"x.y"));
        b.push(0);
        assert_eq!(parse_client_hello_body(&b), None);
    }

    #[test]
    fn dtls_body_skips_cookie() {
        let mut b = vec![0xfe, 0xfd];
        b.extend([0x22; 32]);
        b.push(0); // session id
        b.extend([3, 9, 9, 9]); // cookie
        b.extend([0x00, 0x02, 0xc0, 0x2b, 0x01, 0x00]);
        let exts = sni_ext(b"dtls.example");
        b.extend((exts.len() as u16).to_be_bytes());
        b.extend(&exts);
        let h = parse_client_hello_body(&b).unwrap();
        assert_eq!(h.sni, Some("dtls.example"));
        assert_eq!(h.legacy_version, 0xfefd);
    }

    #[test]
    fn hello_len_estimates_unseen_records() {
        let mut exts = sni_ext(b"big.example");
        exts.extend([0xaa, 0xaa, 0x4e, 0x20]);
        exts.extend([0; 20_000]);
        let msg = message_of(&body(&exts));
        let stream = records(&msg, MAX_RECORD_LEN);
        assert_eq!(hello_len(&stream[..9]), Some(stream.len()));
        assert_eq!(hello_len(&stream), Some(stream.len()));
        assert_eq!(client_hello(&stream[..16_389]), Parse::NeedMore);
        assert!(matches!(client_hello(&stream), Parse::Found(_)));
    }
}
