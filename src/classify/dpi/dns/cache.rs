//! [`DnsCache`]: the map from address to the host name a DNS answer gave
//! it, shared by the data-path threads.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use super::wire::DnsResponse;
use crate::time::Instant;

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

pub(super) const SHARDS: usize = 16;

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
/// It is on the data path: while a data-path thread classifies a DNS answer
/// it forwards (from port 53, over UDP or TCP, whatever its flow's state),
/// every address the answer gives is inserted, under a shard's write lock;
/// and a flow whose verdict is derived afresh (its first packet, its first
/// after a reload) looks up its addresses. No other packet touches it.
/// Both directions' threads do this at once, so it is split into 16
/// shards behind `RwLock`s (lookups take a read lock): inserting an
/// address holds up only the lookups that fall in its shard.
/// Each shard holds at most `capacity / 16` (rounded up) entries; when a
/// shard is full an insert evicts with the CLOCK (second-chance) policy in
/// insertion order: expired entries go first, entries looked up since they
/// were last considered get one more round, so a flood of answers for
/// unused names cannot push out mappings that are in use. Memory stays
/// bounded by capacity x (entry + name) whatever arrives.
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
