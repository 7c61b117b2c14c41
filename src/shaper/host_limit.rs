//! `shaper.host_max`: one computer's ceiling across all categories, so a
//! single machine cannot take the whole link even when nobody else is
//! busy in its category.
//!
//! One token bucket per LAN host tag, in a set-associative table of fixed
//! size (nothing allocated per packet; more busy hosts in one set than it
//! has ways share a bucket, which only makes their ceiling common).

use super::bucket::TokenBucket;
use crate::config::Rate;
use crate::time::Instant;

/// Ways per set.
const WAYS: usize = 8;
/// Sets: 1024 buckets in all.
const SETS: usize = 128;

#[derive(Debug, Clone)]
struct Entry {
    tag: u32,
    used: bool,
    bucket: TokenBucket,
    /// When it last sent: the least recently used way is recycled.
    last: Instant,
}

/// Per-host ceilings of one direction.
#[derive(Debug, Clone)]
pub(crate) struct HostLimits {
    rate: Rate,
    burst_ns: u64,
    entries: Vec<Entry>,
}

impl HostLimits {
    /// Ceilings of `rate` per host, each bucket saving up `burst_ns`.
    pub(crate) fn new(rate: Rate, burst_ns: u64) -> Self {
        let bucket = TokenBucket::new(rate, burst_ns);
        HostLimits {
            rate,
            burst_ns,
            entries: vec![
                Entry {
                    tag: 0,
                    used: false,
                    bucket,
                    last: Instant::ZERO,
                };
                WAYS * SETS
            ],
        }
    }

    /// Changes the ceiling, keeping each host's debt.
    pub(crate) fn set_rate(&mut self, rate: Rate, burst_ns: u64) {
        self.rate = rate;
        self.burst_ns = burst_ns;
        for e in &mut self.entries {
            e.bucket.set_rate(rate, burst_ns);
        }
    }

    fn set(tag: u32) -> usize {
        let mixed = tag.wrapping_mul(0x9E37_79B9);
        ((u64::from(mixed) * SETS as u64) >> 32) as usize * WAYS
    }

    fn find(&self, tag: u32) -> Option<usize> {
        let first = Self::set(tag);
        (first..first + WAYS).find(|&i| self.entries.get(i).is_some_and(|e| e.used && e.tag == tag))
    }

    /// `Ok` if the host tagged `tag` may send at `now`, else when it may.
    #[inline]
    pub(crate) fn ready(&self, tag: u32, now: Instant) -> Result<(), Instant> {
        match self.find(tag).and_then(|i| self.entries.get(i)) {
            Some(e) if !e.bucket.is_ready(now) => Err(e.bucket.ready_at()),
            // A host without a bucket has sent nothing lately: a full one.
            _ => Ok(()),
        }
    }

    /// Charges `bytes` sent at `now` to the host tagged `tag`.
    #[inline]
    pub(crate) fn charge(&mut self, tag: u32, bytes: u64, now: Instant) {
        let idx = match self.find(tag) {
            Some(i) => i,
            None => {
                let first = Self::set(tag);
                let way = (first..first + WAYS)
                    .min_by_key(|&i| self.entries.get(i).map_or(Instant::ZERO, |e| e.last))
                    .unwrap_or(first);
                if let Some(e) = self.entries.get_mut(way) {
                    let mut bucket = TokenBucket::new(self.rate, self.burst_ns);
                    bucket.wake(now);
                    *e = Entry {
                        tag,
                        used: true,
                        bucket,
                        last: now,
                    };
                }
                way
            }
        };
        if let Some(e) = self.entries.get_mut(idx) {
            e.bucket.charge(bytes, now);
            e.last = now;
        }
    }
}
