//! The shaper: one per direction, it holds packets back so the link runs
//! slightly below line rate (the queue forms here, where we control it, not
//! in the modem), and decides who leaves first.
//!
//! Sans-IO and deterministic: no clock (every call takes `now`), no
//! threads, no allocation per packet once the packet store has grown to the
//! peak backlog. The caller loops `dequeue(now)` until it returns `None`,
//! then sleeps until [`LinkQueue::next_wakeup`] or the next arrival.
//!
//! Inside, HTB-like categories (see [`Shaper`]) each hold hashed per-flow
//! queues served by DRR, new flows first, each kept short by CoDel
//! (RFC 8289), as fq_codel does. [`Fifo`] is the "no qosd" baseline: one
//! deep tail-drop buffer at the link rate, as in a modem.

mod bucket;
mod codel;
pub(crate) use codel::control_law;
mod config;
mod fifo;
mod flows;
mod host_limit;
mod stats;

#[cfg(test)]
mod tests;

use std::time::Duration;

pub use crate::config::Fairness;
use crate::config::{CategoryId, Rate};
use crate::time::Instant;

use bucket::TokenBucket;
use codel::CodelParams;
use flows::{Dropped, FlowSet, Slab};
use host_limit::HostLimits;

pub use config::{
    CategoryParams, DEFAULT_BURST, DEFAULT_FLOWS_PER_CATEGORY, DEFAULT_QUANTUM, MIN_MEMORY_LIMIT,
    ShaperConfig,
};
pub use fifo::Fifo;
pub use stats::{
    BucketBounds, BucketHistogram, CategoryCounters, DELAY_BUCKET_BOUNDS_NS, DelayHistogram,
    LOG_BUCKETS, LogHistogram, PacketBytes, QueueDelayBuckets,
};

/// What the shaper needs to know about a packet. The daemon's frame type
/// implements it; tests use a small struct.
pub trait ShapedPacket {
    /// Length in bytes as captured (the link overhead is added by the shaper).
    fn len(&self) -> usize;
    /// Whether the length is zero.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Whether the packet is ECN-capable (ECT(0) or ECT(1)).
    fn ecn_capable(&self) -> bool;
    /// Sets the ECN field to CE (fixing checksums as needed); false if the
    /// packet could not be marked, in which case CoDel drops it instead.
    fn mark_ce(&mut self) -> bool;
    /// The LAN host the packet belongs to, as a tag (a hash of its MAC
    /// address and VLAN): within a category, hosts share first, then each
    /// host's flows ([`Fairness::Host`]). The default, one host for every
    /// packet, shares between flows only.
    fn host(&self) -> u32 {
        0
    }
}

/// Why a packet was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// CoDel: its flow had a standing queue above target.
    Codel,
    /// The global memory (or packet) budget was full; taken from the head of
    /// the fattest flow queue.
    Overflow,
    /// Its category's backlog limit was full (typically a category held at
    /// its `max`); taken from the head of the category's fattest flow.
    Ceiling,
    /// A download queue stood in the ISP's buffer, outside qosd: the
    /// fattest flow was told to slow down ([`LinkQueue::signal`]).
    IspQueue,
}

impl DropReason {
    /// Every reason, in a fixed order.
    pub const ALL: [DropReason; 4] = [
        DropReason::Codel,
        DropReason::Overflow,
        DropReason::Ceiling,
        DropReason::IspQueue,
    ];

    /// The label used in metrics.
    pub const fn as_str(self) -> &'static str {
        match self {
            DropReason::Codel => "codel",
            DropReason::Overflow => "overflow",
            DropReason::Ceiling => "ceiling",
            DropReason::IspQueue => "isp_queue",
        }
    }
}

/// A link's queue: what [`Shaper`] and [`Fifo`] offer, so the engine and a
/// simulation run the same traffic through either. It is their API (they
/// have no inherent copies of these methods).
///
/// Never a trait object: `drain_dropped` is generic so the data path's
/// recycling closure is inlined, and callers are generic over the queue.
pub trait LinkQueue<P> {
    /// Queues `pkt`, arrived at `now`, for `category` and flow hash `flow`.
    fn enqueue(&mut self, pkt: P, category: CategoryId, flow: u32, now: Instant);
    /// The next packet allowed to leave at `now`, if any.
    fn dequeue(&mut self, now: Instant) -> Option<P>;
    /// The earliest instant `dequeue` could return a packet (it may be in
    /// the past: call `dequeue` now); `None` when empty.
    fn next_wakeup(&self) -> Option<Instant>;
    /// Hands every packet dropped since the last call back to `f`, with
    /// the reason (counters already include them), to recycle its buffer.
    fn drain_dropped<F: FnMut(P, DropReason)>(&mut self, f: F);
    /// Tells the flow most to blame for a queue that stands outside this
    /// one (the ISP's download buffer, which only the senders can empty)
    /// to slow down: its head packet is marked CE or dropped
    /// ([`DropReason::IspQueue`]). Returns whether a flow was told. The
    /// default does nothing: a plain FIFO (the modem) has no flows.
    fn signal(&mut self, now: Instant) -> bool {
        let _ = now;
        false
    }
    /// Runs the link at `permille` thousandths of its configured rate
    /// (1000: all of it) until called again, to drain a queue that stands
    /// in front of this one into this one, where it is scheduled. The
    /// default does nothing.
    fn throttle(&mut self, permille: u32) {
        let _ = permille;
    }
    /// Bytes queued, all categories (what the download window clamp reads
    /// to tell a full download from an idle one).
    fn backlog_bytes(&self) -> u64;
    /// Counters, indexed by [`CategoryId`].
    fn counters(&self) -> &[CategoryCounters];
    /// Switches to `cfg` live, keeping every queued packet. `origin[i]`
    /// names the category, before the change, that becomes category `i`
    /// with its queue and counters (`None`: a new, empty category);
    /// packets of categories that no longer exist move to `cfg`'s fallback.
    fn reconfigure_mapped(&mut self, cfg: &ShaperConfig, origin: &[Option<usize>]);
    /// Switches to `cfg` live, categories matched by index: see
    /// [`LinkQueue::reconfigure_mapped`].
    fn reconfigure(&mut self, cfg: &ShaperConfig) {
        let before = self.counters().len();
        let origin: Vec<Option<usize>> = (0..cfg.categories.len())
            .map(|i| (i < before).then_some(i))
            .collect();
        self.reconfigure_mapped(cfg, &origin);
    }
}

#[inline]
pub(crate) fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The length a packet is charged at on the wire: `len + overhead`, at
/// least 1 byte.
#[inline]
pub(crate) fn wire_len(len: u32, overhead: i32) -> u64 {
    u64::try_from((i64::from(len) + i64::from(overhead)).max(1)).unwrap_or(1)
}

/// What `dropped` packets cost on the wire: their bytes plus the link's
/// overhead once per packet.
fn ingress_charge(dropped: PacketBytes, overhead: i32) -> u64 {
    let extra = i64::from(overhead).saturating_mul(i64::try_from(dropped.packets).unwrap_or(0));
    u64::try_from(
        i64::try_from(dropped.bytes)
            .unwrap_or(i64::MAX)
            .saturating_add(extra)
            .max(0),
    )
    .unwrap_or(0)
}

/// Virtual-time units per byte at weight 1; 2^32 keeps the rounding of
/// `2^32 / weight` negligible for any weight.
const VTIME_ONE: u128 = 1 << 32;

/// The scheduling state of one category.
struct Class {
    fq: FlowSet,
    priority: u8,
    /// Virtual time a byte costs this category: inversely proportional to
    /// its weight, so equal virtual progress means bytes in weight ratio.
    stride: u128,
    /// Virtual time of this category's spare-capacity service.
    vtime: u128,
    /// The guarantee (`None` when `min` is 0).
    min: Option<TokenBucket>,
    /// The ceiling.
    max: TokenBucket,
    /// Backlog limit in bytes.
    limit: u64,
    /// Every host with packets here is at its `host_max` ceiling until
    /// then: the category has nothing to send before.
    held_until: Instant,
}

impl Class {
    /// A category created at `now`: its buckets hold no credit from before.
    fn new(p: &CategoryParams, cfg: &ShaperConfig, now: Instant) -> Self {
        let bucket = |rate| {
            let mut b = TokenBucket::new(rate, class_burst(cfg, rate));
            b.wake(now);
            b
        };
        Class {
            fq: FlowSet::new(
                cfg.flows_per_category as usize,
                cfg.quantum,
                codel_params(p, cfg),
            ),
            priority: p.priority,
            stride: VTIME_ONE / u128::from(p.weight.max(1)),
            vtime: 0,
            min: (p.min.bps() > 0).then(|| bucket(p.min)),
            max: bucket(p.max),
            limit: p.backlog_limit.unwrap_or(u64::MAX),
            held_until: Instant::ZERO,
        }
    }

    /// Takes new parameters, keeping queued packets, bucket debts and CoDel
    /// state.
    fn update<P>(
        &mut self,
        p: &CategoryParams,
        cfg: &ShaperConfig,
        slab: &mut Slab<P>,
        now: Instant,
    ) {
        let burst = class_burst(cfg, p.min);
        self.fq.resize(cfg.flows_per_category as usize, slab);
        self.fq.set_quantum(cfg.quantum);
        self.fq.codel = codel_params(p, cfg);
        self.priority = p.priority;
        self.stride = VTIME_ONE / u128::from(p.weight.max(1));
        self.min = match (self.min.take(), p.min.bps() > 0) {
            (_, false) => None,
            (Some(mut b), true) => {
                b.set_rate(p.min, burst);
                Some(b)
            }
            (None, true) => {
                // A new guarantee starts now, owing nothing for the past.
                let mut b = TokenBucket::new(p.min, burst);
                b.wake(now);
                Some(b)
            }
        };
        self.max.set_rate(p.max, class_burst(cfg, p.max));
        self.limit = p.backlog_limit.unwrap_or(u64::MAX);
    }

    #[inline]
    fn below_min(&self, now: Instant) -> bool {
        self.min.as_ref().is_some_and(|b| b.is_ready(now))
    }
}

/// The credit a category's bucket at `rate` may save up, in time.
///
/// A category whose bucket becomes ready may still wait for the link while
/// others are served: guarantees first, higher priorities first, and those
/// may be catching up on credit of their own. Credit lost in that wait
/// would leave the category below its `max` for good, so the burst covers
/// it: at least [`ShaperConfig::burst`]; at least the time the link takes
/// to send one quantum per category (plus one); and, like HTB's default,
/// at least two quanta at the bucket's own rate, which small categories
/// need. What a category can send above `max` in a short window is bounded
/// by this credit; over long windows it never exceeds `max`.
fn class_burst(cfg: &ShaperConfig, rate: Rate) -> u64 {
    let quantum_bits = u128::from(cfg.quantum) * 8;
    let link_wait = (cfg.categories.len() as u128 + 1) * quantum_bits * 1_000_000_000
        / u128::from(cfg.rate.bps().max(1));
    let own = 2 * quantum_bits * 1_000_000_000 / u128::from(rate.bps().max(1));
    let longest = link_wait.max(own);
    nanos(cfg.burst).max(u64::try_from(longest).unwrap_or(u64::MAX))
}

fn codel_params(p: &CategoryParams, cfg: &ShaperConfig) -> CodelParams {
    CodelParams {
        target: nanos(p.codel_target),
        interval: nanos(p.codel_interval),
        mtu: u64::from(cfg.quantum),
        ecn: p.ecn,
    }
}

/// Iterates the set bits of a category mask, lowest first.
#[inline]
fn bits(mut mask: u32) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        if mask == 0 {
            return None;
        }
        let i = mask.trailing_zeros() as usize;
        mask &= mask - 1;
        Some(i)
    })
}

/// The shaper of one direction of the link.
///
/// Scheduling, HTB-like: the link is a token bucket at [`ShaperConfig::rate`]
/// (packets charged `len + overhead`). When it allows a packet, the
/// category is chosen in two rounds:
/// 1. backlogged categories still below their `min` (and below `max`), the
///    highest priority (lowest number) first: the guarantees;
/// 2. backlogged categories below their `max`, the highest priority level
///    first; inside a level, the one with the least weighted service so far
///    (start-time fair queueing on bytes / weight, the fine-grained form of
///    weighted DRR), so spare capacity is split in weight ratio.
///
/// `max` is charged in both rounds and never exceeded; `min` only in the
/// first, so a category gets its guarantee plus its weighted share of the
/// rest. Within the chosen category, fq_codel picks the packet.
pub struct Shaper<P> {
    cfg: ShaperConfig,
    link: TokenBucket,
    classes: Vec<Class>,
    counters: Vec<CategoryCounters>,
    slab: Slab<P>,
    dropped: Dropped<P>,
    /// Categories with packets queued (bit = category index).
    backlogged: u32,
    /// Categories with a guarantee.
    min_mask: u32,
    /// Categories at each priority level.
    level_mask: [u32; 8],
    /// Virtual time of the last spare-capacity pick at each level; a
    /// category that becomes backlogged starts there (no credit for idling).
    level_vclock: [u128; 8],
    /// Everything queued, all categories.
    queued: PacketBytes,
    /// The latest `now` seen, for [`LinkQueue::reconfigure`], which has none.
    clock: Instant,
    /// What categories removed by reconfigurations counted.
    retired: CategoryCounters,
    /// The share of `cfg.rate` the link runs at, in thousandths.
    throttle: u32,
    /// Per-host ceilings (`shaper.host_max`), if any.
    host_limits: Option<HostLimits>,
}

/// The host ceilings `cfg` asks for.
fn host_limits(cfg: &ShaperConfig) -> Option<HostLimits> {
    cfg.host_max.map(|r| HostLimits::new(r, nanos(cfg.burst)))
}

/// `rate` scaled by `permille` thousandths (at least 1 bit/s).
fn scaled(rate: Rate, permille: u32) -> Rate {
    if permille >= 1000 {
        return rate;
    }
    let bps = u128::from(rate.bps()) * u128::from(permille) / 1000;
    Rate::from_bps(u64::try_from(bps).unwrap_or(u64::MAX).max(1))
}

impl<P: ShapedPacket> Shaper<P> {
    /// An empty shaper running `cfg` (normalised, see
    /// [`ShaperConfig::normalized`]).
    pub fn new(cfg: &ShaperConfig) -> Self {
        let cfg = cfg.normalized();
        let classes: Vec<Class> = cfg
            .categories
            .iter()
            .map(|p| Class::new(p, &cfg, Instant::ZERO))
            .collect();
        let mut s = Shaper {
            link: TokenBucket::new(cfg.rate, nanos(cfg.burst)),
            counters: vec![CategoryCounters::default(); classes.len()],
            classes,
            slab: Slab::with_capacity(1024),
            dropped: Dropped::new(),
            backlogged: 0,
            min_mask: 0,
            level_mask: [0; 8],
            level_vclock: [0; 8],
            queued: PacketBytes::default(),
            clock: Instant::ZERO,
            retired: CategoryCounters::default(),
            host_limits: host_limits(&cfg),
            cfg,
            throttle: 1000,
        };
        s.rebuild_masks();
        s
    }

    /// The configuration in force (normalised).
    pub fn config(&self) -> &ShaperConfig {
        &self.cfg
    }

    /// What the categories that reconfigurations removed had counted (their
    /// queued packets excepted: those moved to the fallback category).
    pub fn retired(&self) -> &CategoryCounters {
        &self.retired
    }

    /// Everything queued, all categories.
    pub fn backlog(&self) -> PacketBytes {
        self.queued
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.queued.packets == 0
    }

    /// Drops from the head of the fattest flow of the categories in `scope`;
    /// false if they hold nothing.
    fn shed(&mut self, scope: u32, reason: DropReason) -> bool {
        let mut best: Option<(usize, usize, u64)> = None;
        for ci in bits(scope & self.backlogged) {
            if let Some((fi, bytes)) = self.classes.get(ci).and_then(|c| c.fq.fattest())
                && bytes > best.map_or(0, |b| b.2)
            {
                best = Some((ci, fi, bytes));
            }
        }
        let Some((ci, fi, _)) = best else {
            return false;
        };
        let (Some(class), Some(ctr)) = (self.classes.get_mut(ci), self.counters.get_mut(ci)) else {
            return false;
        };
        let before = ctr.backlog;
        class
            .fq
            .drop_head(fi, &mut self.slab, ctr, &mut self.dropped, reason);
        settle(&mut self.queued, before, ctr.backlog);
        if ctr.backlog.packets == 0 {
            self.backlogged &= !(1u32 << ci);
        }
        true
    }

    /// The category to serve now, and whether it is served under its
    /// guarantee (round 1) rather than from spare capacity (round 2).
    #[inline]
    fn pick(&mut self, now: Instant) -> Option<(usize, bool)> {
        let guaranteed = self.backlogged & self.min_mask;
        if guaranteed != 0 {
            for &level in &self.level_mask {
                for ci in bits(level & guaranteed) {
                    if let Some(c) = self.classes.get(ci)
                        && c.below_min(now)
                        && c.max.is_ready(now)
                        && c.held_until <= now
                    {
                        return Some((ci, true));
                    }
                }
            }
        }
        for (level, clock) in self.level_mask.iter().zip(self.level_vclock.iter_mut()) {
            let mut best: Option<(usize, u128)> = None;
            for ci in bits(level & self.backlogged) {
                if let Some(c) = self.classes.get(ci)
                    && c.max.is_ready(now)
                    && c.held_until <= now
                    && best.is_none_or(|(_, v)| c.vtime < v)
                {
                    best = Some((ci, c.vtime));
                }
            }
            if let Some((ci, vtime)) = best {
                // Monotonic: a laggard released from its ceiling must not
                // pull the clock back and hand newcomers its credit.
                *clock = (*clock).max(vtime);
                return Some((ci, false));
            }
        }
        None
    }

    /// The share of its rate the link runs at, in thousandths
    /// ([`LinkQueue::throttle`]).
    pub fn throttle_permille(&self) -> u32 {
        self.throttle
    }

    /// The instant the link is free again after what it sent: no packet,
    /// whatever arrives meanwhile, can leave before it (it may be in the
    /// past: the link is free).
    pub fn link_free_at(&self) -> Instant {
        self.link.ready_at()
    }

    fn rebuild_masks(&mut self) {
        self.level_mask = [0; 8];
        self.min_mask = 0;
        self.backlogged = 0;
        for (i, (c, ctr)) in self.classes.iter().zip(&self.counters).enumerate() {
            let bit = 1u32 << i;
            if let Some(m) = self.level_mask.get_mut(usize::from(c.priority)) {
                *m |= bit;
            }
            if c.min.is_some() {
                self.min_mask |= bit;
            }
            if ctr.backlog.packets > 0 {
                self.backlogged |= bit;
            }
        }
    }
}

/// Takes what a category op removed (`before - after`) off the totals.
#[inline]
fn settle(total: &mut PacketBytes, before: PacketBytes, after: PacketBytes) {
    total.packets = total
        .packets
        .wrapping_sub(before.packets.wrapping_sub(after.packets));
    total.bytes = total
        .bytes
        .wrapping_sub(before.bytes.wrapping_sub(after.bytes));
}

impl<P: ShapedPacket> LinkQueue<P> for Shaper<P> {
    /// Queues `pkt`, arrived at `now`, in `category` (the fallback category
    /// if it does not exist) and the flow queue that `flow` (a hash of the
    /// flow's key) maps to. If that breaks the category's backlog limit or
    /// the memory budget, packets are dropped from the head of the fattest
    /// flow queue, never the arriving packet of a thinner flow.
    fn enqueue(&mut self, pkt: P, category: CategoryId, flow: u32, now: Instant) {
        let ci = if category.index() < self.classes.len() {
            category.index()
        } else {
            self.cfg.fallback.index()
        };
        let len = u32::try_from(pkt.len()).unwrap_or(u32::MAX);
        let host = match self.cfg.fairness {
            Fairness::Host => pkt.host(),
            Fairness::Flow => 0,
        };
        self.clock = self.clock.max(now);
        let (Some(class), Some(ctr)) = (self.classes.get_mut(ci), self.counters.get_mut(ci)) else {
            // Unreachable: normalisation keeps the fallback in range.
            return;
        };
        class
            .fq
            .enqueue(&mut self.slab, pkt, len, flow, host, now.as_nanos());
        ctr.arrived.add(u64::from(len));
        ctr.backlog.add(u64::from(len));
        self.queued.add(u64::from(len));
        // Perhaps a host that may send: look again.
        class.held_until = Instant::ZERO;
        let bit = 1u32 << ci;
        if self.backlogged & bit == 0 {
            self.backlogged |= bit;
            let clock = self
                .level_vclock
                .get(usize::from(class.priority))
                .copied()
                .unwrap_or(0);
            class.vtime = class.vtime.max(clock);
            if let Some(b) = class.min.as_mut() {
                b.wake(now);
            }
        }
        let over_ceiling = ctr.backlog.bytes > class.limit;
        if over_ceiling {
            while self
                .counters
                .get(ci)
                .zip(self.classes.get(ci))
                .is_some_and(|(c, k)| c.backlog.bytes > k.limit)
            {
                if !self.shed(1u32 << ci, DropReason::Ceiling) {
                    break;
                }
            }
        }
        while self.queued.bytes > self.cfg.memory_limit
            || self.queued.packets > self.cfg.packet_limit
        {
            if !self.shed(self.backlogged, DropReason::Overflow) {
                break;
            }
        }
    }

    /// The next packet allowed to leave at `now`: `None` if the link or
    /// every backlogged category's ceiling says wait (see
    /// [`LinkQueue::next_wakeup`]), or if nothing is queued. CoDel may drop
    /// packets on the way; collect them with [`LinkQueue::drain_dropped`].
    fn dequeue(&mut self, now: Instant) -> Option<P> {
        if self.backlogged == 0 || !self.link.is_ready(now) {
            return None;
        }
        let t = now.as_nanos();
        self.clock = self.clock.max(now);
        loop {
            let (ci, guaranteed) = self.pick(now)?;
            let (Some(class), Some(ctr)) = (self.classes.get_mut(ci), self.counters.get_mut(ci))
            else {
                return None;
            };
            let before = ctr.backlog;
            let dropped_before = ctr.dropped_codel;
            // The earliest a host held at its ceiling may send again.
            let mut held = Instant::NEVER;
            let out = match &self.host_limits {
                None => class
                    .fq
                    .dequeue(&mut self.slab, t, ctr, &mut self.dropped, &mut |_| true),
                Some(limits) => {
                    let mut may_send = |tag| match limits.ready(tag, now) {
                        Ok(()) => true,
                        Err(at) => {
                            held = held.min(at);
                            false
                        }
                    };
                    class
                        .fq
                        .dequeue(&mut self.slab, t, ctr, &mut self.dropped, &mut may_send)
                }
            };
            settle(&mut self.queued, before, ctr.backlog);
            if self.cfg.ingress && ctr.dropped_codel != dropped_before {
                let gone = ctr.dropped_codel.minus(dropped_before);
                let wire = ingress_charge(gone, self.cfg.overhead);
                self.link.charge(wire, now);
                class.max.charge(wire, now);
            }
            if out.is_none() && ctr.backlog.packets > 0 && held != Instant::NEVER {
                // Its hosts are all at their ceiling: the next category.
                class.held_until = held;
                continue;
            }
            if ctr.backlog.packets == 0 || out.is_none() {
                self.backlogged &= !(1u32 << ci);
            }
            let Some(p) = out else {
                // CoDel emptied this category; try the next one.
                continue;
            };
            let wire = wire_len(p.len, self.cfg.overhead);
            self.link.charge(wire, now);
            class.max.charge(wire, now);
            if let Some(limits) = &mut self.host_limits {
                limits.charge(p.host, wire, now);
            }
            if guaranteed {
                // No idle cap while backlogged: what the guarantee owes a
                // category kept waiting by others is paid back, not lost.
                if let Some(b) = class.min.as_mut() {
                    b.charge_owed(wire);
                }
            } else {
                class.vtime = class
                    .vtime
                    .saturating_add(u128::from(wire).saturating_mul(class.stride));
            }
            ctr.count_sent(u64::from(p.len), t.saturating_sub(p.enqueued));
            return Some(p.pkt);
        }
    }

    /// The earliest instant [`LinkQueue::dequeue`] could return a packet (it may
    /// be in the past: call `dequeue` now); `None` when nothing is queued.
    fn next_wakeup(&self) -> Option<Instant> {
        if self.backlogged == 0 {
            return None;
        }
        let ceiling = bits(self.backlogged)
            .filter_map(|ci| self.classes.get(ci))
            .map(|c| c.max.ready_at().max(c.held_until))
            .min()
            .unwrap_or(Instant::NEVER);
        Some(ceiling.max(self.link.ready_at()))
    }

    /// Marks CE on, or drops, the head packet of every flow queue, in
    /// every category, that holds more than two quanta: every flow with
    /// a standing queue here is sending faster than the line drains it,
    /// and a queue outside comes from them all at once (a flow with less
    /// is not what fills the line; a call's packets never are). One
    /// signal per flow: a sender halves its window once per round trip
    /// whatever the number of losses. In ingress mode the dropped bytes
    /// are charged to the link (they used the line).
    fn signal(&mut self, now: Instant) -> bool {
        let floor = 2 * u64::from(self.cfg.quantum);
        let mut told = false;
        for ci in bits(self.backlogged) {
            let (Some(class), Some(ctr)) = (self.classes.get_mut(ci), self.counters.get_mut(ci))
            else {
                continue;
            };
            let before = ctr.backlog;
            let ecn = class.fq.codel.ecn;
            let gone = class.fq.signal_standing(
                floor,
                &mut self.slab,
                ctr,
                &mut self.dropped,
                ecn,
                DropReason::IspQueue,
            );
            told |= gone.is_some();
            settle(&mut self.queued, before, ctr.backlog);
            if ctr.backlog.packets == 0 {
                self.backlogged &= !(1u32 << ci);
            }
            if let Some(gone) = gone
                && gone.packets > 0
                && self.cfg.ingress
            {
                let wire = ingress_charge(gone, self.cfg.overhead);
                self.link.charge(wire, now);
                class.max.charge(wire, now);
            }
        }
        told
    }

    fn backlog_bytes(&self) -> u64 {
        self.queued.bytes
    }

    /// Runs the link at `permille` thousandths of its rate; the debt or
    /// credit of the link's bucket carries over (in time).
    fn throttle(&mut self, permille: u32) {
        let permille = permille.clamp(1, 1000);
        if permille != self.throttle {
            self.throttle = permille;
            self.link
                .set_rate(scaled(self.cfg.rate, permille), nanos(self.cfg.burst));
        }
    }

    /// Hands every packet dropped since the last call back to `f`, with the
    /// reason (counters already include them). Call it after each batch of
    /// enqueues and dequeues: at most 4096 are kept between calls, beyond
    /// that dropped packets are freed here.
    fn drain_dropped<F: FnMut(P, DropReason)>(&mut self, f: F) {
        self.dropped.drain(f);
    }

    /// Counters, indexed by [`CategoryId`].
    fn counters(&self) -> &[CategoryCounters] {
        &self.counters
    }

    /// Switches to `cfg` live: rates, overhead, weights, priorities,
    /// min/max, CoDel parameters and limits change; every queued packet is
    /// kept (even above a smaller budget: later arrivals bring the backlog
    /// back under it). `origin[i]` names the category, before the change,
    /// that becomes category `i` with its queue, its bucket state and its
    /// counters (`None`: a new, empty category), so categories keep their
    /// state when the configuration reorders them. A change of
    /// `flows_per_category` rehashes the queued packets (in arrival order)
    /// and restarts CoDel's state for them. Packets of categories that no
    /// longer exist move to the fallback category, which counts them as
    /// arrivals; the removed categories' counters are added to
    /// [`Shaper::retired`].
    fn reconfigure_mapped(&mut self, cfg: &ShaperConfig, origin: &[Option<usize>]) {
        let cfg = cfg.normalized();
        self.link
            .set_rate(scaled(cfg.rate, self.throttle), nanos(cfg.burst));
        match (&mut self.host_limits, cfg.host_max) {
            (Some(l), Some(rate)) => l.set_rate(rate, nanos(cfg.burst)),
            (l, _) => *l = host_limits(&cfg),
        }
        let mut before: Vec<Option<(Class, CategoryCounters)>> = std::mem::take(&mut self.classes)
            .into_iter()
            .zip(std::mem::take(&mut self.counters))
            .map(Some)
            .collect();
        for (i, p) in cfg.categories.iter().enumerate() {
            let kept = origin
                .get(i)
                .copied()
                .flatten()
                .and_then(|j| before.get_mut(j))
                .and_then(Option::take);
            match kept {
                Some((mut class, ctr)) => {
                    class.update(p, &cfg, &mut self.slab, self.clock);
                    self.classes.push(class);
                    self.counters.push(ctr);
                }
                None => {
                    self.classes.push(Class::new(p, &cfg, self.clock));
                    self.counters.push(CategoryCounters::default());
                }
            }
        }
        let mut moved: Vec<u32> = Vec::new();
        for (mut class, ctr) in before.into_iter().flatten() {
            class.fq.unlink_all(&self.slab, &mut moved);
            self.retired.retire(&ctr);
        }
        if !moved.is_empty()
            && let (Some(class), Some(ctr)) = (
                self.classes.get_mut(cfg.fallback.index()),
                self.counters.get_mut(cfg.fallback.index()),
            )
        {
            if ctr.backlog.packets == 0
                && let Some(b) = class.min.as_mut()
            {
                b.wake(self.clock);
            }
            let bytes = FlowSet::bytes_of(&self.slab, &moved);
            let n = moved.len() as u64;
            class.fq.relink(&mut self.slab, &mut moved);
            for c in [&mut ctr.arrived, &mut ctr.backlog] {
                c.packets = c.packets.wrapping_add(n);
                c.bytes = c.bytes.wrapping_add(bytes);
            }
        }
        self.cfg = cfg;
        self.rebuild_masks();
        // Weighted service restarts level with the level's clock: no
        // category carries credit or debt across a change of weights.
        for c in &mut self.classes {
            c.vtime = self
                .level_vclock
                .get(usize::from(c.priority))
                .copied()
                .unwrap_or(0);
        }
    }
}
