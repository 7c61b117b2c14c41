//! The queue in the ISP's download buffer, outside qosd, as the download
//! packets that crossed it tell: each packet of a flow whose far end
//! stamps TCP timestamps says how much later than its flow's fastest
//! packet it arrived ([`super::Meter`] reads it). The buffer is one FIFO
//! for the whole line, so what one flow's packet waited, every packet
//! arriving with it waited too, whatever its protocol.
//!
//! A standing queue is told from a burst the way CoDel tells them apart:
//! by the least delay over a short window. A sender's burst drains within
//! a few milliseconds, so some packet in the window arrived after it; a
//! queue that stands for the whole window means the senders together send
//! more than the line carries.

use crate::time::Instant;

/// Half the window over which the least delay is taken.
const HALF_NS: u64 = 5_000_000;
/// Without a sample for this long, nothing is known (no flow with
/// timestamps is downloading): no estimate.
const STALE_NS: u64 = 50_000_000;

/// The least outside delay of the download packets over the last 5-10 ms.
#[derive(Debug, Clone, Copy)]
pub struct OutsideQueue {
    current: u64,
    previous: u64,
    since: Instant,
    last: Option<Instant>,
}

impl Default for OutsideQueue {
    fn default() -> Self {
        OutsideQueue {
            current: u64::MAX,
            previous: u64::MAX,
            since: Instant::ZERO,
            last: None,
        }
    }
}

impl OutsideQueue {
    /// A download packet arrived at `now` after waiting `queue_ns` more
    /// than its flow's fastest packet.
    #[inline]
    pub fn observe(&mut self, queue_ns: u64, now: Instant) {
        let age = now.nanos_since(self.since);
        if age >= HALF_NS {
            // A gap of a whole window forgets the previous half: the
            // window must be covered to call a queue standing.
            self.previous = if age < 2 * HALF_NS {
                self.current
            } else {
                u64::MAX
            };
            self.current = u64::MAX;
            self.since = now;
        }
        self.current = self.current.min(queue_ns);
        self.last = Some(now);
    }

    /// The queue that stood through the last window at `now`: the least
    /// delay of its packets; `None` while the window is not covered or no
    /// sample came lately.
    #[inline]
    pub fn standing(&self, now: Instant) -> Option<u64> {
        let last = self.last?;
        if now.nanos_since(last) > STALE_NS || self.previous == u64::MAX {
            return None;
        }
        Some(self.current.min(self.previous))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn at(ns: u64) -> Instant {
        Instant::from_nanos(ns)
    }

    #[test]
    fn a_burst_that_drains_is_not_a_standing_queue() {
        let mut q = OutsideQueue::default();
        // One packet every 0.25 ms (47 Mbit/s); every 4 ms a 3 ms burst
        // whose packets wait 0.5-3 ms, then packets that do not wait.
        for i in 0..400u64 {
            let t = i * MS / 4;
            let phase = t % (4 * MS);
            let wait = if phase < 3 * MS { MS / 2 + phase } else { 0 };
            q.observe(wait, at(t));
        }
        assert_eq!(q.standing(at(100 * MS)), Some(0));
    }

    #[test]
    fn a_queue_that_stands_through_the_window_is_reported_and_forgotten_when_silent() {
        let mut q = OutsideQueue::default();
        assert_eq!(q.standing(at(0)), None);
        for i in 0..40u64 {
            q.observe(8 * MS + (i % 3) * MS, at(i * MS / 2));
        }
        assert_eq!(q.standing(at(20 * MS)), Some(8 * MS));
        // It shrinks: the estimate follows within one window.
        for i in 40..80u64 {
            q.observe(2 * MS, at(i * MS / 2));
        }
        assert_eq!(q.standing(at(40 * MS)), Some(2 * MS));
        // No flow with timestamps any more: unknown, not "no queue".
        assert_eq!(q.standing(at(100 * MS)), None);
    }

    #[test]
    fn one_sample_after_a_long_gap_is_not_a_standing_queue() {
        let mut q = OutsideQueue::default();
        for i in 0..20u64 {
            q.observe(0, at(i * MS));
        }
        q.observe(30 * MS, at(500 * MS));
        assert_eq!(q.standing(at(500 * MS)), None);
        q.observe(30 * MS, at(506 * MS));
        assert_eq!(q.standing(at(506 * MS)), Some(30 * MS));
    }
}
