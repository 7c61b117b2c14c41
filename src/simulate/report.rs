//! What `qosd simulate` prints: per category, offered and delivered rates,
//! share of the link, drops and queue delay, with and without qosd; or,
//! for `--prometheus`, the metrics the daemon would expose.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::events::Sim;
use crate::config::{Config, Direction};
use crate::engine::DirectionEngine;
use crate::engine::frame::Frame;
use crate::metrics::MetricsView;
use crate::shaper::{LinkQueue, LogHistogram};
use crate::telemetry::{FlowStats, IoCounters, Snapshot};
use crate::time::Instant;

/// One category in one run (both directions together, and each).
#[derive(Debug, Clone, Serialize, Default)]
pub struct CategoryReport {
    /// Bits per second the sources tried to send.
    pub offered_bps: f64,
    /// Bits per second that left the queue.
    pub delivered_bps: f64,
    /// Delivered rate over the link rate.
    pub share: f64,
    /// Packets dropped (any reason).
    pub dropped: u64,
    /// Median queue delay, milliseconds.
    pub delay_p50_ms: f64,
    /// 99th percentile queue delay, milliseconds.
    pub delay_p99_ms: f64,
    /// The same for the upload direction only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upload: Option<Box<CategoryReport>>,
    /// The same for the download direction only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub download: Option<Box<CategoryReport>>,
}

/// The link the simulation ran on.
#[derive(Debug, Clone, Serialize)]
pub struct LinkReport {
    /// Shaped upload rate, bits per second.
    pub upload_bps: u64,
    /// Shaped download rate, bits per second.
    pub download_bps: u64,
    /// Simulated time, seconds.
    pub duration_s: f64,
    /// The FIFO's buffer ("without qosd"), milliseconds at the link rate.
    pub fifo_buffer_ms: u64,
    /// Where the configuration came from.
    pub config: String,
}

/// A whole `qosd simulate` result.
#[derive(Debug, Clone, Serialize)]
pub struct SimReport {
    /// The link.
    pub link: LinkReport,
    /// With qosd, by category name.
    pub qosd: BTreeMap<String, CategoryReport>,
    /// Through a plain FIFO, by category name.
    pub fifo: BTreeMap<String, CategoryReport>,
    /// Category names in configuration order (for printing).
    #[serde(skip)]
    pub order: Vec<String>,
}

fn ms(d: Option<Duration>) -> f64 {
    d.map(|d| d.as_secs_f64() * 1000.0).unwrap_or(0.0)
}

/// Collects the per-category results of one run.
pub(super) fn collect<Q: LinkQueue<Frame>>(
    cfg: &Config,
    engines: &[DirectionEngine<Q>; 2],
    duration: Duration,
) -> BTreeMap<String, CategoryReport> {
    let secs = duration.as_secs_f64().max(1e-9);
    let link_total = (cfg.link.upload.bps() + cfg.link.download.bps()) as f64;
    let mut out = BTreeMap::new();
    for (i, cat) in cfg.category.iter().enumerate() {
        let mut both = CategoryReport::default();
        let mut merged = LogHistogram::default();
        for (engine, dir) in engines.iter().zip(Direction::BOTH) {
            let Some(c) = engine.category_counters().get(i) else {
                continue;
            };
            let link = cfg.link.rate(dir).bps() as f64;
            let one = CategoryReport {
                offered_bps: c.arrived.bytes as f64 * 8.0 / secs,
                delivered_bps: c.sent.bytes as f64 * 8.0 / secs,
                share: c.sent.bytes as f64 * 8.0 / secs / link,
                dropped: c.dropped_total().packets,
                delay_p50_ms: ms(c.delay_fine.quantile(0.5)),
                delay_p99_ms: ms(c.delay_fine.quantile(0.99)),
                upload: None,
                download: None,
            };
            both.offered_bps += one.offered_bps;
            both.delivered_bps += one.delivered_bps;
            both.dropped += one.dropped;
            merged.merge(&c.delay_fine);
            match dir {
                Direction::Upload => both.upload = Some(Box::new(one)),
                Direction::Download => both.download = Some(Box::new(one)),
            }
        }
        both.share = both.delivered_bps / link_total;
        both.delay_p50_ms = ms(merged.quantile(0.5));
        both.delay_p99_ms = ms(merged.quantile(0.99));
        out.insert(cat.name.clone(), both);
    }
    out
}

impl SimReport {
    pub(super) fn new(
        cfg: &Config,
        duration: Duration,
        qosd: BTreeMap<String, CategoryReport>,
        fifo: BTreeMap<String, CategoryReport>,
    ) -> Self {
        SimReport {
            link: LinkReport {
                upload_bps: cfg.link.upload.bps(),
                download_bps: cfg.link.download.bps(),
                duration_s: duration.as_secs_f64(),
                fifo_buffer_ms: super::MODEM_BUFFER.as_millis() as u64,
                config: cfg.source.clone(),
            },
            qosd,
            fifo,
            order: cfg.category.iter().map(|c| c.name.clone()).collect(),
        }
    }

    /// The side-by-side table for a terminal.
    pub fn to_table(&self) -> String {
        let mut s = String::new();
        let mbit = |bps: f64| bps / 1e6;
        let _ = writeln!(
            s,
            "{:.0} s of an office under load on a {} up / {} down link ({})\n",
            self.link.duration_s,
            crate::config::Rate::from_bps(self.link.upload_bps),
            crate::config::Rate::from_bps(self.link.download_bps),
            self.link.config
        );
        let _ = writeln!(
            s,
            "{:<10} {:>8} | {:>29} | {:>29}",
            "",
            "offered",
            "with qosd",
            format!("without (FIFO, {} ms buffer)", self.link.fifo_buffer_ms)
        );
        let _ = writeln!(
            s,
            "{:<10} {:>8} | {:>8} {:>5} {:>5} {:>8} | {:>8} {:>5} {:>5} {:>8}",
            "category",
            "Mbit/s",
            "Mbit/s",
            "share",
            "drops",
            "p50/p99",
            "Mbit/s",
            "share",
            "drops",
            "p50/p99"
        );
        let _ = writeln!(
            s,
            "{:<10} {:>8} | {:>29} | {:>29}",
            "", "", "(delay ms)", "(delay ms)"
        );
        for name in &self.order {
            let (Some(q), Some(f)) = (self.qosd.get(name), self.fifo.get(name)) else {
                continue;
            };
            let _ = writeln!(
                s,
                "{:<10} {:>8.2} | {:>8.2} {:>4.0}% {:>5} {:>3.0}/{:<4.0} | {:>8.2} {:>4.0}% {:>5} {:>3.0}/{:<4.0}",
                name,
                mbit(q.offered_bps),
                mbit(q.delivered_bps),
                q.share * 100.0,
                q.dropped,
                q.delay_p50_ms,
                q.delay_p99_ms,
                mbit(f.delivered_bps),
                f.share * 100.0,
                f.dropped,
                f.delay_p50_ms,
                f.delay_p99_ms
            );
        }
        if let (Some(q), Some(f)) = (self.qosd.get("voice"), self.fifo.get("voice")) {
            let _ = writeln!(
                s,
                "\nvoice queue delay p99: {:.1} ms with qosd, {:.0} ms without",
                q.delay_p99_ms, f.delay_p99_ms
            );
        }
        s
    }
}

/// What the daemon would expose after running `sim` for `duration`.
pub(super) fn metrics_view<Q: LinkQueue<Frame>>(
    cfg: &Config,
    sim: &Sim<Q>,
    duration: Duration,
) -> MetricsView {
    let secs = duration.as_secs_f64().max(1e-9);
    let snapshot = |e: &DirectionEngine<Q>| {
        let cats = e.category_counters();
        let arrived = cats.iter().fold((0, 0), |(p, b), c| {
            (p + c.arrived.packets, b + c.arrived.bytes)
        });
        let sent = cats
            .iter()
            .fold((0, 0), |(p, b), c| (p + c.sent.packets, b + c.sent.bytes));
        Snapshot {
            io: IoCounters {
                rx_frames: arrived.0,
                rx_bytes: arrived.1,
                tx_frames: sent.0,
                tx_bytes: sent.1,
                shaper_dropped: cats.iter().map(|c| c.dropped_total().packets).sum(),
                ..IoCounters::default()
            },
            engine: e.counters().clone(),
            categories: cats.to_vec(),
            at: Instant::ZERO + duration,
            running: true,
            retired: Default::default(),
            config: Some(Arc::clone(e.config())),
            ports: Vec::new(),
        }
    };
    let [up, down] = &sim.engines;
    let rates = [up, down].map(|e| {
        e.category_counters()
            .iter()
            .map(|c| c.sent.bytes as f64 * 8.0 / secs)
            .collect()
    });
    MetricsView {
        config: Arc::new(cfg.clone()),
        ready: true,
        snapshots: [snapshot(up), snapshot(down)],
        rates,
        flows: FlowStats::of(up.shared()),
        reloads: [0, 0],
        uptime_seconds: secs,
        link: Default::default(),
    }
}
