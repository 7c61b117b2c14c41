//! A data-path thread's own index of the flows it saw lately, in front of
//! the shared table.
//!
//! The shared map's shards are locks: even a read lock is a write to the
//! lock word, and with both directions' threads looking up the same busy
//! flows that word (and the packet's entry) would move between the two
//! cores on every packet. A hit here touches only this thread's memory
//! and the entry's rarely written fields, so a settled flow's packet
//! takes no lock at all. An entry evicted or expired from the table is
//! marked dead ([`Flow::is_alive`]) and looked up again on its next packet.
//!
//! Four ways per set, each set one cache line (the ways' hash tags and
//! their entries): both threads see the same flows, so a flow that keeps
//! missing here misses in both and costs both a shard lock and its entry's
//! reference count, the lines this cache exists to keep still. (Two ways
//! of key-and-entry slots left 8 % of a thousand flows missing: the flows
//! of sets holding three or more evicted each other in turn.) A tag match
//! is confirmed against the entry's own key, which sits with the fields a
//! packet reads anyway.

use std::sync::Arc;

use super::entry::Flow;
use super::key::FlowKey;

/// Ways per set.
const WAYS: usize = 4;

/// Sets of a [`FlowCache::new`] cache: 4 096 flows in 64 KiB.
pub const DEFAULT_SETS: usize = 1024;

/// One set, one cache line: the ways' hash tags, then their entries.
#[repr(C, align(64))]
struct Set<V> {
    tags: [u64; WAYS],
    flows: [Option<Arc<Flow<V>>>; WAYS],
}

impl<V> Set<V> {
    fn empty() -> Self {
        Set {
            tags: [0; WAYS],
            flows: Default::default(),
        }
    }
}

/// A thread-local, set-associative cache of flow entries. Holds a
/// reference to at most `4 × sets` entries, which keeps them allocated
/// (their values are reset, so without their inspection memory) until
/// replaced here.
pub struct FlowCache<V> {
    sets: Box<[Set<V>]>,
    mask: usize,
    /// The way the next miss replaces, turning over for the whole cache
    /// (a set has no room for its own).
    next: usize,
    /// The flow of the latest miss that was not cached: a flow is cached
    /// from its second packet on, so a flood of one-packet flows (a scan,
    /// spoofed SYNs) neither evicts the active flows from here nor costs
    /// every new flow a cached flow's reference count.
    scratch: Option<Arc<Flow<V>>>,
}

impl<V> Default for FlowCache<V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<V> FlowCache<V> {
    /// A cache of [`DEFAULT_SETS`] sets.
    pub fn new() -> Self {
        Self::with_sets(DEFAULT_SETS)
    }

    /// A cache of `sets` sets (rounded up to a power of two).
    pub fn with_sets(sets: usize) -> Self {
        let n = sets.max(1).next_power_of_two();
        FlowCache {
            sets: (0..n).map(|_| Set::empty()).collect(),
            mask: n - 1,
            next: 0,
            scratch: None,
        }
    }

    /// The live entry of `key` (whose hash is `hash`), or the one `miss`
    /// returns with whether it was just created; an entry that was not
    /// just created then replaces the set's oldest. Also says whether it
    /// was a hit.
    #[inline]
    pub(super) fn get_or(
        &mut self,
        hash: u64,
        key: &FlowKey,
        miss: impl FnOnce() -> (Arc<Flow<V>>, bool),
    ) -> (&Flow<V>, bool) {
        // The mask keeps the index below the length (a power of two).
        #[allow(clippy::indexing_slicing)]
        let set = &mut self.sets[(hash as usize) & self.mask];
        let found = set.tags.iter().zip(&set.flows).position(|(tag, flow)| {
            *tag == hash
                && flow
                    .as_ref()
                    .is_some_and(|f| f.key() == key && f.is_alive())
        });
        let way = match found {
            Some(way) => way,
            None => {
                let (flow, created) = miss();
                if created {
                    return (&**self.scratch.insert(flow), false);
                }
                self.next = self.next.wrapping_add(1);
                // A dead entry of the same key is replaced where it is, so
                // that one key never holds two ways.
                let way = set
                    .tags
                    .iter()
                    .zip(&set.flows)
                    .position(|(tag, f)| *tag == hash && f.as_ref().is_some_and(|f| f.key() == key))
                    .unwrap_or(self.next % WAYS);
                if let (Some(tag), Some(slot)) = (set.tags.get_mut(way), set.flows.get_mut(way)) {
                    *tag = hash;
                    *slot = Some(flow);
                }
                way
            }
        };
        match set.flows.get(way) {
            Some(Some(f)) => (f, found.is_some()),
            _ => unreachable_slot(),
        }
    }

    /// Keys of the live entries cached (tests).
    #[cfg(test)]
    pub(super) fn cached_keys(&self) -> Vec<FlowKey> {
        self.sets
            .iter()
            .flat_map(|s| s.flows.iter().flatten())
            .filter(|f| f.is_alive())
            .map(|f| *f.key())
            .collect()
    }
}

/// The way just checked or filled is occupied: this is never reached.
#[cold]
fn unreachable_slot<'a, V>() -> (&'a Flow<V>, bool) {
    unreachable!("a flow cache slot emptied between its fill and its read")
}
