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

use std::sync::Arc;

use super::entry::Flow;
use super::key::FlowKey;

/// Ways per set: a flow that collides with one other busy flow still hits.
const WAYS: usize = 2;

/// Sets of a [`FlowCache::new`] cache: 4 096 flows in about 230 KiB, which
/// keeps a thousand active flows hitting at more than 95 %.
pub const DEFAULT_SETS: usize = 2048;

struct Slot<V> {
    hash: u64,
    key: FlowKey,
    flow: Arc<Flow<V>>,
}

/// A thread-local, two-way set-associative cache of flow entries. Holds a
/// reference to at most `2 × sets` entries, which keeps them allocated
/// (their values are reset, so without their inspection memory) until
/// replaced here.
pub struct FlowCache<V> {
    sets: Box<[[Option<Slot<V>>; WAYS]]>,
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
            sets: (0..n).map(|_| [None, None]).collect(),
            mask: n - 1,
        }
    }

    /// The live entry of `key` (whose hash is `hash`), or the one `miss`
    /// returns, which then takes the set's most recent place.
    #[inline]
    pub(super) fn get_or(
        &mut self,
        hash: u64,
        key: &FlowKey,
        miss: impl FnOnce() -> Arc<Flow<V>>,
    ) -> (&Flow<V>, bool) {
        let index = (hash as usize) & self.mask;
        // The mask keeps the index below the length (a power of two).
        #[allow(clippy::indexing_slicing)]
        let set = &mut self.sets[index];
        let hit = |s: &Option<Slot<V>>| {
            s.as_ref()
                .is_some_and(|s| s.hash == hash && s.key == *key && s.flow.is_alive())
        };
        let found = if hit(&set[0]) {
            true
        } else if hit(&set[1]) {
            set.swap(0, 1);
            true
        } else {
            set.swap(0, 1);
            set[0] = Some(Slot {
                hash,
                key: *key,
                flow: miss(),
            });
            false
        };
        match &set[0] {
            Some(s) => (&s.flow, found),
            None => unreachable_slot(),
        }
    }
    /// Forgets every entry (tests, or a thread that stops).
    pub fn clear(&mut self) {
        for set in self.sets.iter_mut() {
            *set = [None, None];
        }
    }
}

/// The slot just checked or filled is occupied: this is never reached.
#[cold]
fn unreachable_slot<'a, V>() -> (&'a Flow<V>, bool) {
    unreachable!("a flow cache slot emptied between its fill and its read")
}
