//! `qosd simulate`: an office under load in virtual time, through the real
//! engine (parser, flow table, classifier, shaper), side by side with the
//! same traffic through a plain FIFO with a modem-sized buffer.
//!
//! The traffic is a discrete-event model: calls and video send at fixed
//! intervals; uploads and downloads are TCP connections (a handshake, then
//! slow start, additive increase and halving on loss, lost segments sent
//! again, ACKs that themselves cross the other direction's queue: one
//! per two segments, now and then one for a stretch of up to 30 as real
//! receivers send them, which makes the senders burst; real sequence and acknowledgement numbers and the
//! timestamp option on every segment, so qosd's WAN-delay meter reads them
//! as on a real line), so a deep buffer fills the way it does in an
//! office, and CoDel's drops slow the senders down.
//!
//! With a capacity trace ([`run_link`]) an ISP line sits between the
//! gateway and the Internet: a deep buffer and a capacity that follows the
//! trace. qosd then runs twice, at a fixed rate and with autorate, beside
//! the line alone.

mod events;
pub mod frames;
mod line;
mod replay;
mod report;
mod scenario;
mod tally;
mod tcp;
pub mod trace;

use std::path::Path;
use std::time::Duration;

use self::events::Sim;
pub use self::line::LINE_BUFFER;
use self::replay::replay;
use self::report::metrics_view;
pub use self::report::{
    CategoryReport, LinkReport, OutsideReport, OutsideRun, OutsideWait, PhaseReport, PhaseRun,
    SimReport, TraceReport,
};
use self::scenario::{ONE_WAY, office};
use self::tally::Tally;
pub use self::trace::{LinkTrace, TraceError};
use crate::config::{Config, Direction, Rate};
use crate::engine::frame::Frame;
use crate::io::pcap::PcapError;
use crate::metrics::MetricsView;
use crate::shaper::{Fifo, LinkQueue, Shaper, ShaperConfig};

/// The modem's buffer in the "without qosd" run, in time at the link rate
/// (without a capacity trace; with one, the line's [`LINE_BUFFER`]).
pub const MODEM_BUFFER: Duration = Duration::from_millis(250);

/// With a capacity trace, qosd's fixed upload rate as a share of the
/// line's peak (what the README tells an admin to set).
pub const FIXED_UPLOAD_SHARE: f64 = 0.95;

/// ... and its fixed download rate (download needs more headroom: its
/// packets queue at the ISP before qosd sees them).
pub const FIXED_DOWNLOAD_SHARE: f64 = 0.92;

/// The metrics qosd would expose after the built-in office ran `duration`.
pub fn metrics_view_office(cfg: &Config, duration: Duration) -> MetricsView {
    let mut sim = Sim::new(
        cfg,
        |d| Shaper::new(&ShaperConfig::from_config(cfg, d)),
        office(),
    );
    sim.run(duration);
    metrics_view(cfg, &sim, duration)
}

/// The metrics qosd with autorate would expose after the built-in office
/// ran `duration` on a line following `trace`.
pub fn metrics_view_link(cfg: &Config, trace: &LinkTrace, duration: Duration) -> MetricsView {
    let auto = autorate_config(&fixed_config(cfg, trace), trace);
    let mut sim = Sim::new(
        &auto,
        |d| Shaper::new(&ShaperConfig::from_config(&auto, d)),
        office(),
    )
    .with_line(trace, duration, overheads(&auto))
    .with_autorate(&auto);
    sim.run(duration);
    metrics_view(&auto, &sim, duration)
}

/// The metrics qosd would expose after replaying the capture at `path`.
pub fn metrics_view_pcap(cfg: &Config, path: &Path) -> Result<MetricsView, PcapError> {
    let (sim, duration) = replay(cfg, path, |d| {
        Shaper::new(&ShaperConfig::from_config(cfg, d))
    })?;
    Ok(metrics_view(cfg, &sim, duration))
}

/// Runs the built-in office for `duration` through qosd's shaper and
/// through a plain FIFO, and reports both.
pub fn run_office(cfg: &Config, duration: Duration) -> SimReport {
    run_office_rtt(cfg, duration, ONE_WAY * 2)
}

/// [`run_office`] with the servers `rtt` away (the base round trip).
pub fn run_office_rtt(cfg: &Config, duration: Duration, rtt: Duration) -> SimReport {
    let one_way = rtt / 2;
    let qosd = {
        let mut sim = Sim::new(
            cfg,
            |d| Shaper::new(&ShaperConfig::from_config(cfg, d)),
            office(),
        )
        .with_one_way(one_way);
        sim.run(duration);
        sim.tally
    };
    let fifo = {
        let mut sim = Sim::new(cfg, |d| fifo_for(cfg, d), office()).with_one_way(one_way);
        sim.run(duration);
        sim.tally
    };
    let link = Direction::BOTH.map(|d| cfg.link.rate(d).bps() as f64);
    SimReport::new(
        cfg,
        duration,
        report::collect_tally(cfg, &qosd, duration, link, false),
        report::collect_tally(cfg, &fifo, duration, link, false),
    )
}

/// Runs the built-in office for `duration` on an ISP line whose capacity
/// follows `trace` (its base round trip `trace.rtt`, its buffer
/// [`LINE_BUFFER`] at its peak): qosd at a fixed rate
/// ([`FIXED_UPLOAD_SHARE`], [`FIXED_DOWNLOAD_SHARE`] of the peak), qosd
/// with autorate (between a floor below the trace's lowest capacity and
/// that fixed rate), and the line alone (no qosd: its buffer is the
/// modem's FIFO). The configuration's categories, rules and `[autorate]`
/// tuning apply; its `link.*` rates and autorate bounds are replaced.
pub fn run_link(cfg: &Config, trace: &LinkTrace, duration: Duration) -> SimReport {
    let fixed = fixed_config(cfg, trace);
    let auto = autorate_config(&fixed, trace);
    let qosd = on_line(
        Sim::new(&fixed, |d| shaper(&fixed, d), office()),
        &fixed,
        trace,
        duration,
    );
    let autorate = on_line(
        Sim::new(&auto, |d| shaper(&auto, d), office()).with_autorate(&auto),
        &auto,
        trace,
        duration,
    );
    let fifo = on_line(
        Sim::new(&fixed, |d| pass_through(&fixed, d), office()),
        &fixed,
        trace,
        duration,
    );
    report::link_report(
        &fixed,
        &auto,
        trace,
        duration,
        report::Runs {
            qosd: &qosd,
            autorate: &autorate,
            fifo: &fifo,
        },
    )
}

fn shaper(cfg: &Config, d: Direction) -> Shaper<Frame> {
    Shaper::new(&ShaperConfig::from_config(cfg, d))
}

/// Runs `sim` for `duration` on a line following `trace`.
fn on_line<Q: LinkQueue<Frame>>(
    sim: Sim<Q>,
    cfg: &Config,
    trace: &LinkTrace,
    duration: Duration,
) -> Tally {
    let mut sim = sim.with_line(trace, duration, overheads(cfg));
    sim.run(duration);
    sim.tally
}

/// `cfg` with `link.*` at the share of `trace`'s peak an admin would set.
fn fixed_config(cfg: &Config, trace: &LinkTrace) -> Config {
    let mut c = cfg.clone();
    let share = |d: Direction, s: f64| {
        let bps = trace.peak(d).bps() as f64 * s;
        // Whole kbit/s, as an admin writes it.
        Rate::from_bps(((bps / 1000.0).round() as u64).max(8) * 1000)
    };
    c.link.upload = share(Direction::Upload, FIXED_UPLOAD_SHARE);
    c.link.download = share(Direction::Download, FIXED_DOWNLOAD_SHARE);
    c
}

/// `fixed` with autorate on: from the fixed rate (its ceiling) down to a
/// floor of a fifth of it or half the trace's lowest capacity, whichever
/// is lower.
fn autorate_config(fixed: &Config, trace: &LinkTrace) -> Config {
    let mut c = fixed.clone();
    let floor = |d: Direction| {
        let fifth = fixed.link.rate(d).bps() / 5;
        let half_low = trace.lowest(d).bps() / 2;
        Rate::from_bps(fifth.min(half_low).max(8_000))
    };
    c.autorate.enabled = true;
    c.autorate.upload_min = floor(Direction::Upload);
    c.autorate.download_min = floor(Direction::Download);
    c.autorate.upload_max = fixed.link.upload;
    c.autorate.download_max = fixed.link.download;
    c
}

fn overheads(cfg: &Config) -> [i32; 2] {
    Direction::BOTH.map(|d| cfg.link.overhead.get(d))
}

fn fifo_for(cfg: &Config, d: Direction) -> Fifo<Frame> {
    let sc = ShaperConfig::from_config(cfg, d);
    let limit =
        (cfg.link.rate(d).bytes_per_sec() as u128 * MODEM_BUFFER.as_nanos() / 1_000_000_000) as u64;
    Fifo::new(&sc, limit.max(16 * 1514))
}

/// No qosd: a queue that passes every frame on at once (its engine only
/// classifies, for the per-category counts), so the line's buffer is the
/// only one.
fn pass_through(cfg: &Config, d: Direction) -> Fifo<Frame> {
    let mut sc = ShaperConfig::from_config(cfg, d);
    sc.rate = Rate::from_bps(crate::config::units::MAX_RATE_BPS);
    Fifo::new(&sc, u64::MAX)
}

/// Replays the capture at `path` at its timestamps through qosd's shaper
/// and through a plain FIFO (no feedback: what was sent is replayed).
pub fn run_pcap(cfg: &Config, path: &Path) -> Result<SimReport, PcapError> {
    let (q, duration) = replay(cfg, path, |d| {
        Shaper::new(&ShaperConfig::from_config(cfg, d))
    })?;
    let (f, _) = replay(cfg, path, |d| fifo_for(cfg, d))?;
    let qosd = report::collect(cfg, &q.engines, duration);
    let fifo = report::collect(cfg, &f.engines, duration);
    Ok(SimReport::new(cfg, duration, qosd, fifo))
}

#[cfg(test)]
mod tests;
