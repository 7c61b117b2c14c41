//! A minimum over a sliding window, in two halves: the baseline of a path
//! follows a route change (or a remote clock's drift) within one window,
//! yet a standing queue shorter than half a window never becomes the
//! baseline.

use crate::time::Instant;

/// The smallest value seen over the last one to two `half`s.
#[derive(Debug, Clone, Copy)]
pub struct WindowedMin {
    current: i64,
    previous: i64,
    since: Instant,
}

impl Default for WindowedMin {
    fn default() -> Self {
        WindowedMin {
            current: i64::MAX,
            previous: i64::MAX,
            since: Instant::ZERO,
        }
    }
}

impl WindowedMin {
    /// Takes `v` seen at `now`; returns the minimum including it.
    #[inline]
    pub fn update(&mut self, v: i64, now: Instant, half_nanos: u64) -> i64 {
        if now.nanos_since(self.since) >= half_nanos {
            // A gap of more than a whole window forgets both halves.
            self.previous = if now.nanos_since(self.since) >= 2 * half_nanos {
                i64::MAX
            } else {
                self.current
            };
            self.current = i64::MAX;
            self.since = now;
        }
        self.current = self.current.min(v);
        self.get()
    }

    /// The minimum, if anything was seen.
    #[inline]
    pub fn get(&self) -> i64 {
        self.current.min(self.previous)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn follows_a_rise_within_a_window_and_a_fall_at_once() {
        let mut m = WindowedMin::default();
        let t = |s: u64| Instant::from_nanos(s * S);
        assert_eq!(m.update(10, t(1), 10 * S), 10);
        assert_eq!(m.update(30, t(5), 10 * S), 10);
        // The path got longer: the old minimum holds for up to a window...
        assert_eq!(m.update(30, t(12), 10 * S), 10);
        // ...and is gone after it.
        assert_eq!(m.update(30, t(22), 10 * S), 30);
        assert_eq!(m.update(5, t(23), 10 * S), 5);
        // After a long silence, nothing old is kept.
        assert_eq!(m.update(50, t(100), 10 * S), 50);
    }
}
