//! Which urgent (voice) flows of one direction ring the data path's
//! doorbell. Where the receive path has one (the AF_XDP backend: a map of
//! flow keys in its XDP program, see `io::xdp::program`), a frame of a
//! flow in the map wakes the data path as it arrives, even from a sleep
//! that coalesces departures and does not watch the sockets. Such a flow
//! needs no window around its expected frames (`cadence`): its frames
//! are never held by a coalesced sleep, wherever they fall.
//!
//! This module decides which flows are in the map and lists the changes
//! for the data path to make; it does no I/O. A flow takes one of
//! [`FLOWS`] slots by its flow id; a slot is freed when its flow's frames
//! come in another category, and given up to a newcomer once its flow has
//! sent nothing for [`STALE_NS`], so a long-gone call's key is removed and
//! the map never holds more than [`FLOWS`] keys.

use super::cadence::slot_of;
use crate::packet::bell::BellKey;
use crate::time::Instant;

/// Urgent flows followed at once (the map holds twice as many): as many
/// as the cadence follows, in the same slots.
pub const FLOWS: usize = super::cadence::FLOWS;
/// A flow silent this long gives its slot up to another.
pub const STALE_NS: u64 = 1_000_000_000;
/// Map changes waiting for the data path, at most (a turn applies them
/// all; more newcomers in one turn than this wait for their next frame).
const CHANGES: usize = 16;

#[derive(Debug, Clone, Copy)]
struct Slot {
    used: bool,
    /// The map holds its key (or will, once the data path applied the
    /// change); false after the data path could not add it.
    rings: bool,
    flow: u32,
    key: BellKey,
    last: Instant,
}

const EMPTY: Slot = Slot {
    used: false,
    rings: false,
    flow: 0,
    key: [0; crate::packet::bell::BELL_KEY_LEN],
    last: Instant::ZERO,
};

/// The flows that ring the doorbell, and the changes to the map.
#[derive(Debug, Clone)]
pub struct Bells {
    armed: bool,
    slots: [Slot; FLOWS],
    /// Keys to add (true) or remove, in order.
    changes: Vec<(BellKey, bool)>,
    /// Frames of flows that ring, received since start.
    rung: u64,
}

impl Default for Bells {
    fn default() -> Self {
        Self::new()
    }
}

impl Bells {
    /// Unarmed: no doorbell, no flow rings.
    pub fn new() -> Self {
        Bells {
            armed: false,
            slots: [EMPTY; FLOWS],
            changes: Vec::with_capacity(CHANGES),
            rung: 0,
        }
    }

    /// Whether the receive path has a doorbell. A new one (a re-opened
    /// socket) has an empty map: every flow starts over.
    pub fn arm(&mut self, armed: bool) {
        self.armed = armed;
        self.slots = [EMPTY; FLOWS];
        self.changes.clear();
    }

    /// Whether there is a doorbell.
    pub fn armed(&self) -> bool {
        self.armed
    }

    /// A frame of an urgent category arrived at `now`, of the flow
    /// `flow` (the flow table's id of an IP flow), whose doorbell key is
    /// `key` (`packet::bell::bell_key_of`: None where the XDP program
    /// could not build this flow's): whether this flow's frames ring the
    /// doorbell from now on.
    pub fn on_urgent(&mut self, flow: u32, key: Option<&BellKey>, now: Instant) -> bool {
        if !self.armed {
            return false;
        }
        let index = slot_of(flow);
        let Some(slot) = self.slots.get_mut(index) else {
            return false;
        };
        if slot.used && slot.flow == flow {
            slot.last = now;
            // Only a frame with the key rang (not, say, a later fragment).
            if slot.rings && key == Some(&slot.key) {
                self.rung += 1;
            }
            return slot.rings;
        }
        let Some(&key) = key else {
            return false;
        };
        let live = slot.used && now.nanos_since(slot.last) < STALE_NS;
        // Room for the removal and the addition, or the newcomer waits.
        if live || self.changes.len() + 2 > CHANGES {
            return false;
        }
        self.release(index);
        if let Some(slot) = self.slots.get_mut(index) {
            *slot = Slot {
                used: true,
                rings: true,
                flow,
                key,
                last: now,
            };
        }
        self.changes.push((key, true));
        true
    }

    /// A frame of an IP flow of a category that is not urgent arrived,
    /// of the flow `flow`: if that flow rang, it no longer does (a call
    /// whose one flow carries video too moved to video: a wake-up per
    /// video frame would cost what coalescing saves).
    pub fn on_other(&mut self, flow: u32) {
        if !self.armed {
            return;
        }
        let index = slot_of(flow);
        if self
            .slots
            .get(index)
            .is_some_and(|s| s.used && s.flow == flow)
            && self.changes.len() < CHANGES
        {
            self.release(index);
        }
    }

    /// Empties slot `index`. Its key leaves the map unless another slot's
    /// flow rings with the same key (the same addresses and ports under a
    /// new flow id, after the flow table let the first go).
    fn release(&mut self, index: usize) {
        let Some(old) = self
            .slots
            .get_mut(index)
            .map(|s| std::mem::replace(s, EMPTY))
        else {
            return;
        };
        let shared = self
            .slots
            .iter()
            .any(|s| s.used && s.rings && s.key == old.key);
        if old.used && old.rings && !shared {
            self.changes.push((old.key, false));
        }
    }

    /// Hands the map changes to `apply` (key, add or remove; true if it
    /// was made). A flow whose key could not be added no longer counts
    /// as ringing.
    pub fn take_changes(&mut self, mut apply: impl FnMut(&BellKey, bool) -> bool) {
        for (key, on) in self.changes.drain(..) {
            if !apply(&key, on) && on {
                for s in self.slots.iter_mut().filter(|s| s.used && s.key == key) {
                    s.rings = false;
                }
            }
        }
    }

    /// Frames of ringing flows received since start: the data path
    /// compares them with the rings it heard.
    pub fn rung(&self) -> u64 {
        self.rung
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A key whose second byte is `port`.
    fn key(port: u8) -> Option<BellKey> {
        let mut k = [0; crate::packet::bell::BELL_KEY_LEN];
        k[1] = port;
        Some(k)
    }

    fn at(ms: u64) -> Instant {
        Instant::from_nanos(ms * 1_000_000)
    }

    fn changes(b: &mut Bells) -> Vec<(u8, bool)> {
        let mut out = Vec::new();
        b.take_changes(|k, on| {
            out.push((k[1], on));
            true
        });
        out
    }

    #[test]
    fn without_a_doorbell_nothing_rings_and_nothing_changes() {
        let mut b = Bells::new();
        assert!(!b.on_urgent(1, key(1).as_ref(), at(0)));
        assert!(changes(&mut b).is_empty());
        assert_eq!(b.rung(), 0);
    }

    #[test]
    fn a_flow_is_added_once_and_counted_while_it_rings() {
        let mut b = Bells::new();
        b.arm(true);
        assert!(b.on_urgent(7, key(1).as_ref(), at(0)));
        assert!(b.on_urgent(7, key(1).as_ref(), at(20)));
        assert!(b.on_urgent(7, key(1).as_ref(), at(40)));
        assert_eq!(changes(&mut b), vec![(1, true)]);
        // The first frame came before its key was in the map.
        assert_eq!(b.rung(), 2);
        // A frame the program cannot read has no key: it does not ring.
        assert!(!b.on_urgent(9, None, at(40)));
        assert!(changes(&mut b).is_empty());
    }

    #[test]
    fn a_live_flow_keeps_its_slot_and_a_stale_one_is_replaced_and_removed() {
        let mut b = Bells::new();
        b.arm(true);
        // Find two flow ids that share a slot.
        let other = (2..10_000).find(|&f| slot_of(f) == slot_of(1)).unwrap();
        assert!(b.on_urgent(1, key(1).as_ref(), at(0)));
        assert!(!b.on_urgent(other, key(2).as_ref(), at(500)));
        assert_eq!(changes(&mut b), vec![(1, true)]);
        // A second on, the first call has gone quiet: its key goes.
        assert!(b.on_urgent(other, key(2).as_ref(), at(1_500)));
        assert_eq!(changes(&mut b), vec![(1, false), (2, true)]);
    }

    #[test]
    fn a_call_moved_to_video_stops_ringing() {
        let mut b = Bells::new();
        b.arm(true);
        assert!(b.on_urgent(4, key(1).as_ref(), at(0)));
        // Other flows' frames change nothing.
        b.on_other(5);
        assert_eq!(changes(&mut b), vec![(1, true)]);
        b.on_other(4);
        assert_eq!(changes(&mut b), vec![(1, false)]);
        // Back to voice: added again.
        assert!(b.on_urgent(4, key(1).as_ref(), at(40)));
        assert_eq!(changes(&mut b), vec![(1, true)]);
    }

    #[test]
    fn a_key_another_ringing_flow_shares_stays_in_the_map() {
        let mut b = Bells::new();
        b.arm(true);
        // The same addresses and ports under two flow ids (the flow table
        // let the first go and made it anew), in two slots.
        let second = (2..10_000).find(|&f| slot_of(f) != slot_of(1)).unwrap();
        assert!(b.on_urgent(1, key(1).as_ref(), at(0)));
        assert!(b.on_urgent(second, key(1).as_ref(), at(0)));
        assert_eq!(changes(&mut b), vec![(1, true), (1, true)]);
        b.on_other(1);
        assert!(changes(&mut b).is_empty(), "the other flow still rings");
        b.on_other(second);
        assert_eq!(changes(&mut b), vec![(1, false)]);
        // A frame without the key (a later fragment) did not ring.
        assert!(b.on_urgent(9, key(3).as_ref(), at(0)));
        assert!(b.on_urgent(9, None, at(20)));
        assert_eq!(b.rung(), 0);
    }

    #[test]
    fn a_key_the_map_refused_does_not_ring() {
        let mut b = Bells::new();
        b.arm(true);
        assert!(b.on_urgent(3, key(1).as_ref(), at(0)));
        b.take_changes(|_, _| false);
        assert!(!b.on_urgent(3, key(1).as_ref(), at(20)));
        assert_eq!(b.rung(), 0);
        // Re-armed (a new socket, an empty map): it is added again.
        b.arm(true);
        assert!(b.on_urgent(3, key(1).as_ref(), at(40)));
        assert_eq!(changes(&mut b), vec![(1, true)]);
    }
}
