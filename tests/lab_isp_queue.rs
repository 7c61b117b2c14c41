//! Downloads on a steady line (issue 20): the queue must stay out of the
//! ISP's buffer, which sits in front of qosd, so the office's calls stay
//! clean while people download, and the downloads still fill the line.
//!
//! The lab office of the issue: line 20/50 Mbit/s with a 400 ms buffer and
//! a 30 ms base round trip (`lab.sh up -r`), qosd at 19/47 Mbit/s; 4 TCP
//! uploads, 4 TCP downloads (BBR senders) and a 20 ms voice stream for
//! 85 s. Run twice in one go: qosd as it ships (the download window clamp
//! and the ISP-queue guard on) and qosd before issue 20 (both off).
//!
//! The criterion: in every 5 s window after the first, the call's
//! p99 within 5 ms of idle and the downloads at 85 % of qosd's rate; the
//! old behaviour must fail it. Printed per window for both runs (`!`).
//! Gated: qosd as it ships keeps the downloads at 85 % on average and 80 %
//! in every window, and the call within the margin in all but at most
//! [`SPARE_WINDOWS`] windows, by at most [`SPARE_MS`] summed. That
//! tolerance is for this lab, not for qosd: on a 2-core machine running a
//! debug qosd, a Python delay line and both iperf3s, the endpoints add a
//! few ms of their own to some windows, and about every 10 s BBR's
//! ProbeRTT drains and refills the flows at once (BENCHMARKS.md, "The
//! download window clamp"). That the old behaviour fails is printed, not
//! gated, in this office: it fails only when its senders happen to refill
//! the ISP's buffer in step, which most runs do (by 13-237 ms summed) and
//! some do not (in one `.ci/run` every window stayed within 4.8 ms). The
//! second test gates it in a busier office, where it always fails: the
//! same, and a new 3 MB download every 5 s.
//!
//! Root only: without root cargo reports them ignored. The tests are
//! listed in `main` (common::run_lab_tests; `#[test]` does nothing here).

mod common;

use std::time::{Duration, SystemTime};

use common::*;

fn main() -> std::process::ExitCode {
    run_lab_tests(&[
        (
            "calls_stay_clean_and_downloads_keep_the_line_on_a_steady_line",
            calls_stay_clean_and_downloads_keep_the_line_on_a_steady_line,
        ),
        (
            "new_downloads_no_longer_fill_the_isps_buffer",
            new_downloads_no_longer_fill_the_isps_buffer,
        ),
    ])
}

/// The TCP senders' congestion control: BBR (v1), which does not slow
/// down on a drop, so its bursts are what reaches the ISP's buffer and
/// what the window clamp is for. With CUBIC senders (the other lab tests'
/// [`TCP_CC`]) CoDel alone keeps the call within the margin here
/// (BENCHMARKS.md, "Downloads from BBR senders").
const SENDERS: &str = "bbr";

/// Seconds of load.
const LOAD: u64 = 85;
/// Every window of this many seconds is judged...
const WINDOW: u64 = 5;
/// ...after the first one (TCP's start).
const RAMP: u64 = 5;
/// How far above the idle round trip the call's p99 may go in a window.
const VOICE_MARGIN_MS: f64 = 5.0;
/// qosd's rates (bits/s): 95 % / 94 % of the 20/50 line.
const RATES: (f64, f64) = (19e6, 47e6);
/// The share of qosd's download rate the downloads must carry in every
/// window.
const DOWN_SHARE: f64 = 0.85;
/// Windows in which qosd as it ships may miss the call's margin in this
/// lab (see the module's comment; 2-4 in the runs of the final version
/// on 2026-12-05, by 3.5-8.5 ms summed, and in another, one stall of the
/// whole machine added 18 ms to one window, both ways)...
const SPARE_WINDOWS: usize = 5;
/// ...and by how much, summed, ms.
const SPARE_MS: f64 = 30.0;
/// The same in the busy office (new downloads every 5 s), summed over its
/// windows, ms: 14.3 in a run by hand, against 915 before issue 20.
const BUSY_SPARE_MS: f64 = 40.0;

/// qosd's configuration: as it ships (`now`), or as before issue 20.
fn config(now: bool) -> String {
    let config = lab_config("19 Mbit", "47 Mbit");
    if now {
        return config;
    }
    config.replace(
        "download = \"47 Mbit\"",
        "download = \"47 Mbit\"\nisp_queue_guard = false\nwindow_clamp = false",
    )
}

/// One window of a run.
#[derive(Debug, Clone, Copy)]
struct Window {
    from: u64,
    voice: VoiceStats,
    /// The call's one-way p99s (up, down), ms.
    one_way: (f64, f64),
    up: f64,
    down: f64,
}

/// What one run measured.
#[derive(Debug)]
struct Run {
    label: String,
    idle: VoiceStats,
    windows: Vec<Window>,
    /// Download packets the guard and CoDel dropped, as qosd counted them.
    isp_drops: f64,
    codel_drops: f64,
    /// Seconds the download ran throttled.
    throttled: f64,
    /// Acknowledgements whose window the clamp lowered.
    lowered: f64,
}

impl Run {
    fn ok(&self, w: &Window) -> (bool, bool) {
        (
            w.voice.p99_ms <= self.idle.p50_ms + VOICE_MARGIN_MS,
            w.down >= DOWN_SHARE * RATES.1,
        )
    }

    /// The call's p99 beyond the margin, ms, summed over the windows.
    fn excess_ms(&self) -> f64 {
        self.windows
            .iter()
            .map(|w| (w.voice.p99_ms - self.idle.p50_ms - VOICE_MARGIN_MS).max(0.0))
            .sum()
    }

    /// The windows in which the call missed its margin.
    fn voice_misses(&self) -> usize {
        self.windows.iter().filter(|w| !self.ok(w).0).count()
    }

    /// The windows that fail, as "from s".
    fn failures(&self) -> Vec<String> {
        self.windows
            .iter()
            .filter(|w| self.ok(w) != (true, true))
            .map(|w| format!("{}-{} s", w.from, w.from + WINDOW))
            .collect()
    }

    fn print(&self) {
        eprintln!(
            "{}: idle voice rtt p50 {:.2} ms, p99 {:.2} ms; download drops: {:.0} by the guard, \
             {:.0} by CoDel; throttled {:.1} s; windows lowered {:.0}",
            self.label,
            self.idle.p50_ms,
            self.idle.p99_ms,
            self.isp_drops,
            self.codel_drops,
            self.throttled,
            self.lowered
        );
        eprintln!("  window    rtt p99 ms  +idle  up p99  down p99  loss%  up Mbit/s  down Mbit/s");
        for w in &self.windows {
            let (voice, down) = self.ok(w);
            eprintln!(
                "  {:>3}-{:<3}s {:>9.1} {:>+6.1}{} {:>6.1} {:>8.1} {:>6.2} {:>9.1} {:>11.1}{}",
                w.from,
                w.from + WINDOW,
                w.voice.p99_ms,
                w.voice.p99_ms - self.idle.p50_ms,
                if voice { " " } else { "!" },
                w.one_way.0,
                w.one_way.1,
                w.voice.loss_pct,
                w.up / 1e6,
                w.down / 1e6,
                if down { "" } else { " !" },
            );
        }
    }
}

/// A new 3 MB download (a web page, a video's next chunk) every 5 s from
/// 7 s on, each for at most 4 s, from port 5203 of the server.
const NEW_DOWNLOADS: &str = "sleep 7; for i in $(seq 16); do \
     timeout 4 iperf3 -c 198.18.0.20 -p 5203 -R -n 3M -C bbr >/dev/null 2>&1 & sleep 5; \
     done; wait";

fn run(lab: &Lab, label: String, now: bool, busy: bool) -> Run {
    let _qosd = lab.qosd(&config(now));
    let idle = irtt_stats(&output_of(lab.voice_client(5)));
    let secs = LOAD as u32;
    let t0 = SystemTime::now();
    let mut new_downloads = busy.then(|| lab.spawn("lan", &["sh", "-c", NEW_DOWNLOADS]));
    let up = lab.iperf_client(
        5201,
        secs,
        &[
            "-P",
            "4",
            "-C",
            SENDERS,
            "-i",
            "1",
            "-J",
            "--get-server-output",
        ],
    );
    let down = lab.iperf_client(
        5202,
        secs,
        &["-P", "4", "-C", SENDERS, "-R", "-i", "1", "-J"],
    );
    let voice = lab.voice_client(secs);
    let trips = irtt_round_trips(&output_of(voice));
    if let Some(c) = &mut new_downloads {
        let _ = c.wait();
    }
    let up = iperf_intervals(&output_of(up));
    let down = iperf_intervals(&output_of(down));
    let m = metrics(lab);
    let drops = |reason: &str| {
        m.get(&format!(
            "qosd_dropped_packets_total{{direction=\"download\",reason=\"{reason}\"}}"
        ))
        .copied()
        .unwrap_or(0.0)
    };
    let at = |s: u64| t0 + Duration::from_secs(s);
    let windows = (RAMP..LOAD)
        .step_by(WINDOW as usize)
        .filter(|from| from + WINDOW <= LOAD)
        .map(|from| Window {
            from,
            voice: voice_window(&trips, at(from), at(from + WINDOW)),
            one_way: one_way_p99(&trips, at(from), at(from + WINDOW)),
            up: mean_bps(&up, from as f64, (from + WINDOW) as f64),
            down: mean_bps(&down, from as f64, (from + WINDOW) as f64),
        })
        .collect();
    let r = Run {
        label,
        idle,
        windows,
        isp_drops: drops("isp_queue"),
        codel_drops: drops("codel"),
        throttled: m
            .get("qosd_isp_queue_throttled_seconds_total")
            .copied()
            .unwrap_or(0.0),
        lowered: m
            .get("qosd_window_clamp_lowered_total")
            .copied()
            .unwrap_or(0.0),
    };
    r.print();
    r
}

/// The office (`busy`: with new downloads) in lab `prefix`, through qosd
/// as it ships, then through qosd before issue 20.
fn now_and_before(prefix: &str, busy: bool) -> (Run, Run) {
    let lab = Lab::up_with(prefix, "20mbit", "50mbit", 400, 30);
    assert!(
        std::fs::read_to_string("/proc/sys/net/ipv4/tcp_available_congestion_control")
            .is_ok_and(|a| a.split_whitespace().any(|c| c == SENDERS)),
        "this test's senders run {SENDERS}: modprobe tcp_{SENDERS}"
    );
    lab.sh(
        "srv",
        "iperf3 -s -D -J -p 5201 && iperf3 -s -D -J -p 5202 && iperf3 -s -D -p 5203",
    );
    let mut irtt = lab.voice_server();
    std::thread::sleep(Duration::from_millis(300));
    let office = if busy { "busy office" } else { "office" };
    let now = run(
        &lab,
        format!("{office}, qosd 19/47 as it ships (window clamp, ISP-queue guard)"),
        true,
        busy,
    );
    // Let the buffers empty between the runs.
    std::thread::sleep(Duration::from_secs(2));
    let old = run(
        &lab,
        format!("{office}, qosd 19/47 before issue 20 (neither)"),
        false,
        busy,
    );
    let _ = irtt.kill();
    let _ = irtt.wait();
    (now, old)
}

fn calls_stay_clean_and_downloads_keep_the_line_on_a_steady_line() {
    let (now, old) = now_and_before("qi1", false);

    assert!(
        now.windows.len() as u64 == (LOAD - RAMP) / WINDOW,
        "{now:?}"
    );
    assert!(
        now.windows.iter().all(|w| w.voice.sent >= 200),
        "voice stream too short: {now:?}"
    );
    eprintln!(
        "issue 20's criterion: as qosd ships {} of {} windows fail ({:?}), before issue 20 {} \
         ({:?}); the call's p99 beyond the margin, summed: {:.1} ms now, {:.1} ms before",
        now.failures().len(),
        now.windows.len(),
        now.failures(),
        old.failures().len(),
        old.failures(),
        now.excess_ms(),
        old.excess_ms()
    );
    // The clamp acts on the lab's real traffic, and only when on; so does
    // the guard.
    assert!(now.lowered > 0.0, "the clamp never lowered a window");
    assert_eq!(
        (old.lowered, old.isp_drops, old.throttled),
        (0.0, 0.0, 0.0),
        "the clamp or the guard acted while off"
    );
    // The call stays clean, but for this lab's own jitter.
    let voice_failures = now.voice_misses();
    assert!(
        voice_failures <= SPARE_WINDOWS && now.excess_ms() <= SPARE_MS,
        "as qosd ships, the call missed its margin in {voice_failures} windows by {:.1} ms \
         summed (at most {SPARE_WINDOWS} and {SPARE_MS} ms)",
        now.excess_ms()
    );
    // The downloads keep the line.
    let mean_down = now.windows.iter().map(|w| w.down).sum::<f64>() / now.windows.len() as f64;
    assert!(
        mean_down >= DOWN_SHARE * RATES.1,
        "downloads {:.1} Mbit/s on average, under {:.0} % of {} Mbit/s",
        mean_down / 1e6,
        DOWN_SHARE * 100.0,
        RATES.1 / 1e6
    );
    for w in &now.windows {
        assert!(
            w.down >= 0.8 * RATES.1,
            "downloads {:.1} Mbit/s in {}-{} s, under 80 % of {} Mbit/s",
            w.down / 1e6,
            w.from,
            w.from + WINDOW,
            RATES.1 / 1e6
        );
    }
}

/// The same office, and a new 3 MB download every 5 s (each one's start
/// overshoots: BBR's startup sends at 2.9 times its estimate until its
/// window stops it). Before issue 20 each one filled the ISP's buffer, and
/// in a run by hand the call's p99 was 15-140 ms over idle in every
/// window; with the clamp a new flow's window starts at an equal share of
/// the line, and the call stays within a few ms of its margin. Gated: the
/// old behaviour fails the criterion by over 100 ms summed, and
/// qosd as it ships by under a quarter of that and under
/// [`BUSY_SPARE_MS`].
fn new_downloads_no_longer_fill_the_isps_buffer() {
    let (now, old) = now_and_before("qi2", true);
    // (The downloads' goodput shown is the four long ones': the new ones
    // carry another ~5 Mbit/s.)
    eprintln!(
        "busy office: as qosd ships the call misses its margin in {} of {} windows, by {:.1} ms \
         summed; before issue 20 in {}, by {:.1} ms",
        now.voice_misses(),
        now.windows.len(),
        now.excess_ms(),
        old.voice_misses(),
        old.excess_ms()
    );
    assert!(
        old.excess_ms() > 100.0,
        "before issue 20 the new downloads did not fill the ISP's buffer: {:.1} ms",
        old.excess_ms()
    );
    assert!(
        now.excess_ms() < old.excess_ms() / 4.0 && now.excess_ms() < BUSY_SPARE_MS,
        "as qosd ships the call missed its margin by {:.1} ms summed, before issue 20 by {:.1}",
        now.excess_ms(),
        old.excess_ms()
    );
}
