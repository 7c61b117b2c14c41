//! Per-category rates and recent queue delays, computed once a second
//! from the snapshots' sent bytes and delay histograms.

use std::sync::Arc;

use super::snapshot::Snapshot;
use crate::config::Config;
use crate::shaper::LogHistogram;
use crate::time::Instant;

/// The rates and the samples they were computed from.
#[derive(Debug, Default)]
pub(super) struct RateState {
    /// Each direction's snapshot at the last update: its time, category
    /// layout and sent bytes per category.
    last: Option<[Sample; 2]>,
    /// Bits/s per category, in the layout of `last`.
    rates: [Vec<f64>; 2],
    /// The 99th percentile of the queue delay (ms) of the packets each
    /// category sent between the last two samples, in the layout of
    /// `last`; `None` when it sent none. The shaper's own percentiles
    /// cover everything since qosd started, which says little about now.
    delays: [Vec<Option<f64>>; 2],
}

/// One direction's sent bytes per category at one moment.
#[derive(Debug)]
struct Sample {
    at: Instant,
    layout: Option<Arc<Config>>,
    sent: Vec<u64>,
    delay: Vec<LogHistogram>,
}

/// The name of category `i` of `layout`.
fn category_name(layout: Option<&Arc<Config>>, i: usize) -> Option<&str> {
    layout
        .and_then(|c| c.category.get(i))
        .map(|c| c.name.as_str())
}

/// The index in `to` of category `i` of `from`: the same index when both
/// are the same configuration (or unknown), else found by name.
fn same_category(from: Option<&Arc<Config>>, i: usize, to: Option<&Arc<Config>>) -> Option<usize> {
    match (from, to) {
        (Some(a), Some(b)) if !Arc::ptr_eq(a, b) => {
            let name = category_name(from, i)?;
            b.category.iter().position(|c| c.name == name)
        }
        _ => Some(i),
    }
}

impl RateState {
    /// Takes the snapshots `now` as the new samples. Bytes are divided by
    /// the time between the snapshots they come from, not between calls:
    /// the data path publishes every 100 ms, so the two differ by up to a
    /// tenth and the rate would jitter by as much. Categories are matched
    /// by name across a reload. A direction whose snapshot has not moved
    /// keeps its rates.
    pub(super) fn update(&mut self, now: [Snapshot; 2]) {
        let now = now.map(|s| Sample {
            at: s.at,
            sent: s.categories.iter().map(|c| c.sent.bytes).collect(),
            delay: s.categories.iter().map(|c| c.delay_fine.clone()).collect(),
            layout: s.config,
        });
        if let Some(prev) = &self.last {
            for (((rate, delay), cur), old) in self
                .rates
                .iter_mut()
                .zip(self.delays.iter_mut())
                .zip(&now)
                .zip(prev)
            {
                let secs = cur.at.nanos_since(old.at) as f64 / 1e9;
                if secs > 0.0 {
                    // A category new since then started from zero.
                    let before = |i| same_category(cur.layout.as_ref(), i, old.layout.as_ref());
                    *rate = cur
                        .sent
                        .iter()
                        .enumerate()
                        .map(|(i, b)| {
                            let was = before(i).and_then(|j| old.sent.get(j)).copied();
                            b.saturating_sub(was.unwrap_or(0)) as f64 * 8.0 / secs
                        })
                        .collect();
                    *delay = cur
                        .delay
                        .iter()
                        .enumerate()
                        .map(|(i, h)| {
                            let recent = match before(i).and_then(|j| old.delay.get(j)) {
                                Some(was) => h.since(was),
                                None => h.clone(),
                            };
                            recent.quantile(0.99).map(|d| d.as_secs_f64() * 1e3)
                        })
                        .collect();
                }
            }
        }
        self.last = Some(now);
    }

    /// Bits/s per direction and category, in the layout of the snapshots
    /// they were computed from.
    pub(super) fn rates(&self) -> [Vec<f64>; 2] {
        self.rates.clone()
    }

    /// Bits/s per direction and category, in the category layout of
    /// `snaps` (which may have changed since the rates were computed).
    pub(super) fn rates_for(&self, snaps: &[Snapshot; 2]) -> [Vec<f64>; 2] {
        self.in_layout_of(&self.rates, snaps, 0.0)
    }

    /// The recent queue delay p99 (ms) per direction and category, in the
    /// category layout of `snaps`.
    pub(super) fn delays_for(&self, snaps: &[Snapshot; 2]) -> [Vec<Option<f64>>; 2] {
        self.in_layout_of(&self.delays, snaps, None)
    }

    /// `values` (per direction, in the layout of `last`) in the category
    /// layout of `snaps`; `missing` for a category `last` did not have.
    fn in_layout_of<T: Clone>(
        &self,
        values: &[Vec<T>; 2],
        snaps: &[Snapshot; 2],
        missing: T,
    ) -> [Vec<T>; 2] {
        let mut out: [Vec<T>; 2] = Default::default();
        for (d, (o, snap)) in out.iter_mut().zip(snaps).enumerate() {
            let (Some(rates), last) = (values.get(d), self.last.as_ref().and_then(|l| l.get(d)))
            else {
                continue;
            };
            *o = (0..snap.categories.len())
                .map(|i| {
                    same_category(
                        snap.config.as_ref(),
                        i,
                        last.and_then(|l| l.layout.as_ref()),
                    )
                    .and_then(|j| rates.get(j))
                    .cloned()
                    .unwrap_or_else(|| missing.clone())
                })
                .collect();
        }
        out
    }
}
