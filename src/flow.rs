//! The flow table: one entry per bidirectional connection, shared by both
//! direction threads and read by the API.
//!
//! Keys are canonical (the lower endpoint first), so the download half of a
//! connection finds the entry, and the verdict, its upload half created.
//! The VLAN id is part of the key because offices reuse private addresses
//! across VLANs.
//!
//! Memory is bounded: at most `max_flows` entries (see [`FlowTable`] for
//! the small, transient excess). New flows evict old ones with the CLOCK
//! algorithm (an approximation of least-recently-used): a flow that saw a
//! packet since the clock hand last passed gets a second chance, so an
//! active call survives a flood of one-packet spoofed flows. Idle flows
//! expire by timeout (separate TCP/UDP, shorter after FIN/RST) in
//! [`FlowTable::expire`], and [`FlowTable::trim`] does the bounded
//! housekeeping the data path leaves over; both are called once a second.
//!
//! The data path never does work proportional to the table: one new flow
//! pops at most [`INSERT_POP_LIMIT`] keys from the CLOCK queue and evicts
//! at most `1 + EXTRA_EVICTIONS_PER_INSERT` flows, even right after a
//! reload lowered `max_flows` by millions.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use dashmap::DashMap;

use crate::classify::FlowClass;
use crate::config::{Direction, Flows};
use crate::packet::{PacketMeta, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN};
use crate::time::Instant;

/// Which end of a canonical key an address belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The lower (address, port) endpoint.
    Lo,
    /// The higher endpoint.
    Hi,
}

/// A canonical, bidirectional flow key. Ordered only so that it can ride
/// along in sorted collections (the API's top flows).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FlowKey {
    /// Lower endpoint address (IPv4-mapped for IPv4).
    pub lo: [u8; 16],
    /// Higher endpoint address.
    pub hi: [u8; 16],
    /// Port of `lo` (0 without ports).
    pub lo_port: u16,
    /// Port of `hi`.
    pub hi_port: u16,
    /// Outer VLAN id (0 when untagged).
    pub vlan: u16,
    /// IP protocol.
    pub protocol: u8,
}

impl FlowKey {
    /// The key of `pkt`'s flow and which side of it `pkt`'s source is.
    /// ICMP and fragments are keyed by address pair and protocol only.
    #[inline]
    pub fn of(pkt: &PacketMeta<'_>) -> (FlowKey, Side) {
        let (sp, dp) = if pkt.has_ports() {
            (pkt.src_port, pkt.dst_port)
        } else {
            (0, 0)
        };
        let vlan = pkt.vlan.unwrap_or(0);
        if (pkt.src, sp) <= (pkt.dst, dp) {
            (
                FlowKey {
                    lo: pkt.src,
                    hi: pkt.dst,
                    lo_port: sp,
                    hi_port: dp,
                    vlan,
                    protocol: pkt.protocol,
                },
                Side::Lo,
            )
        } else {
            (
                FlowKey {
                    lo: pkt.dst,
                    hi: pkt.src,
                    lo_port: dp,
                    hi_port: sp,
                    vlan,
                    protocol: pkt.protocol,
                },
                Side::Hi,
            )
        }
    }

    /// (address, port) of `side`.
    pub fn endpoint(&self, side: Side) -> ([u8; 16], u16) {
        match side {
            Side::Lo => (self.lo, self.lo_port),
            Side::Hi => (self.hi, self.hi_port),
        }
    }
}

/// One connection's state.
#[derive(Debug)]
pub struct Flow {
    /// Unique id (order of creation), for reports and the API.
    pub id: u64,
    /// When the first packet was seen.
    pub first_seen: Instant,
    /// When the latest packet was seen.
    pub last_seen: Instant,
    /// The side that sent the first packet seen (taken as the initiator).
    pub initiator: Side,
    /// The direction of the first packet seen.
    pub first_direction: Direction,
    /// Packets seen, by [`Direction::index`].
    pub packets: [u64; 2],
    /// Bytes (frame lengths) seen, by [`Direction::index`].
    pub bytes: [u64; 2],
    /// A TCP FIN or RST was seen: expire soon.
    pub closed: bool,
    /// CLOCK bit: set by traffic, cleared by the eviction hand.
    referenced: bool,
    /// Classification state and verdict.
    pub class: FlowClass,
}

impl Flow {
    fn new(initiator: Side, dir: Direction, now: Instant) -> Self {
        Flow {
            id: 0,
            first_seen: now,
            last_seen: now,
            initiator,
            first_direction: dir,
            packets: [0; 2],
            bytes: [0; 2],
            closed: false,
            referenced: false,
            class: FlowClass::default(),
        }
    }

    /// Total packets both ways.
    pub fn total_packets(&self) -> u64 {
        self.packets[0] + self.packets[1]
    }

    /// Total bytes both ways.
    pub fn total_bytes(&self) -> u64 {
        self.bytes[0] + self.bytes[1]
    }

    fn idle_timeout(&self, protocol: u8, limits: &Limits) -> u64 {
        if protocol == 6 {
            if self.closed {
                limits.tcp_closed_ns
            } else {
                limits.tcp_idle_ns
            }
        } else {
            limits.udp_idle_ns
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Limits {
    max_flows: usize,
    tcp_idle_ns: u64,
    udp_idle_ns: u64,
    tcp_closed_ns: u64,
}

impl Limits {
    fn from(cfg: &Flows) -> Self {
        let ns = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        Limits {
            max_flows: cfg.max_flows as usize,
            tcp_idle_ns: ns(cfg.tcp_idle_timeout),
            udp_idle_ns: ns(cfg.udp_idle_timeout),
            tcp_closed_ns: ns(cfg.tcp_closed_timeout),
        }
    }
}

/// Counters of the table's life, read by metrics.
#[derive(Debug, Default)]
pub struct FlowTableStats {
    /// Flows created.
    pub created: AtomicU64,
    /// Flows evicted to make room (the table was full).
    pub evicted: AtomicU64,
    /// Flows removed after their idle timeout.
    pub expired: AtomicU64,
}

/// What one [`FlowTable::trim`] did, for tests and logs.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Trimmed {
    /// Flows evicted because the table held more than `max_flows`.
    pub evicted: usize,
    /// Keys of expired flows dropped from the CLOCK queue.
    pub stale_keys_dropped: usize,
}

/// The bidirectional flow table.
///
/// Bounds: at most `max_flows` flows, except that
/// - after a reload lowers `max_flows`, the excess goes gradually: every
///   new flow evicts up to `1 + EXTRA_EVICTIONS_PER_INSERT` and each
///   [`trim`](Self::trim) up to [`TRIM_EVICTIONS`], and the table does
///   not grow meanwhile (but see the next case);
/// - an insert that meets only keys of expired flows within its
///   [`INSERT_POP_LIMIT`] goes in without evicting: one extra flow per
///   `INSERT_POP_LIMIT - CLOCK_SCAN_LIMIT` (192) stale keys, under 1% of
///   `max_flows` since the stale keys are bounded too.
///
/// The CLOCK queue holds at most about `2 × max_flows + 64` keys: past that
/// every insert also checks [`COMPACT_PER_INSERT`] keys and drops the stale
/// ones, which can overshoot by `max_flows / 16` when live keys sit at the
/// hand; `trim` drops stale keys long before that.
pub struct FlowTable {
    map: DashMap<FlowKey, Flow, foldhash::fast::RandomState>,
    /// Keys in insertion order, for the CLOCK hand. May hold keys of flows
    /// already removed; those are skipped and, when it grows, compacted.
    clock: Mutex<VecDeque<FlowKey>>,
    len: AtomicUsize,
    limits: Mutex<Limits>,
    /// Copy of `limits.max_flows` readable without the lock.
    max_flows: AtomicUsize,
    /// Counters.
    pub stats: FlowTableStats,
}

/// Locks `m`, recovering the guard if a thread panicked while holding it.
/// Both locks guard data that is valid between any two statements (a
/// queue of keys, a copy of the limits): a panic elsewhere must not stop
/// the table, and with `insert` giving up, `with_flow` would loop forever.
fn relock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Keys the CLOCK hand may pass over to give active flows a second chance
/// before it evicts regardless; bounds the work a flood can cause per
/// packet.
const CLOCK_SCAN_LIMIT: usize = 64;

/// The most keys one insert pops from the CLOCK queue, stale ones included:
/// a run of keys of expired flows in front of the hand (a mass expiry, then
/// a refill) must not cost one packet a pass over millions of them.
pub const INSERT_POP_LIMIT: usize = 4 * CLOCK_SCAN_LIMIT;

/// Flows one insert may evict beyond the one it makes room for, while the
/// table holds more than `max_flows` (a reload lowered it): the excess
/// shrinks with every new flow yet no packet pays for all of it.
pub const EXTRA_EVICTIONS_PER_INSERT: usize = 3;

/// Flows [`FlowTable::trim`] evicts per clock-lock hold: a data-path
/// thread creating a flow waits at most this many evictions (a fraction of
/// a millisecond).
const TRIM_CHUNK: usize = 256;

/// The most flows one [`FlowTable::trim`] evicts: tens of milliseconds on
/// the control plane's thread, which also feeds the systemd watchdog.
pub const TRIM_EVICTIONS: usize = 64 * 1024;

/// Keys [`FlowTable::trim`] checks for staleness per clock-lock hold.
const COMPACT_CHUNK: usize = 1024;

/// The most keys one [`FlowTable::trim`] checks for staleness.
const COMPACT_VISITS: usize = 256 * 1024;

/// Keys an insert checks for staleness once the CLOCK queue is over
/// `2 × max_flows + 64`, in case `trim` is not called or falls behind.
pub const COMPACT_PER_INSERT: usize = 16;

/// What one movement of the CLOCK hand did.
#[derive(Debug, Default, Clone, Copy)]
struct Sweep {
    popped: usize,
    evicted: usize,
}

impl FlowTable {
    /// An empty table with the limits of `cfg`, allocated for `max_flows`
    /// (up to a million) up front: the data path never waits for a shard
    /// to rehash while it holds that shard's lock.
    pub fn new(cfg: &Flows) -> Self {
        Self::with_capacity(cfg, (cfg.max_flows as usize).min(1 << 20))
    }

    /// An empty table with the limits of `cfg`, allocated for `capacity`
    /// flows and growing past that as needed. For offline use, where a
    /// table allocated for millions of flows would touch a page of memory
    /// per flow inserted (entries land far apart).
    pub fn with_capacity(cfg: &Flows, capacity: usize) -> Self {
        let limits = Limits::from(cfg);
        let shards = 64;
        FlowTable {
            map: DashMap::with_capacity_and_hasher_and_shard_amount(
                capacity,
                foldhash::fast::RandomState::default(),
                shards,
            ),
            clock: Mutex::new(VecDeque::with_capacity(capacity)),
            len: AtomicUsize::new(0),
            max_flows: AtomicUsize::new(limits.max_flows),
            limits: Mutex::new(limits),
            stats: FlowTableStats::default(),
        }
    }

    /// Applies new limits (a reload). A smaller `max_flows` takes effect
    /// gradually: new flows and [`trim`](Self::trim) evict the excess a
    /// bounded amount at a time.
    pub fn set_limits(&self, cfg: &Flows) {
        let limits = Limits::from(cfg);
        self.max_flows.store(limits.max_flows, Ordering::Relaxed);
        *relock(&self.limits) = limits;
    }

    /// Number of flows.
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// True when no flow is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Runs `f` on the flow of `pkt` (travelling `dir`), creating it if
    /// needed, after updating its counters and TCP state. `f` gets the flow,
    /// the side `pkt`'s source is on, and whether the flow is new. The
    /// flow's shard is locked while `f` runs: keep `f` short.
    #[inline]
    pub fn with_flow<R>(
        &self,
        key: &FlowKey,
        side: Side,
        pkt: &PacketMeta<'_>,
        dir: Direction,
        now: Instant,
        f: impl FnOnce(&mut Flow, bool) -> R,
    ) -> R {
        let mut created = false;
        loop {
            if let Some(mut flow) = self.map.get_mut(key) {
                let flow = &mut *flow;
                if pkt.tcp_flags & (TCP_SYN | TCP_ACK) == TCP_SYN && flow.closed {
                    // A new connection reusing the 5-tuple: start afresh.
                    let id = flow.id;
                    *flow = Flow::new(side, dir, now);
                    flow.id = id;
                }
                if !created {
                    flow.referenced = true;
                }
                flow.last_seen = now;
                *dir.pick_mut(&mut flow.packets) += 1;
                *dir.pick_mut(&mut flow.bytes) += pkt.frame_len as u64;
                if pkt.tcp_flags & (TCP_FIN | TCP_RST) != 0 {
                    flow.closed = true;
                }
                return f(flow, created);
            }
            self.insert(*key, Flow::new(side, dir, now));
            created = true;
        }
    }

    /// Inserts a new flow, evicting to stay within `max_flows`.
    fn insert(&self, key: FlowKey, mut flow: Flow) {
        let max = self.max_flows.load(Ordering::Relaxed).max(1);
        let mut clock = relock(&self.clock);
        self.sweep(
            &mut clock,
            max - 1,
            1 + EXTRA_EVICTIONS_PER_INSERT,
            INSERT_POP_LIMIT,
            CLOCK_SCAN_LIMIT,
        );
        if let dashmap::Entry::Vacant(slot) = self.map.entry(key) {
            flow.id = self.stats.created.fetch_add(1, Ordering::Relaxed) + 1;
            slot.insert(flow);
            self.len.fetch_add(1, Ordering::Relaxed);
            clock.push_back(key);
        }
        // Keys of expired flows accumulate in the clock; `trim` drops them,
        // this only holds the bound if it does not.
        if clock.len() > 2 * max + 64 {
            self.compact(&mut clock, COMPACT_PER_INSERT);
        }
    }

    /// Moves the CLOCK hand until the table holds at most `target` flows,
    /// `evictions` flows are evicted or `pops` keys popped. Keys of expired
    /// flows are dropped on the way; a flow with traffic since the hand
    /// last passed keeps its place (bit cleared) while fewer than `chances`
    /// keys have been popped.
    fn sweep(
        &self,
        clock: &mut VecDeque<FlowKey>,
        target: usize,
        evictions: usize,
        pops: usize,
        chances: usize,
    ) -> Sweep {
        let mut done = Sweep::default();
        while self.len() > target && done.evicted < evictions && done.popped < pops {
            let Some(candidate) = clock.pop_front() else {
                break;
            };
            done.popped += 1;
            match self.map.get_mut(&candidate) {
                None => continue, // already expired: its key was stale
                Some(mut f) if f.referenced && done.popped < chances => {
                    f.referenced = false;
                    drop(f);
                    clock.push_back(candidate);
                    continue;
                }
                Some(_) => {}
            }
            if self.map.remove(&candidate).is_some() {
                self.len.fetch_sub(1, Ordering::Relaxed);
                self.stats.evicted.fetch_add(1, Ordering::Relaxed);
                done.evicted += 1;
            }
        }
        done
    }

    /// Checks up to `visits` keys at the hand, dropping those of expired
    /// flows; returns how many it dropped. The others go behind the hand
    /// with their CLOCK bit as it was, so they keep their second chance.
    fn compact(&self, clock: &mut VecDeque<FlowKey>, visits: usize) -> usize {
        let mut dropped = 0;
        for _ in 0..visits.min(clock.len()) {
            let Some(key) = clock.pop_front() else {
                break;
            };
            if self.map.contains_key(&key) {
                clock.push_back(key);
            } else {
                dropped += 1;
            }
        }
        dropped
    }

    /// Evicts flows beyond `max_flows` (left after a reload lowered it) and
    /// drops keys of expired flows from the CLOCK queue, a bounded amount
    /// per call ([`TRIM_EVICTIONS`] flows), releasing the clock lock every
    /// few hundred so new flows are not held up. Call about once a second,
    /// after [`expire`](Self::expire).
    pub fn trim(&self) -> Trimmed {
        self.trim_within(TRIM_EVICTIONS, COMPACT_VISITS)
    }

    /// [`trim`](Self::trim) with explicit budgets: at most `evictions`
    /// flows evicted and `visits` keys checked for staleness.
    fn trim_within(&self, evictions: usize, visits: usize) -> Trimmed {
        let mut done = Trimmed::default();
        // Stale keys and second chances cost pops without evicting: bound
        // those too.
        let mut popped = 0;
        while done.evicted < evictions && popped < 4 * evictions {
            let max = self.max_flows.load(Ordering::Relaxed).max(1);
            let mut clock = relock(&self.clock);
            let chunk = TRIM_CHUNK.min(evictions - done.evicted);
            let sweep = self.sweep(&mut clock, max, chunk, 4 * chunk, 2 * chunk);
            done.evicted += sweep.evicted;
            popped += sweep.popped;
            if sweep.popped == 0 {
                break; // within the limit, or nothing left to evict
            }
        }
        // Stale keys cost memory and make the hand skip them one packet at
        // a time; a few are fine, and checking keys moves the hand, so only
        // compact past an eighth of the table.
        let mut visited = 0;
        while visited < visits {
            let mut clock = relock(&self.clock);
            let max = self.max_flows.load(Ordering::Relaxed).max(1);
            let stale = clock.len().saturating_sub(self.len());
            if stale <= max / 8 + CLOCK_SCAN_LIMIT {
                break;
            }
            let chunk = COMPACT_CHUNK.min(visits - visited);
            done.stale_keys_dropped += self.compact(&mut clock, chunk);
            visited += chunk;
        }
        done
    }

    /// Removes flows idle past their timeout; returns how many. Call about
    /// once a second: it visits every entry (one shard locked at a time).
    pub fn expire(&self, now: Instant) -> usize {
        let limits = *relock(&self.limits);
        let mut removed = 0;
        self.map.retain(|key, flow| {
            let keep = now.nanos_since(flow.last_seen) < flow.idle_timeout(key.protocol, &limits);
            if !keep {
                removed += 1;
            }
            keep
        });
        self.len
            .fetch_sub(removed.min(self.len()), Ordering::Relaxed);
        self.stats
            .expired
            .fetch_add(removed as u64, Ordering::Relaxed);
        removed
    }

    /// Calls `f` on every flow (one shard locked at a time), e.g. for the
    /// API's top flows or a reload that re-classifies.
    pub fn for_each(&self, mut f: impl FnMut(&FlowKey, &Flow)) {
        for entry in self.map.iter() {
            f(entry.key(), entry.value());
        }
    }

    /// Calls `f` on every flow mutably.
    pub fn for_each_mut(&self, mut f: impl FnMut(&FlowKey, &mut Flow)) {
        for mut entry in self.map.iter_mut() {
            let (k, v) = entry.pair_mut();
            f(k, v);
        }
    }

    /// The flow of `key`, if tracked, passed to `f`.
    pub fn get<R>(&self, key: &FlowKey, f: impl FnOnce(&Flow) -> R) -> Option<R> {
        self.map.get(key).map(|flow| f(&flow))
    }
}

#[cfg(test)]
mod tests;
