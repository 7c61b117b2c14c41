//! The sans-IO core: given a frame, its direction and `now`, parse it, find
//! its flow, classify it, mark it and queue it in that direction's shaper;
//! [`DirectionEngine::dequeue`] hands back frames due to leave and
//! [`DirectionEngine::next_wakeup`] says when to ask again. No syscalls, no
//! clocks, no threads: the daemon, the simulator and the tests drive it.
//!
//! State shared by both directions (flow table, DNS names, the current
//! classifier) lives in [`Shared`]; each direction owns its queue and its
//! counters. A settled flow's packet takes no lock: its entry comes from
//! the direction's own [`ClassCache`] and its verdict is one atomic load
//! (see [`crate::flow`]).

pub mod accounting;
pub mod bells;
pub mod cadence;
pub mod frame;
pub mod hosts;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use arc_swap::ArcSwap;

use self::accounting::Accounting;
use self::bells::Bells;
use self::cadence::Cadence;
use self::frame::{Frame, host_tag, lan_mac};
use self::hosts::HostTable;
use crate::classify::budget::{DpiBudget, Holder, Refusals};
use crate::classify::dpi::dns::DnsCache;
use crate::classify::{ClassCache, ClassTable, Classifier, DecidedBy, PacketCtx};
use crate::config::{CategoryId, Config, Direction};
use crate::packet::bell::{BellKey, bell_key_of};
use crate::packet::{FrameKind, PacketMeta, rewrite};
use crate::shaper::{CategoryCounters, DropReason, LinkQueue, ShaperConfig};
use crate::time::Instant;
use crate::wan::{
    DownloadWindows, GuardParams, IspGuard, Meter, ProbeBoard, Segment, Stamper, UploadWindows,
    WindowBoard,
};

/// Entries in the DNS snooping cache.
pub const DNS_CACHE_ENTRIES: usize = 65_536;

/// What both directions share.
pub struct Shared {
    /// The bidirectional flow table.
    pub table: ClassTable,
    /// Names learned from DNS answers.
    pub names: DnsCache,
    /// Memory all flows' inspection state shares, across reloads.
    pub dpi: Arc<DpiBudget>,
    /// Where the upload side times WAN round trips for the download side
    /// to complete ([`crate::wan`]).
    pub probes: Arc<ProbeBoard>,
    /// Where the download side publishes the download flows' windows for
    /// the upload side to write ([`crate::wan::clamp`]).
    pub windows: Arc<WindowBoard>,
    installed: ArcSwap<Installed>,
    generation: AtomicU32,
}

/// A configuration and the classifier built from it, swapped as one: a
/// reader never sees the classifier of one and the categories of another
/// (a data path that picked up a new classifier with the old configuration
/// would keep the old weights until the next change).
pub struct Installed {
    /// The configuration in force.
    pub config: Arc<Config>,
    /// The classifier built from it.
    pub classifier: Arc<Classifier>,
}

impl Installed {
    fn new(cfg: &Config, generation: u32, dpi: &Arc<DpiBudget>) -> Self {
        Installed {
            config: Arc::new(cfg.clone()),
            classifier: Arc::new(Classifier::with_budget(cfg, generation, Arc::clone(dpi))),
        }
    }
}

impl Shared {
    /// State for `cfg`.
    pub fn new(cfg: &Config) -> Self {
        let dpi = Arc::new(DpiBudget::new(cfg.classify.dpi_memory.bytes()));
        Shared {
            table: ClassTable::new(&cfg.flows),
            names: DnsCache::new(DNS_CACHE_ENTRIES),
            installed: ArcSwap::from_pointee(Installed::new(cfg, 1, &dpi)),
            dpi,
            probes: Arc::new(ProbeBoard::new()),
            windows: Arc::new(WindowBoard::default()),
            generation: AtomicU32::new(1),
        }
    }

    /// Installs a new configuration: a new classifier (existing flows
    /// re-derive their verdicts on their next packet) and flow limits. Each
    /// direction applies it to its queue on its own thread
    /// ([`DirectionEngine::refresh`]).
    pub fn reload(&self, cfg: &Config) {
        let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
        self.table.set_limits(&cfg.flows);
        self.dpi.set_limit(cfg.classify.dpi_memory.bytes());
        self.installed
            .store(Arc::new(Installed::new(cfg, generation, &self.dpi)));
    }

    /// The configuration and classifier in force, as one consistent pair.
    pub fn installed(&self) -> Arc<Installed> {
        self.installed.load_full()
    }

    /// The classifier in force.
    pub fn classifier(&self) -> Arc<Classifier> {
        Arc::clone(&self.installed.load().classifier)
    }

    /// The configuration in force.
    pub fn config(&self) -> Arc<Config> {
        Arc::clone(&self.installed.load().config)
    }
}

/// Counters of one direction's engine, besides the queue's own.
#[derive(Debug, Clone, Default)]
pub struct EngineCounters {
    /// IP frames handled.
    pub ip_frames: u64,
    /// Frames that are not IP (passed in the control category).
    pub non_ip_frames: u64,
    /// Frames that claim to be IP but could not be parsed (passed in the
    /// default category).
    pub malformed_frames: u64,
    /// Flows settled, by [`DecidedBy::KINDS`] index.
    pub decisions: [u64; DecidedBy::KINDS.len()],
    /// Frames rewritten with their category's DSCP.
    pub dscp_marked: u64,
    /// Flow state the DPI memory budget refused, by [`Holder::index`].
    pub dpi_refusals: [u64; Holder::KINDS.len()],
    /// Bytes of the frames that arrived (for the download: what the line
    /// delivered).
    pub arrived_bytes: u64,
    /// Bytes of the frames the queue released.
    pub sent_bytes: u64,
    /// TCP payload bytes of the frames that arrived (what the far ends'
    /// acknowledgements count).
    pub tcp_payload_bytes: u64,
    /// The ISP-queue guard (download): what it does and sees.
    pub isp_queue: IspQueueCounters,
    /// The download window clamp: what it did.
    pub window_clamp: WindowClampCounters,
}

/// What the download window clamp did ([`crate::wan::clamp`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WindowClampCounters {
    /// Upload: acknowledgements whose receive window qosd lowered.
    pub lowered: u64,
    /// Download: windows set (each download flow's, every interval of at
    /// least two round trips while the download is full).
    pub windows: u64,
    /// Download: the download counted as full at the last packet, so the
    /// windows apply.
    pub full: bool,
    /// Download: the queue the windows leave room for over each flow's
    /// round trip, ns ([`DownloadWindows::allowance`]).
    pub allowance_ns: u64,
}

/// What the download's ISP-queue guard did ([`crate::wan::guard`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IspQueueCounters {
    /// The queue standing in the ISP's download buffer at the last packet,
    /// ns (0: none, or nothing to read it from).
    pub standing_ns: u64,
    /// Times the flows with a standing queue in qosd were signalled.
    pub signals: u64,
    /// Time the download ran throttled, ns, episodes in progress included
    /// up to the last packet.
    pub throttled_ns: u64,
    /// Episodes whose queue did not drain under the throttle.
    pub gave_up: u64,
}

fn decided_index(d: DecidedBy) -> usize {
    DecidedBy::KINDS
        .iter()
        .position(|k| *k == d.kind())
        .unwrap_or(0)
}

/// One direction: classification in front of a link queue (the shaper, or
/// a plain FIFO for comparisons).
pub struct DirectionEngine<Q> {
    dir: Direction,
    shared: Arc<Shared>,
    /// The configuration and classifier this direction runs.
    installed: Arc<Installed>,
    /// `installed.classifier`, one pointer closer for the per-packet path.
    classifier: Arc<Classifier>,
    /// For each category of the last refresh, its index before it.
    origin: Vec<Option<usize>>,
    queue: Q,
    /// This direction's view of the flow table.
    cache: ClassCache,
    /// DSCP to write per category, if any.
    marks: Vec<Option<u8>>,
    counters: EngineCounters,
    /// Per-app traffic and TCP quality, by category.
    accounting: Accounting,
    /// This direction's half of the WAN-delay measurement.
    wan: WanSide,
    /// The link rate autorate set, instead of `link.*`.
    link_rate: Option<crate::config::Rate>,
    /// The download's guard against a queue in the ISP's buffer (`None`
    /// upstream, or with `link.isp_queue_guard` off).
    guard: Option<IspGuard>,
    /// The share of the link's rate the queue was last told to run at,
    /// and since when (while under 1000).
    throttle: u32,
    throttled_at: Instant,
    /// What each LAN computer sent or received this way.
    hosts: HostTable,
    /// `link.window_clamp`.
    window_clamp: bool,
    /// Per category: one of the most urgent (the lowest priority number:
    /// voice), whose arrivals [`Cadence`] follows.
    urgent: Vec<bool>,
    /// When the next urgent frames are due.
    cadence: Cadence,
    /// Which urgent flows wake the data path themselves.
    bells: Bells,
}

/// Per category of `cfg`, whether it is one of the most urgent: those of
/// the lowest priority number (voice).
fn urgent_categories(cfg: &Config) -> Vec<bool> {
    let top = cfg.category.iter().map(|c| c.priority).min();
    cfg.category
        .iter()
        .map(|c| Some(c.priority) == top)
        .collect()
}

/// The pace of the ISP-queue guard's signals while the queue stands, at
/// first: CoDel's interval, the round trip a sender takes to answer.
const GUARD_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);

/// The guard `cfg` asks for in `dir`, updating `guard` in place (an
/// episode in progress keeps its pace).
fn configure_guard(guard: &mut Option<IspGuard>, cfg: &Config, dir: Direction) {
    if dir != Direction::Download || !cfg.link.isp_queue_guard {
        *guard = None;
        return;
    }
    let params = GuardParams {
        target: cfg.link.isp_queue_target,
        interval: GUARD_INTERVAL,
    };
    match guard {
        Some(g) => g.set_params(params),
        None => *guard = Some(IspGuard::new(params)),
    }
}

/// The upload thread times packets leaving toward the WAN and writes the
/// download flows' windows; the download thread recognises the answers
/// and sets the windows.
enum WanSide {
    Lan(Stamper, Box<UploadWindows>),
    Wan(Box<Meter>, Box<DownloadWindows>),
}

impl<Q: LinkQueue<Frame>> DirectionEngine<Q> {
    /// The engine for `dir`, in front of `queue`.
    pub fn new(dir: Direction, shared: Arc<Shared>, queue: Q) -> Self {
        let installed = shared.installed();
        let cfg = &installed.config;
        let mut guard = None;
        configure_guard(&mut guard, cfg, dir);
        let window_clamp = cfg.link.window_clamp;
        let urgent = urgent_categories(cfg);
        DirectionEngine {
            dir,
            classifier: Arc::clone(&installed.classifier),
            origin: (0..cfg.category.len()).map(Some).collect(),
            marks: cfg
                .category
                .iter()
                .map(|c| c.dscp.map(|d| d.value()))
                .collect(),
            accounting: Accounting::new(cfg, dir == Direction::Download),
            installed,
            wan: match dir {
                Direction::Upload => WanSide::Lan(
                    Stamper::new(Arc::clone(&shared.probes)),
                    Box::new(UploadWindows::new(Arc::clone(&shared.windows))),
                ),
                Direction::Download => WanSide::Wan(
                    Box::new(Meter::new(Arc::clone(&shared.probes))),
                    Box::new(DownloadWindows::new(Arc::clone(&shared.windows))),
                ),
            },
            window_clamp,
            urgent,
            cadence: Cadence::new(),
            bells: Bells::new(),
            shared,
            queue,
            cache: ClassCache::new(),
            counters: EngineCounters::default(),
            link_rate: None,
            guard,
            throttle: 1000,
            throttled_at: Instant::ZERO,
            hosts: HostTable::default(),
        }
    }

    /// Whether no frame of the most urgent categories (voice) is queued or
    /// expected from `now` for `within`, and those that came lately kept
    /// their beat: a sleep that long may then hold departures back
    /// (see [`Cadence`]).
    pub fn urgent_calm(&mut self, now: Instant, within: std::time::Duration) -> bool {
        // One already waiting would be held back just the same.
        let queued = self
            .queue
            .counters()
            .iter()
            .zip(&self.urgent)
            .any(|(c, &urgent)| urgent && c.backlog.packets > 0);
        let within = u64::try_from(within.as_nanos()).unwrap_or(u64::MAX);
        !queued && self.cadence.calm(now, within)
    }

    /// Whether `category` is one of the most urgent (voice).
    fn is_urgent(&self, category: CategoryId) -> bool {
        self.urgent.get(category.index()).copied().unwrap_or(false)
    }

    /// Whether the receive path has a doorbell that frames of chosen
    /// urgent flows ring as they arrive (`bells`): arms or disarms it, and
    /// forgets which flows were in its map (a new one is empty).
    pub fn arm_bells(&mut self, armed: bool) {
        self.bells.arm(armed);
    }

    /// Whether the doorbell is armed.
    pub fn bells_armed(&self) -> bool {
        self.bells.armed()
    }

    /// Hands the doorbell map's pending changes to `apply` (key, add or
    /// remove; true if made).
    pub fn take_bell_changes(&mut self, apply: impl FnMut(&BellKey, bool) -> bool) {
        self.bells.take_changes(apply);
    }

    /// Frames of flows that ring the doorbell, received since start.
    pub fn bell_frames(&self) -> u64 {
        self.bells.rung()
    }

    /// Signals the ISP-queue guard sent since start (0 upstream).
    pub fn isp_queue_signals(&self) -> u64 {
        self.counters.isp_queue.signals
    }

    /// The WAN-delay meter (the download direction's engine has it).
    pub fn wan_meter_mut(&mut self) -> Option<&mut Meter> {
        match &mut self.wan {
            WanSide::Wan(m, _) => Some(m),
            WanSide::Lan(..) => None,
        }
    }

    /// The link rate the queue runs at: autorate's, or `link.*`.
    pub fn link_rate(&self) -> crate::config::Rate {
        self.link_rate
            .unwrap_or_else(|| self.installed.config.link.rate(self.dir))
    }

    /// Runs the queue at `rate` instead of `link.*` (autorate), without
    /// losing a queued packet; `queue_config` as for
    /// [`DirectionEngine::refresh`].
    pub fn set_link_rate(
        &mut self,
        rate: crate::config::Rate,
        queue_config: impl FnOnce(&Config, Direction) -> ShaperConfig,
    ) {
        if self.link_rate() == rate {
            return;
        }
        self.link_rate = Some(rate);
        let cfg = Arc::clone(&self.installed.config);
        let same: Vec<Option<usize>> = (0..cfg.category.len()).map(Some).collect();
        self.queue.reconfigure_mapped(
            &queue_config(&cfg, self.dir).with_link_rate(&cfg, self.dir, rate),
            &same,
        );
    }

    /// The state both directions share.
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// The direction.
    pub fn direction(&self) -> Direction {
        self.dir
    }

    /// The queue (for its counters).
    pub fn queue(&self) -> &Q {
        &self.queue
    }

    /// This direction's counters.
    pub fn counters(&self) -> &EngineCounters {
        &self.counters
    }

    /// Per-app traffic and TCP quality, laid out for [`Self::config`].
    pub fn accounting(&self) -> &Accounting {
        &self.accounting
    }

    /// The queue's per-category counters.
    pub fn category_counters(&self) -> &[CategoryCounters] {
        self.queue.counters()
    }

    /// Picks up a configuration installed with [`Shared::reload`] and
    /// applies it, queue included (`queue_config` says what the queue
    /// runs for a configuration and this direction), without losing a
    /// queued packet. Call once per batch of frames: it is one atomic load
    /// when nothing changed. Returns the new configuration when there is
    /// one (the queue's counters now follow its category layout).
    #[inline]
    pub fn refresh(
        &mut self,
        queue_config: impl FnOnce(&Config, Direction) -> ShaperConfig,
    ) -> Option<Arc<Config>> {
        let current = self.shared.installed.load();
        if Arc::ptr_eq(&current, &self.installed) {
            return None;
        }
        let before = std::mem::replace(&mut self.installed, arc_swap::Guard::into_inner(current));
        self.classifier = Arc::clone(&self.installed.classifier);
        let cfg = Arc::clone(&self.installed.config);
        // Categories are matched by name: a reordered or renamed file must
        // not hand one category's queue and counters to another.
        self.origin = cfg
            .category
            .iter()
            .map(|c| before.config.category.iter().position(|o| o.name == c.name))
            .collect();
        self.marks = cfg
            .category
            .iter()
            .map(|c| c.dscp.map(|d| d.value()))
            .collect();
        self.accounting = self.accounting.relayout(&before.config, &cfg, &self.origin);
        configure_guard(&mut self.guard, &cfg, self.dir);
        self.window_clamp = cfg.link.window_clamp;
        self.urgent = urgent_categories(&cfg);
        if let (false, WanSide::Wan(_, w)) = (self.window_clamp, &mut self.wan) {
            w.off();
        }
        let mut qc = queue_config(&cfg, self.dir);
        if let Some(rate) = self.link_rate {
            qc = qc.with_link_rate(&cfg, self.dir, rate);
        }
        self.queue.reconfigure_mapped(&qc, &self.origin);
        self.hosts.remap(&self.origin);
        Some(cfg)
    }

    /// What each LAN computer sent or received in this direction.
    pub fn hosts(&self) -> &HostTable {
        &self.hosts
    }

    /// The classifier this direction uses.
    pub fn classifier(&self) -> &Classifier {
        &self.classifier
    }

    /// The configuration this direction runs (its category layout is the
    /// queue's).
    pub fn config(&self) -> &Arc<Config> {
        &self.installed.config
    }

    /// For each category of the configuration picked up by the last
    /// [`DirectionEngine::refresh`], its index in the one before (by name;
    /// `None` for a new category): how the queue's categories were mapped
    /// ([`LinkQueue::reconfigure_mapped`]).
    pub fn category_origin(&self) -> &[Option<usize>] {
        &self.origin
    }

    /// Classifies `frame`, arrived at `now`, and queues it. Returns its
    /// category.
    pub fn ingress(&mut self, mut frame: Frame, now: Instant) -> CategoryId {
        let len = frame.bytes().len() as u64;
        self.counters.arrived_bytes += len;
        let mut probe = None;
        let mut app = None;
        let mut window = None;
        // The link's rate, bytes/s, for the window clamp.
        let rate = self.link_rate().bytes_per_sec();
        let (category, flow_hash, ip, vlan, lan_addr, bell) = {
            let base = frame.bytes().as_ptr() as usize;
            let pkt = PacketMeta::parse(frame.bytes());
            let vlan = pkt.vlan;
            let lan_addr = match self.dir {
                Direction::Upload => pkt.src,
                Direction::Download => pkt.dst,
            };
            let (category, flow_hash, ip, bell) = match pkt.kind {
                FrameKind::NonIp { ether_type } => {
                    self.counters.non_ip_frames += 1;
                    (
                        self.classifier.non_ip_category(),
                        u32::from(ether_type),
                        None,
                        None,
                    )
                }
                FrameKind::Malformed => {
                    self.counters.malformed_frames += 1;
                    (self.classifier.malformed_category(), 0, None, None)
                }
                FrameKind::Ip => {
                    self.counters.ip_frames += 1;
                    if pkt.protocol == 6 {
                        self.counters.tcp_payload_bytes += pkt.payload.len() as u64;
                    }
                    let ctx = PacketCtx::new(&pkt, self.dir, now);
                    let (verdict, id) = self.classifier.observe(
                        &self.shared.table,
                        &mut self.cache,
                        &ctx,
                        &self.shared.names,
                    );
                    if let Some(how) = verdict.decided
                        && let Some(n) = self.counters.decisions.get_mut(decided_index(how))
                    {
                        *n += 1;
                    }
                    if !verdict.refused.is_empty() {
                        self.count_refusals(verdict.refused);
                    }
                    app = verdict.app;
                    let segment = match &mut self.wan {
                        WanSide::Lan(s, w) => {
                            probe = s.on_lan_packet(&pkt, id, now);
                            if let Some(units) = w.on_lan_packet(&pkt, id, self.window_clamp, now) {
                                let at = (pkt.tcp.as_ptr() as usize).wrapping_sub(base);
                                window = Some((at, units, pkt.ip_offset, pkt.ip_version));
                            }
                            s.segment(&pkt, id)
                        }
                        WanSide::Wan(m, w) => {
                            // The round trip is the flow's in the direction
                            // of the traffic it timed, whichever packet
                            // completed it.
                            let rtt = m.on_wan_packet(&pkt, id, now);
                            if let Some(rtt) = rtt {
                                let d = rtt.direction();
                                self.accounting.count_rtt(
                                    d,
                                    d.pick(verdict.flow_category),
                                    rtt.rtt_ns,
                                );
                            }
                            // Followed with the clamp off too (handshakes),
                            // but no window applies then.
                            let rtt = rtt.map(|r| r.rtt_ns);
                            w.on_packet(&pkt, id, rtt, rate, self.window_clamp, now);
                            m.segment(&pkt, id)
                        }
                    };
                    if segment != Segment::NotData {
                        self.accounting
                            .count_segment(verdict.category, segment == Segment::Retransmitted);
                    }
                    let category = self
                        .classifier
                        .ack_category(&pkt)
                        .unwrap_or(verdict.category);
                    // An urgent frame's doorbell key, built only for those.
                    let bell = (self.bells.armed() && self.is_urgent(category))
                        .then(|| bell_key_of(frame.bytes(), &pkt))
                        .flatten();
                    (
                        category,
                        id as u32,
                        Some((pkt.ip_offset, pkt.ip_version)),
                        bell,
                    )
                }
            };
            (category, flow_hash, ip, vlan, lan_addr, bell)
        };
        frame.probe = probe;
        let mac = lan_mac(frame.bytes(), self.dir);
        frame.host = host_tag(mac, vlan);
        self.hosts.observe(
            frame.host,
            mac,
            vlan,
            ip.is_some().then_some(&lan_addr),
            category.index(),
            len,
            now,
        );
        // Counted in the category the packet is queued in, as the queue
        // counts it: an app's cells add up to its categories' arrivals.
        self.accounting.count_app(app, category, len);
        if let Some((offset, version)) = ip {
            frame.set_ip(offset, version);
            if let Some(Some(dscp)) = self.marks.get(category.index())
                && rewrite::set_dscp(frame.bytes_mut(), offset, version, *dscp)
            {
                self.counters.dscp_marked += 1;
            }
        }
        if let Some((at, units, ip_offset, version)) = window
            && rewrite::tcp_follows_ip(frame.bytes(), ip_offset, version, at)
            && rewrite::set_tcp_window(frame.bytes_mut(), at, units)
        {
            self.counters.window_clamp.lowered += 1;
        }
        let urgent = self.is_urgent(category);
        // Only IP frames have flow ids: a non-IP frame's is its EtherType.
        let rings = match (urgent, ip.is_some()) {
            (true, true) => self.bells.on_urgent(flow_hash, bell.as_ref(), now),
            (false, true) => {
                self.bells.on_other(flow_hash);
                false
            }
            (_, false) => false,
        };
        if urgent {
            self.cadence.on_arrival(flow_hash, now, rings);
        }
        self.queue.enqueue(frame, category, flow_hash, now);
        if self.window_clamp
            && let WanSide::Wan(_, w) = &mut self.wan
        {
            w.on_queue(self.queue.backlog_bytes(), rate, now);
            let c = &mut self.counters.window_clamp;
            c.windows = w.windows_published();
            c.full = w.full(now);
            c.allowance_ns = u64::try_from(w.allowance().as_nanos()).unwrap_or(u64::MAX);
        }
        if let (Some(g), WanSide::Wan(m, _)) = (&mut self.guard, &self.wan) {
            let standing = m.outside_queue(now);
            let c = &mut self.counters.isp_queue;
            c.standing_ns = standing.unwrap_or(0);
            if g.poll(standing, now) {
                self.queue.signal(now);
                c.signals = g.signals();
                c.gave_up = g.gave_up();
            }
            if self.throttle != 1000 {
                c.throttled_ns += now.nanos_since(self.throttled_at);
                self.throttled_at = now;
            }
            let share = g.rate_permille();
            if share != self.throttle {
                if self.throttle == 1000 {
                    self.throttled_at = now;
                }
                c.gave_up = g.gave_up();
                self.throttle = share;
                self.queue.throttle(share);
            }
        } else if self.throttle != 1000 {
            // The guard was switched off mid-episode.
            self.throttle = 1000;
            self.queue.throttle(1000);
        }
        category
    }

    #[cold]
    fn count_refusals(&mut self, refused: Refusals) {
        for i in refused.indices() {
            if let Some(n) = self.counters.dpi_refusals.get_mut(i) {
                *n += 1;
            }
        }
    }

    /// The next frame allowed to leave at `now`.
    #[inline]
    pub fn dequeue(&mut self, now: Instant) -> Option<Frame> {
        let frame = self.queue.dequeue(now)?;
        self.counters.sent_bytes += frame.bytes().len() as u64;
        if let (Some(p), WanSide::Lan(s, _)) = (frame.probe, &mut self.wan) {
            s.departed(p, now);
        }
        Some(frame)
    }

    /// When [`DirectionEngine::dequeue`] could next return a frame.
    #[inline]
    pub fn next_wakeup(&self) -> Option<Instant> {
        self.queue.next_wakeup()
    }

    /// Hands back frames the queue dropped (to recycle their buffers).
    pub fn drain_dropped(&mut self, f: impl FnMut(Frame, DropReason)) {
        self.queue.drain_dropped(f);
    }
}

#[cfg(test)]
mod accounting_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod wan_tests;

/// Drives autorate for a single-threaded caller (the simulator, tests):
/// drains the WAN-delay samples the engines measured, lets the
/// controllers decide (every 200 ms) and applies a changed rate to each
/// engine's queue without losing packets. `engines` are [upload,
/// download], sharing one [`Shared`]. The daemon, whose directions run on
/// two threads, does the same in its own way.
pub fn step_autorate<Q: LinkQueue<Frame>>(
    autorate: &mut crate::autorate::Autorate,
    now: Instant,
    engines: &mut [DirectionEngine<Q>; 2],
    queue_config: impl Fn(&Config, Direction) -> ShaperConfig,
) {
    let [up, down] = engines;
    autorate.reconfigure(down.config());
    let c = [up.counters(), down.counters()];
    let mut totals = crate::autorate::Totals {
        sent: c.map(|c| c.sent_bytes),
        arrived: c.map(|c| c.arrived_bytes),
        tcp_payload: c.map(|c| c.tcp_payload_bytes),
        acked: 0,
        outside_ns: c[1].isp_queue.throttled_ns,
    };
    if let Some(m) = down.wan_meter_mut() {
        totals.acked = m.acked_bytes();
        autorate.step(now, &totals, m);
    }
    for e in [up, down] {
        let rate = autorate.rate(e.direction());
        e.set_link_rate(rate, &queue_config);
    }
}
