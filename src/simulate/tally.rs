//! What a run measured, end to end: per direction and category, the bytes
//! offered and delivered, the drops (in qosd's queue or in the line's
//! buffer), the time each packet waited in queues (qosd's and the line's
//! together) and, apart, the part of it in the line's buffer (outside
//! qosd, where qosd cannot manage it); per phase of a capacity trace, the
//! calls' delay, the time outside qosd, the bytes the line carried and
//! the rate qosd shaped at.

use std::time::Duration;

use super::trace::Phase;
use crate::config::{CategoryId, Direction, Rate};
use crate::shaper::LogHistogram;
use crate::time::Instant;

/// One category in one direction.
#[derive(Debug, Clone, Default)]
pub(super) struct CatTally {
    /// Bytes that reached the gateway's side of the bottleneck.
    pub(super) arrived_bytes: u64,
    /// Bytes delivered past every queue.
    pub(super) sent_bytes: u64,
    /// Packets dropped (qosd's queue or the line's buffer).
    pub(super) dropped: u64,
    /// Time in queues of each delivered packet.
    pub(super) delay: LogHistogram,
    /// The part of it in the line's buffer (outside qosd).
    pub(super) outside: Waits,
}

/// Waits of delivered packets: their distribution and their sum (for a
/// mean, which the histogram alone cannot give exactly).
#[derive(Debug, Clone, Default)]
pub(super) struct Waits {
    /// The waits' distribution.
    pub(super) hist: LogHistogram,
    /// Their sum, nanoseconds.
    pub(super) sum_ns: u128,
}

impl Waits {
    /// One packet waited `ns` nanoseconds.
    pub(super) fn record(&mut self, ns: u64) {
        self.hist.record(ns);
        self.sum_ns = self.sum_ns.saturating_add(u128::from(ns));
    }

    /// Adds `other`'s waits (to aggregate categories or directions).
    pub(super) fn merge(&mut self, other: &Waits) {
        self.hist.merge(&other.hist);
        self.sum_ns = self.sum_ns.saturating_add(other.sum_ns);
    }

    /// The 99th percentile; `None` without samples.
    pub(super) fn p99(&self) -> Option<Duration> {
        self.hist.quantile(0.99)
    }

    /// The mean; `None` without samples.
    pub(super) fn mean(&self) -> Option<Duration> {
        let n = u128::from(self.hist.count());
        let mean = self.sum_ns.checked_div(n)?;
        Some(Duration::from_nanos(
            u64::try_from(mean).unwrap_or(u64::MAX),
        ))
    }
}

/// A delivered packet, for [`Tally::sent`].
#[derive(Debug, Clone, Copy)]
pub(super) struct Delivered {
    /// What qosd classified it as.
    pub(super) cat: CategoryId,
    /// Its length.
    pub(super) bytes: u64,
    /// When it entered its first queue (the phase it counts in).
    pub(super) entered: Instant,
    /// Its time in queues, qosd's and the line's.
    pub(super) waited: Duration,
    /// The part of `waited` in the line's buffer (outside qosd).
    pub(super) outside: Duration,
    /// It is a call's.
    pub(super) voice: bool,
}

/// One phase of a trace.
#[derive(Debug, Clone, Default)]
pub(super) struct PhaseTally {
    /// Bytes the line carried (with its framing overhead), per direction.
    pub(super) line_bytes: [u64; 2],
    /// The calls' time in queues, per direction.
    pub(super) voice: [LogHistogram; 2],
    /// Every packet's time in the line's buffer (outside qosd), per
    /// direction.
    pub(super) outside: [Waits; 2],
    /// Shaping rate times time, per direction (bit).
    pub(super) rate_bits: [f64; 2],
    /// Time the rate was recorded for.
    pub(super) rate_time: f64,
}

/// Everything one run measured.
#[derive(Debug, Clone)]
pub(super) struct Tally {
    /// Per direction, by [`CategoryId`].
    pub(super) cats: [Vec<CatTally>; 2],
    /// By phase (none without a capacity trace).
    pub(super) phases: Vec<PhaseTally>,
    /// Where each phase starts (nanoseconds from zero).
    starts: Vec<u64>,
}

impl Tally {
    /// Counters for `categories` categories and `phases`.
    pub(super) fn new(categories: usize, phases: &[Phase]) -> Self {
        Tally {
            cats: [
                vec![CatTally::default(); categories],
                vec![CatTally::default(); categories],
            ],
            phases: vec![PhaseTally::default(); phases.len()],
            starts: phases
                .iter()
                .map(|p| u64::try_from(p.start.as_nanos()).unwrap_or(u64::MAX))
                .collect(),
        }
    }

    fn phase_mut(&mut self, at: Instant) -> Option<&mut PhaseTally> {
        let i = self.starts.partition_point(|&s| s <= at.as_nanos());
        self.phases.get_mut(i.checked_sub(1)?)
    }

    fn cat_mut(&mut self, dir: Direction, cat: CategoryId) -> Option<&mut CatTally> {
        dir.pick_mut(&mut self.cats).get_mut(cat.index())
    }

    /// `bytes` of `cat` arrived in `dir`.
    pub(super) fn arrived(&mut self, dir: Direction, cat: CategoryId, bytes: u64) {
        if let Some(c) = self.cat_mut(dir, cat) {
            c.arrived_bytes += bytes;
        }
    }

    /// A packet of `cat` was dropped in `dir`.
    pub(super) fn dropped(&mut self, dir: Direction, cat: CategoryId) {
        if let Some(c) = self.cat_mut(dir, cat) {
            c.dropped += 1;
        }
    }

    /// A packet was delivered in `dir`: what it was (`d`) and how long it
    /// waited.
    pub(super) fn sent(&mut self, dir: Direction, d: Delivered) {
        let ns = |w: Duration| u64::try_from(w.as_nanos()).unwrap_or(u64::MAX);
        let (waited, outside) = (ns(d.waited), ns(d.outside));
        if let Some(c) = self.cat_mut(dir, d.cat) {
            c.sent_bytes += d.bytes;
            c.delay.record(waited);
            c.outside.record(outside);
        }
        if let Some(p) = self.phase_mut(d.entered) {
            dir.pick_mut(&mut p.outside).record(outside);
            if d.voice {
                dir.pick_mut(&mut p.voice).record(waited);
            }
        }
    }

    /// The line carried `wire_bytes` in `dir` until `now`.
    pub(super) fn line(&mut self, dir: Direction, wire_bytes: u64, now: Instant) {
        if let Some(p) = self.phase_mut(now) {
            *dir.pick_mut(&mut p.line_bytes) += wire_bytes;
        }
    }

    /// qosd shaped at `rates` ([upload, download]) for `dt` until `now`.
    pub(super) fn rate(&mut self, now: Instant, dt: Duration, rates: [Rate; 2]) {
        if let Some(p) = self.phase_mut(now) {
            let s = dt.as_secs_f64();
            for (bits, r) in p.rate_bits.iter_mut().zip(rates) {
                *bits += r.bps() as f64 * s;
            }
            p.rate_time += s;
        }
    }
}
