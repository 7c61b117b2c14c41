//! The rate controller of one direction: WAN queueing-delay samples and
//! the direction's load in, a shaping rate out. Sans-IO: the caller passes
//! `now`, so it runs in virtual time in tests and in the simulator.
//!
//! The rule, every [`ControllerConfig::interval`]:
//! The interval's delay is its samples' median (each flow gives the least
//! of its answers over a short window, see [`crate::wan`]: what the far
//! end's ACK policy adds is some answers', a queue in the line all of
//! them).
//!
//! - **bloat** (the interval's delay is over its threshold twice in a
//!   row, or twice over it once, or, for the upload, once while the rate
//!   probes past the knee):
//!   cut to 90 % of what the line delivered (measured past the line: the
//!   download's arrivals, the upload's acknowledged bytes), at once: a
//!   line whose buffer fills is busy all the time, so what it delivered is
//!   its capacity, and a capacity drop is followed within one or two
//!   intervals. That figure is trusted when the delay was measured on this
//!   direction alone (one-way samples) or the direction was busy; else
//!   the cut is 10 % of the rate. A cut takes at most half the rate. Then
//!   no further cut for a refractory period, so the queue the cut drains
//!   can show in the samples, nor while that queue shrinks (by a tenth an
//!   interval): a cut that is taking hold needs no second one, which
//!   would set the rate and the knee below what the line carries.
//! - **loaded and clean** (the direction used most of its rate, delay
//!   near its baseline, and for the download no standing queue in the
//!   ISP's buffer that the ISP-queue guard had to drain): raise, after a
//!   second without bloat. Far below the capacity the line showed at the
//!   last bloat (the knee) by big steps (1 % of the maximum); from 90 % of
//!   the knee by small ones (0.125 %), constant up to the knee, growing
//!   by a tenth with each raise past it (up to 2 %): the line is probed
//!   gently where it last filled, and capacity that came back is found
//!   within a few seconds.
//! - otherwise, and without samples: **hold**. Never ramp up blind: an
//!   idle direction says nothing about the line.

use std::time::Duration;

use crate::config::Rate;
use crate::time::Instant;
pub use crate::wan::DelaySample;

/// Share of an interval with a standing queue in the line's buffer above
/// which the rate is not raised: the line, not qosd, sets the pace.
pub const OUTSIDE_HOLD: f64 = 0.05;

/// Samples of one interval kept for its median; more are thinned out.
const MAX_SAMPLES: usize = 64;

/// The controller's parameters for one direction.
#[derive(Debug, Clone, PartialEq)]
pub struct ControllerConfig {
    /// Never below.
    pub min: Rate,
    /// Never above (the line's best case).
    pub max: Rate,
    /// The rate at start.
    pub start: Rate,
    /// Queueing delay that counts as the line's buffer filling, at least.
    pub bloat: Duration,
    /// ... or this share of the path's own round trip, when larger: a
    /// geostationary path (600 ms) jitters by more than a terrestrial
    /// threshold.
    pub bloat_share: f64,
    /// How often the controller decides.
    pub interval: Duration,
    /// No cut within this long after a cut.
    pub cut_refractory: Duration,
    /// Cut after one interval over the threshold, not two, while the rate
    /// probes past the knee. Right where the samples time this
    /// direction's own queue (the upload's); not where the senders'
    /// bursts show in them at any rate (the download's, which the
    /// ISP-queue guard covers).
    pub cut_when_probing: bool,
    /// No raise within this long after a cut.
    pub raise_after_cut: Duration,
    /// Share of its rate a direction must carry to be raised.
    pub loaded: f64,
    /// A raise far below the knee, as a share of `max`.
    pub raise_step: f64,
    /// The first raise near the knee, as a share of `max`.
    pub probe_step: f64,
    /// Samples a decision needs: fewer are kept for the next interval (a
    /// long path gives few round trips per interval), unless older than
    /// `max_sample_age`. One stray sample never moves the rate.
    pub min_samples: usize,
    /// Samples older than this are not carried into a decision.
    pub max_sample_age: Duration,
}

impl ControllerConfig {
    /// Defaults that work untuned on terrestrial links and geostationary
    /// satellite, between `min` and `max`, starting at `start`.
    pub fn new(min: Rate, max: Rate, start: Rate) -> Self {
        ControllerConfig {
            min,
            max,
            start,
            bloat: Duration::from_millis(15),
            bloat_share: 0.05,
            interval: Duration::from_millis(100),
            cut_refractory: Duration::from_millis(400),
            cut_when_probing: false,
            raise_after_cut: Duration::from_secs(1),
            loaded: 0.75,
            raise_step: 0.01,
            probe_step: 0.001_25,
            min_samples: 3,
            max_sample_age: Duration::from_millis(1500),
        }
    }

    fn threshold(&self, base: Duration) -> Duration {
        self.bloat
            .max(base.mul_f64(self.bloat_share.clamp(0.0, 10.0)))
    }
}

/// Why the rate changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Delay grew: cut.
    Bloat,
    /// Loaded with delay near its baseline: raised.
    Raise,
}

impl Change {
    /// The `reason` label of `qosd_autorate_changes_total`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Change::Bloat => "bloat",
            Change::Raise => "raise",
        }
    }
}

/// What the controller saw in its last interval, for metrics and status.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Observed {
    /// Samples in the interval.
    pub samples: usize,
    /// Their median queueing delay, if any.
    pub queue: Option<Duration>,
    /// Share of the rate qosd sent the direction's traffic at.
    pub load: f64,
}

/// One direction's rate controller.
#[derive(Debug, Clone)]
pub struct Controller {
    cfg: ControllerConfig,
    rate: u64,
    next_tick: Option<Instant>,
    last_cut: Option<Instant>,
    /// The rate when delay last grew.
    knee: Option<u64>,
    /// Raises near or past the knee since the last cut.
    probes: u32,
    /// The last decision saw the delay over its threshold.
    was_over: bool,
    /// Share of the interval the line's buffer held a standing queue
    /// ([`Controller::outside_queue`]).
    outside: f64,
    /// The last interval's queueing delay, in nanoseconds.
    prev_queue: Option<u64>,
    /// Each sample's queueing delay against its own threshold, in
    /// thousandths, minus 1000 (positive: over; -500: half the threshold).
    excess: [i64; MAX_SAMPLES],
    queue: [u64; MAX_SAMPLES],
    count: usize,
    seen: u64,
    /// Of the samples held, how many were one-way.
    one_way: usize,
    /// When the oldest sample held arrived.
    first_sample: Option<Instant>,
    last: Observed,
}

impl Controller {
    /// A controller at `cfg.start` (clamped into `[min, max]`).
    pub fn new(cfg: ControllerConfig) -> Self {
        let (lo, hi) = bounds(&cfg);
        let rate = cfg.start.bps().clamp(lo, hi);
        Controller {
            cfg,
            rate,
            next_tick: None,
            last_cut: None,
            knee: None,
            probes: 0,
            was_over: false,
            outside: 0.0,
            prev_queue: None,
            excess: [0; MAX_SAMPLES],
            queue: [0; MAX_SAMPLES],
            count: 0,
            seen: 0,
            one_way: 0,
            first_sample: None,
            last: Observed::default(),
        }
    }

    /// The shaping rate now.
    pub fn rate(&self) -> Rate {
        Rate::from_bps(self.rate)
    }

    /// What the last interval showed.
    pub fn observed(&self) -> Observed {
        self.last
    }

    /// Applies new bounds and parameters (a reload), keeping the rate
    /// where it is if it is still within them.
    pub fn reconfigure(&mut self, cfg: ControllerConfig) {
        let (lo, hi) = bounds(&cfg);
        self.rate = self.rate.clamp(lo, hi);
        self.cfg = cfg;
    }

    /// Takes a delay sample of this direction. Beyond `MAX_SAMPLES` (64) in an
    /// interval, every other one is kept (the median needs no more).
    pub fn sample(&mut self, s: DelaySample) {
        self.seen += 1;
        let slot = if self.count < MAX_SAMPLES {
            self.count
        } else if self.seen.is_multiple_of(2) {
            (self.seen as usize / 2) % MAX_SAMPLES
        } else {
            return;
        };
        let mut threshold = self.cfg.threshold(s.base);
        if s.one_way {
            // The threshold bounds the round trip: each way gets a third
            // (both ways overshoot it a little before a cut takes hold).
            threshold /= 3;
            self.one_way += 1;
        }
        let excess = nanos(s.queue).saturating_mul(1000) / nanos(threshold).max(1) - 1000;
        if let (Some(e), Some(q)) = (self.excess.get_mut(slot), self.queue.get_mut(slot)) {
            *e = excess;
            *q = u64::try_from(nanos(s.queue)).unwrap_or(0);
        }
        self.count = (self.count + 1).min(MAX_SAMPLES);
    }

    /// Tells the next decision for what share of its interval the line's
    /// own buffer held a standing queue, as the ISP-queue guard saw it
    /// (the download's; [`crate::wan::guard`]). The guard drains such a
    /// queue, so the delay samples' median stays clean while the rate is
    /// already at or past what the line carries: over [`OUTSIDE_HOLD`]
    /// of the interval the rate is not raised. (Counting it as bloat was
    /// tried: on the simulator's line, whose receivers' stretch ACKs make
    /// bursts at any rate, it cost the download a tenth of its use; in the
    /// lab it never fired.)
    pub fn outside_queue(&mut self, share: f64) {
        self.outside = share;
    }

    /// When [`tick`](Self::tick) wants to be called next.
    pub fn next_tick(&self) -> Option<Instant> {
        self.next_tick
    }

    /// Decides at `now`, if an interval has passed since the last
    /// decision. Over that interval, `sent` is the rate qosd sent this
    /// direction's traffic at, and `delivered` what the line delivered of
    /// it, when known. Returns the change made, if any.
    pub fn tick(&mut self, now: Instant, sent: Rate, delivered: Option<Rate>) -> Option<Change> {
        let interval = self.cfg.interval.max(Duration::from_millis(10));
        match self.next_tick {
            Some(t) if now < t => return None,
            _ => {}
        }
        self.next_tick = Some(now + interval);
        let outside = std::mem::take(&mut self.outside);
        let hold = outside > OUTSIDE_HOLD;
        let load = sent.bps() as f64 / self.rate.max(1) as f64;
        let n = self.count;
        if n > 0 && n < self.cfg.min_samples {
            // Too few to decide on: wait for more, within an age limit.
            let first = *self.first_sample.get_or_insert(now);
            if now.saturating_since(first) < self.cfg.max_sample_age {
                self.last.load = load;
                return None;
            }
        }
        self.first_sample = None;
        let one_way = self.one_way * 2 > n;
        self.one_way = 0;
        // Past the age limit two samples do (a line whose buffer is full
        // answers rarely); one never does.
        let enough = n >= self.cfg.min_samples.clamp(1, 2);
        let interval_excess = self
            .excess
            .get_mut(..n)
            .and_then(median)
            .filter(|e| enough || *e <= 0);
        let interval_queue = self.queue.get_mut(..n).and_then(median);
        self.count = 0;
        self.seen = 0;
        self.last = Observed {
            samples: n,
            queue: interval_queue.map(Duration::from_nanos),
            load,
        };
        let (lo, hi) = bounds(&self.cfg);
        let since_cut = |t: Duration| self.last_cut.is_none_or(|c| now.saturating_since(c) >= t);
        let was_over =
            std::mem::replace(&mut self.was_over, interval_excess.is_some_and(|e| e > 0));
        let prev_queue = self.prev_queue;
        self.prev_queue = interval_queue.or(prev_queue);
        // A queue over the threshold that shrinks is draining already (a
        // cut before it took hold): cutting again would set the rate, and
        // the knee, below what the line carries.
        let draining = matches!((interval_queue, prev_queue), (Some(q), Some(p)) if q * 10 < p * 9);
        match interval_excess {
            // Without samples nothing is known: hold.
            None => None,
            Some(e) if e > 0 => {
                // Over the threshold twice in a row, or far over it once:
                // one interval of noisy samples is not a full buffer. Past
                // the knee once is enough: the rate is there to find the
                // line's limit, and a second interval of a rate over it
                // is a second interval of the queue growing.
                let probing =
                    self.cfg.cut_when_probing && self.knee.is_some_and(|k| self.rate >= k);
                if !(was_over || probing || e > 1000)
                    || draining
                    || !since_cut(self.cfg.cut_refractory)
                {
                    None
                } else {
                    // What the line delivered, when the direction was busy
                    // enough for that to be its capacity; else the rate.
                    let basis = match delivered {
                        Some(d) if (load >= 0.5 || one_way) && d.bps() > 0 => {
                            d.bps().min(self.rate)
                        }
                        _ => self.rate,
                    };
                    // At most half the rate at a time: a delivery read
                    // while the direction sent little must not take it
                    // to the floor at once.
                    let cut = ((basis as f64) * 0.9).max(self.rate as f64 * 0.5) as u64;
                    let new = cut.min(self.rate).clamp(lo, hi);
                    if new == self.rate {
                        // At the floor, or the line carried more than the
                        // rate: nothing to take away here.
                        return None;
                    }
                    self.last_cut = Some(now);
                    self.knee = Some(basis);
                    self.probes = 0;
                    self.rate = new;
                    Some(Change::Bloat)
                }
            }
            Some(_) => {
                // Near the baseline: half the margin to the threshold left.
                let clean = interval_excess.is_some_and(|e| e <= -500);
                if load >= self.cfg.loaded && clean && !hold && since_cut(self.cfg.raise_after_cut)
                {
                    let step = self.step(hi);
                    let new = self.rate.saturating_add(step.max(1)).clamp(lo, hi);
                    (new != self.rate).then(|| {
                        self.rate = new;
                        Change::Raise
                    })
                } else {
                    None
                }
            }
        }
    }
}

impl Controller {
    /// The next raise, for a maximum of `hi`.
    fn step(&mut self, hi: u64) -> u64 {
        let share = |s: f64| ((hi as f64) * s.clamp(0.0, 1.0)) as u64;
        match self.knee {
            Some(knee) if self.rate >= knee => {
                let growth = 1.1f64.powi(self.probes.min(64) as i32);
                self.probes += 1;
                share(self.cfg.probe_step * growth).min(share(self.cfg.raise_step * 2.0))
            }
            Some(knee) if self.rate as f64 >= 0.9 * knee as f64 => {
                share(self.cfg.probe_step).min(knee - self.rate).max(1)
            }
            _ => share(self.cfg.raise_step),
        }
    }
}

fn bounds(cfg: &ControllerConfig) -> (u64, u64) {
    let lo = cfg.min.bps().max(1);
    (lo, cfg.max.bps().max(lo))
}

fn nanos(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

fn median<T: Ord + Copy>(v: &mut [T]) -> Option<T> {
    if v.is_empty() {
        return None;
    }
    let mid = v.len() / 2;
    v.select_nth_unstable(mid);
    v.get(mid).copied()
}
