//! A token bucket kept as a virtual time (GCRA's "theoretical arrival
//! time"), with `now` always passed in.
//!
//! Time is fixed point, nanoseconds << 32, so the cost of a byte is exact
//! enough that no drift accumulates at any rate from 1 bit/s to 1 Tbit/s:
//! at 2 Mbit/s a byte costs 4000 ns, at 1 Gbit/s 8 ns, at 18 Mbit/s
//! 444.44.. ns, and the fraction is carried instead of rounded away.

use crate::config::Rate;
use crate::time::Instant;

const FRAC_BITS: u32 = 32;

#[inline]
fn fixed(now: Instant) -> u128 {
    u128::from(now.as_nanos()) << FRAC_BITS
}

/// A rate limiter that lets a packet leave when the bucket is not in debt,
/// then charges it (so a packet larger than the burst still passes: the
/// bucket goes into debt instead of starving it).
#[derive(Debug, Clone)]
pub(crate) struct TokenBucket {
    /// When the bucket stops being in debt (fixed point).
    tat: u128,
    /// Cost of one byte (fixed-point nanoseconds).
    byte_cost: u128,
    /// Credit an idle bucket may accumulate (fixed-point nanoseconds).
    burst: u128,
}

impl TokenBucket {
    /// A full bucket at `rate` that can save up `burst_ns` of sending.
    pub(crate) fn new(rate: Rate, burst_ns: u64) -> Self {
        let mut b = TokenBucket {
            tat: 0,
            byte_cost: 0,
            burst: 0,
        };
        b.set_rate(rate, burst_ns);
        b
    }

    /// Changes the rate, keeping the current debt or credit (in time).
    pub(crate) fn set_rate(&mut self, rate: Rate, burst_ns: u64) {
        let bps = u128::from(rate.bps().max(1));
        self.byte_cost = (8_000_000_000u128 << FRAC_BITS) / bps;
        self.burst = u128::from(burst_ns) << FRAC_BITS;
    }

    /// Whether a packet may leave at `now`.
    #[inline]
    pub(crate) fn is_ready(&self, now: Instant) -> bool {
        self.tat <= fixed(now)
    }

    /// The earliest instant at which [`Self::is_ready`] holds.
    #[inline]
    pub(crate) fn ready_at(&self) -> Instant {
        let ns = self.tat.div_ceil(1u128 << FRAC_BITS);
        Instant::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX))
    }

    /// Charges `bytes` sent at `now`.
    #[inline]
    pub(crate) fn charge(&mut self, bytes: u64, now: Instant) {
        self.wake(now);
        self.charge_owed(bytes);
    }

    /// Forgets credit beyond the burst: an idle bucket keeps at most
    /// `burst` of it, so a late caller catches up that much and no more.
    #[inline]
    pub(crate) fn wake(&mut self, now: Instant) {
        // The extra (1 ns - 1) of slack keeps the sub-nanosecond remainder
        // when the caller comes back exactly at `ready_at` (rounded up).
        let floor = fixed(now).saturating_sub(self.burst + ((1u128 << FRAC_BITS) - 1));
        self.tat = self.tat.max(floor);
    }

    /// Charges `bytes` against credit saved up since the last
    /// [`TokenBucket::wake`], however much: for a guarantee still owed to a
    /// category that has waited, backlogged, behind others.
    #[inline]
    pub(crate) fn charge_owed(&mut self, bytes: u64) {
        let cost = u128::from(bytes).saturating_mul(self.byte_cost);
        self.tat = self.tat.saturating_add(cost);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ns: u64) -> Instant {
        Instant::from_nanos(ns)
    }

    #[test]
    fn one_packet_at_a_time_at_the_rate() {
        let mut b = TokenBucket::new(Rate::from_bps(8_000_000), 0); // 1 byte/us
        assert!(b.is_ready(t(0)));
        b.charge(1000, t(0));
        assert!(!b.is_ready(t(999_999)));
        assert!(b.is_ready(t(1_000_000)));
        assert_eq!(b.ready_at(), t(1_000_000));
    }

    #[test]
    fn burst_bounds_the_catch_up() {
        let mut b = TokenBucket::new(Rate::from_bps(8_000_000), 2_000_000);
        // Idle for a long time: only 2 ms of credit (2000 bytes) is kept.
        let now = t(1_000_000_000);
        let mut sent = 0;
        while b.is_ready(now) {
            b.charge(100, now);
            sent += 100;
        }
        assert_eq!(sent, 2_100); // 2000 of credit, plus one packet into debt
    }

    #[test]
    fn no_drift_at_an_awkward_rate() {
        // 18 Mbit/s: a byte is 444.44.. ns. A million 1500-byte packets take
        // exactly 1500e6 * 8 / 18e6 s = 666.666.. s.
        let mut b = TokenBucket::new(Rate::from_bps(18_000_000), 0);
        for _ in 0..1_000_000 {
            let now = b.ready_at();
            b.charge(1500, now);
        }
        let want = 666_666_666_667u64;
        let got = b.ready_at().as_nanos();
        assert!(got.abs_diff(want) <= 1, "{got} vs {want}");
    }
}
