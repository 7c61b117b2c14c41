//! What the classifier reads from a pending flow's packets: host names
//! (TLS ClientHello, QUIC Initial, HTTP Host), payload prefixes, what a
//! plain-HTTP exchange says for the catalog's HTTP signatures (request
//! method, path and User-Agent; the response's Content-Type), and
//! real-time media behaviour. The state lives in a box that exists only
//! while the flow is pending, and every byte of it, buffers included, is
//! reserved from the DPI memory budget before it is allocated.

use super::DecidedBy;
use super::budget::{Holder, Refusals, Reservation, extend_reserved, free, reserve_exact};
use super::catalog::CompiledCatalog;
use super::dpi::rtp::{MediaKind, MediaTracker, RtpOrRtcp, rtp_or_rtcp};
use super::dpi::{Parse, agora, dtls, http, quic, rpc, stun, tls, tls_server};
use super::matcher::{AppId, FlowFacts};
use crate::packet::PacketMeta;
use crate::time::Instant;

/// Real-time media seen on a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Media {
    /// Nothing seen.
    #[default]
    None,
    /// RTP/RTCP headers; `video` when the payload looks like video.
    Rtp {
        /// Looks like video rather than audio.
        video: bool,
    },
    /// Small isochronous packets without a known header.
    Isochronous {
        /// Looks like video rather than audio.
        video: bool,
    },
    /// STUN/TURN.
    Stun,
    /// DTLS records.
    Dtls,
}

/// What one packet revealed.
#[derive(Debug, Default)]
pub struct Found {
    /// A host name and how it was read.
    pub host: Option<(Box<str>, DecidedBy)>,
    /// An app recognised by a payload prefix.
    pub payload_app: Option<AppId>,
    /// An app recognised by an HTTP signature.
    pub http_app: Option<AppId>,
    /// Media seen so far.
    pub media: Media,
    /// Nothing more will be learned from this flow's packets.
    pub done: bool,
    /// State this packet needed that the budget refused.
    pub refused: Refusals,
}

/// Most bytes of a stream buffered to read a ClientHello, HTTP request
/// headers or HTTP response headers that span several TCP segments.
const MAX_HELLO_BUFFER: usize = 16 * 1024;

/// Appends what still fits of `payload` to `buf` (at most
/// [`MAX_HELLO_BUFFER`] bytes in all), reserving it from `res`, and returns
/// the whole buffer; `None` when the budget refused the memory.
fn append_bounded<'a>(
    buf: &'a mut Vec<u8>,
    payload: &[u8],
    res: &mut Reservation,
) -> Option<&'a [u8]> {
    let room = MAX_HELLO_BUFFER.saturating_sub(buf.len());
    let part = payload.get(..payload.len().min(room)).unwrap_or_default();
    extend_reserved(buf, part, res).then_some(buf.as_slice())
}

/// Per-flow inspection state while the flow is pending.
#[derive(Debug)]
pub struct DpiState {
    /// What this state holds of the budget: the box itself, `hello`,
    /// `stray` and `quic` (struct and CRYPTO stream).
    res: Reservation,
    /// A payload was seen from the initiator / from the responder.
    seen_payload: [bool; 2],
    /// The start of the stream being read, while incomplete: the client's
    /// (a ClientHello, an HTTP request's headers), then the server's (an
    /// HTTP response's headers; a TLS 1.2 first flight, for a ClientHello
    /// that named no host). One at a time: the server's is read only once
    /// the client's was.
    hello: Option<Vec<u8>>,
    /// The client's stream is not a ClientHello (or it was read).
    hello_done: bool,
    /// QUIC Initial reassembly, for UDP flows that start with one.
    quic: Option<Box<quic::InitialReassembler>>,
    /// The flow is not QUIC (or its Initial was read).
    quic_done: bool,
    /// The client stream is not TLS: look for an HTTP request instead.
    http_pending: bool,
    /// The client's ClientHello named no host (or an IP literal): read the
    /// server's certificate for one.
    server_pending: bool,
    /// The HTTP request named no app: read the response's Content-Type.
    response_pending: bool,
    /// The HTTP request's host was reported (in an earlier segment than
    /// the one that completed its headers, perhaps).
    http_host_found: bool,
    /// A first client segment that was not the start of anything known,
    /// kept in case the next one is the start of a ClientHello it follows;
    /// or a segment that came ahead of a gap in a buffered stream.
    stray: Option<Vec<u8>>,
    /// Where the TCP streams' buffered bytes sit in sequence space.
    seq: SeqState,
    /// Media timing and RTP headers, per direction (initiator first).
    media: [MediaTracker; 2],
    /// Strongest media evidence so far.
    media_seen: Media,
    /// RTP was confirmed and the tracker has told audio from video: the
    /// media verdict cannot change any more.
    media_known: bool,
}

/// An IPv4 or IPv6 address where a host name should be (some clients
/// put the server's address in SNI): it names no service.
fn is_ip_literal(name: &str) -> bool {
    name.parse::<std::net::IpAddr>().is_ok()
}

/// A ClientHello's server name, unless it has none or an IP address in
/// its place (then the server's certificate is read for one).
fn hello_name(hello: &tls::ClientHello<'_>) -> Option<Box<str>> {
    hello.sni.filter(|s| !is_ip_literal(s)).map(owned_host)
}

/// Sequence numbers of the bytes a flow's TCP buffers hold, so that a
/// retransmitted or resegmented segment adds only what is new and one
/// that comes ahead of a gap waits for it (reassembly by sequence number,
/// bounded by the buffers' own bound and one waiting segment).
#[derive(Debug, Default, Clone, Copy)]
struct SeqState {
    /// Sequence number of the first byte of the part of the segment being
    /// handled (`None`: unknown, arrival order is all there is).
    part: Option<u32>,
    /// Side (0: initiator) of the segment being handled.
    side: u8,
    /// Side whose stream `hello` holds, and the number of its first byte.
    hello: Option<(u8, u32)>,
    /// Side and number of `stray`'s first byte.
    stray: Option<(u8, u32)>,
}

/// What of a segment is new to a buffered stream.
#[derive(Debug, PartialEq, Eq)]
enum Fresh<'p> {
    /// These bytes (the segment's tail past what is held), starting at
    /// this sequence number.
    New(&'p [u8], Option<u32>),
    /// Nothing: a retransmission of bytes held.
    Seen,
    /// The segment starts past a gap.
    Ahead,
}

/// What of `payload`, numbered from `seq`, is new to a stream whose next
/// byte is numbered `next`.
fn fresh(next: u32, seq: u32, payload: &[u8]) -> Fresh<'_> {
    // Sequence space wraps: compare by signed distance (RFC 9293 3.4).
    let off = seq.wrapping_sub(next) as i32;
    if off > 0 {
        return Fresh::Ahead;
    }
    let old = off.unsigned_abs() as usize;
    match payload.get(old..) {
        Some(part) if !part.is_empty() => Fresh::New(part, Some(next)),
        _ => Fresh::Seen,
    }
}

/// What comes after a segment of an HTTP request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HttpNext {
    /// The request's headers are incomplete: wait for the next segment.
    More,
    /// Read the first response's headers.
    Response,
    /// Nothing more to read of this exchange.
    Stop,
}

/// A host name from a parser, owned.
fn owned_host(h: &str) -> Box<str> {
    h.to_ascii_lowercase().into_boxed_str()
}

impl DpiState {
    /// Empty state whose memory (`size_of::<DpiState>()`, already
    /// reserved in `res` for a boxed state) grows only through `res`.
    pub fn new(res: Reservation) -> Self {
        DpiState {
            res,
            seen_payload: [false; 2],
            hello: None,
            hello_done: false,
            quic: None,
            quic_done: false,
            http_pending: false,
            server_pending: false,
            response_pending: false,
            http_host_found: false,
            stray: None,
            seq: SeqState::default(),
            media: Default::default(),
            media_seen: Media::None,
            media_known: false,
        }
    }

    /// Bytes this state holds: the box and every buffer's capacity. Always
    /// what its reservation holds, for state kept in a box.
    pub fn held_bytes(&self) -> usize {
        size_of::<DpiState>()
            + self.hello.as_ref().map_or(0, Vec::capacity)
            + self.stray.as_ref().map_or(0, Vec::capacity)
            + self.quic.as_ref().map_or(0, |q| {
                size_of::<quic::InitialReassembler>() + q.heap_bytes()
            })
    }

    /// Bytes reserved for this state.
    pub fn reserved_bytes(&self) -> usize {
        self.res.bytes()
    }

    /// Inspects one packet of the flow.
    pub fn inspect(
        &mut self,
        protocol: u8,
        pkt: &PacketMeta<'_>,
        from_initiator: bool,
        now: Instant,
        catalog: &CompiledCatalog,
        facts: &FlowFacts<'_>,
    ) -> Found {
        let mut found = Found::default();
        let payload = pkt.payload;
        let who = usize::from(!from_initiator);
        if !payload.is_empty() && !self.seen_payload.get(who).copied().unwrap_or(true) {
            if let Some(seen) = self.seen_payload.get_mut(who) {
                *seen = true;
            }
            found.payload_app = catalog.app_for_payload(facts, payload).or_else(|| {
                let prog = rpc::call_program(payload, protocol == 6)?;
                rpc::NFS_FAMILY
                    .contains(&prog)
                    .then(|| catalog.app_id("nfs"))
                    .flatten()
            });
        }
        match protocol {
            6 if !payload.is_empty() => {
                self.tcp_segment(payload, pkt.tcp_seq(), who, &mut found, catalog, facts)
            }
            17 if !payload.is_empty() => {
                if from_initiator && !self.quic_done {
                    self.udp_client(payload, &mut found);
                }
                self.udp_media(payload, who, now);
            }
            _ => {}
        }
        found.media = self.media_seen;
        let http_waiting = self.http_pending || self.response_pending;
        let names_done = match protocol {
            6 => self.hello_done && !http_waiting && !self.server_pending,
            17 => self.quic_done,
            _ => true,
        };
        // UDP flows keep being watched for media timing until the
        // inspection limit, unless RTP (audio or video) already settled it.
        let media_done = protocol != 17 || self.media_known;
        // A host name settles the flow, unless the HTTP exchange it came
        // in may still name an app (its host is unknown to the catalog).
        let identified = found.host.is_some() || found.http_app.is_some() || self.http_host_found;
        found.done = (identified && !http_waiting)
            || (names_done && media_done && self.seen_payload == [true, true]);
        debug_assert!(
            !self.res.is_kept() || self.res.bytes() == self.held_bytes(),
            "reserved {} != held {}",
            self.res.bytes(),
            self.held_bytes()
        );
        found
    }

    /// A TCP segment from side `who` (0: the initiator) whose first byte
    /// is numbered `seq`: what is new of it goes to the reader of its
    /// side's stream, in sequence order.
    fn tcp_segment(
        &mut self,
        payload: &[u8],
        seq: Option<u32>,
        who: usize,
        found: &mut Found,
        catalog: &CompiledCatalog,
        facts: &FlowFacts<'_>,
    ) {
        match self.fresh_part(who, seq, payload) {
            Fresh::New(part, at) => {
                self.read_part(part, at, who, found, catalog, facts);
            }
            Fresh::Seen => return,
            Fresh::Ahead => {
                // Past a gap: wait for the gap to fill (one segment waits).
                if self.stray.is_none() && payload.len() <= MAX_HELLO_BUFFER {
                    let mut buf = Vec::new();
                    if extend_reserved(&mut buf, payload, &mut self.res) {
                        self.stray = Some(buf);
                        self.seq.stray = seq.map(|s| (u8::from(who != 0), s));
                    } else {
                        found.refused.add(Holder::Tls);
                    }
                }
                return;
            }
        }
        // The segment that waited, if the stream has reached it now (still
        // ahead: it waits on).
        if let Some((side, at)) = self.seq.stray
            && usize::from(side) == who
            && let Some(waiting) = self.stray.as_deref()
            && self.fresh_part(who, Some(at), waiting) != Fresh::Ahead
            && let Some(stray) = self.stray.take()
        {
            self.res.shrink(stray.capacity());
            self.seq.stray = None;
            if let Fresh::New(part, at) = self.fresh_part(who, Some(at), &stray) {
                self.read_part(part, at, who, found, catalog, facts);
            }
        }
    }

    /// What of a segment from side `who` is new to that side's buffered
    /// stream (all of it when nothing is buffered or numbers are unknown).
    fn fresh_part<'p>(&self, who: usize, seq: Option<u32>, payload: &'p [u8]) -> Fresh<'p> {
        let held = match self.seq.hello {
            Some((side, start)) if usize::from(side) == who => {
                self.hello.as_ref().map(|b| (start, b.len()))
            }
            _ => None,
        };
        match (held, seq) {
            (Some((start, len)), Some(seq)) => fresh(start.wrapping_add(len as u32), seq, payload),
            _ => Fresh::New(payload, seq),
        }
    }

    /// Hands new stream bytes of side `who`, numbered from `at`, to the
    /// reader of that side's stream.
    fn read_part(
        &mut self,
        part: &[u8],
        at: Option<u32>,
        who: usize,
        found: &mut Found,
        catalog: &CompiledCatalog,
        facts: &FlowFacts<'_>,
    ) {
        self.seq.part = at;
        self.seq.side = u8::from(who != 0);
        if who == 0 {
            self.tcp_client(part, found, catalog, facts);
        } else if self.response_pending {
            self.http_response(part, found, catalog, facts);
        } else if self.server_pending {
            self.tcp_server(part, found);
        }
        if self.hello.is_none() {
            self.seq.hello = None;
        }
    }

    /// Whether the buffered start of the stream reached its bound: the
    /// parser gets no more bytes, so its answer is final.
    fn buffer_full(&self) -> bool {
        self.hello
            .as_ref()
            .is_some_and(|b| b.len() >= MAX_HELLO_BUFFER)
    }

    /// The client side of a TCP stream: a TLS ClientHello, possibly spread
    /// over several segments, or an HTTP request.
    fn tcp_client(
        &mut self,
        payload: &[u8],
        found: &mut Found,
        catalog: &CompiledCatalog,
        facts: &FlowFacts<'_>,
    ) {
        if self.http_pending {
            self.http_request(payload, found, catalog, facts);
            return;
        }
        if self.hello_done {
            return;
        }
        let parsed = match self.hello.as_mut() {
            Some(buf) => append_bounded(buf, payload, &mut self.res).map(tls::client_hello),
            None => Some(tls::client_hello(payload)),
        };
        match parsed {
            Some(Parse::Found(hello)) => {
                match hello_name(&hello) {
                    Some(sni) => found.host = Some((sni, DecidedBy::Sni)),
                    None => self.server_pending = true,
                }
                self.hello_done = true;
            }
            Some(Parse::NeedMore) => {
                if self.buffer_full() {
                    self.hello_done = true;
                } else if self.hello.is_none() {
                    // A segment that came before this one but belongs after
                    // it (reordered on the way): the hello may need both.
                    // With sequence numbers, the segment that waited joins
                    // once the stream reaches it (`tcp_segment`).
                    let stray = if self.seq.stray.is_some() {
                        None
                    } else {
                        self.stray.take()
                    };
                    if let Some(buf) = &stray {
                        self.res.shrink(buf.capacity());
                    }
                    let after = stray.as_deref().unwrap_or_default();
                    if !self.keep_hello(payload, after, found) {
                        self.hello_done = true;
                    } else if !after.is_empty()
                        && let Some(buf) = self.hello.as_deref()
                        && let Parse::Found(hello) = tls::client_hello(buf)
                    {
                        match hello_name(&hello) {
                            Some(sni) => found.host = Some((sni, DecidedBy::Sni)),
                            None => self.server_pending = true,
                        }
                        self.hello_done = true;
                    }
                }
            }
            Some(Parse::NotThis) => {
                if self.hello.is_none() && http::is_http_request_start(payload) {
                    self.hello_done = true;
                    self.http_pending = true;
                    self.tcp_client(payload, found, catalog, facts);
                    return;
                }
                if self.hello.is_none() && self.stray.is_none() && payload.len() <= MAX_HELLO_BUFFER
                {
                    // Perhaps the second half of a ClientHello that overtook
                    // the first: keep it for one more segment.
                    let mut buf = Vec::new();
                    if extend_reserved(&mut buf, payload, &mut self.res) {
                        self.stray = Some(buf);
                        self.seq.stray = self.seq.part.map(|at| (0, at));
                        return;
                    }
                    found.refused.add(Holder::Tls);
                }
                self.hello_done = true;
                free(&mut self.stray, &mut self.res);
            }
            None => {
                found.refused.add(Holder::Tls);
                self.hello_done = true;
            }
        }
        if self.hello_done {
            free(&mut self.hello, &mut self.res);
        }
    }

    /// The server side of a TLS stream whose ClientHello named no host:
    /// the first flight's certificate (TLS 1.2 and older send it in
    /// clear), possibly spread over several segments.
    fn tcp_server(&mut self, payload: &[u8], found: &mut Found) {
        let parsed = match self.hello.as_mut() {
            Some(buf) => append_bounded(buf, payload, &mut self.res).map(|b| {
                // The parser's answer on a buffer that reached its bound
                // is final: no more bytes will come.
                (tls_server::server_flight(b), b.len() >= MAX_HELLO_BUFFER)
            }),
            None => Some((tls_server::server_flight(payload), false)),
        };
        let done = match parsed {
            Some((Parse::Found(names), _)) => {
                if let Some(name) = tls_server::best_name(&names) {
                    found.host = Some((owned_host(name), DecidedBy::Certificate));
                }
                true
            }
            Some((Parse::NeedMore, full)) => {
                if full {
                    true
                } else if self.hello.is_none() {
                    let mut buf = Vec::new();
                    let first = payload
                        .get(..payload.len().min(MAX_HELLO_BUFFER))
                        .unwrap_or_default();
                    if extend_reserved(&mut buf, first, &mut self.res) {
                        self.hello = Some(buf);
                        self.seq.hello = self.seq.part.map(|at| (1, at));
                        false
                    } else {
                        found.refused.add(Holder::Tls);
                        true
                    }
                } else {
                    false
                }
            }
            Some((Parse::NotThis, _)) => true,
            None => {
                found.refused.add(Holder::Tls);
                true
            }
        };
        if done {
            self.server_pending = false;
            free(&mut self.hello, &mut self.res);
        }
    }

    /// A segment of an HTTP request: its Host, and what the catalog's HTTP
    /// request signatures read (method, path, User-Agent) once its headers
    /// end. Without HTTP signatures in the catalog, or for a host the
    /// catalog names (a host match beats every signature), the Host line
    /// is enough, as it always was.
    fn http_request(
        &mut self,
        payload: &[u8],
        found: &mut Found,
        catalog: &CompiledCatalog,
        facts: &FlowFacts<'_>,
    ) {
        let signatures = catalog.has_http_request_signatures();
        let responses = catalog.has_http_response_signatures();
        // The request's headers so far, then this segment: Host and the
        // rest may come segments after the request line.
        let parsed = match self.hello.as_mut() {
            Some(buf) => append_bounded(buf, payload, &mut self.res),
            None => Some(payload),
        };
        let next = match parsed {
            None => {
                found.refused.add(Holder::Tls);
                HttpNext::Stop
            }
            Some(buf) => {
                let host = http::request_host(buf);
                let mut known_host = false;
                if let Parse::Found(h) = host {
                    known_host = catalog.app_for_host(h).is_some();
                    if !self.http_host_found {
                        found.host = Some((owned_host(h), DecidedBy::HttpHost));
                        self.http_host_found = true;
                    }
                }
                // After the request, its response, if something may read it.
                let then = if responses {
                    HttpNext::Response
                } else {
                    HttpNext::Stop
                };
                if known_host {
                    HttpNext::Stop
                } else if signatures {
                    match http::request_facts(buf) {
                        Parse::Found(req) => {
                            found.http_app = catalog.app_for_http_request(facts, &req);
                            if found.http_app.is_some() {
                                HttpNext::Stop
                            } else {
                                then
                            }
                        }
                        Parse::NeedMore => HttpNext::More,
                        // Headers past the bound: what was read is all.
                        Parse::NotThis if self.http_host_found => then,
                        Parse::NotThis => HttpNext::Stop,
                    }
                } else {
                    match host {
                        Parse::NeedMore => HttpNext::More,
                        Parse::Found(_) => then,
                        // No host in the request (HTTP/1.0), or not HTTP.
                        Parse::NotThis if http::request_facts(buf) != Parse::NotThis => then,
                        Parse::NotThis => HttpNext::Stop,
                    }
                }
            }
        };
        match next {
            HttpNext::More if self.buffer_full() => self.http_pending = false,
            HttpNext::More => {
                if self.hello.is_none() {
                    self.keep_hello(payload, &[], found);
                    self.http_pending = self.hello.is_some();
                }
            }
            HttpNext::Stop => self.http_pending = false,
            HttpNext::Response => {
                self.http_pending = false;
                self.response_pending = true;
            }
        }
        if !self.http_pending {
            free(&mut self.hello, &mut self.res);
        }
    }

    /// A segment of the server's side of an HTTP flow whose request named
    /// no app: the Content-Type of its first response, for the catalog's
    /// HTTP response signatures. Reading stops at that header, or at the
    /// end of the response's headers: the body is never buffered.
    fn http_response(
        &mut self,
        payload: &[u8],
        found: &mut Found,
        catalog: &CompiledCatalog,
        facts: &FlowFacts<'_>,
    ) {
        let parsed = match self.hello.as_mut() {
            Some(buf) => {
                append_bounded(buf, payload, &mut self.res).map(http::response_content_type)
            }
            None => Some(http::response_content_type(payload)),
        };
        match parsed {
            Some(Parse::Found(media_type)) => {
                found.http_app =
                    media_type.and_then(|ct| catalog.app_for_http_content_type(facts, ct));
                self.response_pending = false;
            }
            Some(Parse::NeedMore) => {
                if self.buffer_full() {
                    self.response_pending = false;
                } else if self.hello.is_none() {
                    self.keep_hello(payload, &[], found);
                    self.response_pending = self.hello.is_some();
                }
            }
            Some(Parse::NotThis) => self.response_pending = false,
            None => {
                found.refused.add(Holder::Tls);
                self.response_pending = false;
            }
        }
        if !self.response_pending {
            free(&mut self.hello, &mut self.res);
        }
    }

    /// Starts the buffered stream with `first` then `then` (at most
    /// [`MAX_HELLO_BUFFER`] bytes in all), reserved from the budget. False,
    /// and a refusal noted, when the budget has no room.
    fn keep_hello(&mut self, first: &[u8], then: &[u8], found: &mut Found) -> bool {
        let first = first
            .get(..first.len().min(MAX_HELLO_BUFFER))
            .unwrap_or_default();
        let room = MAX_HELLO_BUFFER - first.len();
        let then = then.get(..then.len().min(room)).unwrap_or_default();
        let mut buf = Vec::new();
        if reserve_exact(&mut buf, first.len() + then.len(), &mut self.res) {
            buf.extend_from_slice(first);
            buf.extend_from_slice(then);
            self.hello = Some(buf);
            self.seq.hello = self.seq.part.map(|at| (self.seq.side, at));
            true
        } else {
            found.refused.add(Holder::Tls);
            false
        }
    }

    /// Media evidence in a UDP payload from one side (`who`: 0 initiator).
    fn udp_media(&mut self, payload: &[u8], who: usize, now: Instant) {
        let rtp = match rtp_or_rtcp(payload) {
            Some(RtpOrRtcp::Rtp(h)) => Some(h),
            // A compound RTCP packet opening with a sender or receiver
            // report (RFC 3550 6.1) is a call's control channel.
            Some(RtpOrRtcp::Rtcp(info))
                if info.packets >= 2 && matches!(info.first_type, 200 | 201) =>
            {
                if self.media_seen == Media::None || self.media_seen == Media::Stun {
                    self.media_seen = Media::Rtp { video: false };
                }
                None
            }
            _ => None,
        };
        if let Some(tracker) = self.media.get_mut(who)
            && let Some(v) = tracker.observe(payload.len(), rtp.as_ref(), now)
        {
            let video = v.kind == MediaKind::Video;
            self.media_seen = if v.rtp {
                Media::Rtp { video }
            } else {
                Media::Isochronous { video }
            };
            // RTP alone does not settle it: with a dynamic payload type the
            // tracker needs more packets to tell video from audio, and a
            // verdict frozen too early would put video calls in voice.
            self.media_known = v.rtp && v.kind != MediaKind::Unknown;
            return;
        }
        if matches!(
            self.media_seen,
            Media::Rtp { .. } | Media::Isochronous { .. }
        ) {
            return;
        }
        if stun::stun(payload).is_some() {
            self.media_seen = Media::Stun;
        } else if self.media_seen == Media::None && dtls::dtls_record(payload).is_some() {
            self.media_seen = Media::Dtls;
        }
    }

    /// The client side of a UDP flow: a QUIC Initial.
    fn udp_client(&mut self, payload: &[u8], found: &mut Found) {
        if self.quic.is_none() {
            if quic::is_initial(payload).is_none() {
                if let Some(sni) = quic::gquic_chlo_sni(payload) {
                    found.host = Some((owned_host(sni), DecidedBy::QuicSni));
                } else if let Some(edge) = agora::sd_rtn_host(payload) {
                    found.host = Some((owned_host(edge), DecidedBy::Payload));
                }
                self.quic_done = true;
                return;
            }
            if !self.res.grow(size_of::<quic::InitialReassembler>()) {
                found.refused.add(Holder::Quic);
                self.quic_done = true;
                return;
            }
            self.quic = Some(Box::default());
        }
        let Some(reassembler) = self.quic.as_mut() else {
            return;
        };
        let res = &mut self.res;
        match reassembler.push_datagram_with(payload, &mut |n| res.grow(n)) {
            Parse::Found(hello) => {
                if let Some(sni) = hello.sni {
                    found.host = Some((owned_host(sni), DecidedBy::QuicSni));
                }
                self.quic_done = true;
            }
            Parse::NeedMore => {}
            Parse::NotThis => self.quic_done = true,
        }
        if reassembler.refused() {
            found.refused.add(Holder::Quic);
        }
        if self.quic_done
            && let Some(q) = self.quic.take()
        {
            self.res
                .shrink(size_of::<quic::InitialReassembler>() + q.heap_bytes());
        }
    }
}
