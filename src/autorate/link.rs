//! Both directions of the link: the WAN-delay samples the meter took,
//! attributed to a direction, and each direction's load, fed to its
//! [`Controller`] every interval; the rates out. Sans-IO: the daemon's
//! download thread and the simulator drive it with `now` and the byte
//! counts of the engines.

use std::time::Duration;

use super::controller::{Change, Controller, ControllerConfig};
use crate::config::{Autorate as AutorateConfig, Config, Direction, Link, Rate};
use crate::time::Instant;
use crate::wan::{DelaySample, Meter, Source, Toward};

/// Samples of one direction held between two decisions; more are
/// thinned (the controller keeps 64 for its median).
const HOLD: usize = 256;

/// A direction whose traffic used less than this share of its rate over
/// an interval is not charged with round-trip samples that may be the
/// other direction's: it cannot have filled its buffer. (A download whose
/// line fell far below qosd's rate still carries all the line delivers,
/// well above this.)
const CHARGEABLE_LOAD: f64 = 0.2;

/// Cumulative byte counts of the engines, read at each step.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Bytes qosd sent on, per direction ([`Direction::index`]).
    pub sent: [u64; 2],
    /// Bytes that arrived, per direction: for the download, what the line
    /// delivered.
    pub arrived: [u64; 2],
    /// TCP payload bytes that arrived, per direction.
    pub tcp_payload: [u64; 2],
    /// Bytes of the office's TCP uploads the far ends acknowledged: of
    /// what the upload direction delivered, the TCP payload.
    pub acked: u64,
    /// Time, ns, the ISP's download buffer held a standing queue that the
    /// ISP-queue guard acted on ([`crate::wan::guard`]): the download's
    /// throttled time. 0 without the guard.
    pub outside_ns: u64,
}

/// Below this share of TCP payload in what the upload carried, its
/// acknowledgements say too little of what the line delivered.
const MIN_TCP_SHARE: f64 = 0.2;

/// What one direction's link looks like now, for status and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct WanStatus {
    /// Autorate moves the rate (otherwise it is `link.*`).
    pub enabled: bool,
    /// The shaping rate now.
    pub rate: Rate,
    /// Autorate's floor and ceiling.
    pub min: Rate,
    /// See `min`.
    pub max: Rate,
    /// What the line can carry, as far as autorate knows: what it
    /// delivered when its buffer last filled, or more since.
    pub capacity: Option<Rate>,
    /// What the line delivered over the last interval.
    pub delivered: Option<Rate>,
    /// Share of the rate qosd sent at over the last interval.
    pub load: f64,
    /// The WAN round trip with empty buffers (median of the paths'
    /// minimums in the last samples).
    pub baseline: Option<Duration>,
    /// The WAN round trip now, as this direction's samples see it.
    pub delay: Option<Duration>,
    /// Rate changes, by [`Change`]: bloat, raise.
    pub changes: [u64; 2],
}

/// Both directions' controllers and what they were last told.
#[derive(Debug, Clone)]
pub struct Autorate {
    cfg: AutorateConfig,
    link: Link,
    controllers: [Controller; 2],
    held: [Vec<DelaySample>; 2],
    either: Vec<DelaySample>,
    last: Option<(Instant, Totals)>,
    status: [WanStatus; 2],
    capacity: [Option<u64>; 2],
    samples: [u64; Source::ALL.len()],
    /// What the line delivered in the last intervals, per direction
    /// (newest first).
    delivered: [[Option<Rate>; DELIVERED_INTERVALS]; 2],
}

/// The line's delivery is read over this many intervals (its best): a
/// stall of acknowledgements in a loss recovery or a burst of arrivals
/// must not be read as the line's capacity.
const DELIVERED_INTERVALS: usize = 3;

fn controller_config(a: &AutorateConfig, link: &Link, dir: Direction) -> ControllerConfig {
    let mut c = ControllerConfig::new(a.min(dir), a.max(dir), link.rate(dir));
    c.bloat = a.delay_threshold;
    c.cut_when_probing = dir == Direction::Upload;
    c
}

impl Autorate {
    /// For `cfg`: each direction at `link.*`; when `autorate.enabled`,
    /// free to move within its bounds.
    pub fn new(cfg: &Config) -> Self {
        let controllers = Direction::BOTH
            .map(|d| Controller::new(controller_config(&cfg.autorate, &cfg.link, d)));
        let mut a = Autorate {
            cfg: cfg.autorate,
            link: cfg.link,
            controllers,
            held: [Vec::with_capacity(HOLD), Vec::with_capacity(HOLD)],
            either: Vec::with_capacity(HOLD),
            last: None,
            status: [WanStatus::default(); 2],
            capacity: [None; 2],
            samples: [0; Source::ALL.len()],
            delivered: [[None; DELIVERED_INTERVALS]; 2],
        };
        a.refresh_status();
        a
    }

    /// Follows a reloaded configuration: new bounds apply at once (the
    /// rate kept where it is if within them); a changed `link.*` or
    /// autorate turned on starts over from `link.*`.
    pub fn reconfigure(&mut self, cfg: &Config) {
        if cfg.autorate == self.cfg && cfg.link == self.link {
            return;
        }
        let restart = cfg.link != self.link || (cfg.autorate.enabled && !self.cfg.enabled);
        for d in Direction::BOTH {
            let c = controller_config(&cfg.autorate, &cfg.link, d);
            match self.controllers.get_mut(d.index()) {
                Some(ctl) if !restart => ctl.reconfigure(c),
                Some(ctl) => *ctl = Controller::new(c),
                None => {}
            }
        }
        if restart {
            self.capacity = [None; 2];
        }
        self.cfg = cfg.autorate;
        self.link = cfg.link;
        self.refresh_status();
    }

    /// Whether the rates follow the line.
    pub fn enabled(&self) -> bool {
        self.cfg.enabled
    }

    /// The shaping rate of `dir` now.
    pub fn rate(&self, dir: Direction) -> Rate {
        if !self.cfg.enabled {
            return self.link.rate(dir);
        }
        self.controllers
            .get(dir.index())
            .map_or(self.link.rate(dir), Controller::rate)
    }

    /// `dir`'s status.
    pub fn status(&self, dir: Direction) -> WanStatus {
        self.status.get(dir.index()).copied().unwrap_or_default()
    }

    /// Round trips measured since start, by [`Source::index`].
    pub fn samples_by_source(&self) -> [u64; Source::ALL.len()] {
        self.samples
    }

    /// When [`Autorate::step`] next decides.
    pub fn next_tick(&self) -> Option<Instant> {
        self.controllers
            .iter()
            .filter_map(Controller::next_tick)
            .min()
    }

    /// Takes the samples `meter` measured since the last step and, when an
    /// interval has passed, decides both directions from them and from
    /// the byte counts `totals`. Returns the changes made.
    pub fn step(
        &mut self,
        now: Instant,
        totals: &Totals,
        meter: &mut Meter,
    ) -> [Option<Change>; 2] {
        self.samples = meter.samples_by_source();
        let (held, either) = (&mut self.held, &mut self.either);
        meter.drain(|to, s| {
            let v = match to {
                Toward::Upload => held.get_mut(0),
                Toward::Download => held.get_mut(1),
                Toward::Either => Some(&mut *either),
            };
            if let Some(v) = v
                && v.len() < HOLD
            {
                v.push(s);
            }
        });
        if self.next_tick().is_some_and(|t| now < t) {
            return [None; 2];
        }
        let (then, before) = self.last.unwrap_or((now, *totals));
        self.last = Some((now, *totals));
        let secs = now.saturating_since(then).as_secs_f64();
        let rate_of =
            |bytes: u64| (secs > 0.0).then(|| Rate::from_bps((bytes as f64 * 8.0 / secs) as u64));
        let mut changes = [None; 2];
        // Round trips say only that one of the two ways grew: when one-way
        // samples say which, they are noise.
        let attributed = self.held.iter().map(Vec::len).sum::<usize>() >= 3;
        if attributed {
            self.either.clear();
        }
        for d in Direction::BOTH {
            let i = d.index();
            let at = |v: &[u64; 2]| v.get(i).copied().unwrap_or(0);
            let sent = rate_of(at(&totals.sent).wrapping_sub(at(&before.sent)))
                .unwrap_or(Rate::from_bps(0));
            let now_delivered = match d {
                // The line carries the upload's UDP (calls, video) and
                // headers too, at the same rate as the TCP payload it is
                // queued with: scale what was acknowledged by the share of
                // TCP payload in what arrived.
                Direction::Upload => {
                    let arrived = at(&totals.arrived).wrapping_sub(at(&before.arrived));
                    let tcp = at(&totals.tcp_payload).wrapping_sub(at(&before.tcp_payload));
                    let acked = totals.acked.wrapping_sub(before.acked);
                    (tcp as f64 >= MIN_TCP_SHARE * arrived as f64 && tcp > 0)
                        .then(|| (acked as f64 * arrived as f64 / tcp as f64) as u64)
                        .and_then(rate_of)
                }
                Direction::Download => {
                    rate_of(at(&totals.arrived).wrapping_sub(at(&before.arrived)))
                }
            };
            let delivered = self.delivered.get_mut(i).and_then(|h| {
                h.rotate_right(1);
                if let Some(first) = h.first_mut() {
                    *first = now_delivered;
                }
                h.iter().flatten().max().copied()
            });
            let Some(ctl) = self.controllers.get_mut(i) else {
                continue;
            };
            let load = sent.bps() as f64 / ctl.rate().bps().max(1) as f64;
            let own = self.held.get_mut(i).map(std::mem::take).unwrap_or_default();
            let charged = load >= CHARGEABLE_LOAD;
            let mut bases = Vec::new();
            for s in own.iter().chain(self.either.iter().filter(|_| charged)) {
                ctl.sample(*s);
                bases.push(s.base);
            }
            if let Some(v) = self.held.get_mut(i) {
                // Give the buffer back (its capacity is kept).
                *v = own;
                v.clear();
            }
            // Off, the controller still follows the line (for status),
            // but its rate is not used and nothing counts as a change.
            if d == Direction::Download && secs > 0.0 {
                let outside = totals.outside_ns.wrapping_sub(before.outside_ns) as f64 / 1e9;
                ctl.outside_queue(outside / secs);
            }
            let change = ctl.tick(now, sent, delivered).filter(|_| self.cfg.enabled);
            let obs = ctl.observed();
            let rate = ctl.rate().bps();
            if let Some(c) = self.capacity.get_mut(i) {
                match change {
                    Some(Change::Bloat) => {
                        *c = Some(
                            delivered
                                .filter(|_| load >= 0.5)
                                .map_or(rate * 10 / 9, |r| r.bps()),
                        )
                    }
                    _ => *c = c.map(|c| c.max(rate)),
                }
            }
            if let (Some(ch), Some(s)) = (change, self.status.get_mut(i)) {
                let k = usize::from(ch == Change::Raise);
                if let Some(n) = s.changes.get_mut(k) {
                    *n += 1;
                }
            }
            if let Some(ch) = changes.get_mut(i) {
                *ch = change;
            }
            self.note(d, obs, &bases, now_delivered);
        }
        self.either.clear();
        self.refresh_status();
        changes
    }

    /// Records what `dir`'s last interval showed.
    fn note(
        &mut self,
        dir: Direction,
        obs: super::Observed,
        bases: &[Duration],
        delivered: Option<Rate>,
    ) {
        let Some(s) = self.status.get_mut(dir.index()) else {
            return;
        };
        let mut b = bases.to_vec();
        b.sort_unstable();
        if let Some(base) = b.get(b.len() / 2) {
            s.baseline = Some(*base);
        }
        // Without samples the last figures stand.
        if let (Some(base), Some(q)) = (s.baseline, obs.queue) {
            s.delay = Some(base + q);
        }
        s.load = obs.load;
        s.delivered = delivered;
    }

    fn refresh_status(&mut self) {
        for d in Direction::BOTH {
            let rate = self.rate(d);
            let capacity = self.capacity.get(d.index()).copied().flatten();
            if let Some(s) = self.status.get_mut(d.index()) {
                s.enabled = self.cfg.enabled;
                s.rate = rate;
                s.min = self.cfg.min(d);
                s.max = self.cfg.max(d);
                s.capacity = if self.cfg.enabled {
                    Some(Rate::from_bps(capacity.unwrap_or(rate.bps())))
                } else {
                    None
                };
            }
        }
    }
}
