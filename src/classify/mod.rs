//! Classification: which application a flow belongs to and which category
//! it goes in, decided on a flow's first packets and cached in the flow.
//!
//! Precedence (first decisive answer wins): admin rules in file order, the
//! app catalog (host names from TLS/QUIC SNI, HTTP Host or DNS; payload
//! prefixes; published IP ranges; ports), behaviour (RTP, STUN, DTLS, small
//! isochronous packets; long high-volume flows), DSCP trust, the default
//! category. While a flow is "pending" (its first `inspect_packets` packets,
//! or until a ClientHello or a decisive rule) each packet refines the
//! verdict; then it is final and established packets cost one branch.

pub mod budget;
pub mod catalog;
pub mod dpi;
mod inspect;
pub mod matcher;
mod port_index;

use std::borrow::Cow;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;

use self::budget::{DpiBudget, Holder, Refusals, Reservation};
use self::catalog::CompiledCatalog;
use self::inspect::{DpiState, Media};
use self::matcher::{Answer, AppId, FlowFacts, Matcher};
use crate::config::{CategoryId, Config, Direction};
use crate::flow::{Flow, FlowKey, Side};
use crate::packet::{FrameKind, PacketMeta};
use crate::time::Instant;

/// How a verdict was reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DecidedBy {
    /// Admin rule (index in the configuration).
    Rule(u16),
    /// TLS ClientHello server name.
    Sni,
    /// QUIC Initial's ClientHello server name.
    QuicSni,
    /// HTTP/1 Host header.
    HttpHost,
    /// Name learned from a DNS answer for the server's address.
    Dns,
    /// Payload prefix signature.
    Payload,
    /// Published IP range of the app.
    IpRange,
    /// Well-known port of the app.
    Port,
    /// RTP/RTCP headers.
    Rtp,
    /// STUN/TURN messages.
    Stun,
    /// DTLS records (WebRTC media).
    Dtls,
    /// Small isochronous packets (real-time media without known headers).
    Heuristic,
    /// Long high-volume flow: bulk.
    Volume,
    /// Trusted DSCP marking.
    Dscp,
    /// Nothing else decided.
    #[default]
    Default,
    /// Not an IP frame (ARP, LLDP, ...).
    NonIp,
}

impl DecidedBy {
    /// The label used in metrics and JSON ("rule" for every rule).
    pub fn kind(self) -> &'static str {
        match self {
            DecidedBy::Rule(_) => "rule",
            DecidedBy::Sni => "sni",
            DecidedBy::QuicSni => "quic-sni",
            DecidedBy::HttpHost => "http-host",
            DecidedBy::Dns => "dns",
            DecidedBy::Payload => "payload",
            DecidedBy::IpRange => "ip-range",
            DecidedBy::Port => "port",
            DecidedBy::Rtp => "rtp",
            DecidedBy::Stun => "stun",
            DecidedBy::Dtls => "dtls",
            DecidedBy::Heuristic => "heuristic",
            DecidedBy::Volume => "volume",
            DecidedBy::Dscp => "dscp",
            DecidedBy::Default => "default",
            DecidedBy::NonIp => "non-ip",
        }
    }

    /// Every `kind()`, for metrics that must list all label values.
    pub const KINDS: [&'static str; 16] = [
        "rule",
        "sni",
        "quic-sni",
        "http-host",
        "dns",
        "payload",
        "ip-range",
        "port",
        "rtp",
        "stun",
        "dtls",
        "heuristic",
        "volume",
        "dscp",
        "default",
        "non-ip",
    ];

    /// Strength of an app identification: a stronger one replaces a weaker.
    /// A name learned from DNS says which service a server belongs to, not
    /// what the flow carries: it ranks below the service's published media
    /// ranges, and for UDP (call media to a conferencing server) below its
    /// media ports too.
    fn strength(self, protocol: u8) -> u8 {
        match self {
            DecidedBy::Sni | DecidedBy::QuicSni | DecidedBy::HttpHost => 7,
            DecidedBy::Payload => 6,
            DecidedBy::IpRange => 5,
            DecidedBy::Dns if protocol == 17 => 2,
            DecidedBy::Dns => 4,
            DecidedBy::Port => 3,
            _ => 0,
        }
    }
}

/// Names learned from DNS answers seen on the wire (DNS snooping).
pub trait NameLookup {
    /// The name a client resolved to reach `addr`, if still fresh at `now`.
    fn name_of(&self, addr: IpAddr, now: Instant) -> Option<Arc<str>>;
    /// Learns from a DNS response message (a UDP payload from port 53, or
    /// a message reassembled from a TCP stream from port 53).
    fn learn(&self, dns_message: &[u8], now: Instant);
}

/// No DNS snooping (tests, or when disabled).
pub struct NoNames;

impl NameLookup for NoNames {
    fn name_of(&self, _: IpAddr, _: Instant) -> Option<Arc<str>> {
        None
    }
    fn learn(&self, _: &[u8], _: Instant) {}
}

impl NameLookup for dpi::dns::DnsCache {
    fn name_of(&self, addr: IpAddr, now: Instant) -> Option<Arc<str>> {
        self.lookup(addr, now)
    }
    fn learn(&self, dns_message: &[u8], now: Instant) {
        if let Some(resp) = dpi::dns::parse_response(dns_message) {
            self.insert_response(&resp, now);
        }
    }
}

/// A flow's classification: the facts learned and the verdict.
#[derive(Debug, Default)]
pub struct FlowClass {
    /// Category per [`Direction::index`].
    pub category: [CategoryId; 2],
    /// The app recognised, if any.
    pub app: Option<AppId>,
    /// How the verdict (of the upload direction, when they differ) was reached.
    pub decided_by: DecidedBy,
    /// True once the verdict is final.
    pub settled: bool,
    /// Host name learned (SNI, HTTP Host or DNS).
    pub host: Option<Box<str>>,
    /// How `host` was learned.
    host_source: DecidedBy,
    /// App from signatures (payload, ip-range, port) and how.
    sig_app: Option<(AppId, DecidedBy)>,
    /// Real-time media seen.
    media: Media,
    /// Packets inspected so far.
    inspected: u16,
    /// Classifier generation this verdict belongs to (0: never classified).
    generation: u32,
    /// Still watching for the volume heuristic.
    watch_volume: bool,
    /// DPI working state while pending.
    dpi: Option<Box<DpiState>>,
    /// A DNS server's TCP stream, while a message is incomplete.
    dns_stream: Option<Box<DnsTcp>>,
}

/// Most bytes of one DNS message over TCP that are kept to learn from:
/// the header, the question and the answers come first, and at most
/// [`dpi::dns::MAX_ANSWERS`] answers are read anyway (a 4 KiB start holds
/// them in practice; DNSSEC signatures and additional records, which can
/// make a message 64 KiB, are skipped).
pub const DNS_TCP_KEEP: usize = 4096;

/// A DNS server's TCP stream between segments: where it stands in the
/// message that a segment left incomplete. Exists (boxed, reserved from
/// the budget) only while a message is incomplete.
#[derive(Debug)]
struct DnsTcp {
    res: Reservation,
    /// The first byte of the length prefix, when a segment ended after it.
    high: Option<u8>,
    /// The message's length (from its prefix), once known.
    len: usize,
    /// Bytes of the message seen so far.
    seen: usize,
    /// Its first bytes (up to `min(len, DNS_TCP_KEEP)`), while they are
    /// incomplete (`None` once learned from, or when the budget refused
    /// them).
    start: Option<Vec<u8>>,
}

/// Follows DNS messages in a server's TCP segments (each message prefixed
/// by its 16-bit length) and learns from each, keeping between segments
/// only the start of a message that is incomplete: at most
/// [`DNS_TCP_KEEP`] bytes, and no more than its length says is coming.
/// Returns what the budget refused (the stream is then
/// followed without that state: a message's names are lost, or, when even
/// the small position record is refused, the next segment is read as if
/// a message started there).
fn learn_dns_stream(
    stream: &mut Option<Box<DnsTcp>>,
    mut segment: &[u8],
    names: &dyn NameLookup,
    now: Instant,
    budget: &Arc<DpiBudget>,
) -> Refusals {
    let mut refused = Refusals::default();
    // A message begun in an earlier segment.
    if let Some(mut st) = stream.take() {
        if let Some(high) = st.high {
            let Some((&low, rest)) = segment.split_first() else {
                *stream = Some(st);
                return refused;
            };
            drop(st); // only the length's first byte: it starts afresh
            let len = usize::from(u16::from_be_bytes([high, low]));
            match dns_message(len, rest, names, now, budget, &mut refused) {
                Ok(used) => segment = rest.get(used..).unwrap_or_default(),
                Err(state) => {
                    *stream = state;
                    return refused;
                }
            }
        } else {
            let keep = st.len.min(DNS_TCP_KEEP);
            if let Some(buf) = st.start.as_mut() {
                // Grown by what arrived, not to what the length promises:
                // a message that never completes holds only what was sent.
                let take = keep.saturating_sub(st.seen).min(segment.len());
                let part = segment.get(..take).unwrap_or_default();
                if !budget::extend_reserved(buf, part, &mut st.res) {
                    refused.add(Holder::Dns);
                    if let Some(buf) = st.start.take() {
                        st.res.shrink(buf.capacity());
                    }
                }
            }
            let take = st.len.saturating_sub(st.seen).min(segment.len());
            st.seen += take;
            segment = segment.get(take..).unwrap_or_default();
            if st.seen >= keep
                && let Some(buf) = st.start.take()
            {
                names.learn(&buf, now);
                st.res.shrink(buf.capacity());
            }
            if st.seen < st.len {
                *stream = Some(st);
                return refused; // the segment ended inside the message
            }
            // Done with it: `st` and its reservation go.
        }
    }
    // Messages that start in this segment: learned from the segment itself.
    while let Some(len) = segment
        .get(..2)
        .and_then(|b| <[u8; 2]>::try_from(b).ok())
        .map(|b| usize::from(u16::from_be_bytes(b)))
    {
        let body = segment.get(2..).unwrap_or_default();
        match dns_message(len, body, names, now, budget, &mut refused) {
            Ok(used) => segment = body.get(used..).unwrap_or_default(),
            Err(state) => {
                *stream = state;
                return refused;
            }
        }
    }
    if let [high] = segment
        && let Some(mut st) = dns_state(budget, &mut refused)
    {
        // The segment ended between the two bytes of a length.
        st.high = Some(*high);
        *stream = Some(st);
    }
    refused
}

/// A message of `len` bytes that starts with `body`: `Ok(len)` when it is
/// all there (and learned from), else the state to follow the rest with
/// (learned from already when its kept start is all there).
fn dns_message(
    len: usize,
    body: &[u8],
    names: &dyn NameLookup,
    now: Instant,
    budget: &Arc<DpiBudget>,
    refused: &mut Refusals,
) -> Result<usize, Option<Box<DnsTcp>>> {
    if let Some(msg) = body.get(..len) {
        names.learn(msg, now);
        return Ok(len);
    }
    let keep = len.min(DNS_TCP_KEEP);
    if let Some(start) = body.get(..keep) {
        // The answers are here; the rest (signatures, extra records) is
        // only skipped.
        names.learn(start, now);
    }
    let Some(mut st) = dns_state(budget, refused) else {
        return Err(None);
    };
    st.len = len;
    st.seen = body.len();
    if body.len() < keep {
        let mut buf = Vec::new();
        if budget::extend_reserved(&mut buf, body, &mut st.res) {
            st.start = Some(buf);
        } else {
            refused.add(Holder::Dns);
        }
    }
    Err(Some(st))
}

/// New DNS-over-TCP state, reserved from `budget` (`None`, and a refusal
/// noted, when it has no room).
fn dns_state(budget: &Arc<DpiBudget>, refused: &mut Refusals) -> Option<Box<DnsTcp>> {
    match Reservation::new(budget, size_of::<DnsTcp>()) {
        Some(res) => Some(Box::new(DnsTcp {
            res,
            high: None,
            len: 0,
            seen: 0,
            start: None,
        })),
        None => {
            refused.add(Holder::Dns);
            None
        }
    }
}

impl FlowClass {
    /// True when the host name was read from the flow's own packets.
    pub fn host_source(&self) -> DecidedBy {
        self.host_source
    }

    /// Bytes of the DPI memory budget this flow holds (its pending
    /// inspection state and an incomplete DNS-over-TCP message).
    pub fn dpi_bytes(&self) -> usize {
        self.dpi.as_ref().map_or(0, |d| d.reserved_bytes())
            + self.dns_stream.as_ref().map_or(0, |d| d.res.bytes())
    }
}

/// Well-known category names the behaviour stages map to.
#[derive(Debug, Clone, Copy, Default)]
struct BehaviourTargets {
    voice: Option<CategoryId>,
    video: Option<CategoryId>,
    bulk: Option<CategoryId>,
    control: Option<CategoryId>,
}

/// The classifier for one configuration. Immutable; a reload builds a new
/// one with a higher generation and flows re-derive their verdicts.
pub struct Classifier {
    generation: u32,
    rules: Vec<(Matcher, CategoryId)>,
    rule_names: Vec<Box<str>>,
    /// Some rule looks at a host name or app.
    rules_need_identity: bool,
    catalog: CompiledCatalog,
    default: CategoryId,
    targets: BehaviourTargets,
    trust_dscp: bool,
    inspect_packets: u16,
    bulk_after_bytes: u64,
    ack_category: Option<CategoryId>,
    /// Memory all flows' inspection state shares (kept across reloads).
    budget: Arc<DpiBudget>,
}

/// What [`Classifier::classify`] returns for one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// The packet's category.
    pub category: CategoryId,
    /// True when this packet settled the flow's verdict (or the volume
    /// heuristic changed it): count decisions once per flow.
    pub decided: bool,
    /// State this packet needed that the DPI memory budget refused.
    pub refused: Refusals,
}

fn addr128(a: [u8; 16]) -> u128 {
    u128::from_be_bytes(a)
}

fn ip_of(a: [u8; 16]) -> IpAddr {
    let v6 = Ipv6Addr::from(a);
    match v6.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(v6),
    }
}

impl Classifier {
    /// Builds the classifier for `cfg`, with a DPI memory budget of its
    /// own (`classify.dpi_memory`). `generation` must differ from the
    /// previous classifier's (start at 1).
    pub fn new(cfg: &Config, generation: u32) -> Self {
        let budget = Arc::new(DpiBudget::new(cfg.classify.dpi_memory.bytes()));
        Self::with_budget(cfg, generation, budget)
    }

    /// Builds the classifier for `cfg` drawing flows' inspection state from
    /// `budget`, which outlives reloads (state reserved under one
    /// classifier is given back under the next). Its limit is the
    /// caller's to set.
    pub fn with_budget(cfg: &Config, generation: u32, budget: Arc<DpiBudget>) -> Self {
        let catalog = CompiledCatalog::new(&cfg.catalog, cfg);
        let rules: Vec<(Matcher, CategoryId)> = cfg
            .rule
            .iter()
            .map(|r| (Matcher::new(&r.when, |n| catalog.app_id(n)), r.category_id))
            .collect();
        Classifier {
            generation: generation.max(1),
            rules_need_identity: rules.iter().any(|(m, _)| m.needs_identity()),
            rules,
            rule_names: cfg.rule.iter().map(|r| r.name.as_str().into()).collect(),
            catalog,
            default: cfg.default_category_id(),
            targets: BehaviourTargets {
                voice: cfg.category_id("voice"),
                video: cfg.category_id("video"),
                bulk: cfg.category_id("bulk"),
                control: cfg.category_id("control"),
            },
            trust_dscp: cfg.classify.trust_dscp,
            inspect_packets: cfg.classify.inspect_packets,
            bulk_after_bytes: cfg.classify.bulk_after_bytes,
            ack_category: cfg
                .classify
                .ack_category
                .as_deref()
                .and_then(|n| cfg.category_id(n)),
            budget,
        }
    }

    /// The DPI memory budget flows' inspection state is drawn from.
    pub fn budget(&self) -> &Arc<DpiBudget> {
        &self.budget
    }

    /// This classifier's generation.
    pub fn generation(&self) -> u32 {
        self.generation
    }

    /// The compiled catalog.
    pub fn catalog(&self) -> &CompiledCatalog {
        &self.catalog
    }

    /// The category of frames that are not IP.
    pub fn non_ip_category(&self) -> CategoryId {
        self.targets.control.unwrap_or(self.default)
    }

    /// Where pure TCP ACKs go instead of their flow's category, if
    /// configured: a download's ACKs stuck behind a saturated upload make
    /// the download bursty, and its bursts queue at the ISP, out of qosd's
    /// reach (the classic reason shapers prioritise small ACKs).
    #[inline]
    pub fn ack_category(&self, pkt: &PacketMeta<'_>) -> Option<CategoryId> {
        use crate::packet::{TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN};
        let pure_ack = pkt.protocol == 6
            && pkt.payload.is_empty()
            && pkt.tcp_flags & (TCP_SYN | TCP_FIN | TCP_RST | TCP_ACK) == TCP_ACK;
        if pure_ack { self.ack_category } else { None }
    }

    /// The category for malformed frames (forwarded, counted, not trusted).
    pub fn malformed_category(&self) -> CategoryId {
        self.default
    }

    /// How `d` reads in JSON and logs: "rule:<name>" for rules.
    pub fn decided_by_name(&self, d: DecidedBy) -> Cow<'static, str> {
        match d {
            DecidedBy::Rule(i) => match self.rule_names.get(usize::from(i)) {
                Some(name) => Cow::Owned(format!("rule:{name}")),
                None => Cow::Borrowed("rule"),
            },
            other => Cow::Borrowed(other.kind()),
        }
    }

    /// The name of app `id`.
    pub fn app_name(&self, id: AppId) -> Option<&str> {
        self.catalog.app(id).map(|a| &*a.name)
    }

    /// Classifies `pkt` (an IP frame travelling `dir`) in `flow`. The fast
    /// path, for a settled flow, is one comparison and a load.
    #[inline]
    #[allow(clippy::too_many_arguments)]
    pub fn classify(
        &self,
        flow: &mut Flow,
        key: &FlowKey,
        side: Side,
        pkt: &PacketMeta<'_>,
        dir: Direction,
        now: Instant,
        names: &dyn NameLookup,
    ) -> Verdict {
        // DNS answers teach names for flows to come, whatever this flow's
        // state (resolvers reuse one port for many queries).
        let mut refused = Refusals::default();
        if pkt.src_port == 53 && !pkt.payload.is_empty() {
            match pkt.protocol {
                17 => names.learn(pkt.payload, now),
                // Truncated UDP answers are retried over TCP (RFC 7766).
                6 => {
                    refused = learn_dns_stream(
                        &mut flow.class.dns_stream,
                        pkt.payload,
                        names,
                        now,
                        &self.budget,
                    );
                }
                _ => {}
            }
        }
        let c = &flow.class;
        let mut verdict = if c.settled && c.generation == self.generation {
            if c.watch_volume && flow.bytes[0] + flow.bytes[1] >= self.bulk_after_bytes {
                self.volume_switch(flow, dir)
            } else {
                Verdict {
                    category: dir.pick(c.category),
                    decided: false,
                    refused: Refusals::default(),
                }
            }
        } else {
            self.slow_path(flow, key, side, pkt, dir, now, names)
        };
        verdict.refused.merge(refused);
        verdict
    }

    #[cold]
    fn volume_switch(&self, flow: &mut Flow, dir: Direction) -> Verdict {
        let c = &mut flow.class;
        c.watch_volume = false;
        if let Some(bulk) = self.targets.bulk {
            c.category = [bulk; 2];
            c.decided_by = DecidedBy::Volume;
            return Verdict {
                category: bulk,
                decided: true,
                refused: Refusals::default(),
            };
        }
        Verdict {
            category: dir.pick(c.category),
            decided: false,
            refused: Refusals::default(),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn slow_path(
        &self,
        flow: &mut Flow,
        key: &FlowKey,
        side: Side,
        pkt: &PacketMeta<'_>,
        dir: Direction,
        now: Instant,
        names: &dyn NameLookup,
    ) -> Verdict {
        let (src, src_port) = key.endpoint(flow.initiator);
        let responder = match flow.initiator {
            Side::Lo => Side::Hi,
            Side::Hi => Side::Lo,
        };
        let (dst, dst_port) = key.endpoint(responder);
        let was_settled = flow.class.settled && flow.class.generation != 0;
        let c = &mut flow.class;
        let fresh_generation = c.generation != self.generation;
        // After a reload, a flow that was already settled keeps its facts
        // (host, media) and is not inspected again: its packets are now
        // mid-stream and would only mislead the parsers.
        let reloaded_settled = fresh_generation && c.generation != 0 && c.settled;
        if fresh_generation {
            // New flow, or a reload: (re)derive what the tuple says.
            c.generation = self.generation;
            c.settled = false;
            let facts = self.facts(
                key, src, src_port, dst, dst_port, pkt, dir, None, None, false,
            );
            c.sig_app = self.catalog.app_for_tuple(&facts);
            if c.host.is_none() {
                // A name the client resolved for the server (or, for flows
                // seen from the middle, for the initiator).
                if let Some(name) = names
                    .name_of(ip_of(dst), now)
                    .or_else(|| names.name_of(ip_of(src), now))
                {
                    c.host = Some(Box::from(&*name));
                    c.host_source = DecidedBy::Dns;
                }
            }
        }

        let mut refused = Refusals::default();
        let mut dpi_done = !matches!(key.protocol, 6 | 17) || pkt.kind != FrameKind::Ip;
        if !dpi_done && !c.settled && !reloaded_settled {
            let from_initiator = side == flow.initiator;
            let facts = self.facts(
                key, src, src_port, dst, dst_port, pkt, dir, None, None, false,
            );
            // The state is reserved before it is allocated; when the budget
            // is spent, this packet is inspected with state that lives only
            // on the stack (a ClientHello in one segment is still read).
            let mut one_packet;
            let state: &mut DpiState = match &mut c.dpi {
                Some(state) => state,
                slot => match Reservation::new(&self.budget, size_of::<DpiState>()) {
                    Some(res) => slot.insert(Box::new(DpiState::new(res))),
                    None => {
                        refused.add(Holder::Flow);
                        one_packet = DpiState::new(Reservation::none());
                        &mut one_packet
                    }
                },
            };
            let found = state.inspect(
                key.protocol,
                pkt,
                from_initiator,
                now,
                &self.catalog,
                &facts,
            );
            if let Some((host, how)) = found.host
                && how.strength(key.protocol) >= c.host_source.strength(key.protocol)
            {
                c.host = Some(host);
                c.host_source = how;
            }
            // A payload prefix is the strongest signature; the first one stays.
            if let Some(app) = found.payload_app
                && c.sig_app.is_none_or(|(_, how)| how != DecidedBy::Payload)
            {
                c.sig_app = Some((app, DecidedBy::Payload));
            }
            if found.media != Media::None {
                c.media = found.media;
            }
            dpi_done = found.done;
            refused.merge(found.refused);
            c.inspected = c.inspected.saturating_add(1);
        }
        let settled =
            c.settled || reloaded_settled || dpi_done || c.inspected >= self.inspect_packets;

        // The app: host names beat signatures.
        let host_app = c
            .host
            .as_deref()
            .and_then(|h| self.catalog.app_for_host(h))
            .map(|a| (a, c.host_source));
        let identified = match (host_app, c.sig_app) {
            (Some(h), Some(s)) if s.1.strength(key.protocol) > h.1.strength(key.protocol) => {
                Some(s)
            }
            (Some(h), _) => Some(h),
            (None, s) => s,
        };
        c.app = identified.map(|(a, _)| a);

        let host = c.host.as_deref();
        let mut decisive = true;
        let mut out = [(self.default, DecidedBy::Default); 2];
        for d in Direction::BOTH {
            let facts = self.facts(
                key, src, src_port, dst, dst_port, pkt, d, host, c.app, settled,
            );
            let (v, sure) = self.decide(&facts, identified, c.media, pkt.dscp);
            decisive &= sure;
            *d.pick_mut(&mut out) = v;
        }
        c.category = [out[0].0, out[1].0];
        c.decided_by = dir.pick(out).1;
        c.settled = settled || decisive;
        if c.settled {
            c.dpi = None;
            c.watch_volume =
                matches!(c.decided_by, DecidedBy::Default) && self.targets.bulk.is_some();
        }
        Verdict {
            category: dir.pick(c.category),
            decided: c.settled && !was_settled,
            refused,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn facts<'h>(
        &self,
        key: &FlowKey,
        src: [u8; 16],
        src_port: u16,
        dst: [u8; 16],
        dst_port: u16,
        pkt: &PacketMeta<'_>,
        direction: Direction,
        host: Option<&'h str>,
        app: Option<AppId>,
        settled: bool,
    ) -> FlowFacts<'h> {
        FlowFacts {
            protocol: key.protocol,
            src: addr128(src),
            src_port,
            dst: addr128(dst),
            dst_port,
            dscp: pkt.dscp,
            vlan: pkt.vlan,
            direction,
            host,
            app,
            settled,
        }
    }

    /// The verdict for one direction, and whether nothing learned later
    /// could change it (a rule matched before any rule that waits for a
    /// host name or app).
    fn decide(
        &self,
        facts: &FlowFacts<'_>,
        identified: Option<(AppId, DecidedBy)>,
        media: Media,
        dscp: u8,
    ) -> ((CategoryId, DecidedBy), bool) {
        let mut waiting = false;
        for (i, (m, cat)) in self.rules.iter().enumerate() {
            match m.eval(facts) {
                Answer::Yes => {
                    let sure = !waiting && !m.per_packet();
                    return (
                        (*cat, DecidedBy::Rule(u16::try_from(i).unwrap_or(u16::MAX))),
                        sure,
                    );
                }
                Answer::NotYet => waiting = true,
                Answer::No => {}
            }
        }
        let _ = self.rules_need_identity;
        // Real-time media in a UDP flow whose app is only known from a DNS
        // name (the conferencing service's server) is the call itself.
        let media_over_name = media != Media::None
            && facts.protocol == 17
            && identified.is_some_and(|(_, how)| how == DecidedBy::Dns);
        if let Some((app, how)) = identified
            && !media_over_name
            && let Some(cat) = self.catalog.app(app).and_then(|a| a.category)
        {
            return ((cat, how), false);
        }
        let media_target = match media {
            Media::None => None,
            Media::Rtp { video } | Media::Isochronous { video } => {
                let how = if matches!(media, Media::Rtp { .. }) {
                    DecidedBy::Rtp
                } else {
                    DecidedBy::Heuristic
                };
                let cat = if video {
                    self.targets.video.or(self.targets.voice)
                } else {
                    self.targets.voice
                };
                cat.map(|c| (c, how))
            }
            Media::Stun => self.targets.voice.map(|c| (c, DecidedBy::Stun)),
            Media::Dtls => self.targets.voice.map(|c| (c, DecidedBy::Dtls)),
        };
        if let Some(v) = media_target {
            return (v, false);
        }
        if self.trust_dscp
            && let Some(cat) = match dscp {
                46 | 44 => self.targets.voice,
                32..=38 => self.targets.video,
                1 | 8 => self.targets.bulk,
                _ => None,
            }
        {
            return ((cat, DecidedBy::Dscp), false);
        }
        ((self.default, DecidedBy::Default), false)
    }
}

#[cfg(test)]
pub(crate) mod tests;
