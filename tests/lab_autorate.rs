//! Autorate end to end in the lab office (issue 13): the office under load
//! (4 TCP uploads, 4 downloads, a 20 ms voice stream) while the ISP line
//! drops from 20/50 to 6/15 Mbit/s for 30 s and comes back, through qosd
//! with autorate and through qosd at its fixed rate (19/47), in one run.
//! With autorate the call stays clean and TCP keeps using the line; at the
//! fixed rate the queue moves into the modem's buffer and the call breaks
//! up (so the test fails when the controller does nothing). Root only:
//! without root cargo reports it ignored. The tests are listed in `main`
//! (common::run_lab_tests; `#[test]` does nothing here).

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

use common::*;

fn main() -> std::process::ExitCode {
    run_lab_tests(&[(
        "autorate_follows_the_line_down_and_back_up",
        autorate_follows_the_line_down_and_back_up,
    )])
}

/// The timeline, in seconds from the start of the load: the line at its
/// nominal rate, then dropped, then back.
const BEFORE: u64 = 15;
const DROP: u64 = 30;
const AFTER: u64 = 20;
/// Seconds the controller gets after a drop before the call is judged.
const ADAPT: f64 = 5.0;
/// Seconds after the line comes back within which TCP must be near the
/// nominal rate again.
const RECOVER: f64 = 10.0;
/// The first seconds of the load, TCP's slow start, left out of "before".
const RAMP: f64 = 5.0;

/// The line during the drop (bits/s), (upload, download).
const LOW: (f64, f64) = (6e6, 15e6);
/// qosd's nominal rates, autorate's maximums (bits/s): 95 %/94 % of the
/// 20/50 line. Recovery is judged against these, not the line: on this
/// line the download's ACKs take about 1 Mbit/s of the upload, so even at
/// the full rate the upload's goodput is about 16.5 Mbit/s, 82 % of the
/// line's 20.
const NOMINAL: (f64, f64) = (19e6, 47e6);

/// How far above the idle round trip the call may go during the drop.
/// Issue 13 asks for 15 ms. With the lab's senders on CUBIC (TCP_CC)
/// three runs gave 14.0, 12.7 and 13.6 ms over idle, most of it the
/// upload probing its knee (5-13 ms on the way up for a few hundred ms
/// every ~3 s). With
/// the host's default BBR senders (before TCP_CC) it was 20-35 ms here
/// and 89 ms once in CI (BENCHMARKS.md, "Downloads from BBR senders").
/// The gate keeps a margin over what CUBIC gives, since a CI machine
/// has its own jitter; a fixed rate gives 600-1800 ms here, so a broken
/// controller still fails.
const VOICE_MARGIN_MS: f64 = 25.0;

/// qosd shaping at 19/47 Mbit/s (NOMINAL), with autorate on or off
/// between the minimums and those maximums.
fn config(autorate: bool) -> String {
    format!(
        "{}\n[autorate]\nenabled = {autorate}\nupload_min = \"2 Mbit\"\nupload_max = \"19 Mbit\"\n\
         download_min = \"5 Mbit\"\ndownload_max = \"47 Mbit\"\n",
        lab_config("19 Mbit", "47 Mbit")
    )
}

/// One phase of a run: the call's round trips and TCP's goodput (bits/s).
#[derive(Debug, Clone, Copy)]
struct Phase {
    voice: VoiceStats,
    up: f64,
    down: f64,
}

/// What one run measured.
#[derive(Debug)]
struct Run {
    label: &'static str,
    idle: VoiceStats,
    /// At the nominal rate, past TCP's ramp, up to a second before the drop.
    before: Phase,
    /// During the drop, past the controller's ADAPT seconds.
    drop: Phase,
    /// The first RECOVER seconds after the line came back.
    recovering: Phase,
    /// From RECOVER seconds after the line came back to the end.
    after: Phase,
    /// Seconds after the drop from which every 1 s window of the call has
    /// its p99 within VOICE_MARGIN_MS of idle until the line comes back.
    voice_settled: Option<f64>,
    /// Seconds after the line came back from which upload / download
    /// carries at least 80 % of qosd's nominal rate (over 3 s from every
    /// second on).
    up_recovered: Option<f64>,
    down_recovered: Option<f64>,
}

impl Run {
    fn print(&self) {
        let row = |name: &str, p: &Phase| {
            eprintln!(
                "  {name:<26} {:>7.2} {:>8.2} {:>6.2} {:>8.2} {:>8.2}",
                p.voice.p50_ms,
                p.voice.p99_ms,
                p.voice.loss_pct,
                p.up / 1e6,
                p.down / 1e6
            );
        };
        let secs = |s: Option<f64>| s.map_or("never".to_owned(), |s| format!("{s:.0} s"));
        eprintln!(
            "{}: idle voice rtt p50 {:.2} ms, p99 {:.2} ms",
            self.label, self.idle.p50_ms, self.idle.p99_ms
        );
        eprintln!("  phase                      p50 ms   p99 ms  loss%  up Mbit/s down Mbit/s");
        row(
            &format!("20/50 (+{RAMP:.0}..{} s)", BEFORE - 1),
            &self.before,
        );
        row(&format!("6/15 (+{ADAPT:.0}..{DROP} s)"), &self.drop);
        row(&format!("20/50 back (0..{RECOVER:.0} s)"), &self.recovering);
        row(
            &format!("20/50 back ({RECOVER:.0}..{AFTER} s)"),
            &self.after,
        );
        eprintln!(
            "  voice within {VOICE_MARGIN_MS} ms of idle from {} after the drop; \
             upload at 80 % of nominal from {}, download from {} after the line came back",
            secs(self.voice_settled),
            secs(self.up_recovered),
            secs(self.down_recovered)
        );
    }
}

fn secs_since(t0: SystemTime, t: SystemTime) -> f64 {
    t.duration_since(t0).unwrap_or_default().as_secs_f64()
}

/// Seconds from `from` until the first of `windows` (start, value) from
/// which every later one is good; `None` when the last one is not.
fn settled(windows: &[(f64, bool)], from: f64) -> Option<f64> {
    let mut since = None;
    for &(start, good) in windows {
        match (good, since) {
            (true, None) => since = Some(start),
            (false, _) => since = None,
            _ => {}
        }
    }
    since.map(|s| (s - from).max(0.0))
}

/// One run of the scenario through qosd with `autorate` on or off.
fn run(lab: &Lab, label: &'static str, autorate: bool) -> Run {
    let _qosd = lab.qosd(&config(autorate));
    let idle = irtt_stats(&output_of(lab.voice_client(5)));

    let total = BEFORE + DROP + AFTER;
    let script = repo().join("deploy/lab/poll_metrics.py");
    let script = script.to_string_lossy();
    let poll = lab.spawn("gw", &["python3", &script, &(total + 1).to_string()]);
    let (start, t0) = (Instant::now(), SystemTime::now());
    let secs = total.to_string();
    let up = lab.spawn(
        "lan",
        &[
            "iperf3",
            "-c",
            "198.18.0.20",
            "-p",
            "5201",
            "-t",
            &secs,
            "-P",
            "4",
            "-C",
            TCP_CC,
            "-i",
            "1",
            "-J",
            "--get-server-output",
        ],
    );
    let down = lab.spawn(
        "lan",
        &[
            "iperf3",
            "-c",
            "198.18.0.20",
            "-p",
            "5202",
            "-t",
            &secs,
            "-P",
            "4",
            "-R",
            "-C",
            TCP_CC,
            "-i",
            "1",
            "-J",
        ],
    );
    let voice = lab.voice_client(total as u32);

    let at = |s: u64| {
        std::thread::sleep(
            (start + Duration::from_secs(s)).saturating_duration_since(Instant::now()),
        )
    };
    at(BEFORE);
    lab.line("6mbit", "15mbit");
    let dropped = secs_since(t0, SystemTime::now());
    at(BEFORE + DROP);
    lab.line("20mbit", "50mbit");
    let back = secs_since(t0, SystemTime::now());

    let trips = irtt_round_trips(&output_of(voice));
    let up = iperf_intervals(&output_of(up));
    let down = iperf_intervals(&output_of(down));
    let polls = output_of(poll);
    let end = total as f64;

    let at_s = |s: f64| t0 + Duration::from_secs_f64(s);
    let phase = |from: f64, to: f64| Phase {
        voice: voice_window(&trips, at_s(from), at_s(to)),
        up: mean_bps(&up, from, to),
        down: mean_bps(&down, from, to),
    };
    let idle_ms = idle.p50_ms;
    let voice_windows: Vec<(f64, bool)> = (0..DROP)
        .map(|k| dropped + k as f64)
        .filter(|&s| s + 1.0 <= back)
        .map(|s| {
            let v = voice_window(&trips, at_s(s), at_s(s + 1.0));
            (s, v.p99_ms <= idle_ms + VOICE_MARGIN_MS)
        })
        .collect();
    // Goodput over 3 s from each second on: one slow second of TCP's
    // sawtooth does not reset the clock.
    let recovered = |intervals: &[Interval], nominal: f64| {
        let windows: Vec<(f64, bool)> = intervals
            .iter()
            .filter(|i| {
                i.end - i.start >= 0.5 && i.start >= back - 0.5 && i.start + 3.0 <= end + 0.5
            })
            .map(|i| {
                (
                    i.start,
                    mean_bps(intervals, i.start, i.start + 3.0) >= 0.8 * nominal,
                )
            })
            .collect();
        settled(&windows, back)
    };
    let r = Run {
        label,
        idle,
        // Ends a second before the drop: what was sent then met it.
        before: phase(RAMP, dropped - 1.0),
        drop: phase(dropped + ADAPT, back),
        recovering: phase(back, back + RECOVER),
        after: phase(back + RECOVER, end),
        voice_settled: settled(&voice_windows, dropped),
        up_recovered: recovered(&up, NOMINAL.0),
        down_recovered: recovered(&down, NOMINAL.1),
    };
    r.print();
    print_trace(t0, &trips, &up, &down, &polls);
    r
}

/// Prints the run second by second: the call's p99 and TCP's goodput as
/// the ends saw them, and qosd's shaping rate, capacity estimate and WAN
/// delay as it exported them (polled once a second; "-" when it does not
/// export one).
fn print_trace(
    t0: SystemTime,
    trips: &[RoundTrip],
    up: &[Interval],
    down: &[Interval],
    polls: &str,
) {
    let epoch = t0
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    let polls: Vec<(f64, HashMap<String, f64>)> = polls
        .lines()
        .map(|line| {
            let mut parts = line.split('|');
            let t: f64 = parts.next().and_then(|t| t.parse().ok()).unwrap_or(0.0);
            let m = parts
                .filter_map(|l| {
                    let (k, v) = l.rsplit_once(' ')?;
                    Some((k.to_owned(), v.parse().ok()?))
                })
                .collect();
            (t - epoch, m)
        })
        .collect();
    let mbit = |intervals: &[Interval], s: f64| {
        let bps = mean_bps(intervals, s, s + 1.0);
        if bps.is_nan() {
            "-".to_owned()
        } else {
            format!("{:.1}", bps / 1e6)
        }
    };
    eprintln!(
        "      s  voice p99 ms (up/down)  goodput up/down  rate up/down  capacity up/down  wan delay up/down ms  cuts/raises up, down  samples  isp guard signals/throttled"
    );
    for k in 0..BEFORE + DROP + AFTER {
        let s = k as f64;
        let v = voice_window(
            trips,
            t0 + Duration::from_secs_f64(s),
            t0 + Duration::from_secs_f64(s + 1.0),
        );
        let (up_p99, down_p99) = one_way_p99(
            trips,
            t0 + Duration::from_secs_f64(s),
            t0 + Duration::from_secs_f64(s + 1.0),
        );
        let m = polls
            .iter()
            .find(|(t, _)| (s..s + 1.0).contains(t))
            .map(|(_, m)| m);
        let get = |name: &str, scale: f64| {
            let one = |dir: &str| {
                m.and_then(|m| m.get(&format!("{name}{{direction=\"{dir}\"}}")))
                    .map_or("-".to_owned(), |v| format!("{:.1}", v / scale))
            };
            format!("{:>6}/{:<6}", one("upload"), one("download"))
        };
        let changes = |dir: &str| {
            let n = |reason: &str| {
                m.and_then(|m| {
                    m.get(&format!(
                        "qosd_autorate_changes_total{{direction=\"{dir}\",reason=\"{reason}\"}}"
                    ))
                })
                .map_or("-".to_owned(), |v| format!("{v:.0}"))
            };
            format!("{}/{}", n("bloat"), n("raise"))
        };
        // The ISP-queue guard over this second: signals sent, and the
        // share of it the download ran throttled.
        let guard = {
            let prev = k
                .checked_sub(1)
                .and_then(|p| polls.iter().find(|(t, _)| (p as f64..s).contains(t)))
                .map(|(_, m)| m);
            let delta = |name: &str| {
                let v = |m: Option<&HashMap<String, f64>>| m.and_then(|m| m.get(name)).copied();
                v(m).map(|now| now - v(prev).unwrap_or(0.0))
            };
            match (
                delta("qosd_isp_queue_signals_total"),
                delta("qosd_isp_queue_throttled_seconds_total"),
            ) {
                (Some(n), Some(t)) => format!("{n:.0}/{:.0}%", t * 100.0),
                _ => "-".to_owned(),
            }
        };
        let samples: f64 = m
            .map(|m| {
                m.iter()
                    .filter(|(k, _)| k.starts_with("qosd_wan_delay_samples_total"))
                    .map(|(_, v)| *v)
                    .sum()
            })
            .unwrap_or(0.0);
        eprintln!(
            "  {k:>5} {:>12.1} ({up_p99:>5.1}/{down_p99:<5.1}) {:>7}/{:<7} {} {}      {}  {:>8}, {:<8} {samples:<7.0} {guard}",
            v.p99_ms,
            mbit(up, s),
            mbit(down, s),
            get("qosd_link_rate_bits_per_second", 1e6),
            get("qosd_autorate_capacity_bits_per_second", 1e6),
            get("qosd_wan_delay_seconds", 1e-3),
            changes("upload"),
            changes("download"),
        );
    }
}

fn autorate_follows_the_line_down_and_back_up() {
    let lab = Lab::up("qa1", "20mbit", "50mbit");
    // -J: the upload's client fetches the receiving server's intervals.
    lab.sh("srv", "iperf3 -s -D -J -p 5201 && iperf3 -s -D -J -p 5202");
    let mut irtt = lab.voice_server();
    std::thread::sleep(Duration::from_millis(300));

    let on = run(&lab, "qosd, autorate on", true);
    // The line is back at 20/50; let the modem's buffer empty.
    std::thread::sleep(Duration::from_secs(2));
    let off = run(&lab, "qosd, fixed 19/47 (autorate off)", false);
    let _ = irtt.kill();
    let _ = irtt.wait();

    // The scenario hurts: at the fixed rate the queue moves into the
    // modem's buffer (1 s deep at 6 Mbit/s) and the call breaks up.
    assert!(
        off.drop.voice.p99_ms > off.idle.p50_ms + 50.0,
        "at a fixed rate the drop should bloat the call: p99 {:.1} ms, idle {:.1} ms",
        off.drop.voice.p99_ms,
        off.idle.p50_ms
    );
    assert!(on.drop.voice.sent >= 1000, "voice stream too short: {on:?}");

    // With autorate the call stays clean during the drop...
    assert!(
        on.drop.voice.p99_ms <= on.idle.p50_ms + VOICE_MARGIN_MS,
        "with autorate, voice p99 during the drop {:.1} ms, idle {:.1} ms (fixed rate: {:.1} ms)",
        on.drop.voice.p99_ms,
        on.idle.p50_ms,
        off.drop.voice.p99_ms
    );
    assert!(
        off.drop.voice.p99_ms > on.drop.voice.p99_ms + 35.0,
        "autorate should beat the fixed rate by far: p99 {:.1} ms vs {:.1} ms",
        on.drop.voice.p99_ms,
        off.drop.voice.p99_ms
    );
    // ...TCP still uses the line left...
    assert!(
        on.drop.up >= 0.6 * LOW.0,
        "upload during the drop {:.2} Mbit/s, under 60 % of {} Mbit/s",
        on.drop.up / 1e6,
        LOW.0 / 1e6
    );
    assert!(
        on.drop.down >= 0.6 * LOW.1,
        "download during the drop {:.2} Mbit/s, under 60 % of {} Mbit/s",
        on.drop.down / 1e6,
        LOW.1 / 1e6
    );
    // ...and is back near the nominal rate within RECOVER seconds.
    assert!(
        on.after.up >= 0.8 * NOMINAL.0,
        "upload {RECOVER} s after the line came back {:.2} Mbit/s, under 80 % of {} Mbit/s",
        on.after.up / 1e6,
        NOMINAL.0 / 1e6
    );
    assert!(
        on.after.down >= 0.8 * NOMINAL.1,
        "download {RECOVER} s after the line came back {:.2} Mbit/s, under 80 % of {} Mbit/s",
        on.after.down / 1e6,
        NOMINAL.1 / 1e6
    );
}
