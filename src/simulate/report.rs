//! What `qosd simulate` prints: per category, offered and delivered rates,
//! share of the link, drops and queue delay, with and without qosd; or,
//! for `--prometheus`, the metrics the daemon would expose.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::events::Sim;
use super::tally::{Tally, Waits};
use super::trace::LinkTrace;
use crate::config::{Config, Direction, Rate};
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
    /// Delivered rate over the link rate (with a capacity trace: over the
    /// line's mean capacity).
    pub share: f64,
    /// Packets dropped (any reason).
    pub dropped: u64,
    /// Median queue delay, milliseconds.
    pub delay_p50_ms: f64,
    /// 99th percentile queue delay, milliseconds.
    pub delay_p99_ms: f64,
    /// 99th percentile of the part of that delay spent in the ISP line's
    /// buffer (outside qosd, where it cannot manage the queue; for
    /// download, before qosd), milliseconds. Runs on a line only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outside_p99_ms: Option<f64>,
    /// The mean of that part, milliseconds. Runs on a line only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outside_mean_ms: Option<f64>,
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
    /// Shaped upload rate, bits per second (with a capacity trace: qosd's
    /// fixed rate, which is also autorate's ceiling).
    pub upload_bps: u64,
    /// Shaped download rate, bits per second (likewise).
    pub download_bps: u64,
    /// Simulated time, seconds.
    pub duration_s: f64,
    /// The FIFO's buffer ("without qosd"), milliseconds at the link rate
    /// (with a capacity trace: the line's buffer, at its peak capacity).
    pub fifo_buffer_ms: u64,
    /// Where the configuration came from.
    pub config: String,
    /// The ISP line's capacity trace, when the run had one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace: Option<TraceReport>,
}

/// The ISP line of a run with a capacity trace, and the rates qosd ran at.
#[derive(Debug, Clone, Serialize)]
pub struct TraceReport {
    /// The trace (built-in name or file).
    pub name: String,
    /// Base round trip between the office and the servers, milliseconds.
    pub rtt_ms: f64,
    /// The line's peak upload capacity, bits per second.
    pub upload_peak_bps: u64,
    /// The line's peak download capacity.
    pub download_peak_bps: u64,
    /// The line's buffer, bytes, upload.
    pub upload_buffer_bytes: u64,
    /// The line's buffer, bytes, download.
    pub download_buffer_bytes: u64,
    /// Autorate's floor, upload (its ceiling is `link.upload_bps`).
    pub autorate_upload_min_bps: u64,
    /// Autorate's floor, download.
    pub autorate_download_min_bps: u64,
}

/// One phase of a capacity trace, in each run.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseReport {
    /// The phase's name.
    pub name: String,
    /// Start, seconds.
    pub start_s: f64,
    /// End, seconds.
    pub end_s: f64,
    /// Mean capacity of the line over the phase, upload, bits per second.
    pub capacity_upload_bps: f64,
    /// ... download.
    pub capacity_download_bps: f64,
    /// The line alone (no qosd).
    pub fifo: PhaseRun,
    /// qosd at a fixed rate.
    pub qosd: PhaseRun,
    /// qosd with autorate.
    pub autorate: PhaseRun,
}

/// One run over one phase.
#[derive(Debug, Clone, Serialize, Default)]
pub struct PhaseRun {
    /// 99th percentile of the calls' time in queues (qosd's and the
    /// line's), both directions, milliseconds.
    pub voice_p99_ms: f64,
    /// The same, upload only.
    pub voice_upload_p99_ms: f64,
    /// The same, download only.
    pub voice_download_p99_ms: f64,
    /// 99th percentile of every upload packet's time in the line's
    /// buffer (outside qosd), milliseconds.
    pub outside_upload_p99_ms: f64,
    /// Its mean, milliseconds.
    pub outside_upload_mean_ms: f64,
    /// The same for download packets (the ISP's buffer, before qosd).
    pub outside_download_p99_ms: f64,
    /// Its mean, milliseconds.
    pub outside_download_mean_ms: f64,
    /// Share of the line's upload capacity its traffic used.
    pub upload_used: f64,
    /// Share of the line's download capacity used.
    pub download_used: f64,
    /// qosd's mean shaping rate, upload, bits per second (none without qosd).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upload_rate_bps: Option<f64>,
    /// ... download.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub download_rate_bps: Option<f64>,
}

/// A whole `qosd simulate` result.
#[derive(Debug, Clone, Serialize)]
pub struct SimReport {
    /// The link.
    pub link: LinkReport,
    /// With qosd (at a fixed rate), by category name.
    pub qosd: BTreeMap<String, CategoryReport>,
    /// With qosd and autorate, by category name (runs with a capacity
    /// trace only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub autorate: Option<BTreeMap<String, CategoryReport>>,
    /// Through a plain FIFO, by category name (with a capacity trace: the
    /// line alone).
    pub fifo: BTreeMap<String, CategoryReport>,
    /// Per phase of the capacity trace (runs with one only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phases: Option<Vec<PhaseReport>>,
    /// Time in the ISP line's buffer, outside qosd, over the whole run, in
    /// each run (runs with a capacity trace only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outside: Option<OutsideReport>,
    /// Category names in configuration order (for printing).
    #[serde(skip)]
    pub order: Vec<String>,
}

/// Time delivered packets spent in the ISP line's buffer (outside qosd),
/// one direction of one run, every category together.
#[derive(Debug, Clone, Serialize, Default)]
pub struct OutsideWait {
    /// 99th percentile, milliseconds.
    pub p99_ms: f64,
    /// Mean, milliseconds.
    pub mean_ms: f64,
}

impl OutsideWait {
    fn of(w: &Waits) -> Self {
        OutsideWait {
            p99_ms: ms(w.p99()),
            mean_ms: ms(w.mean()),
        }
    }
}

/// One run's time outside qosd, per direction.
#[derive(Debug, Clone, Serialize, Default)]
pub struct OutsideRun {
    /// Upload: the modem's buffer, after qosd.
    pub upload: OutsideWait,
    /// Download: the ISP's buffer, before qosd (the queue qosd's download
    /// shaping is meant to keep empty).
    pub download: OutsideWait,
}

impl OutsideRun {
    fn of(t: &Tally) -> Self {
        let [up, down] = Direction::BOTH.map(|d| {
            let mut all = Waits::default();
            for c in d.pick_ref(&t.cats) {
                all.merge(&c.outside);
            }
            OutsideWait::of(&all)
        });
        OutsideRun {
            upload: up,
            download: down,
        }
    }
}

/// Time in the ISP line's buffer (outside qosd) over a whole run with a
/// capacity trace, in each of its runs.
#[derive(Debug, Clone, Serialize, Default)]
pub struct OutsideReport {
    /// qosd at a fixed rate.
    pub qosd: OutsideRun,
    /// qosd with autorate.
    pub autorate: OutsideRun,
    /// The line alone (all of its queueing is outside qosd).
    pub fifo: OutsideRun,
}

fn ms(d: Option<Duration>) -> f64 {
    d.map(|d| d.as_secs_f64() * 1000.0).unwrap_or(0.0)
}

/// One category in one direction: its report, its delay histogram and,
/// on a line, its time outside qosd.
struct Part<'h> {
    dir: Direction,
    report: CategoryReport,
    delay: &'h LogHistogram,
    outside: Option<&'h Waits>,
}

impl<'h> Part<'h> {
    /// `dir`'s part from its byte counts over `secs`, its share of `rate`
    /// (bits per second).
    fn new(
        dir: Direction,
        (arrived, sent, dropped): (u64, u64, u64),
        secs: f64,
        rate: f64,
        delay: &'h LogHistogram,
        outside: Option<&'h Waits>,
    ) -> Self {
        let bps = |bytes: u64| bytes as f64 * 8.0 / secs;
        Part {
            dir,
            report: CategoryReport {
                offered_bps: bps(arrived),
                delivered_bps: bps(sent),
                share: bps(sent) / rate.max(1.0),
                dropped,
                delay_p50_ms: ms(delay.quantile(0.5)),
                delay_p99_ms: ms(delay.quantile(0.99)),
                outside_p99_ms: outside.map(|w| ms(w.p99())),
                outside_mean_ms: outside.map(|w| ms(w.mean())),
                upload: None,
                download: None,
            },
            delay,
            outside,
        }
    }
}

/// A category's report over both directions, from each direction's part;
/// its share is of `link_total` (bits per second, both directions).
fn fold_directions<'h>(
    parts: impl IntoIterator<Item = Part<'h>>,
    link_total: f64,
) -> CategoryReport {
    let mut both = CategoryReport::default();
    let mut merged = LogHistogram::default();
    let mut outside: Option<Waits> = None;
    for p in parts {
        both.offered_bps += p.report.offered_bps;
        both.delivered_bps += p.report.delivered_bps;
        both.dropped += p.report.dropped;
        merged.merge(p.delay);
        if let Some(w) = p.outside {
            outside.get_or_insert_with(Waits::default).merge(w);
        }
        match p.dir {
            Direction::Upload => both.upload = Some(Box::new(p.report)),
            Direction::Download => both.download = Some(Box::new(p.report)),
        }
    }
    both.share = both.delivered_bps / link_total.max(1.0);
    both.delay_p50_ms = ms(merged.quantile(0.5));
    both.delay_p99_ms = ms(merged.quantile(0.99));
    both.outside_p99_ms = outside.as_ref().map(|w| ms(w.p99()));
    both.outside_mean_ms = outside.as_ref().map(|w| ms(w.mean()));
    both
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
        let parts = engines
            .iter()
            .zip(Direction::BOTH)
            .filter_map(|(engine, dir)| {
                let c = engine.category_counters().get(i)?;
                let counts = (c.arrived.bytes, c.sent.bytes, c.dropped_total().packets);
                let link = cfg.link.rate(dir).bps() as f64;
                Some(Part::new(dir, counts, secs, link, &c.delay_fine, None))
            });
        out.insert(cat.name.clone(), fold_directions(parts, link_total));
    }
    out
}

/// Collects the per-category results of one run from what it measured
/// end to end; `link` is the rate each direction's share is of
/// ([upload, download], bits per second); `line` when the run had an ISP
/// line (and so a time outside qosd to report).
pub(super) fn collect_tally(
    cfg: &Config,
    tally: &Tally,
    duration: Duration,
    link: [f64; 2],
    line: bool,
) -> BTreeMap<String, CategoryReport> {
    let secs = duration.as_secs_f64().max(1e-9);
    let link_total = (link[0] + link[1]).max(1.0);
    let mut out = BTreeMap::new();
    for (i, cat) in cfg.category.iter().enumerate() {
        let parts =
            tally
                .cats
                .iter()
                .zip(Direction::BOTH)
                .zip(link)
                .filter_map(|((cats, dir), rate)| {
                    let c = cats.get(i)?;
                    let counts = (c.arrived_bytes, c.sent_bytes, c.dropped);
                    let outside = line.then_some(&c.outside);
                    Some(Part::new(dir, counts, secs, rate, &c.delay, outside))
                });
        out.insert(cat.name.clone(), fold_directions(parts, link_total));
    }
    out
}

/// The three runs on a line with a capacity trace.
pub(super) struct Runs<'a> {
    /// qosd at a fixed rate.
    pub(super) qosd: &'a Tally,
    /// qosd with autorate.
    pub(super) autorate: &'a Tally,
    /// The line alone.
    pub(super) fifo: &'a Tally,
}

/// The report of a run on a line following `trace`: `fixed` is the
/// configuration of qosd at a fixed rate (and of the FIFO run), `auto`
/// the one with autorate.
pub(super) fn link_report(
    fixed: &Config,
    auto: &Config,
    trace: &LinkTrace,
    duration: Duration,
    runs: Runs<'_>,
) -> SimReport {
    let zero = Duration::ZERO;
    let mean = Direction::BOTH.map(|d| trace.mean_rate(d, zero, duration));
    let mut r = SimReport::new(
        fixed,
        duration,
        collect_tally(fixed, runs.qosd, duration, mean, true),
        collect_tally(fixed, runs.fifo, duration, mean, true),
    );
    r.autorate = Some(collect_tally(auto, runs.autorate, duration, mean, true));
    r.outside = Some(OutsideReport {
        qosd: OutsideRun::of(runs.qosd),
        autorate: OutsideRun::of(runs.autorate),
        fifo: OutsideRun::of(runs.fifo),
    });
    r.link.fifo_buffer_ms = super::LINE_BUFFER.as_millis() as u64;
    let buffer = |d: Direction| {
        (u128::from(trace.peak(d).bytes_per_sec()) * super::LINE_BUFFER.as_nanos() / 1_000_000_000)
            as u64
    };
    r.link.trace = Some(TraceReport {
        name: trace.name.clone(),
        rtt_ms: trace.rtt.as_secs_f64() * 1000.0,
        upload_peak_bps: trace.peak(Direction::Upload).bps(),
        download_peak_bps: trace.peak(Direction::Download).bps(),
        upload_buffer_bytes: buffer(Direction::Upload).max(16 * 1514),
        download_buffer_bytes: buffer(Direction::Download).max(16 * 1514),
        autorate_upload_min_bps: auto.autorate.upload_min.bps(),
        autorate_download_min_bps: auto.autorate.download_min.bps(),
    });
    let fixed_rates = Direction::BOTH.map(|d| fixed.link.rate(d).bps() as f64);
    let phases = trace
        .phases(duration)
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let capacity = Direction::BOTH.map(|d| trace.mean_rate(d, p.start, p.end));
            let secs = (p.end - p.start).as_secs_f64().max(1e-9);
            let run = |t: &Tally, rates: Option<[f64; 2]>| -> PhaseRun {
                let Some(pt) = t.phases.get(i) else {
                    return PhaseRun::default();
                };
                let [up, down] = &pt.voice;
                let [up_out, down_out] = &pt.outside;
                let mut both = up.clone();
                both.merge(down);
                let used = |d: Direction| {
                    d.pick(pt.line_bytes) as f64 * 8.0 / secs / d.pick(capacity).max(1.0)
                };
                PhaseRun {
                    voice_p99_ms: ms(both.quantile(0.99)),
                    voice_upload_p99_ms: ms(Direction::Upload.pick_ref(&pt.voice).quantile(0.99)),
                    voice_download_p99_ms: ms(Direction::Download
                        .pick_ref(&pt.voice)
                        .quantile(0.99)),
                    outside_upload_p99_ms: ms(up_out.p99()),
                    outside_upload_mean_ms: ms(up_out.mean()),
                    outside_download_p99_ms: ms(down_out.p99()),
                    outside_download_mean_ms: ms(down_out.mean()),
                    upload_used: used(Direction::Upload),
                    download_used: used(Direction::Download),
                    upload_rate_bps: rates.map(|r| r[0]),
                    download_rate_bps: rates.map(|r| r[1]),
                }
            };
            let auto_rates = runs.autorate.phases.get(i).and_then(|pt| {
                (pt.rate_time > 0.0).then(|| pt.rate_bits.map(|b| b / pt.rate_time))
            });
            PhaseReport {
                name: p.name.clone(),
                start_s: p.start.as_secs_f64(),
                end_s: p.end.as_secs_f64(),
                capacity_upload_bps: capacity[0],
                capacity_download_bps: capacity[1],
                fifo: run(runs.fifo, None),
                qosd: run(runs.qosd, Some(fixed_rates)),
                autorate: run(runs.autorate, auto_rates),
            }
        })
        .collect();
    r.phases = Some(phases);
    r
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
                trace: None,
            },
            qosd,
            autorate: None,
            fifo,
            phases: None,
            outside: None,
            order: cfg.category.iter().map(|c| c.name.clone()).collect(),
        }
    }

    /// The side-by-side table for a terminal.
    pub fn to_table(&self) -> String {
        if let (Some(phases), Some(auto), Some(trace)) =
            (&self.phases, &self.autorate, &self.link.trace)
        {
            return self.trace_table(phases, auto, trace);
        }
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

impl SimReport {
    /// The table of a run with a capacity trace: per phase, the calls'
    /// delay and the capacity used in each run; then per category.
    fn trace_table(
        &self,
        phases: &[PhaseReport],
        auto: &BTreeMap<String, CategoryReport>,
        trace: &TraceReport,
    ) -> String {
        let mut s = String::new();
        let rate = |bps: u64| Rate::from_bps(bps).to_string();
        let m = |bps: f64| bps / 1e6;
        let _ = writeln!(
            s,
            "{:.0} s of an office under load on the line \"{}\": capacity per the trace \
             (peak {} up / {} down), base round trip {:.0} ms, a {} ms buffer at the peak ({})",
            self.link.duration_s,
            trace.name,
            rate(trace.upload_peak_bps),
            rate(trace.download_peak_bps),
            trace.rtt_ms,
            self.link.fifo_buffer_ms,
            self.link.config
        );
        let _ = writeln!(
            s,
            "qosd at a fixed {} up / {} down; with autorate between {} and {} up, {} and {} down\n",
            rate(self.link.upload_bps),
            rate(self.link.download_bps),
            rate(trace.autorate_upload_min_bps),
            rate(self.link.upload_bps),
            rate(trace.autorate_download_min_bps),
            rate(self.link.download_bps),
        );
        let _ = writeln!(
            s,
            "{:<18} {:>7} {:>11} | {:>22} | {:>29} | {:>11}",
            "", "", "capacity", "voice delay p99 (ms)", "capacity used, up/down (%)", "autorate"
        );
        let _ = writeln!(
            s,
            "{:<18} {:>7} {:>11} | {:>6} {:>6} {:>8} | {:>9} {:>9} {:>9} | {:>11}",
            "phase",
            "seconds",
            "Mbit/s",
            "FIFO",
            "fixed",
            "autorate",
            "FIFO",
            "fixed",
            "autorate",
            "Mbit/s"
        );
        for p in phases {
            let used = |r: &PhaseRun| {
                format!(
                    "{:.0}/{:.0}",
                    r.upload_used * 100.0,
                    r.download_used * 100.0
                )
            };
            let auto_rate = match (p.autorate.upload_rate_bps, p.autorate.download_rate_bps) {
                (Some(u), Some(d)) => format!("{:.1}/{:.1}", m(u), m(d)),
                _ => "-".to_string(),
            };
            let _ = writeln!(
                s,
                "{:<18} {:>7} {:>11} | {:>6.0} {:>6.0} {:>8.0} | {:>9} {:>9} {:>9} | {:>11}",
                truncate(&p.name, 18),
                format!("{:.0}-{:.0}", p.start_s, p.end_s),
                format!(
                    "{:.1}/{:.1}",
                    m(p.capacity_upload_bps),
                    m(p.capacity_download_bps)
                ),
                p.fifo.voice_p99_ms,
                p.qosd.voice_p99_ms,
                p.autorate.voice_p99_ms,
                used(&p.fifo),
                used(&p.qosd),
                used(&p.autorate),
                auto_rate
            );
        }
        let _ = writeln!(
            s,
            "\n{:<10} {:>8} | {:>20} | {:>20} | {:>20}",
            "", "offered", "qosd, fixed rate", "qosd with autorate", "FIFO (line alone)"
        );
        let _ = writeln!(
            s,
            "{:<10} {:>8} | {:>8} {:>5} {:>5} | {:>8} {:>5} {:>5} | {:>8} {:>5} {:>5}",
            "category",
            "Mbit/s",
            "Mbit/s",
            "drops",
            "p99",
            "Mbit/s",
            "drops",
            "p99",
            "Mbit/s",
            "drops",
            "p99"
        );
        for name in &self.order {
            let (Some(q), Some(a), Some(f)) =
                (self.qosd.get(name), auto.get(name), self.fifo.get(name))
            else {
                continue;
            };
            let _ = writeln!(
                s,
                "{:<10} {:>8.2} | {:>8.2} {:>5} {:>5.0} | {:>8.2} {:>5} {:>5.0} | {:>8.2} {:>5} {:>5.0}",
                name,
                m(q.offered_bps),
                m(q.delivered_bps),
                q.dropped,
                q.delay_p99_ms,
                m(a.delivered_bps),
                a.dropped,
                a.delay_p99_ms,
                m(f.delivered_bps),
                f.dropped,
                f.delay_p99_ms
            );
        }
        let _ = writeln!(s, "(p99: time in queues, qosd's and the line's, ms)");
        self.outside_table(&mut s, auto);
        s
    }

    /// The time in the line's buffer, outside qosd (for download: the
    /// ISP's buffer before qosd), per direction, all traffic and per
    /// category, in each run.
    fn outside_table(&self, s: &mut String, auto: &BTreeMap<String, CategoryReport>) {
        let Some(o) = &self.outside else {
            return;
        };
        let _ = writeln!(
            s,
            "\noutside qosd p99 (mean), ms: time in the line's buffer (download: the ISP's, before qosd)"
        );
        let _ = writeln!(
            s,
            "{:<10} | {:>25} | {:>25} | {:>25}",
            "", "qosd, fixed rate", "qosd with autorate", "FIFO (line alone)"
        );
        let _ = writeln!(
            s,
            "{:<10} | {:>12} {:>12} | {:>12} {:>12} | {:>12} {:>12}",
            "category", "up", "down", "up", "down", "up", "down"
        );
        let cell = |p99: f64, mean: f64| format!("{p99:.1} ({mean:.1})");
        let run = |r: &OutsideRun| {
            format!(
                "{:>12} {:>12}",
                cell(r.upload.p99_ms, r.upload.mean_ms),
                cell(r.download.p99_ms, r.download.mean_ms)
            )
        };
        let _ = writeln!(
            s,
            "{:<10} | {} | {} | {}",
            "all",
            run(&o.qosd),
            run(&o.autorate),
            run(&o.fifo)
        );
        let cat = |c: Option<&CategoryReport>| {
            let dir = |d: Option<&CategoryReport>| match d {
                Some(d) => cell(
                    d.outside_p99_ms.unwrap_or(0.0),
                    d.outside_mean_ms.unwrap_or(0.0),
                ),
                None => "-".to_string(),
            };
            let c = c?;
            Some(format!(
                "{:>12} {:>12}",
                dir(c.upload.as_deref()),
                dir(c.download.as_deref())
            ))
        };
        for name in &self.order {
            let (Some(q), Some(a), Some(f)) = (
                cat(self.qosd.get(name)),
                cat(auto.get(name)),
                cat(self.fifo.get(name)),
            ) else {
                continue;
            };
            let _ = writeln!(s, "{:<10} | {q} | {a} | {f}", name);
        }
    }
}

/// At most `n` characters of `s`.
fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
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
            accounting: e.accounting().clone(),
            at: Instant::ZERO + duration,
            running: true,
            retired: Default::default(),
            config: Some(Arc::clone(e.config())),
            ports: Vec::new(),
            hosts: e.hosts().hosts().copied().collect(),
            backend: None,
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
        link: sim.published().unwrap_or_default(),
        hosts: Vec::new(),
    }
}
