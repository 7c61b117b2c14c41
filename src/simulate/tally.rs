//! What a run measured, end to end: per direction and category, the bytes
//! offered and delivered, the drops (in qosd's queue or in the line's
//! buffer) and the time each packet waited in queues (qosd's and the
//! line's together); per phase of a capacity trace, the calls' delay, the
//! bytes the line carried and the rate qosd shaped at.

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
}

/// One phase of a trace.
#[derive(Debug, Clone, Default)]
pub(super) struct PhaseTally {
    /// Bytes the line carried (with its framing overhead), per direction.
    pub(super) line_bytes: [u64; 2],
    /// The calls' time in queues, per direction.
    pub(super) voice: [LogHistogram; 2],
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

    /// A packet of `cat`, `bytes` long, that entered the first queue at
    /// `entered` and waited `waited` in queues, was delivered in `dir`;
    /// `voice` when it is a call's.
    pub(super) fn sent(
        &mut self,
        dir: Direction,
        cat: CategoryId,
        bytes: u64,
        waited: Duration,
        voice: Option<Instant>,
    ) {
        let ns = u64::try_from(waited.as_nanos()).unwrap_or(u64::MAX);
        if let Some(c) = self.cat_mut(dir, cat) {
            c.sent_bytes += bytes;
            c.delay.record(ns);
        }
        if let Some(entered) = voice
            && let Some(p) = self.phase_mut(entered)
        {
            dir.pick_mut(&mut p.voice).record(ns);
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
