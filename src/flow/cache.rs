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
//! Eight ways per set, their hash tags in one cache line: both threads
//! see the same flows, so a flow that keeps missing here misses in both
//! and costs both a shard lock and its entry's reference count, the lines
//! this cache exists to keep still. With two ways, a thousand flows over
//! 2 048 sets left 8 % of packets missing (the flows of sets holding three
//! or more, evicting each other in turn); with eight, well under 1 %.

use std::sync::Arc;

use super::entry::Flow;
use super::key::FlowKey;

/// Ways per set.
const WAYS: usize = 8;

/// Sets of a [`FlowCache::new`] cache: 4 096 flows in about 260 KiB.
pub const DEFAULT_SETS: usize = 512;

struct Slot<V> {
    key: FlowKey,
    flow: Arc<Flow<V>>,
}

/// One set: the ways' hash tags together (one line to scan), the ways,
/// and the way the next miss replaces (first in, first out).
struct Set<V> {
    tags: [u64; WAYS],
    slots: [Option<Slot<V>>; WAYS],
    next: usize,
}

impl<V> Set<V> {
    fn empty() -> Self {
        Set {
            tags: [0; WAYS],
            slots: Default::default(),
            next: 0,
        }
    }
}

/// A thread-local, set-associative cache of flow entries. Holds a
/// reference to at most `8 × sets` entries, which keeps them allocated
/// (their values are reset, so without their inspection memory) until
/// replaced here.
pub struct FlowCache<V> {
    sets: Box<[Set<V>]>,
    mask: usize,
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
        }
    }

    /// The live entry of `key` (whose hash is `hash`), or the one `miss`
    /// returns, which then replaces the set's oldest. Also says whether it
    /// was a hit.
    #[inline]
    pub(super) fn get_or(
        &mut self,
        hash: u64,
        key: &FlowKey,
        miss: impl FnOnce() -> Arc<Flow<V>>,
    ) -> (&Flow<V>, bool) {
        // The mask keeps the index below the length (a power of two).
        #[allow(clippy::indexing_slicing)]
        let set = &mut self.sets[(hash as usize) & self.mask];
        let found = set.tags.iter().zip(&set.slots).position(|(tag, slot)| {
            *tag == hash
                && slot
                    .as_ref()
                    .is_some_and(|s| s.key == *key && s.flow.is_alive())
        });
        let way = match found {
            Some(way) => way,
            None => {
                let way = set.next % WAYS;
                set.next = way + 1;
                // A dead entry of the same key is replaced where it is, so
                // that one key never holds two ways.
                let way = set
                    .tags
                    .iter()
                    .zip(&set.slots)
                    .position(|(tag, slot)| {
                        *tag == hash && slot.as_ref().is_some_and(|s| s.key == *key)
                    })
                    .unwrap_or(way);
                if let (Some(tag), Some(slot)) = (set.tags.get_mut(way), set.slots.get_mut(way)) {
                    *tag = hash;
                    *slot = Some(Slot {
                        key: *key,
                        flow: miss(),
                    });
                }
                way
            }
        };
        match set.slots.get(way) {
            Some(Some(s)) => (&s.flow, found.is_some()),
            _ => unreachable_slot(),
        }
    }

    /// Forgets every entry (tests, or a thread that stops).
    pub fn clear(&mut self) {
        for set in self.sets.iter_mut() {
            *set = Set::empty();
        }
    }
}

/// The way just checked or filled is occupied: this is never reached.
#[cold]
fn unreachable_slot<'a, V>() -> (&'a Flow<V>, bool) {
    unreachable!("a flow cache slot emptied between its fill and its read")
}
