//! The controller against a model of a line in virtual time: a capacity
//! that changes, a deep modem/ISP buffer that fills when the shaping rate
//! is above it, and saturating traffic whose round trips sample the
//! buffer's delay. Plus properties over arbitrary inputs.

use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::config::Rate;
use crate::time::Instant;

const MBIT: u64 = 1_000_000;

fn cfg(min: u64, max: u64, start: u64) -> ControllerConfig {
    ControllerConfig::new(
        Rate::from_bps(min * MBIT),
        Rate::from_bps(max * MBIT),
        Rate::from_bps(start * MBIT),
    )
}

/// A line of capacity `capacity` (bit/s) with a byte buffer in front of
/// it, fed at the shaper's rate by saturating traffic.
struct Line {
    capacity: u64,
    /// Bits queued in the line's buffer.
    queued: f64,
    /// The buffer's size, in seconds at the nominal capacity.
    buffer_bits: f64,
    base: Duration,
}

impl Line {
    fn new(capacity_mbit: u64, base_ms: u64) -> Self {
        Line {
            capacity: capacity_mbit * MBIT,
            queued: 0.0,
            buffer_bits: 0.4 * (capacity_mbit * MBIT) as f64,
            base: Duration::from_millis(base_ms),
        }
    }

    /// `dt` of traffic sent at `rate`: returns what the line carried.
    fn run(&mut self, rate: u64, dt: Duration) -> u64 {
        let secs = dt.as_secs_f64();
        let arrived = rate as f64 * secs;
        let served = (self.capacity as f64 * secs).min(self.queued + arrived);
        self.queued = (self.queued + arrived - served).min(self.buffer_bits);
        (served / secs) as u64
    }

    fn delay(&self) -> Duration {
        Duration::from_secs_f64(self.queued / self.capacity.max(1) as f64)
    }
}

/// Runs `c` on `line` for `secs` seconds from `now`, with `flows` delay
/// samples every 20 ms; returns the worst queueing delay and the mean rate
/// carried over the last `tail` seconds.
fn drive(
    c: &mut Controller,
    line: &mut Line,
    now: &mut Instant,
    secs: f64,
    tail: f64,
) -> (Duration, f64) {
    let step = Duration::from_millis(20);
    let steps = (secs / 0.02) as usize;
    let tail_steps = (tail / 0.02) as usize;
    let mut carried_bits = 0.0;
    let mut window = 0.0;
    let mut window_bits = 0.0;
    let mut worst = Duration::ZERO;
    let mut tail_bits = 0.0;
    for i in 0..steps {
        let carried = line.run(c.rate().bps(), step);
        carried_bits += carried as f64 * 0.02;
        window += 0.02;
        window_bits += carried as f64 * 0.02;
        if i + tail_steps >= steps {
            tail_bits += carried as f64 * 0.02;
            worst = worst.max(line.delay());
        }
        for _ in 0..4 {
            c.sample(DelaySample {
                queue: line.delay(),
                base: line.base,
                one_way: false,
            });
        }
        *now = *now + step;
        if c.next_tick().is_none_or(|t| *now >= t) {
            let delivered = Rate::from_bps((window_bits / window) as u64);
            c.tick(*now, c.rate(), Some(delivered));
            window = 0.0;
            window_bits = 0.0;
        }
    }
    let _ = carried_bits;
    (worst, tail_bits / tail)
}

#[test]
fn follows_a_capacity_drop_within_a_second_and_recovers_within_ten() {
    let mut c = Controller::new(cfg(2, 25, 19));
    let mut line = Line::new(20, 30);
    let mut now = Instant::from_nanos(1);
    // Steady at 20 Mbit: the rate climbs to the line and holds near it.
    let (_, carried) = drive(&mut c, &mut line, &mut now, 30.0, 5.0);
    assert!(carried > 0.85 * 20.0 * MBIT as f64, "carried {carried}");
    // Capacity drops to 6 Mbit.
    line.capacity = 6 * MBIT;
    drive(&mut c, &mut line, &mut now, 1.0, 1.0);
    assert!(
        c.rate().bps() <= 6 * MBIT,
        "rate {} a second after the drop",
        c.rate().bps()
    );
    // After adapting, the buffer stays nearly empty and the line busy.
    let (worst, carried) = drive(&mut c, &mut line, &mut now, 25.0, 20.0);
    eprintln!(
        "during the drop: worst queue {worst:?}, carried {:.2} Mbit/s",
        carried / MBIT as f64
    );
    assert!(
        worst < Duration::from_millis(40),
        "queue {worst:?} during the drop"
    );
    assert!(carried > 0.6 * 6.0 * MBIT as f64, "carried {carried}");
    // Capacity returns: 80 % of it within ten seconds.
    line.capacity = 20 * MBIT;
    drive(&mut c, &mut line, &mut now, 10.0, 0.1);
    assert!(
        c.rate().bps() >= 16 * MBIT,
        "rate {} ten seconds after recovery",
        c.rate().bps()
    );
}

#[test]
fn a_fixed_rate_over_the_capacity_fills_the_buffer() {
    // The model shows the bloat the controller prevents (so the test above
    // can fail): the same drop at a fixed 19 Mbit.
    let mut line = Line::new(20, 30);
    line.capacity = 6 * MBIT;
    for _ in 0..250 {
        line.run(19 * MBIT, Duration::from_millis(20));
    }
    assert!(
        line.delay() > Duration::from_millis(500),
        "{:?}",
        line.delay()
    );
}

#[test]
fn geostationary_jitter_is_not_bloat() {
    // A 600 ms path whose samples jitter by 20 ms: the threshold scales with
    // the path, so a loaded direction keeps rising.
    let mut c = Controller::new(cfg(2, 25, 10));
    let mut now = Instant::from_nanos(1);
    for i in 0..200u64 {
        let jitter = Duration::from_millis((i * 7) % 21);
        for _ in 0..4 {
            c.sample(DelaySample {
                queue: jitter,
                base: Duration::from_millis(600),
                one_way: false,
            });
        }
        now = now + Duration::from_millis(200);
        c.tick(now, c.rate(), None);
    }
    assert_eq!(c.rate().bps(), 25 * MBIT);
}

#[test]
fn without_samples_or_load_the_rate_holds() {
    let mut c = Controller::new(cfg(2, 25, 10));
    let mut now = Instant::from_nanos(1);
    // Idle: no samples at all (a night, or a WAN without carrier).
    for _ in 0..500 {
        now = now + Duration::from_millis(200);
        assert_eq!(c.tick(now, Rate::from_bps(0), None), None);
    }
    assert_eq!(c.rate().bps(), 10 * MBIT);
    // Clean samples but a direction that carries little: no blind raise.
    for _ in 0..100 {
        c.sample(DelaySample {
            queue: Duration::ZERO,
            base: Duration::from_millis(30),
            one_way: false,
        });
        now = now + Duration::from_millis(200);
        assert_eq!(c.tick(now, Rate::from_bps(MBIT), None), None);
    }
    assert_eq!(c.rate().bps(), 10 * MBIT);
}

#[test]
fn one_misbehaving_flow_among_several_does_not_cut() {
    let mut c = Controller::new(cfg(2, 25, 10));
    let mut now = Instant::from_nanos(1);
    for _ in 0..20 {
        // Four clean flows, one whose server stalls by 300 ms.
        for q in [0, 1, 2, 1, 300] {
            c.sample(DelaySample {
                queue: Duration::from_millis(q),
                base: Duration::from_millis(30),
                one_way: false,
            });
        }
        now = now + Duration::from_millis(200);
        assert_ne!(c.tick(now, c.rate(), None), Some(Change::Bloat));
    }
    assert!(c.rate().bps() > 10 * MBIT);
}

#[test]
fn ticks_come_once_per_interval() {
    let mut c = Controller::new(cfg(2, 25, 10));
    let t0 = Instant::from_nanos(1);
    let bloat = DelaySample {
        queue: Duration::from_millis(100),
        base: Duration::from_millis(30),
        one_way: false,
    };
    let three = |c: &mut Controller| (0..3).for_each(|_| c.sample(bloat));
    three(&mut c);
    assert_eq!(c.tick(t0, c.rate(), None), Some(Change::Bloat));
    three(&mut c);
    // Within the interval: nothing decided, the samples kept.
    assert_eq!(
        c.tick(t0 + Duration::from_millis(100), c.rate(), None),
        None
    );
    assert_eq!(c.next_tick(), Some(t0 + Duration::from_millis(200)));
    // Next interval, but within the refractory period after a cut.
    assert_eq!(
        c.tick(t0 + Duration::from_millis(200), c.rate(), None),
        None
    );
    three(&mut c);
    assert_eq!(
        c.tick(t0 + Duration::from_millis(400), c.rate(), None),
        Some(Change::Bloat)
    );
}

#[test]
fn a_stray_sample_never_moves_the_rate_but_few_samples_add_up() {
    let mut c = Controller::new(cfg(2, 25, 10));
    let mut now = Instant::from_nanos(1);
    let bloat = DelaySample {
        queue: Duration::from_millis(200),
        base: Duration::from_millis(30),
        one_way: false,
    };
    // One slow DNS answer, then silence: held, never a cut.
    c.sample(bloat);
    for _ in 0..20 {
        assert_eq!(c.tick(now, c.rate(), None), None);
        now = now + Duration::from_millis(200);
    }
    assert_eq!(c.rate().bps(), 10 * MBIT);
    // A long path: one round trip per interval, each over the threshold;
    // three of them are enough to act on.
    let mut cut = None;
    for i in 0..4 {
        c.sample(bloat);
        if let Some(ch) = c.tick(now, c.rate(), None) {
            cut = Some((i, ch));
            break;
        }
        now = now + Duration::from_millis(200);
    }
    assert_eq!(cut, Some((2, Change::Bloat)));
}

#[test]
fn a_queue_that_drains_after_a_cut_is_not_cut_again() {
    // A capacity drop fills the line's buffer; one cut puts the rate under
    // the new capacity and the queue drains over the next second, still
    // over the threshold for a while. Cutting again on it would leave the
    // rate, and the knee, far below what the line carries.
    let mut c = Controller::new(cfg(2, 25, 19));
    let mut now = Instant::from_nanos(1);
    let mut queue_ms = 120.0f64;
    let mut cuts = 0;
    for i in 0..20 {
        for _ in 0..4 {
            c.sample(DelaySample {
                queue: Duration::from_secs_f64(queue_ms / 1000.0),
                base: Duration::from_millis(30),
                one_way: true,
            });
        }
        now = now + Duration::from_millis(100);
        if c.tick(now, c.rate(), Some(Rate::from_bps(6 * MBIT))) == Some(Change::Bloat) {
            cuts += 1;
        }
        // Growing for the first intervals, then draining.
        queue_ms = if i < 2 {
            queue_ms * 1.1
        } else {
            queue_ms * 0.8
        };
    }
    assert_eq!(cuts, 1, "rate {}", c.rate().bps());
    assert!(c.rate().bps() >= 5 * MBIT, "rate {}", c.rate().bps());
}

/// Past the knee, one interval over the threshold cuts when
/// `cut_when_probing` is set (the upload), and only a second one does
/// otherwise.
#[test]
fn probing_past_the_knee_cuts_on_the_first_interval_over_the_threshold() {
    let over = DelaySample {
        queue: Duration::from_millis(8),
        base: Duration::from_millis(1),
        one_way: true,
    };
    let clean = DelaySample {
        queue: Duration::ZERO,
        ..over
    };
    for eager in [false, true] {
        let mut c = Controller::new(ControllerConfig {
            cut_when_probing: eager,
            ..cfg(2, 25, 10)
        });
        let mut now = Instant::from_nanos(1);
        let tick = |c: &mut Controller, s: DelaySample, now: &mut Instant| {
            (0..4).for_each(|_| c.sample(s));
            *now = *now + Duration::from_millis(100);
            c.tick(*now, c.rate(), Some(Rate::from_bps(6 * MBIT)))
        };
        // Two intervals over the threshold: a cut, and the knee at 6.
        tick(&mut c, over, &mut now);
        assert_eq!(tick(&mut c, over, &mut now), Some(Change::Bloat));
        // Clean and loaded: raised back up to the knee and past it.
        let mut past = 0;
        while past < 3 {
            assert_ne!(tick(&mut c, clean, &mut now), Some(Change::Bloat));
            if c.rate().bps() >= 6 * MBIT {
                past += 1;
            }
        }
        let first = tick(&mut c, over, &mut now);
        let expected = eager.then_some(Change::Bloat);
        assert_eq!(first, expected, "cut_when_probing {eager}");
        if !eager {
            assert_eq!(tick(&mut c, over, &mut now), Some(Change::Bloat));
        }
    }
}

/// A standing queue in the line's buffer for part of the interval (the
/// ISP-queue guard at work) holds a loaded, clean direction where it is;
/// without it the same samples raise the rate.
#[test]
fn a_standing_queue_outside_holds_the_rate() {
    let clean = DelaySample {
        queue: Duration::ZERO,
        base: Duration::from_millis(30),
        one_way: true,
    };
    for share in [0.0, 0.02, 0.1, 1.0] {
        let mut c = Controller::new(cfg(2, 25, 10));
        let mut now = Instant::from_nanos(1);
        let mut raises = 0;
        for _ in 0..20 {
            (0..4).for_each(|_| c.sample(clean));
            c.outside_queue(share);
            now = now + Duration::from_millis(100);
            match c.tick(now, c.rate(), Some(Rate::from_bps(8 * MBIT))) {
                Some(Change::Raise) => raises += 1,
                Some(Change::Bloat) => panic!("cut at share {share}"),
                None => {}
            }
        }
        if share < controller::OUTSIDE_HOLD {
            assert!(raises >= 15, "{raises} raises at share {share}");
        } else {
            assert_eq!((raises, c.rate().bps()), (0, 10 * MBIT), "share {share}");
        }
    }
}

proptest! {
    /// Whatever the samples and loads, the rate stays within [min, max].
    #[test]
    fn rate_always_within_bounds(
        min in 1u64..50,
        span in 0u64..100,
        start in 0u64..200,
        steps in prop::collection::vec((0u64..2_000, 0u64..1_000, 0u64..300, 0usize..80), 1..200),
    ) {
        let max = min + span;
        let mut c = Controller::new(cfg(min, max, start));
        let mut now = Instant::from_nanos(1);
        for (queue_ms, base_ms, carried_mbit, n) in steps {
            for _ in 0..n {
                c.sample(DelaySample {
                    queue: Duration::from_millis(queue_ms),
                    base: Duration::from_millis(base_ms),
                    one_way: false,
                });
            }
            now = now + Duration::from_millis(200);
            let carried = Rate::from_bps(carried_mbit * MBIT);
            c.tick(now, carried, (n % 2 == 0).then_some(carried));
            prop_assert!(c.rate().bps() >= min * MBIT && c.rate().bps() <= max * MBIT);
        }
    }
}

#[test]
fn a_reload_applies_new_bounds_at_once_and_a_new_link_rate_restarts() {
    use crate::config::Direction::{Download, Upload};
    let mut cfg = crate::config::load_embedded().expect("embedded config");
    cfg.link.upload = Rate::from_bps(20 * MBIT);
    cfg.link.download = Rate::from_bps(50 * MBIT);
    cfg.autorate.enabled = true;
    cfg.autorate.upload_min = Rate::from_bps(2 * MBIT);
    cfg.autorate.upload_max = Rate::from_bps(25 * MBIT);
    cfg.autorate.download_min = Rate::from_bps(5 * MBIT);
    cfg.autorate.download_max = Rate::from_bps(60 * MBIT);
    let mut a = Autorate::new(&cfg);
    assert_eq!(a.rate(Upload).bps(), 20 * MBIT, "starts at link.upload");

    // A lower ceiling applies at once; the other direction is untouched.
    let mut lower = cfg.clone();
    lower.autorate.upload_max = Rate::from_bps(12 * MBIT);
    a.reconfigure(&lower);
    assert_eq!(a.rate(Upload).bps(), 12 * MBIT);
    assert_eq!(a.rate(Download).bps(), 50 * MBIT);
    assert_eq!(a.status(Upload).max.bps(), 12 * MBIT);

    // A ceiling raised again keeps the rate where it is: it is still
    // within bounds, and only the line can say there is more.
    a.reconfigure(&cfg);
    assert_eq!(a.rate(Upload).bps(), 12 * MBIT);

    // Turned off, the rates are link.* and nothing follows the line.
    let mut off = cfg.clone();
    off.autorate.enabled = false;
    a.reconfigure(&off);
    assert!(!a.enabled());
    assert_eq!(a.rate(Upload).bps(), 20 * MBIT);
    assert_eq!(a.status(Upload).capacity, None);

    // Turned on again, or with a new link.*, it starts over from link.*.
    a.reconfigure(&lower);
    assert_eq!(a.rate(Upload).bps(), 12 * MBIT, "clamped start");
    let mut moved = cfg.clone();
    moved.link.upload = Rate::from_bps(15 * MBIT);
    a.reconfigure(&moved);
    assert_eq!(a.rate(Upload).bps(), 15 * MBIT);
}
