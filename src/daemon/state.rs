//! What the control plane knows about the running daemon: the shared
//! engine state, the data path's snapshots, rates, reload counters and the
//! admin token; and the reload and live-change operations, which every
//! source (SIGHUP, the file watcher, the API) goes through.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::datapath::{Snapshot, SnapshotCell};
use super::ports::{PortState, by_interface};
use crate::config::{Config, ConfigErrors, Direction, Env};
use crate::engine::Shared;
use crate::metrics::{FlowStats, MetricsSource, MetricsView};
use crate::time::Instant;

/// Rates computed once a second from the snapshots' sent bytes.
#[derive(Debug, Default)]
struct RateState {
    /// Each direction's snapshot at the last update: its time, category
    /// layout and sent bytes per category.
    last: Option<[Sample; 2]>,
    /// Bits/s per category, in the layout of `last`.
    rates: [Vec<f64>; 2],
}

/// One direction's sent bytes per category at one moment.
#[derive(Debug)]
struct Sample {
    at: Instant,
    layout: Option<Arc<Config>>,
    sent: Vec<u64>,
}

/// A snapshot from a running thread, published within the last 2 s.
fn fresh(s: &Snapshot, now: Instant) -> bool {
    s.running && now.nanos_since(s.at) < 2_000_000_000
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

/// The running daemon's state, as the control plane sees it.
pub struct Handle {
    /// Engine state shared by both directions.
    pub shared: Arc<Shared>,
    /// Upload and download snapshots (by [`Direction::index`]).
    pub snapshots: [SnapshotCell; 2],
    /// The configuration file, if any (for reloads).
    pub config_path: Option<PathBuf>,
    /// The bearer token write requests must present, if configured.
    pub token: Option<String>,
    started: std::time::Instant,
    reloads: [AtomicU64; 2],
    rates: Mutex<RateState>,
    /// Serialises reloads and live changes.
    change: Mutex<()>,
    /// The configuration file's text as last read for a load (at start or
    /// by a reload, valid or not): a change on disk is reloaded only when
    /// the file differs from it.
    file_text: Mutex<Option<String>>,
    /// The file asks for settings that only a restart applies.
    restart_pending: AtomicBool,
}

/// Sections read once at start-up (sockets, listeners, token, privileges):
/// a reload keeps the running values and says a restart is pending.
const RESTART_ONLY: &str =
    "interfaces, datapath, daemon, metrics and api (listen addresses, token)";

/// Why a change was refused.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    /// The new configuration is invalid.
    #[error("{0}")]
    Invalid(ConfigErrors),
    /// No such category.
    #[error("no category named \"{0}\"")]
    UnknownCategory(String),
    /// The change could not be expressed (a bug, not the admin's fault).
    #[error("{0}")]
    Internal(String),
}

impl Handle {
    /// State for a daemon started with `cfg`.
    pub fn new(shared: Arc<Shared>, config_path: Option<PathBuf>, token: Option<String>) -> Self {
        Handle {
            shared,
            snapshots: [
                Arc::new(Mutex::new(Snapshot::default())),
                Arc::new(Mutex::new(Snapshot::default())),
            ],
            config_path,
            token,
            started: std::time::Instant::now(),
            reloads: [AtomicU64::new(0), AtomicU64::new(0)],
            rates: Mutex::new(RateState::default()),
            change: Mutex::new(()),
            file_text: Mutex::new(None),
            restart_pending: AtomicBool::new(false),
        }
    }

    /// Records the configuration file's text the running configuration
    /// was loaded from at start.
    pub fn with_file_text(self, text: Option<String>) -> Self {
        if let Ok(mut t) = self.file_text.lock() {
            *t = text;
        }
        self
    }

    /// True when the configuration file now differs from the text last
    /// loaded (an unreadable file, e.g. between an editor's delete and
    /// rename, is no change yet).
    pub fn file_changed(&self) -> bool {
        let Some(path) = &self.config_path else {
            return false;
        };
        let Ok(now) = std::fs::read_to_string(path) else {
            return false;
        };
        self.file_text
            .lock()
            .map(|seen| seen.as_deref() != Some(now.as_str()))
            .unwrap_or(true)
    }

    /// True when the file sets restart-only sections to values other than
    /// the running ones.
    pub fn restart_pending(&self) -> bool {
        self.restart_pending.load(Ordering::Relaxed)
    }

    /// Copies of both directions' latest snapshots.
    pub fn snapshots(&self) -> [Snapshot; 2] {
        // A poisoned cell still holds the last whole snapshot (the data
        // path writes it in one critical section): read it, or a panic on
        // one thread would read as a data path that stopped.
        let get = |c: &SnapshotCell| {
            c.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone()
        };
        let [up, down] = &self.snapshots;
        [get(up), get(down)]
    }

    /// True when both data-path threads run and published recently
    /// (whatever their interfaces do): what the systemd watchdog is fed on,
    /// since a thread that waits for an interface is not hung.
    pub fn alive(&self, now: Instant) -> bool {
        self.snapshots().iter().all(|s| fresh(s, now))
    }

    /// True when both directions forward: threads alive and every port up.
    pub fn ready(&self, now: Instant) -> bool {
        self.not_ready(now).is_empty()
    }

    /// Why qosd is not ready, one line a reason (empty when ready).
    pub fn not_ready(&self, now: Instant) -> Vec<String> {
        let snaps = self.snapshots();
        let mut why = Vec::new();
        for (i, s) in snaps.iter().enumerate() {
            if !fresh(s, now) {
                why.push(format!(
                    "the {} data path is not running",
                    Self::direction(i).as_str()
                ));
            }
        }
        for p in by_interface(snaps.iter().flat_map(|s| s.ports.iter())) {
            if p.state != PortState::Up {
                let secs = now.nanos_since(p.since) as f64 / 1e9;
                let mut line = format!(
                    "{} ({}): {} for {secs:.1} s",
                    p.interface,
                    p.role,
                    p.state.describe()
                );
                if let Some(e) = &p.error {
                    line.push_str(": ");
                    line.push_str(e);
                }
                why.push(line);
            }
        }
        why
    }

    /// Why qosd must exit, when a port could not be re-opened for longer
    /// than `daemon.reopen_timeout`.
    pub fn given_up(&self) -> Option<String> {
        self.snapshots()
            .iter()
            .flat_map(|s| s.ports.iter())
            .find(|p| p.given_up)
            .map(|p| {
                format!(
                    "{} ({}): {} socket cannot be re-opened: {}",
                    p.interface,
                    p.role,
                    p.socket.as_str(),
                    p.error.as_deref().unwrap_or("unknown error")
                )
            })
    }

    /// Seconds since start.
    pub fn uptime_seconds(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// Updates the per-category rates from the snapshots (call about once
    /// a second). Bytes are divided by the time between the snapshots they
    /// come from, not between calls: the data path publishes every 100 ms,
    /// so the two differ by up to a tenth and the rate would jitter by as
    /// much. Categories are matched by name across a reload. A direction
    /// whose snapshot has not moved keeps its rates.
    pub fn update_rates(&self) {
        let now = self.snapshots().map(|s| Sample {
            at: s.at,
            sent: s.categories.iter().map(|c| c.sent.bytes).collect(),
            layout: s.config,
        });
        let Ok(mut st) = self.rates.lock() else {
            return;
        };
        if let Some(prev) = &st.last {
            let mut rates = st.rates.clone();
            for ((rate, cur), old) in rates.iter_mut().zip(&now).zip(prev) {
                let secs = cur.at.nanos_since(old.at) as f64 / 1e9;
                if secs > 0.0 {
                    *rate = cur
                        .sent
                        .iter()
                        .enumerate()
                        .map(|(i, b)| {
                            // A category new since then started from zero.
                            let before = same_category(cur.layout.as_ref(), i, old.layout.as_ref())
                                .and_then(|j| old.sent.get(j))
                                .copied()
                                .unwrap_or(0);
                            b.saturating_sub(before) as f64 * 8.0 / secs
                        })
                        .collect();
                }
            }
            st.rates = rates;
        }
        st.last = Some(now);
    }

    /// Current rates (bits/s) per direction and category, in the category
    /// layout of the snapshots they were computed from.
    pub fn rates(&self) -> [Vec<f64>; 2] {
        self.rates
            .lock()
            .map(|r| r.rates.clone())
            .unwrap_or_default()
    }

    /// Current rates per direction and category, in the category layout of
    /// `snaps` (which may have changed since the rates were computed).
    pub fn rates_for(&self, snaps: &[Snapshot; 2]) -> [Vec<f64>; 2] {
        let Ok(st) = self.rates.lock() else {
            return Default::default();
        };
        let mut out: [Vec<f64>; 2] = Default::default();
        for (d, (o, snap)) in out.iter_mut().zip(snaps).enumerate() {
            let (Some(rates), last) = (st.rates.get(d), st.last.as_ref().and_then(|l| l.get(d)))
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
                    .copied()
                    .unwrap_or(0.0)
                })
                .collect();
        }
        out
    }

    /// Reloads counted so far: (success, failure).
    pub fn reload_counts(&self) -> [u64; 2] {
        [
            self.reloads[0].load(Ordering::Relaxed),
            self.reloads[1].load(Ordering::Relaxed),
        ]
    }

    fn count(&self, ok: bool) {
        let [good, bad] = &self.reloads;
        if ok { good } else { bad }.fetch_add(1, Ordering::Relaxed);
    }

    /// Re-reads the configuration file (or the embedded default) and
    /// installs it; a bad one is refused and the running one stays.
    pub fn reload(&self) -> Result<Arc<Config>, ConfigErrors> {
        let _serial = self.change.lock();
        let result = match self.config_path.as_deref() {
            Some(path) => {
                let (text, result) = crate::config::read_and_load(path);
                if let Ok(mut seen) = self.file_text.lock() {
                    *seen = text;
                }
                result
            }
            None => crate::config::load_embedded(),
        };
        self.count(result.is_ok());
        let cfg = result?;
        self.install(cfg);
        Ok(self.shared.config())
    }

    /// Installs `cfg`, except its restart-only sections: the sockets,
    /// listeners and privileges in use were made from the running ones, and
    /// metrics and the API must keep describing those.
    fn install(&self, mut cfg: Config) {
        let old = self.shared.config();
        let pending = old.interfaces != cfg.interfaces
            || old.metrics != cfg.metrics
            || old.api != cfg.api
            || old.datapath != cfg.datapath
            || old.daemon != cfg.daemon;
        if pending {
            tracing::warn!(
                "{RESTART_ONLY} changed in the file: they take effect at the next restart, the running ones stay until then"
            );
        }
        self.restart_pending.store(pending, Ordering::Relaxed);
        cfg.interfaces.clone_from(&old.interfaces);
        cfg.metrics.clone_from(&old.metrics);
        cfg.api.clone_from(&old.api);
        cfg.datapath.clone_from(&old.datapath);
        cfg.daemon.clone_from(&old.daemon);
        self.shared.reload(&cfg);
    }

    /// Changes one category of the running configuration: `changes` maps
    /// keys (weight, priority, min, max) to TOML values. Validated like the
    /// file; applied without losing queued packets. Not written to the file.
    pub fn change_category(
        &self,
        name: &str,
        changes: &toml::Table,
    ) -> Result<Arc<Config>, ChangeError> {
        let _serial = self.change.lock();
        let current = self.shared.config();
        let index = current
            .category
            .iter()
            .position(|c| c.name == name)
            .ok_or_else(|| ChangeError::UnknownCategory(name.to_owned()))?;
        let mut doc: toml::Table =
            toml::from_str(&current.to_toml()).map_err(|e| ChangeError::Internal(e.to_string()))?;
        let entry = doc
            .get_mut("category")
            .and_then(|c| c.as_array_mut())
            .and_then(|a| a.get_mut(index))
            .and_then(|c| c.as_table_mut())
            .ok_or_else(|| ChangeError::Internal("category table missing".into()))?;
        for (k, v) in changes {
            entry.insert(k.clone(), v.clone());
        }
        let text = toml::to_string(&doc).map_err(|e| ChangeError::Internal(e.to_string()))?;
        let mut cfg = crate::config::load_str(&current.source, &text, &Env::None)
            .map_err(ChangeError::Invalid)?;
        cfg.source = current.source.clone();
        self.install(cfg);
        Ok(self.shared.config())
    }

    /// Flow-table and DNS figures, with flows counted per category.
    pub fn flow_stats(&self) -> FlowStats {
        let table = &self.shared.table;
        let cfg = self.shared.config();
        let mut by_category = vec![0u64; cfg.category.len()];
        table.for_each(|_, flow| {
            let cat = flow.value.category(flow.first_direction());
            if let Some(n) = by_category.get_mut(cat.index()) {
                *n += 1;
            }
        });
        FlowStats {
            active: table.len() as u64,
            created: table.stats.created.load(Ordering::Relaxed),
            evicted: table.stats.evicted.load(Ordering::Relaxed),
            expired: table.stats.expired.load(Ordering::Relaxed),
            by_category,
            dns_entries: self.shared.names.len() as u64,
            dns_evictions: self.shared.names.evictions(),
            dpi_memory_bytes: self.shared.dpi.used() as u64,
            dpi_memory_limit_bytes: self.shared.dpi.limit() as u64,
        }
    }

    /// The direction a snapshot index stands for.
    pub fn direction(i: usize) -> Direction {
        if i == 0 {
            Direction::Upload
        } else {
            Direction::Download
        }
    }
}

impl MetricsSource for Handle {
    fn view(&self) -> MetricsView {
        let snapshots = self.snapshots();
        MetricsView {
            config: self.shared.config(),
            rates: self.rates_for(&snapshots),
            snapshots,
            flows: self.flow_stats(),
            reloads: self.reload_counts(),
            uptime_seconds: self.uptime_seconds(),
            ready: self.ready(super::datapath::now()),
        }
    }
}
