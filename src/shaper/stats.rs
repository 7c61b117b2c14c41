//! Per-category counters and queue-delay histograms.
//!
//! Plain integers, updated by the data-path thread that owns the shaper;
//! the daemon copies them out at scrape time. No atomics here: one shaper
//! is one direction, owned by one thread.

use std::marker::PhantomData;
use std::time::Duration;

use super::DropReason;

/// A count of packets and of the bytes they carried.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PacketBytes {
    /// Number of packets.
    pub packets: u64,
    /// Sum of their lengths ([`super::ShapedPacket::len`], before overhead).
    pub bytes: u64,
}

impl PacketBytes {
    #[inline]
    pub(crate) fn add(&mut self, bytes: u64) {
        self.packets = self.packets.wrapping_add(1);
        self.bytes = self.bytes.wrapping_add(bytes);
    }
    #[inline]
    pub(crate) fn sub(&mut self, bytes: u64) {
        self.packets = self.packets.wrapping_sub(1);
        self.bytes = self.bytes.wrapping_sub(bytes);
    }
    /// The sum of two counts.
    pub fn plus(self, other: PacketBytes) -> PacketBytes {
        PacketBytes {
            packets: self.packets.wrapping_add(other.packets),
            bytes: self.bytes.wrapping_add(other.bytes),
        }
    }
    /// What `self` counted beyond `earlier` (a later reading of the same
    /// counter).
    pub fn minus(self, earlier: PacketBytes) -> PacketBytes {
        PacketBytes {
            packets: self.packets.wrapping_sub(earlier.packets),
            bytes: self.bytes.wrapping_sub(earlier.bytes),
        }
    }
}

/// Upper bounds (inclusive, nanoseconds) of the Prometheus queue-delay
/// buckets; a last, implicit bucket is +Inf.
pub const DELAY_BUCKET_BOUNDS_NS: [u64; 11] = [
    500_000,
    1_000_000,
    2_000_000,
    5_000_000,
    10_000_000,
    20_000_000,
    50_000_000,
    100_000_000,
    200_000_000,
    500_000_000,
    1_000_000_000,
];

/// The bounds of a [`BucketHistogram`], as a type: upper bounds
/// (inclusive, nanoseconds), ascending; a last, implicit bucket is +Inf.
pub trait BucketBounds {
    /// The bounds.
    const NS: &'static [u64];
}

/// Samples counted in fixed buckets with the bounds a Prometheus histogram
/// exports (`B`), and their sum. `M` is the number of buckets: one per
/// bound plus +Inf. Counts are stored per bucket, not cumulated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BucketHistogram<B, const M: usize> {
    /// `counts[i]` counts samples in (bound[i-1], bound[i]]; the last is
    /// above the last bound.
    pub counts: [u64; M],
    /// Sum of all samples in nanoseconds (wrapping).
    pub sum_ns: u64,
    bounds: PhantomData<B>,
}

impl<B: BucketBounds, const M: usize> Default for BucketHistogram<B, M> {
    fn default() -> Self {
        const { assert!(M == B::NS.len() + 1, "one bucket per bound, and +Inf") };
        BucketHistogram {
            counts: [0; M],
            sum_ns: 0,
            bounds: PhantomData,
        }
    }
}

impl<B: BucketBounds, const M: usize> BucketHistogram<B, M> {
    /// Records one sample.
    #[inline]
    pub fn record(&mut self, ns: u64) {
        let i = B::NS.partition_point(|&b| b < ns);
        if let Some(c) = self.counts.get_mut(i) {
            *c = c.wrapping_add(1);
        }
        self.sum_ns = self.sum_ns.wrapping_add(ns);
    }
    /// Number of samples.
    pub fn count(&self) -> u64 {
        self.counts.iter().fold(0u64, |a, &c| a.wrapping_add(c))
    }
    /// The counts cumulated as Prometheus exposes them (`le` buckets).
    pub fn cumulative(&self) -> [u64; M] {
        let mut out = self.counts;
        let mut acc = 0u64;
        for c in &mut out {
            acc = acc.wrapping_add(*c);
            *c = acc;
        }
        out
    }
}

/// The queue-delay buckets: [`DELAY_BUCKET_BOUNDS_NS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueDelayBuckets;

impl BucketBounds for QueueDelayBuckets {
    const NS: &'static [u64] = &DELAY_BUCKET_BOUNDS_NS;
}

/// Queue delay with the bucket bounds a Prometheus histogram exports
/// (0.5 ms .. 1 s, +Inf).
pub type DelayHistogram = BucketHistogram<QueueDelayBuckets, { DELAY_BUCKET_BOUNDS_NS.len() + 1 }>;

/// Sub-buckets per power of two: 16 makes every bucket at most 1/16 of its
/// lower bound wide, so a bucket midpoint is within ~3.2% of any sample in it.
const SUB_BITS: u32 = 4;
const SUB: usize = 1 << SUB_BITS;
/// Highest power of two tracked separately (2^40 ns is 18 minutes); larger
/// samples land in the last bucket.
const MAX_EXP: u32 = 40;
/// Number of buckets of [`LogHistogram`].
pub const LOG_BUCKETS: usize = (MAX_EXP as usize - SUB_BITS as usize + 2) * SUB;

/// A log-linear histogram (HDR-style) of nanosecond samples, fine enough to
/// read p50/p99 within ~3% for `qosd simulate`, in a fixed array.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogHistogram {
    counts: [u64; LOG_BUCKETS],
    total: u64,
}

impl Default for LogHistogram {
    fn default() -> Self {
        LogHistogram {
            counts: [0; LOG_BUCKETS],
            total: 0,
        }
    }
}

impl LogHistogram {
    /// The bucket `ns` falls in.
    #[inline]
    fn index(ns: u64) -> usize {
        if ns < SUB as u64 {
            return ns as usize;
        }
        let e = 63 - ns.leading_zeros();
        if e > MAX_EXP {
            return LOG_BUCKETS - 1;
        }
        let sub = ((ns >> (e - SUB_BITS)) as usize) & (SUB - 1);
        (e - SUB_BITS + 1) as usize * SUB + sub
    }

    /// Lowest value and width of bucket `i`.
    fn bounds(i: usize) -> (u64, u64) {
        if i < SUB {
            return (i as u64, 1);
        }
        let e = (i / SUB) as u32 + SUB_BITS - 1;
        let sub = (i % SUB) as u64;
        let shift = e - SUB_BITS;
        ((SUB as u64 + sub) << shift, 1u64 << shift)
    }

    /// Records one sample.
    #[inline]
    pub fn record(&mut self, ns: u64) {
        if let Some(c) = self.counts.get_mut(Self::index(ns)) {
            *c = c.wrapping_add(1);
        }
        self.total = self.total.wrapping_add(1);
    }

    /// Number of samples.
    pub fn count(&self) -> u64 {
        self.total
    }

    /// The `q`-quantile (0.0 ..= 1.0) as the midpoint of the bucket holding
    /// it; `None` without samples.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        if self.total == 0 {
            return None;
        }
        let q = if q.is_nan() { 0.0 } else { q.clamp(0.0, 1.0) };
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0u64;
        for (i, &c) in self.counts.iter().enumerate() {
            seen = seen.saturating_add(c);
            if seen >= rank {
                let (low, width) = Self::bounds(i);
                return Some(Duration::from_nanos(low.saturating_add(width / 2)));
            }
        }
        None
    }

    /// The samples recorded since `earlier`, an earlier copy of the same
    /// histogram (the queue delay of the last second, from two snapshots).
    pub fn since(&self, earlier: &LogHistogram) -> LogHistogram {
        let mut out = self.clone();
        for (a, b) in out.counts.iter_mut().zip(earlier.counts.iter()) {
            *a = a.saturating_sub(*b);
        }
        out.total = out.counts.iter().fold(0u64, |t, c| t.wrapping_add(*c));
        out
    }

    /// Adds every sample of `other` (to aggregate categories or runs).
    pub fn merge(&mut self, other: &LogHistogram) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a = a.wrapping_add(*b);
        }
        self.total = self.total.wrapping_add(other.total);
    }
}

/// What one shaper (one direction) counted for one category.
///
/// Conservation holds at all times, for packets and for bytes:
/// `arrived == sent + dropped (all reasons) + backlog`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CategoryCounters {
    /// Packets handed to `enqueue` (and packets moved in from a category a
    /// reconfiguration removed).
    pub arrived: PacketBytes,
    /// Packets returned by `dequeue`.
    pub sent: PacketBytes,
    /// Dropped by CoDel (standing queue above target).
    pub dropped_codel: PacketBytes,
    /// Dropped because the global memory budget was exceeded.
    pub dropped_overflow: PacketBytes,
    /// Dropped because this category's own backlog limit was exceeded.
    pub dropped_ceiling: PacketBytes,
    /// Dropped to slow a download flow down while the ISP's buffer held a
    /// standing queue ([`DropReason::IspQueue`]).
    pub dropped_isp: PacketBytes,
    /// Packets CoDel marked ECN CE instead of dropping (they were sent).
    pub ecn_marked: u64,
    /// Packets queued now.
    pub backlog: PacketBytes,
    /// Queue delay of every sent packet, Prometheus buckets.
    pub delay: DelayHistogram,
    /// Queue delay of every sent packet, fine log scale for percentiles.
    pub delay_fine: LogHistogram,
}

impl CategoryCounters {
    /// The drops for `reason`.
    pub fn dropped(&self, reason: DropReason) -> PacketBytes {
        match reason {
            DropReason::Codel => self.dropped_codel,
            DropReason::Overflow => self.dropped_overflow,
            DropReason::Ceiling => self.dropped_ceiling,
            DropReason::IspQueue => self.dropped_isp,
        }
    }
    /// Drops for every reason together.
    pub fn dropped_total(&self) -> PacketBytes {
        self.dropped_codel
            .plus(self.dropped_overflow)
            .plus(self.dropped_ceiling)
            .plus(self.dropped_isp)
    }
    /// Adds what a removed category counted, its backlog excepted (those
    /// packets moved to another category, which counts them as arrivals):
    /// the direction's totals then never go back when categories go.
    pub fn retire(&mut self, gone: &CategoryCounters) {
        self.arrived = self.arrived.plus(gone.arrived.minus(gone.backlog));
        self.sent = self.sent.plus(gone.sent);
        self.dropped_codel = self.dropped_codel.plus(gone.dropped_codel);
        self.dropped_overflow = self.dropped_overflow.plus(gone.dropped_overflow);
        self.dropped_ceiling = self.dropped_ceiling.plus(gone.dropped_ceiling);
        self.dropped_isp = self.dropped_isp.plus(gone.dropped_isp);
        self.ecn_marked = self.ecn_marked.wrapping_add(gone.ecn_marked);
    }

    /// Whether `arrived == sent + dropped + backlog` holds (it always should;
    /// tests and debug assertions check it).
    pub fn is_conserved(&self) -> bool {
        self.sent.plus(self.dropped_total()).plus(self.backlog) == self.arrived
    }
    #[inline]
    pub(crate) fn count_drop(&mut self, reason: DropReason, bytes: u64) {
        match reason {
            DropReason::Codel => self.dropped_codel.add(bytes),
            DropReason::Overflow => self.dropped_overflow.add(bytes),
            DropReason::Ceiling => self.dropped_ceiling.add(bytes),
            DropReason::IspQueue => self.dropped_isp.add(bytes),
        }
    }
    #[inline]
    pub(crate) fn count_sent(&mut self, bytes: u64, delay_ns: u64) {
        self.sent.add(bytes);
        self.delay.record(delay_ns);
        self.delay_fine.record(delay_ns);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_buckets_are_inclusive_upper_bounds() {
        let mut h = DelayHistogram::default();
        h.record(0);
        h.record(500_000); // exactly 0.5 ms: first bucket (le=0.0005)
        h.record(500_001);
        h.record(1_000_000_000);
        h.record(1_000_000_001); // +Inf
        assert_eq!(h.counts[0], 2);
        assert_eq!(h.counts[1], 1);
        assert_eq!(h.counts[10], 1);
        assert_eq!(h.counts[11], 1);
        assert_eq!(h.count(), 5);
        assert_eq!(h.cumulative()[11], 5);
        assert_eq!(h.cumulative()[1], 3);
        assert_eq!(h.sum_ns, 2_001_000_002);
    }

    #[test]
    fn log_buckets_tile_the_range() {
        // Every bucket starts where the previous ended.
        let mut next = 0u64;
        for i in 0..LOG_BUCKETS - 1 {
            let (low, width) = LogHistogram::bounds(i);
            assert_eq!(low, next, "bucket {i}");
            assert_eq!(LogHistogram::index(low), i);
            assert_eq!(LogHistogram::index(low + width - 1), i);
            assert!(width * 16 <= low.max(16), "bucket {i} too wide");
            next = low + width;
        }
        assert_eq!(LogHistogram::index(u64::MAX), LOG_BUCKETS - 1);
    }

    #[test]
    fn quantiles_within_four_percent() {
        let mut h = LogHistogram::default();
        // 1..=10000 microseconds, uniformly.
        for us in 1..=10_000u64 {
            h.record(us * 1_000);
        }
        for (q, want_us) in [
            (0.5, 5_000.0),
            (0.99, 9_900.0),
            (0.01, 100.0),
            (1.0, 10_000.0),
        ] {
            let got = h.quantile(q).unwrap().as_nanos() as f64 / 1_000.0;
            assert!(
                (got - want_us).abs() / want_us < 0.04,
                "q={q}: got {got} us, want {want_us}"
            );
        }
        assert_eq!(LogHistogram::default().quantile(0.5), None);
    }
}
