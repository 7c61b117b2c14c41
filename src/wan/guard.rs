//! When to tell a download flow to slow down because the ISP's buffer,
//! outside qosd, holds a standing queue (issue 20).
//!
//! qosd shapes the download after the bottleneck: a queue in the ISP's
//! buffer is one only the senders can empty, and it delays every packet
//! of the office, calls included, before qosd can prioritise anything.
//! It serves nothing either: qosd's own queue keeps its (slower) output
//! busy. So the guard acts on the first sign of one, instead of waiting
//! for qosd's own queue to grow past CoDel's target, which at a rate a
//! few percent under the line's takes far longer than the ISP's buffer
//! takes to fill: when the queue outside ([`super::OutsideQueue`]) stands
//! above the target, the fattest flow is signalled at once, then again at
//! CoDel's pace (interval / sqrt(count)) while it still stands. A sender
//! answers a signal a round trip later, so a quicker pace would cut
//! several flows for one excess.
//!
//! Signals shrink the senders' windows, but what already stands in the
//! ISP's buffer drains only at the line's rate less what the senders
//! send, and they send at qosd's rate, a few percent under the line's: a
//! burst of a whole window (a server that paused and resumed, a video
//! player fetching its next chunk) would take a second to drain. So while
//! the queue stands qosd also runs the download at 3/4 of its rate: the
//! acknowledgements slow down with it, the senders follow within a round
//! trip, and the ISP's buffer empties into qosd's own queue, where calls
//! go first (a deeper cut drains faster, but costs throughput when
//! bursts make such episodes frequent). A queue that the throttle did not
//! halve in half a second is
//! not in front of qosd (a far server's own congestion, a flow whose
//! delays mislead): the guard then stands back until it is gone.

use std::time::Duration;

use crate::shaper::control_law;
use crate::time::Instant;

/// The guard's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuardParams {
    /// The outside queue that counts as standing.
    pub target: Duration,
    /// The pace of signals while it stands, at the first one (then
    /// interval / sqrt(count)).
    pub interval: Duration,
}

/// The share of its rate, in thousandths, the download runs at while the
/// queue outside stands.
pub const THROTTLE_PERMILLE: u32 = 750;
/// How long the throttle may take to halve the queue before the guard
/// decides the queue is not in front of qosd.
const GIVE_UP_NS: u64 = 500_000_000;

/// The guard's state: one per download direction.
#[derive(Debug, Clone)]
pub struct IspGuard {
    target_ns: u64,
    interval_ns: u64,
    /// Whether the queue stood at the last poll.
    above: bool,
    /// When the next signal may go.
    next: u64,
    /// Signals in the current episode.
    count: u32,
    /// When the current episode started, and its largest queue.
    started: u64,
    peak: u64,
    /// The current episode's queue is not one qosd can drain.
    standing_back: bool,
    signals: u64,
    gave_up: u64,
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl IspGuard {
    /// A guard with `params`.
    pub fn new(params: GuardParams) -> Self {
        IspGuard {
            target_ns: nanos(params.target),
            interval_ns: nanos(params.interval).max(1),
            above: false,
            next: 0,
            count: 0,
            started: 0,
            peak: 0,
            standing_back: false,
            signals: 0,
            gave_up: 0,
        }
    }

    /// Takes new settings, keeping the episode in progress.
    pub fn set_params(&mut self, params: GuardParams) {
        self.target_ns = nanos(params.target);
        self.interval_ns = nanos(params.interval).max(1);
    }

    /// Signals sent since start.
    pub fn signals(&self) -> u64 {
        self.signals
    }

    /// Episodes whose queue the guard found it could not drain.
    pub fn gave_up(&self) -> u64 {
        self.gave_up
    }

    /// The share of its rate, in thousandths, the download should run at
    /// now: [`THROTTLE_PERMILLE`] while the queue outside stands, 1000
    /// otherwise.
    pub fn rate_permille(&self) -> u32 {
        if self.above && !self.standing_back {
            THROTTLE_PERMILLE
        } else {
            1000
        }
    }

    /// Whether to signal a flow now, given the standing outside queue
    /// (`None`: unknown, which never signals).
    #[inline]
    pub fn poll(&mut self, standing: Option<u64>, now: Instant) -> bool {
        let t = now.as_nanos();
        match standing {
            Some(q) if q >= self.target_ns => {
                if !self.above {
                    self.above = true;
                    // Every episode starts at the slow pace: unlike a
                    // queue of qosd's own, short episodes come often from
                    // bursts (stretch ACKs), and a pace remembered from one
                    // to the next would grow until it cut the line's use
                    // (qosd simulate: 83 % of the line with it reset, 76 %
                    // with CoDel's memory).
                    (self.started, self.peak, self.standing_back) = (t, q, false);
                    self.count = 0;
                    self.next = t;
                }
                self.peak = self.peak.max(q);
                if !self.standing_back
                    && t.saturating_sub(self.started) > GIVE_UP_NS
                    && q > self.peak / 2
                {
                    self.standing_back = true;
                    self.gave_up += 1;
                }
                if self.standing_back || t < self.next {
                    return false;
                }
                self.count = self.count.saturating_add(1);
                self.next = control_law(t, self.interval_ns, self.count);
                self.signals += 1;
                true
            }
            _ => {
                self.above = false;
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn guard() -> IspGuard {
        IspGuard::new(GuardParams {
            target: Duration::from_millis(3),
            interval: Duration::from_millis(100),
        })
    }

    /// The instants (ms) at which the guard signals, polled every ms.
    fn signals(g: &mut IspGuard, from: u64, to: u64, q: impl Fn(u64) -> Option<u64>) -> Vec<u64> {
        (from..to)
            .filter(|&ms| g.poll(q(ms), Instant::from_nanos(ms * MS)))
            .collect()
    }

    #[test]
    fn signals_at_once_then_at_codels_pace_while_the_queue_stands() {
        let mut g = guard();
        let s = signals(&mut g, 0, 400, |ms| Some(if ms < 50 { 0 } else { 10 * MS }));
        // At once, then 100, 70.7, 57.7 ms apart.
        assert_eq!(s, vec![50, 150, 221, 279, 329, 374]);
        assert_eq!(g.signals(), 6);
    }

    #[test]
    fn halves_the_rate_while_the_queue_stands_and_stands_back_from_one_it_cannot_drain() {
        let mut g = guard();
        assert_eq!(g.rate_permille(), 1000);
        // A queue that drains under the throttle: throttled until it is gone.
        let q = |ms: u64| Some((40u64.saturating_sub(ms / 10)).max(1) * MS);
        signals(&mut g, 0, 100, q);
        assert_eq!(g.rate_permille(), THROTTLE_PERMILLE);
        signals(&mut g, 100, 400, q);
        assert_eq!(g.rate_permille(), 1000);
        assert_eq!(g.gave_up(), 0);
        // One that stays at 20 ms whatever qosd does: after half a second,
        // neither throttle nor signals, until it is gone.
        let s = signals(&mut g, 1000, 2000, |_| Some(20 * MS));
        assert!(s.iter().all(|&ms| ms <= 1500), "{s:?}");
        assert_eq!(g.rate_permille(), 1000);
        assert_eq!(g.gave_up(), 1);
        signals(&mut g, 2000, 2010, |_| Some(0));
        assert_eq!(signals(&mut g, 3000, 3001, |_| Some(20 * MS)), vec![3000]);
        assert_eq!(g.rate_permille(), THROTTLE_PERMILLE);
    }

    #[test]
    fn never_signals_below_target_or_without_an_estimate() {
        let mut g = guard();
        let s = signals(&mut g, 0, 1000, |ms| (ms % 2 == 0).then_some(3 * MS - 1));
        assert!(s.is_empty());
        assert!(signals(&mut g, 1000, 2000, |_| None).is_empty());
    }

    #[test]
    fn every_episode_starts_at_the_slow_pace() {
        let mut g = guard();
        let standing = |on: bool| move |_| Some(if on { 10 * MS } else { 0 });
        assert_eq!(
            signals(&mut g, 0, 250, standing(true)),
            vec![0, 100, 171, 229]
        );
        assert!(signals(&mut g, 250, 300, standing(false)).is_empty());
        // Back after 50 ms: at once, then 100 ms later, not at the fifth
        // signal's pace.
        assert_eq!(signals(&mut g, 300, 420, standing(true)), vec![300, 400]);
    }
}
