//! `qosd simulate`: an office under load in virtual time, through the real
//! engine (parser, flow table, classifier, shaper), side by side with the
//! same traffic through a plain FIFO with a modem-sized buffer.
//!
//! The traffic is a discrete-event model: calls and video send at fixed
//! intervals; uploads and downloads are TCP-like senders (slow start, then
//! additive increase and halving on loss, one ACK per two segments that
//! itself crosses the other direction's queue), so a deep buffer fills the
//! way it does in an office, and CoDel's drops slow the senders down.

mod events;
pub mod frames;
mod replay;
mod report;
mod scenario;
mod tcp;

use std::path::Path;
use std::time::Duration;

use self::events::Sim;
use self::replay::replay;
use self::report::metrics_view;
pub use self::report::{CategoryReport, LinkReport, SimReport};
use self::scenario::office;
use crate::config::{Config, Direction};
use crate::engine::frame::Frame;
use crate::io::pcap::PcapError;
use crate::metrics::MetricsView;
use crate::shaper::{Fifo, Shaper, ShaperConfig};

/// The modem's buffer in the "without qosd" run, in time at the link rate.
pub const MODEM_BUFFER: Duration = Duration::from_millis(250);

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
    let qosd = {
        let mut sim = Sim::new(
            cfg,
            |d| Shaper::new(&ShaperConfig::from_config(cfg, d)),
            office(),
        );
        sim.run(duration);
        report::collect(cfg, &sim.engines, duration)
    };
    let fifo = {
        let mut sim = Sim::new(cfg, |d| fifo_for(cfg, d), office());
        sim.run(duration);
        report::collect(cfg, &sim.engines, duration)
    };
    SimReport::new(cfg, duration, qosd, fifo)
}

fn fifo_for(cfg: &Config, d: Direction) -> Fifo<Frame> {
    let sc = ShaperConfig::from_config(cfg, d);
    let limit =
        (cfg.link.rate(d).bytes_per_sec() as u128 * MODEM_BUFFER.as_nanos() / 1_000_000_000) as u64;
    Fifo::new(&sc, limit.max(16 * 1514))
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
