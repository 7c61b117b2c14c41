//! The shared table: a sharded map from key to entry, and CLOCK queues
//! that both bound it and walk it for expiry.

use std::collections::VecDeque;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};
use std::time::Duration;

use dashmap::DashMap;

use super::cache::FlowCache;
use super::entry::{Flow, FlowValue};
use super::key::{FlowKey, Side};
use super::roles::initiator_of;
use crate::config::{Direction, Flows};
use crate::packet::PacketMeta;
use crate::time::Instant;

#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    pub(super) max_flows: usize,
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
}

/// Locks `m`, recovering the guard if a thread panicked while holding it.
/// Both kinds of lock guard data that is valid between any two statements
/// (a queue of entries, a copy of the limits): a panic elsewhere must not
/// stop the table.
pub(super) fn relock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Keys the CLOCK hand may pass over to give active flows a second chance
/// before it evicts regardless; bounds the work a flood can cause per
/// packet.
pub(super) const CLOCK_SCAN_LIMIT: usize = 64;

/// The most entries one insert pops from its CLOCK queue.
pub const INSERT_POP_LIMIT: usize = 4 * CLOCK_SCAN_LIMIT;

/// Flows one insert may evict beyond the one it makes room for, while the
/// table holds more than `max_flows` (a reload lowered it): the excess
/// shrinks with every new flow yet no packet pays for all of it.
pub const EXTRA_EVICTIONS_PER_INSERT: usize = 3;

/// Entries [`FlowTable::trim`] and [`FlowTable::expire`] handle per hold of
/// a queue's lock: a data-path thread creating a flow in that queue waits
/// at most this much work (a fraction of a millisecond).
const CHUNK: usize = 256;

/// The most flows one [`FlowTable::trim`] evicts: tens of milliseconds on
/// the control plane's thread, which also feeds the systemd watchdog.
pub const TRIM_EVICTIONS: usize = 64 * 1024;

/// The most entries one [`FlowTable::expire`] checks. A table up to this
/// size is checked whole on every call; a larger one a part per call, in
/// turn (16 M flows: once a minute at one call a second), so the call
/// stays within tens of milliseconds whatever the table's size.
pub const EXPIRE_VISITS: usize = 256 * 1024;

/// Tables of at least this many flows get more than one CLOCK queue.
const FLOWS_PER_QUEUE: usize = 4096;

/// The most CLOCK queues (and locks) a table has.
const MAX_QUEUES: usize = 16;

/// What one movement of a CLOCK hand did.
#[derive(Debug, Default, Clone, Copy)]
struct Sweep {
    popped: usize,
    evicted: usize,
}

/// A CLOCK queue: each flow with a copy of its key, so that the hand can
/// look the flow up in the map while it reads the flow's CLOCK bit (two
/// cache misses at once, not one after the other).
type Queue<V> = VecDeque<(FlowKey, Arc<Flow<V>>)>;

/// The bidirectional flow table, generic over what it keeps per flow.
///
/// Lookups go through a thread's [`FlowCache`] first, then the map (a read
/// lock on one shard). New flows take the lock of one of up to
/// [`MAX_QUEUES`] CLOCK queues (chosen by the key's hash): two threads
/// creating flows rarely wait for each other.
///
/// Every entry in the map is in exactly one CLOCK queue, and leaves the map
/// only through it: eviction pops it at the hand, expiry walks the queues a
/// bounded number of entries per call ([`EXPIRE_VISITS`]).
///
/// Bounds: at most `max_flows` flows, except that after a reload lowers
/// `max_flows` the excess goes gradually: every new flow evicts up to
/// `1 + EXTRA_EVICTIONS_PER_INSERT` and each [`trim`](Self::trim) up to
/// [`TRIM_EVICTIONS`]; and an insert whose own queue has only flows with
/// a second chance left within [`INSERT_POP_LIMIT`] goes in regardless
/// (a handful, evicted by the next inserts or trim).
pub struct FlowTable<V> {
    map: DashMap<FlowKey, Arc<Flow<V>>, foldhash::fast::RandomState>,
    queues: Box<[Mutex<Queue<V>>]>,
    len: AtomicUsize,
    pub(super) limits: Mutex<Limits>,
    /// Copy of `limits.max_flows` readable without the lock.
    max_flows: AtomicUsize,
    /// Counters.
    pub stats: FlowTableStats,
}

impl<V: FlowValue> FlowTable<V> {
    /// An empty table with the limits of `cfg`, allocated for `max_flows`
    /// (up to a million) up front: the data path never waits for a shard
    /// to rehash while a thread creating a flow holds its write lock.
    pub fn new(cfg: &Flows) -> Self {
        Self::with_capacity(cfg, (cfg.max_flows as usize).min(1 << 20))
    }

    /// An empty table with the limits of `cfg`, allocated for `capacity`
    /// flows and growing past that as needed (offline use).
    pub fn with_capacity(cfg: &Flows, capacity: usize) -> Self {
        let limits = Limits::from(cfg);
        let queues = (limits.max_flows / FLOWS_PER_QUEUE).clamp(1, MAX_QUEUES);
        FlowTable {
            map: DashMap::with_capacity_and_hasher_and_shard_amount(
                capacity,
                foldhash::fast::RandomState::default(),
                64,
            ),
            queues: (0..queues)
                .map(|_| Mutex::new(VecDeque::with_capacity(capacity / queues)))
                .collect(),
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

    /// The flow of `pkt` (travelling `dir`; `key` and `side` from
    /// [`FlowKey::of`]), created if needed, after counting `pkt` and
    /// following its TCP state. `cache` is the calling thread's; the flow
    /// is borrowed from it. Also says whether the flow is new.
    #[inline]
    pub fn track<'c>(
        &self,
        cache: &'c mut FlowCache<V>,
        key: &FlowKey,
        side: Side,
        pkt: &PacketMeta<'_>,
        dir: Direction,
        now: Instant,
    ) -> (&'c Flow<V>, bool) {
        let hash = self.map.hasher().hash_one(key);
        let mut created = false;
        let (flow, _) = cache.get_or(hash, key, || match self.map.get(key) {
            Some(flow) => (Arc::clone(&flow), false),
            None => {
                // The initiator's side and the direction it sends.
                let initiator = initiator_of(pkt, side);
                let dir = if initiator == side { dir } else { dir.other() };
                let (flow, new) = self.insert(key, hash, initiator, dir, now);
                created = new;
                (flow, new)
            }
        });
        flow.record(side, pkt, dir, now, !created);
        (flow, created)
    }

    /// Inserts a new flow, evicting to stay within `max_flows`; returns
    /// the flow of `key` and whether it is the one inserted (the other
    /// direction's thread may have been first).
    #[cold]
    fn insert(
        &self,
        key: &FlowKey,
        hash: u64,
        side: Side,
        dir: Direction,
        now: Instant,
    ) -> (Arc<Flow<V>>, bool) {
        let max = self.max_flows.load(Ordering::Relaxed).max(1);
        let q = self.queue_of(hash);
        let Some(queue) = self.queues.get(q) else {
            // Unreachable (the index is taken modulo the count). A flow of
            // this packet only, never cached: the next one looks again.
            return (Arc::new(Flow::new(*key, 0, side, dir, now)), true);
        };
        let mut clock = relock(queue);
        self.sweep(
            &mut clock,
            max - 1,
            1 + EXTRA_EVICTIONS_PER_INSERT,
            INSERT_POP_LIMIT,
            CLOCK_SCAN_LIMIT,
        );
        if self.len() > max - 1 && clock.is_empty() {
            // This queue ran dry: the flows to evict are in others. Only
            // those free right now, so that no two locks are ever waited
            // for in turn (no lock order to get wrong).
            // All of them together pop no more than INSERT_POP_LIMIT.
            let mut pops = INSERT_POP_LIMIT;
            for mut other in self.queues.iter().filter_map(|m| match m.try_lock() {
                Ok(guard) => Some(guard),
                Err(TryLockError::Poisoned(p)) => Some(p.into_inner()),
                Err(TryLockError::WouldBlock) => None,
            }) {
                let done = self.sweep(&mut other, max - 1, 1, pops, CLOCK_SCAN_LIMIT.min(pops));
                pops -= done.popped.min(pops);
                if self.len() < max || pops == 0 {
                    break;
                }
            }
        }
        match self.map.entry(*key) {
            dashmap::Entry::Occupied(e) => (Arc::clone(e.get()), false),
            dashmap::Entry::Vacant(slot) => {
                let id = self.stats.created.fetch_add(1, Ordering::Relaxed) + 1;
                let flow = Arc::new(Flow::new(*key, id, side, dir, now));
                slot.insert(Arc::clone(&flow));
                self.len.fetch_add(1, Ordering::Relaxed);
                clock.push_back((*key, Arc::clone(&flow)));
                // The next insert into this queue pops its front: fetch
                // that flow's CLOCK bit and (to reset it) value now,
                // while this packet is classified.
                if let Some((_, next)) = clock.front() {
                    prefetch(next.referenced_ptr());
                    prefetch(&next.value);
                }
                (flow, true)
            }
        }
    }

    /// The CLOCK queue of a key whose hash is `hash`.
    fn queue_of(&self, hash: u64) -> usize {
        // The high bits: the caches index by the low ones.
        ((hash >> 40) as usize) % self.queues.len().max(1)
    }

    /// Moves a CLOCK hand until the table holds at most `target` flows,
    /// `evictions` flows are evicted or `pops` entries popped. A flow with
    /// traffic since the hand last passed keeps its place (bit cleared)
    /// while fewer than `chances` entries have been popped.
    fn sweep(
        &self,
        clock: &mut Queue<V>,
        target: usize,
        evictions: usize,
        pops: usize,
        chances: usize,
    ) -> Sweep {
        let mut done = Sweep::default();
        while self.len() > target && done.evicted < evictions && done.popped < pops {
            let Some((key, flow)) = clock.pop_front() else {
                break;
            };
            done.popped += 1;
            if flow.referenced.load(Ordering::Relaxed) && done.popped < chances {
                flow.referenced.store(false, Ordering::Relaxed);
                clock.push_back((key, flow));
                continue;
            }
            self.remove(&key, &flow);
            self.stats.evicted.fetch_add(1, Ordering::Relaxed);
            done.evicted += 1;
        }
        done
    }

    /// Takes a flow popped from its queue out of the map.
    fn remove(&self, key: &FlowKey, flow: &Arc<Flow<V>>) {
        if self
            .map
            .remove_if(key, |_, f| Arc::ptr_eq(f, flow))
            .is_some()
        {
            self.len.fetch_sub(1, Ordering::Relaxed);
        }
        flow.retire();
    }

    /// Evicts flows beyond `max_flows` (left after a reload lowered it), a
    /// bounded amount per call ([`TRIM_EVICTIONS`] flows), releasing each
    /// queue's lock every few hundred so new flows are not held up. Call
    /// about once a second, after [`expire`](Self::expire).
    pub fn trim(&self) -> Trimmed {
        self.trim_within(TRIM_EVICTIONS)
    }

    /// [`trim`](Self::trim) with an explicit budget of evictions.
    pub(super) fn trim_within(&self, evictions: usize) -> Trimmed {
        let mut done = Trimmed::default();
        loop {
            let mut progress = false;
            for queue in self.queues.iter() {
                let max = self.max_flows.load(Ordering::Relaxed).max(1);
                if done.evicted >= evictions || self.len() <= max {
                    return done;
                }
                let chunk = CHUNK.min(evictions - done.evicted);
                let sweep = self.sweep(&mut relock(queue), max, chunk, 4 * chunk, 2 * chunk);
                done.evicted += sweep.evicted;
                progress |= sweep.popped > 0;
            }
            if !progress {
                return done; // nothing left to evict
            }
        }
    }

    /// Removes flows idle past their timeout; returns how many. Checks at
    /// most [`EXPIRE_VISITS`] entries, the queues' oldest first, so a
    /// large table is covered over several calls. Call about once a second.
    pub fn expire(&self, now: Instant) -> usize {
        self.expire_within(now, EXPIRE_VISITS / self.queues.len().max(1))
    }

    /// [`expire`](Self::expire) checking at most `per_queue` entries of
    /// each queue.
    pub(super) fn expire_within(&self, now: Instant, per_queue: usize) -> usize {
        let limits = *relock(&self.limits);
        let mut removed = 0;
        for queue in self.queues.iter() {
            // Entries pushed back (or inserted) meanwhile are not checked
            // twice: the visits are bounded by the length at the start.
            let mut left = relock(queue).len().min(per_queue);
            while left > 0 {
                let mut clock = relock(queue);
                for _ in 0..CHUNK.min(left) {
                    let Some((key, flow)) = clock.pop_front() else {
                        break;
                    };
                    if flow.idle_at(
                        now,
                        limits.tcp_idle_ns,
                        limits.udp_idle_ns,
                        limits.tcp_closed_ns,
                    ) {
                        self.remove(&key, &flow);
                        removed += 1;
                    } else {
                        clock.push_back((key, flow));
                    }
                }
                left = left.saturating_sub(CHUNK);
            }
        }
        self.stats
            .expired
            .fetch_add(removed as u64, Ordering::Relaxed);
        removed
    }

    /// Calls `f` on every flow (one shard read-locked at a time), e.g. for
    /// the API's top flows.
    pub fn for_each(&self, mut f: impl FnMut(&FlowKey, &Flow<V>)) {
        for entry in self.map.iter() {
            f(entry.key(), entry.value());
        }
    }

    /// The flow of `key`, if tracked, passed to `f`.
    pub fn get<R>(&self, key: &FlowKey, f: impl FnOnce(&Flow<V>) -> R) -> Option<R> {
        self.map.get(key).map(|flow| f(&flow))
    }

    /// Entries queued for the CLOCK hands (tests: always `len()`).
    #[cfg(test)]
    pub(super) fn queued(&self) -> usize {
        self.queues.iter().map(|q| relock(q).len()).sum()
    }

    /// The CLOCK queues' locks (tests poison them).
    #[cfg(test)]
    pub(super) fn queue_locks(&self) -> &[Mutex<Queue<V>>] {
        &self.queues
    }
}

/// Asks the CPU to bring the line at `p` into its caches, without waiting
/// for it: the CLOCK hand reads flows that have been idle for a while
/// (cold), one new flow after another.
#[inline]
fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint: it never faults, whatever the address,
    // and changes no memory. SSE is part of the x86_64 baseline.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(p.cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}
