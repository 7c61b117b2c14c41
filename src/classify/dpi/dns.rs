//! DNS snooping: read the answers a resolver sends back so that a flow to an
//! address can be named after the host name the client looked up, even when
//! the flow's own packets carry no name (an IP-only QUIC flow, a TLS session
//! resumed without SNI, plain RTP to a media relay).
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
//!
//! [`DnsCache`] is the shared map from address to name that the data path
//! fills from answers and reads when a new flow starts.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use super::Parse;
use crate::time::Instant;

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
    chain_len: usize,
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

// ---------------------------------------------------------------------------
// DnsCache
// ---------------------------------------------------------------------------

/// Shortest time a mapping is kept, whatever the record's TTL says. CDNs
/// hand out TTLs of 20-60 s, yet clients open new connections to an
/// address for a while after it expired (OS and browser caches round up,
/// connection pools, happy-eyeballs retries); dropping the mapping at the
/// exact TTL would leave those flows unnamed. A TTL of 0 is also clamped.
pub const MIN_TTL: Duration = Duration::from_secs(30);
/// Longest time a mapping is kept. Cloud and CDN addresses are reassigned;
/// a bogus or huge TTL (up to 68 years on the wire) must not pin a stale or
/// poisoned mapping, and no legitimate client reuses an answer for longer.
pub const MAX_TTL: Duration = Duration::from_secs(24 * 3600);

const SHARDS: usize = 16;

#[derive(Debug)]
struct CacheEntry {
    name: Arc<str>,
    expiry: Instant,
    /// Set by lookups; gives the entry a second chance at eviction time.
    referenced: AtomicBool,
}

#[derive(Debug, Default)]
struct Shard {
    map: HashMap<IpAddr, CacheEntry, RandomState>,
    /// Insertion order for CLOCK eviction; holds each key of `map` once.
    order: VecDeque<IpAddr>,
}

/// A bounded, thread-safe map from address to the host name a DNS answer
/// gave it, expiring with the (clamped) TTL.
///
/// Written once per snooped DNS answer, read once per new flow; not on the
/// per-packet path. It is split into 16 shards behind `RwLock`s (lookups
/// take a read lock). Each shard holds at most `capacity / 16` (rounded up)
/// entries; when a shard is full an insert evicts with the CLOCK
/// (second-chance) policy in insertion order: expired entries go first,
/// entries looked up since they were last considered get one more round, so
/// a flood of answers for unused names cannot push out mappings that are in
/// use. Memory stays bounded by capacity x (entry + name) whatever arrives.
///
/// When several names resolve to one address (shared CDN addresses), the
/// latest answer wins.
#[derive(Debug)]
pub struct DnsCache {
    shards: Box<[RwLock<Shard>]>,
    per_shard: usize,
    hasher: RandomState,
    min_ttl: Duration,
    max_ttl: Duration,
    evictions: AtomicU64,
    expired_removed: AtomicU64,
}

impl DnsCache {
    /// A cache of at most about `capacity` entries (the exact bound is
    /// [`DnsCache::capacity`]), TTLs clamped to [`MIN_TTL`]..[`MAX_TTL`].
    pub fn new(capacity: usize) -> Self {
        Self::with_ttl_bounds(capacity, MIN_TTL, MAX_TTL)
    }

    /// Like [`DnsCache::new`] with other TTL bounds (`max` is raised to
    /// `min` if lower).
    pub fn with_ttl_bounds(capacity: usize, min: Duration, max: Duration) -> Self {
        let per_shard = capacity.max(1).div_ceil(SHARDS);
        let shards = (0..SHARDS)
            .map(|_| RwLock::new(Shard::default()))
            .collect::<Vec<_>>()
            .into_boxed_slice();
        DnsCache {
            shards,
            per_shard,
            hasher: RandomState::new(),
            min_ttl: min,
            max_ttl: max.max(min),
            evictions: AtomicU64::new(0),
            expired_removed: AtomicU64::new(0),
        }
    }

    /// The most entries the cache will ever hold.
    pub fn capacity(&self) -> usize {
        self.per_shard * SHARDS
    }

    fn shard(&self, ip: &IpAddr) -> Option<&RwLock<Shard>> {
        let h = self.hasher.hash_one(ip);
        // Use the high bits: the low bits also pick the HashMap bucket.
        self.shards.get((h >> 60) as usize % SHARDS)
    }

    /// Records that `ip` is `name` for `ttl` seconds (clamped) from `now`.
    /// Allocates the name (once per DNS answer, not per packet); re-inserting
    /// the same name for an address reuses the allocation.
    pub fn insert(&self, ip: IpAddr, name: &str, ttl: u32, now: Instant) {
        let ttl = Duration::from_secs(u64::from(ttl)).clamp(self.min_ttl, self.max_ttl);
        let expiry = now + ttl;
        let Some(lock) = self.shard(&ip) else { return };
        let mut shard = lock.write().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = shard.map.get_mut(&ip) {
            if &*e.name != name {
                e.name = Arc::from(name);
            }
            e.expiry = expiry;
            return;
        }
        while shard.map.len() >= self.per_shard {
            self.evict_one(&mut shard, now);
        }
        shard.map.insert(
            ip,
            CacheEntry {
                name: Arc::from(name),
                expiry,
                referenced: AtomicBool::new(false),
            },
        );
        shard.order.push_back(ip);
    }

    /// Removes one entry from a full shard (CLOCK). Terminates: each entry
    /// is given at most one second chance per call (its bit is cleared), so
    /// at most 2 x len rotations happen.
    fn evict_one(&self, shard: &mut Shard, now: Instant) {
        let rounds = shard.order.len().saturating_mul(2).max(1);
        for _ in 0..rounds {
            let Some(ip) = shard.order.pop_front() else {
                break;
            };
            let Some(e) = shard.map.get(&ip) else {
                continue; // stale key (should not happen); drop it
            };
            if e.expiry <= now {
                shard.map.remove(&ip);
                self.expired_removed.fetch_add(1, Ordering::Relaxed);
                return;
            }
            if e.referenced.swap(false, Ordering::Relaxed) {
                shard.order.push_back(ip);
                continue;
            }
            shard.map.remove(&ip);
            self.evictions.fetch_add(1, Ordering::Relaxed);
            return;
        }
        // The order queue and the map disagree: rebuild the queue.
        shard.order = shard.map.keys().copied().collect();
        if let Some(ip) = shard.order.pop_front() {
            shard.map.remove(&ip);
            self.evictions.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The name `ip` was last resolved from, unless that mapping expired.
    pub fn lookup(&self, ip: IpAddr, now: Instant) -> Option<Arc<str>> {
        let lock = self.shard(&ip)?;
        let shard = lock.read().unwrap_or_else(|e| e.into_inner());
        let e = shard.map.get(&ip)?;
        if e.expiry <= now {
            return None;
        }
        e.referenced.store(true, Ordering::Relaxed);
        Some(Arc::clone(&e.name))
    }

    /// Inserts every address of a parsed response (named after its
    /// question). Returns how many were inserted.
    pub fn insert_response(&self, resp: &DnsResponse<'_>, now: Instant) -> usize {
        let mut n = 0;
        for a in resp.addresses() {
            self.insert(a.ip, a.name, a.ttl, now);
            n += 1;
        }
        n
    }

    /// Number of entries held (expired ones included until evicted).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.read().unwrap_or_else(|e| e.into_inner()).map.len())
            .sum()
    }

    /// True if no entry is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Live (unexpired) entries evicted to make room: a rising count means
    /// the cache is too small for the office or is being flooded.
    pub fn evictions(&self) -> u64 {
        self.evictions.load(Ordering::Relaxed)
    }

    /// Expired entries removed to make room.
    pub fn expired_removed(&self) -> u64 {
        self.expired_removed.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    use crate::classify::dpi::test_util::hex;

    // anyconnect-vpn.pcap #388, 75.75.75.75:53 -> client: www.outlook.com
    // CNAME outlook.office365.com CNAME outlook.ms-acdc.office.com
    // CNAME sjc-efz.ms-acdc.office.com, then 4 A records (TTL 48).
    const OUTLOOK: &str = "ce5e8180000100070000000003777777076f75746c6f6f6b03636f6d0000010001c00c00050001000000cd0014076f75\
     746c6f6f6b096f6666696365333635c018c02d00050001000000560019076f75746c6f6f6b076d732d61636463066f66\
     66696365c018c04d0005000100000765000a07736a632d65667ac055c072000100010000003000042861de22c0720001\
     000100000030000434600382c072000100010000003000042861dd72c0720001000100000030000434601202";
    // anyconnect-vpn.pcap #354: detectportal.firefox.com, 3 CNAMEs, 2 A (TTL 9).
    const DETECTPORTAL: &str = "ed16818000010005000000000c646574656374706f7274616c0766697265666f7803636f6d0000010001c00c00050001\
     00000023001e0c646574656374706f7274616c0470726f64066d6f7a617773036e657400c036000500010000000e0028\
     0c646574656374706f7274616c0766697265666f7806636f6d2d763209656467657375697465c04fc060000500010000\
     527a0014056131303839046473636406616b616d6169c04fc09400010001000000090004b8193852c094000100010000\
     00090004b8193833";
    // anyconnect-vpn.pcap #20: AAAA query for vco.pandion.viasat.com, NODATA + SOA.
    const NODATA: &str = "2cb7818000010000000100000376636f0770616e64696f6e0676696173617403636f6d00001c0001c018000600010000\
     03840045066e732d36333209617773646e732d3135036e65740011617773646e732d686f73746d617374657206616d61\
     7a6f6ec01f0000000100001c20000003840012750000015180";
    // dns-google-nsid.pcapng #2: ". NS" answered by 13 NS records + OPT.
    const ROOT_NS: &str = "915181a00001000d000000010000020001000002000100008fcd001401610c726f6f742d73657276657273036e657400\
     000002000100008fcd00040162c01e000002000100008fcd00040163c01e000002000100008fcd00040164c01e000002\
     000100008fcd00040165c01e000002000100008fcd00040166c01e000002000100008fcd00040167c01e000002000100\
     008fcd00040168c01e000002000100008fcd00040169c01e000002000100008fcd0004016ac01e000002000100008fcd\
     0004016bc01e000002000100008fcd0004016cc01e000002000100008fcd0004016dc01e000029020000000000000d00\
     0300096770646e732d6d696c";
    // dns-google-nsid.pcapng #3: query for www.ntop.org A with EDNS.
    const QUERY: &str = "4d150120000100000000000103777777046e746f70036f72670000010001000029100000000000000400030000";
    // dns-google-nsid.pcapng #6: www.wikipedia.it CNAME b7fd7b.yepa.com CNAME
    // d2x2r9xi9rd3sc.cloudfront.net, 4 A records (TTL 60).
    const WIKIPEDIA: &str = "ca1181800001000600000001037777770977696b6970656469610269740000010001c00c000500010000025800110662\
     3766643762047965706103636f6d00c02e0005000100000258001f0e64327832723978693972643373630a636c6f7564\
     66726f6e74036e657400c04b000100010000003c00046c9dc21cc04b000100010000003c00046c9dc23ec04b00010001\
     0000003c00046c9dc20bc04b000100010000003c00046c9dc21b000029100000000000000b0003000772332e6d696c31";
    // dns-google-nsid.pcapng #8: www.wireshark.org, 3 A records, no CNAME.
    const WIRESHARK: &str = "e06f81800001000300000001037777770977697265736861726b036f72670000010001c00c000100010000012c000468\
     1a0af0c00c000100010000012c0004681a0bf0c00c000100010000012c0004ac434b27000029100000000000000b0003\
     000772392e6d696c31";

    fn addrs(msg: &[u8]) -> Vec<(IpAddr, u32, String)> {
        let r = parse_response(msg).unwrap();
        r.addresses()
            .map(|a| (a.ip, a.ttl, a.name.to_string()))
            .collect()
    }

    fn v4(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cname_chain_maps_addresses_to_question_name() {
        let msg = hex(OUTLOOK);
        let r = parse_response(&msg).unwrap();
        assert_eq!(r.header.ancount, 7);
        assert_eq!(r.question_name().unwrap().as_str(), "www.outlook.com");
        assert_eq!(r.chain_len, 4);
        let got = addrs(&msg);
        let ips: Vec<_> = got.iter().map(|a| a.0).collect();
        assert_eq!(
            ips,
            [
                v4("40.97.222.34"),
                v4("52.96.3.130"),
                v4("40.97.221.114"),
                v4("52.96.18.2")
            ]
        );
        for (_, ttl, name) in &got {
            assert_eq!(name, "www.outlook.com");
            assert_eq!(*ttl, 48); // min(205, 86, 1893, 48)
        }
    }

    #[test]
    fn chain_ttl_is_the_minimum_along_the_path() {
        // CNAME TTLs 35, 14, 21114; A TTL 9.
        let got = addrs(&hex(DETECTPORTAL));
        assert_eq!(
            got,
            vec![
                (v4("184.25.56.82"), 9, "detectportal.firefox.com".into()),
                (v4("184.25.56.51"), 9, "detectportal.firefox.com".into()),
            ]
        );
        let got = addrs(&hex(WIKIPEDIA));
        assert_eq!(got.len(), 4);
        assert!(got.iter().all(|a| a.1 == 60 && a.2 == "www.wikipedia.it"));
    }

    #[test]
    fn plain_a_records() {
        let got = addrs(&hex(WIRESHARK));
        assert_eq!(
            got,
            vec![
                (v4("104.26.10.240"), 300, "www.wireshark.org".into()),
                (v4("104.26.11.240"), 300, "www.wireshark.org".into()),
                (v4("172.67.75.39"), 300, "www.wireshark.org".into()),
            ]
        );
    }

    #[test]
    fn responses_without_addresses() {
        let msg = hex(NODATA);
        let r = parse_response(&msg).unwrap();
        assert_eq!(r.question.unwrap().qtype, TYPE_AAAA);
        assert_eq!(r.addresses().count(), 0);
        let msg = hex(ROOT_NS);
        let r = parse_response(&msg).unwrap();
        assert_eq!(r.question_name().unwrap().as_str(), "");
        assert_eq!(r.addresses().count(), 0);
    }

    #[test]
    fn query_name_of_a_query() {
        let q = hex(QUERY);
        assert_eq!(query_name(&q).unwrap().as_str(), "www.ntop.org");
        // A query is not a response and a response is not a query.
        assert!(parse_response(&q).is_none());
        assert!(query_name(&hex(WIRESHARK)).is_none());
    }

    /// Builds a response by hand: header + question + raw answer bytes.
    fn build(qname: &[u8], ancount: u16, answers: &[u8]) -> Vec<u8> {
        let mut m = vec![0x12, 0x34, 0x81, 0x80, 0, 1];
        m.extend_from_slice(&ancount.to_be_bytes());
        m.extend_from_slice(&[0, 0, 0, 0]);
        m.extend_from_slice(qname);
        m.extend_from_slice(&[0, 1, 0, 1]);
        m.extend_from_slice(answers);
        m
    }

    fn rr(owner: &[u8], rtype: u16, ttl: u32, rdata: &[u8]) -> Vec<u8> {
        let mut r = owner.to_vec();
        r.extend_from_slice(&rtype.to_be_bytes());
        r.extend_from_slice(&[0, 1]);
        r.extend_from_slice(&ttl.to_be_bytes());
        r.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        r.extend_from_slice(rdata);
        r
    }

    const TEAMS: &[u8] = b"\x05Teams\x09Microsoft\x03COM\x00";

    #[test]
    fn teams_cname_chain_aaaa_and_case() {
        // teams.microsoft.com CNAME x.trafficmanager.net CNAME y.cdn.net,
        // A 52.113.1.1, AAAA 2603:1063::1; plus an unrelated A record.
        let x = b"\x01x\x0etrafficmanager\x03net\x00";
        let y = b"\x01y\x03cdn\x03net\x00";
        let mut ans = rr(&[0xc0, 12], TYPE_CNAME, 300, x);
        let x_off = 12 + TEAMS.len() + 4 + 2 + 10;
        ans.extend(rr(
            &[0xc0 | (x_off >> 8) as u8, x_off as u8],
            TYPE_CNAME,
            100,
            y,
        ));
        let y_off = x_off + x.len() + 2 + 10;
        let y_ptr = [0xc0 | (y_off >> 8) as u8, y_off as u8];
        ans.extend(rr(&y_ptr, TYPE_A, 3600, &[52, 113, 1, 1]));
        let v6: Ipv6Addr = "2603:1063::1".parse().unwrap();
        ans.extend(rr(&y_ptr, TYPE_AAAA, 20, &v6.octets()));
        ans.extend(rr(b"\x05other\x03com\x00", TYPE_A, 3600, &[1, 2, 3, 4]));
        let msg = build(TEAMS, 5, &ans);
        let got = addrs(&msg);
        assert_eq!(
            got,
            vec![
                (v4("52.113.1.1"), 100, "teams.microsoft.com".into()),
                (IpAddr::V6(v6), 20, "teams.microsoft.com".into()),
            ]
        );
    }

    #[test]
    fn out_of_order_chain_is_followed() {
        // A record first, then CNAME y->..., then q CNAME y: records for y
        // appear before the CNAME that names y.
        let y = b"\x01y\x03cdn\x03net\x00";
        let mut ans = rr(y, TYPE_A, 50, &[9, 9, 9, 9]);
        ans.extend(rr(&[0xc0, 12], TYPE_CNAME, 300, y));
        let msg = build(TEAMS, 2, &ans);
        assert_eq!(
            addrs(&msg),
            vec![(v4("9.9.9.9"), 50, "teams.microsoft.com".into())]
        );
    }

    #[test]
    fn cname_loop_terminates() {
        // q CNAME a, a CNAME q.
        let a = b"\x01a\x00";
        let mut ans = rr(&[0xc0, 12], TYPE_CNAME, 300, a);
        let a_off = 12 + TEAMS.len() + 4 + 2 + 10;
        ans.extend(rr(&[0xc0, a_off as u8], TYPE_CNAME, 300, &[0xc0, 12]));
        let msg = build(TEAMS, 2, &ans);
        let r = parse_response(&msg).unwrap();
        assert_eq!(r.chain_len, 2);
        assert_eq!(r.addresses().count(), 0);
    }

    #[test]
    fn compression_loops_and_forward_pointers_are_rejected() {
        // Question name is a pointer to itself.
        let mut m = vec![
            0, 0, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1,
        ];
        assert!(parse_response(&m).is_none());
        // Pointer forward (to the label after it).
        m[12..14].copy_from_slice(&[0xc0, 14]);
        m.extend_from_slice(b"\x01a\x00");
        assert!(parse_response(&m).is_none());
        // Two pointers pointing at each other inside answers.
        let ans = [0xc0, 30, 0, 1, 0, 1, 0, 0, 0, 1, 0, 4, 1, 2, 3, 4];
        let mut msg = build(b"\x01q\x00", 1, &ans);
        let off = msg.len();
        msg.extend_from_slice(&[0xc0, (off - 2) as u8]);
        assert_eq!(addrs(&msg), vec![]);
        // Extended label types are rejected.
        let msg = build(b"\x41q\x00", 0, &[]);
        assert!(parse_response(&msg).is_none());
    }

    #[test]
    fn names_longer_than_255_are_rejected() {
        let mut long = Vec::new();
        for _ in 0..5 {
            long.push(63);
            long.extend_from_slice(&[b'a'; 63]);
        }
        long.push(0); // 5*64 + 1 = 321 bytes
        assert!(parse_response(&build(&long, 0, &[])).is_none());
        // Exactly 255 on the wire: 3*64 + 62 + 1.
        let mut ok = Vec::new();
        for _ in 0..3 {
            ok.push(63);
            ok.extend_from_slice(&[b'b'; 63]);
        }
        ok.push(61);
        ok.extend_from_slice(&[b'c'; 61]);
        ok.push(0);
        assert_eq!(ok.len(), 255);
        let msg = build(&ok, 0, &[]);
        let r = parse_response(&msg).unwrap();
        assert_eq!(r.question_name().unwrap().len(), 253);
        // Long name built through pointers: 4 * 64 + pointer back.
        let mut m = build(&ok, 0, &[]);
        m[7] = 1; // ancount
        m.extend_from_slice(&[1, b'x', 0xc0, 12]); // "x." + 255-byte name
        m.extend_from_slice(&[0, 1, 0, 1, 0, 0, 0, 1, 0, 4, 1, 1, 1, 1]);
        assert_eq!(addrs(&m), vec![]);
    }

    #[test]
    fn unprintable_bytes_are_replaced() {
        let msg = build(b"\x03a.b\x02\x00\xff\x00", 0, &[]);
        let r = parse_response(&msg).unwrap();
        assert_eq!(r.question_name().unwrap().as_str(), "a?b.??");
    }

    #[test]
    fn bogus_counts_and_truncation() {
        let mut msg = hex(OUTLOOK);
        msg[6] = 0xff; // ancount = 0xff07
        msg[4] = 0x00; // qdcount stays 1
        let r = parse_response(&msg).unwrap();
        assert_eq!(r.addresses().count(), 4);
        let mut msg = hex(OUTLOOK);
        msg[5] = 0xff; // qdcount 255: questions run out of bytes
        assert!(parse_response(&msg).is_none());
        // Every truncation: never panics; answers only ever get fewer.
        let full = hex(OUTLOOK);
        for n in 0..full.len() {
            if let Some(r) = parse_response(&full[..n]) {
                assert!(r.addresses().count() <= 4);
            }
        }
        // rcode != 0: no mapping.
        let mut msg = hex(OUTLOOK);
        msg[3] = 0x83;
        assert_eq!(addrs(&msg), vec![]);
    }

    #[test]
    fn dns_over_tcp() {
        let msg = hex(WIRESHARK);
        let mut stream = (msg.len() as u16).to_be_bytes().to_vec();
        stream.extend_from_slice(&msg);
        stream.extend_from_slice(&[0, 5]); // start of a next message
        match parse_response_tcp(&stream) {
            Parse::Found(r) => assert_eq!(r.addresses().count(), 3),
            other => panic!("{other:?}"),
        }
        assert!(matches!(parse_response_tcp(&stream[..1]), Parse::NeedMore));
        assert!(matches!(parse_response_tcp(&stream[..40]), Parse::NeedMore));
        // A query over TCP is not a response.
        let q = hex(QUERY);
        let mut s = (q.len() as u16).to_be_bytes().to_vec();
        s.extend_from_slice(&q);
        assert!(matches!(parse_response_tcp(&s), Parse::NotThis));
        assert!(matches!(
            parse_response_tcp(&[0, 3, 1, 2, 3]),
            Parse::NotThis
        ));
    }

    fn t(secs: u64) -> Instant {
        Instant::from_nanos(secs * 1_000_000_000)
    }

    #[test]
    fn cache_expires_in_virtual_time_and_clamps_ttl() {
        let c = DnsCache::new(1000);
        let ip = v4("52.113.1.1");
        c.insert(ip, "teams.microsoft.com", 300, t(100));
        assert_eq!(&*c.lookup(ip, t(399)).unwrap(), "teams.microsoft.com");
        assert!(c.lookup(ip, t(400)).is_none());
        // TTL 0 is raised to MIN_TTL.
        c.insert(ip, "a.example", 0, t(1000));
        assert!(c.lookup(ip, t(1029)).is_some());
        assert!(c.lookup(ip, t(1030)).is_none());
        // A huge TTL is capped at MAX_TTL.
        c.insert(ip, "b.example", u32::MAX, t(0));
        assert!(c.lookup(ip, t(86_399)).is_some());
        assert!(c.lookup(ip, t(86_400)).is_none());
        assert_eq!(c.len(), 1);
        assert!(c.lookup(v4("1.1.1.1"), t(0)).is_none());
    }

    #[test]
    fn cache_latest_answer_wins_and_reuses_name() {
        let c = DnsCache::new(10);
        let ip = v4("10.0.0.1");
        c.insert(ip, "a.example", 60, t(0));
        let a1 = c.lookup(ip, t(1)).unwrap();
        c.insert(ip, "a.example", 60, t(2));
        let a2 = c.lookup(ip, t(3)).unwrap();
        assert!(Arc::ptr_eq(&a1, &a2));
        c.insert(ip, "b.example", 60, t(4));
        assert_eq!(&*c.lookup(ip, t(5)).unwrap(), "b.example");
    }

    #[test]
    fn cache_is_bounded_under_a_flood() {
        let c = DnsCache::new(1000);
        let cap = c.capacity();
        assert!((1000..1000 + SHARDS).contains(&cap));
        let hot = v4("52.112.0.1");
        c.insert(hot, "teams.microsoft.com", 3600, t(0));
        for i in 0..100_000u32 {
            let ip = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
            c.insert(ip, "flood.example", 3600, t(1));
            assert!(c.len() <= cap);
            if i % 16 == 0 {
                // The hot entry is in use: it keeps its place.
                assert!(c.lookup(hot, t(1)).is_some(), "evicted at {i}");
            }
        }
        assert!(c.len() <= cap);
        assert!(c.len() >= cap - SHARDS);
        assert!(c.evictions() >= 100_000 - cap as u64);
        assert_eq!(c.expired_removed(), 0);
    }

    #[test]
    fn cache_prefers_evicting_expired_entries() {
        let c = DnsCache::with_ttl_bounds(16, Duration::from_secs(1), MAX_TTL);
        for i in 0..16u32 {
            c.insert(IpAddr::V4(Ipv4Addr::from(i)), "old.example", 1, t(0));
        }
        for i in 0..64u32 {
            c.insert(
                IpAddr::V4(Ipv4Addr::from(1000 + i)),
                "new.example",
                60,
                t(10),
            );
        }
        assert!(c.len() <= c.capacity());
        assert!(c.expired_removed() > 0);
    }

    #[test]
    fn cache_is_shared_between_threads() {
        let c = Arc::new(DnsCache::new(4096));
        let handles: Vec<_> = (0..4u32)
            .map(|k| {
                let c = Arc::clone(&c);
                std::thread::spawn(move || {
                    for i in 0..2000u32 {
                        let ip = IpAddr::V4(Ipv4Addr::from(k << 24 | i));
                        c.insert(ip, "x.example", 60, t(0));
                        let _ = c.lookup(ip, t(1));
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert!(c.len() <= c.capacity());
        assert!(c.len() > 4000);
    }

    #[test]
    fn cache_from_response() {
        let c = DnsCache::new(100);
        let msg = hex(OUTLOOK);
        let r = parse_response(&msg).unwrap();
        assert_eq!(c.insert_response(&r, t(0)), 4);
        assert_eq!(
            &*c.lookup(v4("52.96.18.2"), t(47)).unwrap(),
            "www.outlook.com"
        );
    }

    fn exercise(b: &[u8]) {
        if let Some(r) = parse_response(b) {
            for a in r.addresses() {
                assert!(a.name.len() <= MAX_NAME_LEN);
            }
        }
        if let Parse::Found(r) = parse_response_tcp(b) {
            let _ = r.addresses().count();
        }
        let _ = query_name(b);
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..600)) {
            exercise(&b);
        }

        #[test]
        fn cache_random_operations_keep_the_bound(
            ops in proptest::collection::vec((any::<u8>(), any::<u32>(), 0u64..100_000, any::<bool>()), 1..300),
        ) {
            let c = DnsCache::new(32);
            let mut latest = std::collections::HashMap::new();
            let mut clock = 0u64;
            for (k, ttl, dt, is_insert) in ops {
                clock += dt;
                let ip = IpAddr::V4(Ipv4Addr::new(10, 0, 0, k));
                let now = t(clock);
                if is_insert {
                    c.insert(ip, &format!("h{k}.example"), ttl, now);
                    let clamped = u64::from(ttl).clamp(30, 86_400);
                    latest.insert(k, clock + clamped);
                } else if let Some(name) = c.lookup(ip, now) {
                    // A hit is always the latest name, not yet expired.
                    prop_assert_eq!(&*name, format!("h{k}.example"));
                    prop_assert!(latest[&k] > clock);
                }
                prop_assert!(c.len() <= c.capacity());
            }
        }

        #[test]
        fn mutated_real_packets_never_panic(
            which in 0usize..5,
            muts in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
            cut in any::<usize>(),
        ) {
            let mut b = hex([OUTLOOK, DETECTPORTAL, WIKIPEDIA, ROOT_NS, QUERY][which]);
            for (i, v) in muts {
                let n = b.len();
                b[i % n] = v;
            }
            let n = b.len();
            b.truncate(cut % (n + 1));
            exercise(&b);
        }
    }
}
