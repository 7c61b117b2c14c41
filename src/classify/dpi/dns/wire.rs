//! The DNS wire format, read from the answers a resolver sends back.
//!
//! The parser is zero-copy and allocation-free: names are decoded into a
//! fixed 255-byte buffer ([`DnsName`]), answers are walked lazily. It is safe
//! on anything an attacker can send from UDP port 53:
//!
//! - every read is bounds-checked;
//! - a compression pointer must point strictly before the label that holds
//!   it, so pointer chains always terminate (no loops, not even long ones);
//! - decoded names longer than 255 bytes are rejected;
//! - the counts in the header are never trusted to size anything: sections
//!   are walked until the count or the bytes run out, and at most
//!   [`MAX_ANSWERS`] answer records are examined.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::super::Parse;

/// Longest name on the wire (RFC 1035 2.3.4); also the size of the buffer a
/// decoded name lives in.
pub const MAX_NAME_LEN: usize = 255;
/// At most this many answer records are examined per message; the rest are
/// ignored (real answers have a handful; this bounds the work an attacker
/// can cause with a 64 KiB DNS-over-TCP message).
pub const MAX_ANSWERS: usize = 64;
/// At most this many names are followed in a CNAME chain (the question name
/// included). Resolvers give up after about 8-16 hops as well.
pub const MAX_CHAIN: usize = 12;

/// Record type A (IPv4 address).
pub const TYPE_A: u16 = 1;
/// Record type CNAME (canonical name).
pub const TYPE_CNAME: u16 = 5;
/// Record type AAAA (IPv6 address).
pub const TYPE_AAAA: u16 = 28;
/// Class IN (Internet).
pub const CLASS_IN: u16 = 1;

const HEADER_LEN: usize = 12;
/// Fixed part of a resource record after its owner name:
/// type, class, ttl, rdlength.
const RR_FIXED: usize = 10;

#[inline]
fn be16(b: &[u8], off: usize) -> Option<u16> {
    let s = b.get(off..off.checked_add(2)?)?;
    Some(u16::from_be_bytes([*s.first()?, *s.get(1)?]))
}

#[inline]
fn be32(b: &[u8], off: usize) -> Option<u32> {
    let s = b.get(off..off.checked_add(4)?)?;
    let a: [u8; 4] = s.try_into().ok()?;
    Some(u32::from_be_bytes(a))
}

/// A domain name in presentation form ("teams.microsoft.com", no trailing
/// dot, the root is ""), lower-cased, in a fixed buffer: no allocation.
///
/// Bytes that are not printable ASCII, and dots inside a label, are replaced
/// by `?` so the name is always valid UTF-8 and never aliases another name's
/// label structure; such a name matches no catalog pattern.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct DnsName {
    buf: [u8; MAX_NAME_LEN],
    len: u8,
}

impl DnsName {
    /// The empty (root) name.
    pub const fn new() -> Self {
        DnsName {
            buf: [0; MAX_NAME_LEN],
            len: 0,
        }
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        let bytes = self.buf.get(..usize::from(self.len)).unwrap_or(&[]);
        // Only printable ASCII is ever stored.
        core::str::from_utf8(bytes).unwrap_or("")
    }

    /// Length of the text form in bytes.
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    /// True for the root name.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn push(&mut self, b: u8) -> Option<()> {
        let slot = self.buf.get_mut(usize::from(self.len))?;
        *slot = b;
        self.len = self.len.checked_add(1)?;
        Some(())
    }

    fn push_label(&mut self, label: &[u8]) -> Option<()> {
        if self.len > 0 {
            self.push(b'.')?;
        }
        for &b in label {
            let c = match b {
                b'.' => b'?',
                0x21..=0x7e => b.to_ascii_lowercase(),
                _ => b'?',
            };
            self.push(c)?;
        }
        Some(())
    }
}

impl Default for DnsName {
    fn default() -> Self {
        Self::new()
    }
}

impl core::fmt::Debug for DnsName {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "DnsName({:?})", self.as_str())
    }
}

/// Walks the labels of a (possibly compressed) name starting at `off`.
/// Yields each label's bytes. Compression pointers must point strictly
/// before the position of the pointer itself, which makes every chain
/// finite; the total wire length is capped at [`MAX_NAME_LEN`].
struct Labels<'a> {
    msg: &'a [u8],
    pos: usize,
    /// Lowest offset a pointer may still jump below (pointers must go back).
    limit: usize,
    wire_len: usize,
    done: bool,
    failed: bool,
}

impl<'a> Labels<'a> {
    fn new(msg: &'a [u8], off: usize) -> Self {
        Labels {
            msg,
            pos: off,
            limit: off,
            wire_len: 0,
            done: false,
            failed: false,
        }
    }

    fn fail(&mut self) -> Option<&'a [u8]> {
        self.failed = true;
        self.done = true;
        None
    }
}

impl<'a> Iterator for Labels<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.done {
            return None;
        }
        loop {
            let Some(&len) = self.msg.get(self.pos) else {
                return self.fail();
            };
            match len & 0xc0 {
                0x00 => {
                    if len == 0 {
                        self.wire_len += 1;
                        if self.wire_len > MAX_NAME_LEN {
                            return self.fail();
                        }
                        self.done = true;
                        return None;
                    }
                    let n = usize::from(len);
                    self.wire_len += 1 + n;
                    if self.wire_len > MAX_NAME_LEN {
                        return self.fail();
                    }
                    let start = self.pos + 1;
                    let Some(label) = self.msg.get(start..start + n) else {
                        return self.fail();
                    };
                    self.pos = start + n;
                    return Some(label);
                }
                0xc0 => {
                    let Some(&lo) = self.msg.get(self.pos + 1) else {
                        return self.fail();
                    };
                    let target = usize::from(len & 0x3f) << 8 | usize::from(lo);
                    // Strictly backwards from the lowest point reached so far:
                    // each jump lowers `limit`, so at most `off` jumps happen.
                    if target >= self.limit {
                        return self.fail();
                    }
                    self.limit = target;
                    self.pos = target;
                }
                // 0x40 (extended label types, RFC 6891) and 0x80 (reserved).
                _ => return self.fail(),
            }
        }
    }
}

/// Offset just past the name that starts at `off` (not following pointers),
/// after checking that the whole name decodes.
fn skip_name(msg: &[u8], off: usize) -> Option<usize> {
    let mut pos = off;
    // Find the end in place: labels then either a zero byte or a pointer.
    loop {
        let len = *msg.get(pos)?;
        match len & 0xc0 {
            0x00 if len == 0 => {
                pos += 1;
                break;
            }
            0x00 => pos += 1 + usize::from(len),
            0xc0 => {
                msg.get(pos + 1)?;
                pos += 2;
                break;
            }
            _ => return None,
        }
        if pos - off > MAX_NAME_LEN {
            return None;
        }
    }
    // Validate pointers and total length.
    let mut labels = Labels::new(msg, off);
    for _ in labels.by_ref() {}
    if labels.failed { None } else { Some(pos) }
}

/// Decodes the name at `off` into a [`DnsName`].
fn read_name(msg: &[u8], off: usize) -> Option<DnsName> {
    let mut name = DnsName::new();
    let mut labels = Labels::new(msg, off);
    for label in labels.by_ref() {
        name.push_label(label)?;
    }
    if labels.failed { None } else { Some(name) }
}

/// Case-insensitive comparison of two names inside the same message.
fn names_equal(msg: &[u8], a: usize, b: usize) -> bool {
    if a == b {
        return true;
    }
    let mut la = Labels::new(msg, a);
    let mut lb = Labels::new(msg, b);
    loop {
        match (la.next(), lb.next()) {
            (None, None) => return !la.failed && !lb.failed,
            (Some(x), Some(y)) => {
                if !x.eq_ignore_ascii_case(y) {
                    return false;
                }
            }
            _ => return false,
        }
    }
}

/// The fixed 12-byte DNS header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DnsHeader {
    /// Transaction id.
    pub id: u16,
    /// The flags word (QR, opcode, AA, TC, RD, RA, Z, AD, CD, rcode).
    pub flags: u16,
    /// Number of questions the header claims.
    pub qdcount: u16,
    /// Number of answer records the header claims.
    pub ancount: u16,
    /// Number of authority records the header claims.
    pub nscount: u16,
    /// Number of additional records the header claims.
    pub arcount: u16,
}

impl DnsHeader {
    /// Reads the header; `None` if fewer than 12 bytes.
    pub fn parse(msg: &[u8]) -> Option<Self> {
        Some(DnsHeader {
            id: be16(msg, 0)?,
            flags: be16(msg, 2)?,
            qdcount: be16(msg, 4)?,
            ancount: be16(msg, 6)?,
            nscount: be16(msg, 8)?,
            arcount: be16(msg, 10)?,
        })
    }
    /// QR bit: this is a response.
    pub fn is_response(&self) -> bool {
        self.flags & 0x8000 != 0
    }
    /// Opcode (0 = standard query).
    pub fn opcode(&self) -> u8 {
        ((self.flags >> 11) & 0x0f) as u8
    }
    /// TC bit: the response was truncated (the client will retry over TCP).
    pub fn truncated(&self) -> bool {
        self.flags & 0x0200 != 0
    }
    /// Response code (0 = NOERROR, 3 = NXDOMAIN).
    pub fn rcode(&self) -> u8 {
        (self.flags & 0x000f) as u8
    }
}

/// The (first) question of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DnsQuestion {
    /// The name asked for, lower-cased.
    pub name: DnsName,
    /// QTYPE (1 = A, 28 = AAAA, 65 = HTTPS, ...).
    pub qtype: u16,
    /// QCLASS (1 = IN; mDNS sets the top bit for unicast responses).
    pub qclass: u16,
}

/// Reads the question at `off`; returns it and the offset after it.
fn read_question(msg: &[u8], off: usize) -> Option<(DnsQuestion, usize)> {
    let name = read_name(msg, off)?;
    let end = skip_name(msg, off)?;
    let q = DnsQuestion {
        name,
        qtype: be16(msg, end)?,
        qclass: be16(msg, end + 2)?,
    };
    Some((q, end + 4))
}

/// The query name of a DNS query (QR = 0), for logging. `None` if the
/// payload is not a well-formed standard query with at least one question.
pub fn query_name(payload: &[u8]) -> Option<DnsName> {
    let h = DnsHeader::parse(payload)?;
    if h.is_response() || h.opcode() != 0 || h.qdcount == 0 {
        return None;
    }
    let (q, _) = read_question(payload, HEADER_LEN)?;
    Some(q.name)
}

/// One resource record, as located in the message.
#[derive(Debug, Clone, Copy)]
struct RawRecord {
    owner: usize,
    rtype: u16,
    class: u16,
    ttl: u32,
    rdata: usize,
    rdlen: usize,
}

/// Reads the record at `off`; returns it and the offset after it.
fn read_record(msg: &[u8], off: usize) -> Option<(RawRecord, usize)> {
    let after_name = skip_name(msg, off)?;
    let rtype = be16(msg, after_name)?;
    let class = be16(msg, after_name + 2)?;
    let raw_ttl = be32(msg, after_name + 4)?;
    let rdlen = usize::from(be16(msg, after_name + 8)?);
    let rdata = after_name + RR_FIXED;
    let end = rdata.checked_add(rdlen)?;
    if end > msg.len() {
        return None;
    }
    // RFC 2181 8: a TTL with the top bit set is treated as zero.
    let ttl = if raw_ttl & 0x8000_0000 != 0 {
        0
    } else {
        raw_ttl
    };
    Some((
        RawRecord {
            owner: off,
            rtype,
            class: class & 0x7fff, // mDNS cache-flush bit
            ttl,
            rdata,
            rdlen,
        },
        end,
    ))
}

/// A name in the CNAME chain: where it is in the message and the smallest
/// TTL along the path from the question to it.
#[derive(Debug, Clone, Copy, Default)]
struct ChainLink {
    name_off: usize,
    ttl: u32,
}

/// A parsed DNS response. Borrows the message; addresses are read lazily by
/// [`DnsResponse::addresses`].
#[derive(Debug, Clone)]
pub struct DnsResponse<'a> {
    msg: &'a [u8],
    /// The header.
    pub header: DnsHeader,
    /// The question, if the response carries exactly one (responses with
    /// several questions are not used in practice and are not mapped).
    pub question: Option<DnsQuestion>,
    answers_off: usize,
    answers: usize,
    chain: [ChainLink; MAX_CHAIN],
    /// Names in `chain` (visible to the tests, which check how far a
    /// chain was followed).
    pub(super) chain_len: usize,
}

/// An address found in a response, with the name the client asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DnsAddress<'r> {
    /// The address (from an A or AAAA record).
    pub ip: IpAddr,
    /// Seconds the mapping is valid: the smallest TTL along the CNAME chain
    /// from the question to this record.
    pub ttl: u32,
    /// The question name (not the CNAME target the record is owned by).
    pub name: &'r str,
}

/// Parses a DNS response carried in a UDP payload. `None` if it is not a
/// well-formed standard-query response (QR = 1, opcode 0) or its question
/// is malformed. Malformed records after the question only cut the answer
/// list short.
pub fn parse_response(payload: &[u8]) -> Option<DnsResponse<'_>> {
    let header = DnsHeader::parse(payload)?;
    if !header.is_response() || header.opcode() != 0 {
        return None;
    }
    // Walk the question section (it must be intact to find the answers).
    let mut off = HEADER_LEN;
    let mut question = None;
    for i in 0..header.qdcount {
        let (q, next) = read_question(payload, off)?;
        if i == 0 {
            question = Some(q);
        }
        off = next;
    }
    if header.qdcount != 1 {
        question = None;
    }
    let answers = usize::from(header.ancount).min(MAX_ANSWERS);
    let mut resp = DnsResponse {
        msg: payload,
        header,
        question,
        answers_off: off,
        answers,
        chain: [ChainLink::default(); MAX_CHAIN],
        chain_len: 0,
    };
    if resp.question.is_some() && header.rcode() == 0 {
        resp.build_chain();
    }
    Some(resp)
}

/// Parses a DNS response sent over TCP (RFC 1035 4.2.2: a 2-byte length
/// prefix, then the message). `NeedMore` until the whole message is in
/// `stream`; trailing bytes (the next message) are ignored.
pub fn parse_response_tcp(stream: &[u8]) -> Parse<DnsResponse<'_>> {
    let Some(len) = be16(stream, 0) else {
        return Parse::NeedMore;
    };
    let len = usize::from(len);
    if len < HEADER_LEN {
        return Parse::NotThis;
    }
    // Reject early on a header we can already see.
    if let Some(h) = stream.get(2..).and_then(DnsHeader::parse)
        && (!h.is_response() || h.opcode() != 0)
    {
        return Parse::NotThis;
    }
    match stream.get(2..2 + len) {
        None => Parse::NeedMore,
        Some(msg) => match parse_response(msg) {
            Some(r) => Parse::Found(r),
            None => Parse::NotThis,
        },
    }
}

impl<'a> DnsResponse<'a> {
    /// The question name, if there is exactly one question.
    pub fn question_name(&self) -> Option<&DnsName> {
        self.question.as_ref().map(|q| &q.name)
    }

    fn chain_find(&self, owner: usize) -> Option<u32> {
        self.chain
            .get(..self.chain_len)?
            .iter()
            .find(|l| names_equal(self.msg, l.name_off, owner))
            .map(|l| l.ttl)
    }

    /// Collects the question name and every CNAME target reachable from it.
    /// Records are usually in chain order, so one pass suffices; a few more
    /// passes pick up out-of-order chains. Work is bounded by
    /// MAX_ANSWERS x MAX_CHAIN x passes name comparisons.
    fn build_chain(&mut self) {
        if let Some(first) = self.chain.first_mut() {
            *first = ChainLink {
                name_off: HEADER_LEN,
                ttl: u32::MAX,
            };
            self.chain_len = 1;
        }
        for _pass in 0..3 {
            let before = self.chain_len;
            let mut off = self.answers_off;
            for _ in 0..self.answers {
                let Some((rr, next)) = read_record(self.msg, off) else {
                    break;
                };
                off = next;
                if rr.rtype != TYPE_CNAME || rr.class != CLASS_IN {
                    continue;
                }
                let Some(ttl) = self.chain_find(rr.owner) else {
                    continue;
                };
                if skip_name(self.msg, rr.rdata) != Some(rr.rdata + rr.rdlen) {
                    continue; // target name does not fill the rdata exactly
                }
                if self.chain_find(rr.rdata).is_some() {
                    continue; // already known (or a CNAME loop)
                }
                let Some(slot) = self.chain.get_mut(self.chain_len) else {
                    return;
                };
                *slot = ChainLink {
                    name_off: rr.rdata,
                    ttl: ttl.min(rr.ttl),
                };
                self.chain_len += 1;
            }
            if self.chain_len == before {
                break;
            }
        }
    }

    /// The A and AAAA records that answer the question (owned by the
    /// question name or by a name in its CNAME chain), each reported with
    /// the question name. Empty when the response has no single question or
    /// an error rcode.
    pub fn addresses(&self) -> DnsAddresses<'_, 'a> {
        DnsAddresses {
            resp: self,
            off: self.answers_off,
            left: if self.chain_len > 0 { self.answers } else { 0 },
        }
    }
}

/// Iterator over the addresses of a [`DnsResponse`].
#[derive(Debug, Clone)]
pub struct DnsAddresses<'r, 'a> {
    resp: &'r DnsResponse<'a>,
    off: usize,
    left: usize,
}

impl<'r> Iterator for DnsAddresses<'r, '_> {
    type Item = DnsAddress<'r>;

    fn next(&mut self) -> Option<DnsAddress<'r>> {
        while self.left > 0 {
            self.left -= 1;
            let Some((rr, next)) = read_record(self.resp.msg, self.off) else {
                self.left = 0;
                return None;
            };
            self.off = next;
            if rr.class != CLASS_IN {
                continue;
            }
            let rdata = self.resp.msg.get(rr.rdata..rr.rdata + rr.rdlen)?;
            let ip = match (rr.rtype, rdata.len()) {
                (TYPE_A, 4) => {
                    let a: [u8; 4] = rdata.try_into().ok()?;
                    IpAddr::V4(Ipv4Addr::from(a))
                }
                (TYPE_AAAA, 16) => {
                    let a: [u8; 16] = rdata.try_into().ok()?;
                    IpAddr::V6(Ipv6Addr::from(a))
                }
                _ => continue,
            };
            let Some(chain_ttl) = self.resp.chain_find(rr.owner) else {
                continue;
            };
            let name = self.resp.question_name()?.as_str();
            return Some(DnsAddress {
                ip,
                ttl: chain_ttl.min(rr.ttl),
                name,
            });
        }
        None
    }
}
