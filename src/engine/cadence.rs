//! When the next voice frames will arrive.
//!
//! A call sends one frame every 10-60 ms per direction, each on time to
//! within a millisecond or two. The data path may coalesce departures (wake
//! once per half millisecond and send several frames, instead of once per
//! frame) only while no voice frame can arrive, since one arriving during a
//! coalesced sleep waits for its end. Rather than give up coalescing for as
//! long as a call lasts, [`Cadence`] learns each urgent flow's period from
//! its arrivals and marks when its next frames are due: the data path then
//! runs precisely around those moments, from a margin before a frame is due
//! until it came, and coalesces in between.
//!
//! A voice frame already queued is the data path's to see (the engine
//! checks the urgent categories' backlog): this only looks ahead.
//!
//! Urgent traffic that keeps no period (a flood marked as voice, a game's
//! bursts) arrives outside the marks; after a few such surprises the
//! direction is treated as unpredictable and is never calm until they
//! stop, which is the data path's behaviour without this.
//!
//! Sans-IO: time is an argument. The work per urgent frame and per
//! question is bounded by the ring and the flows followed (a few hundred
//! bit operations), and a clock that steps back is read as standing still.

use crate::time::Instant;

/// Length of one slot of the expectation ring.
const SLOT_NS: u64 = 1_000_000;
/// Slots in the ring: expectations reach at most this far ahead.
const SLOTS: u64 = 128;
/// Shortest period learned: closer arrivals are a burst, not a cadence.
const MIN_PERIOD_NS: u64 = 5_000_000;
/// Longest period learned: a 60 ms frame time, the longest in use. Two
/// periods and the widest margin fit in the ring, so the frame after a
/// lost one is expected too.
const MAX_PERIOD_NS: u64 = 60_000_000;
/// How early or late a frame may come and still be expected, at least: a
/// LAN phone's jitter is well under it. A flow whose gaps vary more gets
/// a wider margin, twice their mean deviation more (as TCP's RTO adds
/// four deviations to the mean), up to `MAX_MARGIN_NS`.
const MIN_MARGIN_NS: u64 = 1_000_000;
/// The widest margin: beyond it a frame is a surprise (and waits at most a
/// coalesced sleep); many surprises make the direction precise.
const MAX_MARGIN_NS: u64 = 4_000_000;
/// Flows followed at once (direct-mapped by a mix of the flow's id): a
/// branch office's calls, with room for collisions.
pub(crate) const FLOWS: usize = 32;
/// `FLOWS` is 2 to this power.
const FLOW_BITS: u32 = 5;
/// Period over which unexpected urgent arrivals are counted.
const SURPRISE_WINDOW_NS: u64 = 100_000_000;
/// Unexpected arrivals tolerated over the last two windows whatever the
/// expected ones: each new call's first two frames are unexpected.
const SURPRISES_TOLERATED: u32 = 4;
/// Beyond that, unexpected arrivals are tolerated while they are at most
/// this share of all (a stream whose jitter now and then exceeds
/// the margin); a stream without a period is not tolerated.
const SURPRISE_SHARE_DENOMINATOR: u32 = 5;

/// How early or late a frame of a flow whose gaps deviate by `deviation_ns`
/// on average is still expected.
fn margin(deviation_ns: u64) -> u64 {
    MIN_MARGIN_NS
        .saturating_add(deviation_ns.saturating_mul(2))
        .min(MAX_MARGIN_NS)
}

/// One urgent flow: when it last sent and its learned period.
#[derive(Debug, Clone, Copy, Default)]
struct FlowCadence {
    tag: u32,
    used: bool,
    last: Instant,
    /// 0 until two arrivals within the learned range.
    period_ns: u64,
    /// Mean deviation of the gaps from the period.
    deviation_ns: u64,
    /// Gaps in a row that did not fit the period: a new period after a few.
    misfits: u8,
    /// Bit `s % SLOTS` set: a frame of this flow is expected in slot `s`
    /// (absolute time / `SLOT_NS`), for slots from `Cadence::cleared` on.
    /// Each flow has its own, so that one call's frame closes its own
    /// window and never another's.
    marks: u128,
}

/// Expected arrivals of the urgent (voice) categories of one direction.
#[derive(Debug, Clone)]
pub struct Cadence {
    flows: [FlowCadence; FLOWS],
    /// Every slot before this one has been cleared in every flow's marks.
    cleared: u64,
    /// The surprise window in progress (absolute index); its unexpected
    /// and expected arrivals, and the previous window's.
    window: u64,
    surprises: [u32; 2],
    expected: [u32; 2],
    /// The latest time seen: an earlier one is read as this.
    latest: Instant,
}

impl FlowCadence {
    /// Marks when this flow's next frame is due, and the one after in case
    /// the next is lost; nothing for a flow without a period. `cleared`:
    /// the first slot the ring holds.
    fn expect(&mut self, cleared: u64) {
        if !self.used || self.period_ns == 0 {
            return;
        }
        let margin = margin(self.deviation_ns);
        for k in 1..=2u64 {
            let due = self
                .last
                .as_nanos()
                .saturating_add(k.saturating_mul(self.period_ns));
            self.marks |= slots(
                cleared,
                due.saturating_sub(margin) / SLOT_NS,
                due.saturating_add(margin) / SLOT_NS,
            );
        }
    }
}

/// The slot of the flow with id `flow_hash`. Flow ids are handed out in
/// order: mix them, or flows opened together would share a slot.
pub(crate) fn slot_of(flow_hash: u32) -> usize {
    (flow_hash.wrapping_mul(0x9E37_79B1) >> (32 - FLOW_BITS)) as usize
}

/// The bits of the slots `first` to `last` (absolute), as far as a ring
/// whose first slot is `cleared` reaches.
fn slots(cleared: u64, first: u64, last: u64) -> u128 {
    let last = last.min(cleared.saturating_add(SLOTS - 1));
    (first.max(cleared)..=last).fold(0, |m, s| m | 1u128 << (s % SLOTS))
}

impl Default for Cadence {
    fn default() -> Self {
        Self::new()
    }
}

impl Cadence {
    /// Nothing learned: calm.
    pub fn new() -> Self {
        Cadence {
            flows: [FlowCadence::default(); FLOWS],
            cleared: 0,
            window: 0,
            surprises: [0; 2],
            expected: [0; 2],
            latest: Instant::ZERO,
        }
    }

    /// A frame of an urgent category arrived at `now`, of the flow
    /// `flow_hash`; `rings`: the flow's frames ring the data path's
    /// doorbell (`engine::bells`), so they wake it wherever they fall and
    /// need no window, and none of them is a surprise.
    pub fn on_arrival(&mut self, flow_hash: u32, now: Instant, rings: bool) {
        let now = self.advance(now);
        if rings {
            // Windows marked before it rang are not needed either.
            if let Some(f) = self.flows.get_mut(slot_of(flow_hash))
                && f.used
                && f.tag == flow_hash
            {
                f.marks = 0;
            }
            return;
        }
        let slot = now.as_nanos() / SLOT_NS;
        let expected = self.marked(slot);
        let count = if expected {
            &mut self.expected[0]
        } else {
            &mut self.surprises[0]
        };
        *count = count.saturating_add(1);
        let index = slot_of(flow_hash);
        let on_beat = self.learn(index, flow_hash, now);
        let cleared = self.cleared;
        let Some(f) = self.flows.get_mut(index) else {
            return;
        };
        if on_beat {
            // The frame this flow's window waited for came: the rest of
            // its window (at most two margins past an arrival at its
            // start) is calm. Its next frame is marked again below; other
            // calls' marks are their own and stay.
            let widest = 2 * MAX_MARGIN_NS / SLOT_NS + 1;
            f.marks &= !slots(cleared, slot, slot.saturating_add(widest));
        }
        f.expect(cleared);
    }

    /// Updates the period of the flow in slot `index` with an arrival;
    /// true if the frame came within the margin of when it was due.
    fn learn(&mut self, index: usize, flow_hash: u32, now: Instant) -> bool {
        let Some(f) = self.flows.get_mut(index) else {
            return false;
        };
        if !f.used || f.tag != flow_hash {
            let live = f.used
                && f.period_ns > 0
                && now.nanos_since(f.last) <= 2 * f.period_ns + MAX_MARGIN_NS;
            if live {
                // A call on its beat keeps its slot; the newcomer's frames
                // count as surprises (safe: they keep the data path precise).
                return false;
            }
            *f = FlowCadence {
                tag: flow_hash,
                used: true,
                last: now,
                ..FlowCadence::default()
            };
            return false;
        }
        let gap = now.nanos_since(f.last);
        if gap < MIN_PERIOD_NS {
            // Bunched by jitter: the cadence is the pair's, keep the first.
            return false;
        }
        f.last = now;
        if gap > MAX_PERIOD_NS {
            f.period_ns = 0;
            return false;
        }
        let off = gap.abs_diff(f.period_ns);
        let on_beat = f.period_ns > 0 && off <= margin(f.deviation_ns);
        if f.period_ns == 0 || f.misfits >= 3 {
            f.period_ns = gap;
            f.deviation_ns = 0;
            f.misfits = 0;
        } else if off <= f.period_ns / 2 {
            // Within half a period: the beat, moved by jitter (a first
            // gap that was a late frame's is corrected this way too).
            f.deviation_ns = (3 * f.deviation_ns + off) / 4;
            f.period_ns = (7 * f.period_ns + gap) / 8;
            f.misfits = 0;
        } else if gap.abs_diff(2 * f.period_ns) > f.period_ns / 2 {
            // Not a lost frame either (twice the period, which keeps it):
            // a stream that really changed is re-learned after a few.
            f.misfits = f.misfits.saturating_add(1);
        }
        on_beat
    }

    /// Whether no urgent frame is expected from `now` to `now + within_ns`
    /// and the urgent traffic of late has kept to its cadence: departures
    /// may then be coalesced over that time.
    pub fn calm(&mut self, now: Instant, within_ns: u64) -> bool {
        let now = self.advance(now);
        let [s0, s1] = self.surprises;
        let [e0, e1] = self.expected;
        let surprises = s0.saturating_add(s1);
        let all = surprises.saturating_add(e0).saturating_add(e1);
        if surprises > SURPRISES_TOLERATED
            && surprises.saturating_mul(SURPRISE_SHARE_DENOMINATOR) > all
        {
            return false;
        }
        let first = now.as_nanos() / SLOT_NS;
        // Beyond the ring nothing is marked: a long horizon stops there.
        let last = now.as_nanos().saturating_add(within_ns) / SLOT_NS;
        self.marks() & slots(self.cleared, first, last) == 0
    }

    /// Clears the slots before `now`'s and rolls the surprise window;
    /// returns `now`, or the latest time seen if that is later.
    fn advance(&mut self, now: Instant) -> Instant {
        let now = now.max(self.latest);
        self.latest = now;
        let slot = now.as_nanos() / SLOT_NS;
        if slot > self.cleared {
            let past = if slot >= self.cleared.saturating_add(SLOTS) {
                u128::MAX
            } else {
                slots(self.cleared, self.cleared, slot - 1)
            };
            for f in &mut self.flows {
                f.marks &= !past;
            }
            self.cleared = slot;
        }
        let window = now.as_nanos() / SURPRISE_WINDOW_NS;
        if window != self.window {
            let next = window == self.window.saturating_add(1);
            for c in [&mut self.surprises, &mut self.expected] {
                *c = [0, if next { c[0] } else { 0 }];
            }
            self.window = window;
        }
        now
    }

    /// Every flow's marks together.
    fn marks(&self) -> u128 {
        self.flows.iter().fold(0, |m, f| m | f.marks)
    }

    fn marked(&self, slot: u64) -> bool {
        self.marks() & slots(self.cleared, slot, slot) != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;
    /// The data path's question: its longest deaf sleep.
    const HORIZON: u64 = MS;

    fn at(ms: u64) -> Instant {
        Instant::from_nanos(ms * MS)
    }

    /// Two calls, a and b (in slots of their own), each sending `frames`
    /// frames 20 ms apart from `a_from` and `b_from` ms.
    fn two_calls(a_from: u64, b_from: u64, frames: u64) -> (Cadence, u32, u32) {
        let mut c = Cadence::new();
        let (a, b) = (1u32, 2u32);
        assert_ne!(slot_of(a), slot_of(b));
        for k in 0..frames {
            c.on_arrival(a, at(a_from + 20 * k), false);
            c.on_arrival(b, at(b_from + 20 * k), false);
        }
        (c, a, b)
    }

    /// Fraction of 0.1 ms steps from `from` to `to` ms that are calm.
    fn calm_share(c: &mut Cadence, from: u64, to: u64) -> f64 {
        let steps = (to - from) * 10;
        let calm = (0..steps)
            .filter(|i| c.calm(Instant::from_nanos(from * MS + i * MS / 10), HORIZON))
            .count();
        calm as f64 / steps as f64
    }

    #[test]
    fn a_call_is_expected_on_its_beat_and_calm_in_between() {
        let mut c = Cadence::new();
        assert!(c.calm(at(1_000), HORIZON), "nothing learned: calm");
        for k in 0..10 {
            c.on_arrival(7, at(1_000 + 20 * k), false);
        }
        // The last frame came at 1180: the next is due at 1200, give or
        // take the least margin (1 ms).
        assert!(c.calm(at(1_185), HORIZON));
        assert!(c.calm(at(1_197), HORIZON));
        // The horizon counts: at 1198.1 a 1 ms sleep would reach into the
        // expected time.
        assert!(!c.calm(Instant::from_nanos(1_198 * MS + 100_000), HORIZON));
        assert!(!c.calm(at(1_199), HORIZON), "1 ms before it");
        assert!(!c.calm(at(1_200), HORIZON));
        assert!(!c.calm(at(1_201), HORIZON), "1 ms after it");
        assert!(c.calm(at(1_203), HORIZON));
        // Most of the time, departures may be coalesced.
        c.on_arrival(7, at(1_200), false);
        let share = calm_share(&mut c, 1_201, 1_221);
        assert!(share > 0.75 && share < 0.95, "{share}");
    }

    #[test]
    fn a_window_closes_when_its_frame_came_but_not_for_another_call() {
        // Two calls whose frames come 2 ms apart.
        let (mut c, a, b) = two_calls(1_000, 1_002, 10);
        // Due: a at 1200 (window 1199-1201), b at 1202 (1201-1203).
        assert!(!c.calm(at(1_199), 0));
        c.on_arrival(a, at(1_199), false);
        // a's frame came: the rest of its window is calm...
        assert!(c.calm(Instant::from_nanos(1_200 * MS + MS / 2), 0));
        // ...but not b's, still to come.
        assert!(!c.calm(at(1_201), 0) && !c.calm(at(1_202), 0));
        c.on_arrival(b, at(1_202), false);
        // a's next is due about 1219 (from 1199, its period now a little
        // shorter and its margin a little wider), b's at 1222.
        assert!(c.calm(at(1_203), 0) && c.calm(at(1_216), 0));
        assert!(!c.calm(at(1_218), 0) && !c.calm(at(1_223), 0));
        // Nor does a frame of a's off its beat (1212, not due till 1219)
        // touch b's window at 1222.
        c.on_arrival(a, at(1_212), false);
        assert!(!c.calm(at(1_222), 0));
    }

    #[test]
    fn a_calls_frame_closes_only_its_own_window() {
        // a every 20 ms from 700, b every 20 ms from 712.
        let (mut c, a, b) = two_calls(700, 712, 23);
        // a's frame due at 1160 comes 4 ms late (off its beat): its next
        // is still expected at 1180 (two periods after 1140) as well as
        // at 1184 (one after 1164).
        c.on_arrival(a, at(1_164), false);
        // b's on-beat frame at 1172 closes b's window, not a's at 1180.
        c.on_arrival(b, at(1_172), false);
        assert!(!c.calm(Instant::from_nanos(1_179 * MS + MS / 2), MS / 2));
        c.on_arrival(a, at(1_180), false);
        assert_eq!(c.surprises[0], 1, "only the late frame came unexpected");
    }

    #[test]
    fn a_jittery_stream_gets_a_wider_margin_up_to_a_cap_and_no_surprises() {
        let mut c = Cadence::new();
        // Every 20 ms, alternately 3 ms late and on time.
        let late = |k: u64| if k.is_multiple_of(2) { 3 * MS } else { 0 };
        let t = |k: u64| Instant::from_nanos(1_000 * MS + 20 * MS * k + late(k));
        for k in 0..30 {
            c.on_arrival(9, t(k), false);
        }
        // Counted over the last two 100 ms windows: every one was expected.
        assert_eq!(c.surprises, [0, 0]);
        assert!(c.expected.iter().sum::<u32>() >= 9);
        // Due at 1600 (the last came on time at 1580) and at 1603 (two
        // periods after the late one at 1563): wider than the least 1 ms.
        assert!(!c.calm(at(1_597), HORIZON));
        assert!(!c.calm(at(1_605), HORIZON));
        // But capped at 4 ms: 1 + 2 x 3 ms would reach 1610.
        assert!(c.calm(at(1_609), HORIZON));
    }

    #[test]
    fn a_lost_frame_does_not_lose_the_beat() {
        let mut c = Cadence::new();
        for k in 0..5 {
            c.on_arrival(7, at(20 * k), false);
        }
        // The frame due at 100 is lost; the one at 120 is still expected.
        assert!(!c.calm(at(100), HORIZON));
        assert!(c.calm(at(110), HORIZON));
        assert!(!c.calm(at(120), HORIZON));
        c.on_arrival(7, at(120), false);
        assert!(!c.calm(at(140), HORIZON), "the period survives the gap");
    }

    #[test]
    fn two_calls_are_each_expected() {
        let (mut c, _, _) = two_calls(0, 7, 5);
        // Last arrivals: 80 and 87; next: 100 and 107.
        assert!(!c.calm(at(100), HORIZON));
        assert!(c.calm(at(104), HORIZON));
        assert!(!c.calm(at(107), HORIZON));
        assert!(c.calm(at(111), HORIZON));
    }

    #[test]
    fn a_call_that_ends_stops_being_expected_however_long_the_silence() {
        let call = || {
            let mut c = Cadence::new();
            for k in 0..5 {
                c.on_arrival(1, at(20 * k), false);
            }
            assert!(!c.calm(at(100), HORIZON));
            c
        };
        // Marked at 100 and 120; asked next 100 slots later, then where
        // those marks would fall a ring further on.
        let mut c = call();
        assert!(c.calm(at(200), HORIZON));
        assert!(c.calm(at(228), HORIZON) && c.calm(at(248), HORIZON));
        // Asked next more than a ring later.
        let mut c = call();
        assert!(c.calm(at(228), HORIZON) && c.calm(at(248), HORIZON));
        let mut c = call();
        assert!(c.calm(at(10_000), HORIZON));
    }

    #[test]
    fn urgent_traffic_without_a_beat_is_never_calm() {
        let mut c = Cadence::new();
        // Twenty flows, gaps of 1-7 ms drawn at random (a game's bursts
        // marked as voice): no period holds. A frame is held back when
        // half a millisecond before it (a coalesced sleep) was calm.
        let mut x = 12_345u64;
        let mut t = 1_000 * MS;
        let mut held = 0;
        for i in 0..200u32 {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            t += (1 + (x >> 33) % 6) * MS + (x >> 20) % MS;
            // The first few are held, until the surprises add up.
            if i > SURPRISES_TOLERATED && c.calm(Instant::from_nanos(t - MS / 2), MS / 2) {
                held += 1;
            }
            c.on_arrival(i % 20, Instant::from_nanos(t), false);
        }
        // Then hardly any (without the surprise count: 193 of 195).
        assert!(held <= 10, "{held} of 195 held");
        // Once it stops, after the surprise windows roll over: calm.
        assert!(c.calm(Instant::from_nanos(t + 300 * MS), HORIZON));
    }

    #[test]
    fn a_new_call_is_tolerated_as_a_surprise() {
        let mut c = Cadence::new();
        c.on_arrival(5, at(1_000), false);
        c.on_arrival(5, at(1_020), false);
        // Two unexpected frames: still calm away from the beat.
        assert!(c.calm(at(1_030), HORIZON));
        assert!(!c.calm(at(1_040), HORIZON));
    }

    #[test]
    fn a_changed_period_is_learned_again() {
        let mut c = Cadence::new();
        for k in 0..5 {
            c.on_arrival(1, at(20 * k), false);
        }
        // Now every 30 ms (from 80): the period follows, an eighth of the
        // difference per frame; the first few are surprises.
        for k in 1..=30 {
            c.on_arrival(1, at(80 + 30 * k), false);
        }
        // Last at 980: next at 1010, not 1000.
        assert!(c.calm(at(1_000), HORIZON));
        assert!(!c.calm(at(1_010), HORIZON));
        // Every 12 ms from now on (not within half a period of 30, nor of
        // twice it): learned anew after three such gaps.
        for k in 1..=11 {
            c.on_arrival(1, at(980 + 12 * k), false);
        }
        assert_eq!(c.flows[slot_of(1)].period_ns, 12 * MS);
        // Last at 1112: next at 1124.
        assert!(c.calm(at(1_118), HORIZON));
        assert!(!c.calm(at(1_124), HORIZON));
    }

    #[test]
    fn a_call_keeps_its_slot_against_a_flow_that_shares_it() {
        let a = 3u32;
        let b = (a + 1..).find(|&b| slot_of(b) == slot_of(a)).unwrap();
        let mut c = Cadence::new();
        c.on_arrival(a, at(0), false);
        c.on_arrival(a, at(20), false);
        for k in 2..10 {
            c.on_arrival(a, at(20 * k), false);
            c.on_arrival(b, at(20 * k + 10), false);
        }
        // The call learned its beat; the other, never followed, counted
        // as surprises, which keep the direction precise.
        let f = c.flows[slot_of(a)];
        assert_eq!((f.tag, f.period_ns), (a, 20 * MS));
        assert!(!c.calm(at(195), HORIZON));
        // Once the call is over, the slot is the newcomer's.
        c.on_arrival(b, at(400), false);
        assert_eq!(c.flows[slot_of(a)].tag, b);
    }

    #[test]
    fn a_clock_that_steps_back_is_read_as_standing_still() {
        let mut c = Cadence::new();
        for k in 0..5 {
            c.on_arrival(1, at(1_000 + 20 * k), false);
        }
        // The next frame is due at 1100. A question dated 500 after one
        // at 1090 is one at 1090: calm, and nothing is forgotten.
        assert!(c.calm(at(1_090), HORIZON));
        assert!(c.calm(at(500), HORIZON));
        assert!(!c.calm(at(1_100), HORIZON), "the beat is still expected");
        // Nor are surprises: a flood without a beat, then a step back.
        let mut t = 2_000;
        for i in 0..30u64 {
            t += 1 + (i * 7) % 11;
            c.on_arrival(100 + i as u32, at(t), false);
        }
        assert!(!c.calm(at(t), HORIZON));
        assert!(
            !c.calm(at(1_000), HORIZON),
            "a step back forgets no surprise"
        );
        // A horizon past the ring sees every mark in it; the ends of time
        // overflow nothing and loop no longer than the ring.
        let mut c = Cadence::new();
        for k in 0..5 {
            c.on_arrival(1, at(20 * k), false);
        }
        assert!(c.calm(at(90), HORIZON));
        assert!(!c.calm(at(90), u64::MAX));
        c.on_arrival(u32::MAX, Instant::NEVER, false);
        assert!(c.calm(Instant::NEVER, u64::MAX));
    }
}
