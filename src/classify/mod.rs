//! Classification: which application a flow belongs to and which category
//! it goes in, decided on a flow's first packets and cached in the flow.
//!
//! Precedence (first decisive answer wins): admin rules in file order, the
//! app catalog (host names from TLS/QUIC SNI, HTTP Host or DNS; payload
//! prefixes and HTTP signatures; published IP ranges; ports), behaviour (RTP, STUN, DTLS, small
//! isochronous packets; long high-volume flows), DSCP trust, the default
//! category. While a flow is "pending" (its first `inspect_packets` packets,
//! or until a ClientHello or a decisive rule) each packet refines the
//! verdict; then it is final and established packets cost one branch.

pub mod budget;
pub mod catalog;
mod ctx;
mod decided_by;
mod dns_stream;
pub mod dpi;
mod endpoints;
mod inspect;
pub mod matcher;
mod media_watch;
mod port_index;
mod state;
mod verdict;

use std::borrow::Cow;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;

pub use self::ctx::PacketCtx;
pub use self::decided_by::DecidedBy;
pub use self::dns_stream::DNS_TCP_KEEP;
pub use self::state::{ClassCell, FlowClass};

use self::budget::{DpiBudget, Refusals};
use self::catalog::CompiledCatalog;
use self::matcher::{AppId, Matcher};
use crate::config::{CategoryId, Config};
use crate::flow::{FlowCache, FlowTable};
use crate::packet::PacketMeta;
use crate::time::Instant;

/// The flow table as classification uses it.
pub type ClassTable = FlowTable<ClassCell>;

/// A data-path thread's cache in front of a [`ClassTable`].
pub type ClassCache = FlowCache<ClassCell>;

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
    /// The real-time app each LAN endpoint was last used by.
    endpoints: endpoints::EndpointApps,
    /// The catalog's Zoom media app, whose packets say what they carry.
    zoom_media: Option<AppId>,
}

/// What [`Classifier::classify`] returns for one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// The packet's category.
    pub category: CategoryId,
    /// The flow's category in each direction (by [`crate::config::Direction::index`]):
    /// a measurement of the other direction's traffic taken on this
    /// packet (a round trip the answer completes) is labelled with it.
    pub flow_category: [CategoryId; 2],
    /// The app recognised so far, if any (per-app accounting).
    pub app: Option<AppId>,
    /// How the verdict was reached, when this packet settled it (or the
    /// volume heuristic changed it): count decisions once per flow.
    pub decided: Option<DecidedBy>,
    /// State this packet needed that the DPI memory budget refused.
    pub refused: Refusals,
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
        let catalog_zoom = catalog.app_id("zoom-media");
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
            endpoints: Default::default(),
            zoom_media: catalog_zoom,
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

    /// Finds (or creates) the flow of the packet of `ctx` in `table`
    /// through the thread's `cache`, counts the packet in it and classifies
    /// it: the one sequence the engine, offline classification and tests
    /// share. Returns the verdict and the flow's id.
    #[inline]
    pub fn observe(
        &self,
        table: &ClassTable,
        cache: &mut ClassCache,
        ctx: &PacketCtx<'_, '_>,
        names: &dyn NameLookup,
    ) -> (Verdict, u64) {
        let (flow, _) = table.track(cache, &ctx.key, ctx.side, ctx.pkt, ctx.dir, ctx.now);
        (self.classify(flow, ctx, names), flow.id())
    }

    /// The name of app `id`.
    pub fn app_name(&self, id: AppId) -> Option<&str> {
        self.catalog.app(id).map(|a| &*a.name)
    }
}

#[cfg(test)]
pub(crate) mod tests;
