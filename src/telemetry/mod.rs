//! What the data path publishes, and what the control plane derives from
//! it: each direction's snapshot of its counters and ports, the flow
//! statistics, the rates, readiness, and the clock they are stamped with.
//!
//! The daemon writes here; metrics, the API and the simulator only read,
//! so none of them needs the daemon (its threads and sockets) to make
//! sense of the figures.

mod clock;
mod flows;
pub mod hosts;
mod ports;
mod rates;
mod snapshot;
pub mod unknown;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

pub use self::clock::now;
pub use self::flows::FlowStats;
use self::hosts::{HostRateState, HostSummary};
pub use self::ports::{PortHealth, PortState, SocketKind, by_interface};
use self::rates::RateState;
pub use self::snapshot::{IoCounters, Snapshot, SnapshotCell};
use crate::config::Direction;
use crate::time::Instant;

/// The published state of a running daemon: both directions' snapshot
/// cells, the rates computed from them, the reload counts and the start
/// time.
pub struct Telemetry {
    /// Upload and download snapshots (by [`Direction::index`]): each
    /// direction of the data path writes its own.
    pub snapshots: [SnapshotCell; 2],
    started: std::time::Instant,
    reloads: [AtomicU64; 2],
    rates: Mutex<RateState>,
    hosts: Mutex<HostRateState>,
    unknown: Mutex<unknown::Discovery>,
    /// The link's rates and WAN delay, from the thread that runs autorate.
    pub link: Arc<crate::autorate::Board>,
}

impl Default for Telemetry {
    fn default() -> Self {
        Self::new()
    }
}

impl Telemetry {
    /// Empty snapshots (no thread running yet), the clock of uptime started.
    pub fn new() -> Self {
        Telemetry {
            snapshots: [
                Arc::new(Mutex::new(Snapshot::default())),
                Arc::new(Mutex::new(Snapshot::default())),
            ],
            started: std::time::Instant::now(),
            reloads: [AtomicU64::new(0), AtomicU64::new(0)],
            rates: Mutex::new(RateState::default()),
            hosts: Mutex::new(HostRateState::default()),
            unknown: Mutex::new(unknown::Discovery::default()),
            link: Arc::new(crate::autorate::Board::default()),
        }
    }

    /// Copies of both directions' latest snapshots.
    pub fn snapshots(&self) -> [Snapshot; 2] {
        // A poisoned cell still holds the last whole snapshot (the data
        // path writes it in one critical section): read it, or a panic on
        // one thread would read as a data path that stopped.
        let get = |c: &SnapshotCell| c.lock().unwrap_or_else(PoisonError::into_inner).clone();
        let [up, down] = &self.snapshots;
        [get(up), get(down)]
    }

    /// True when both directions of the data path run and published
    /// recently (whatever their interfaces do): what the systemd watchdog
    /// is fed on, since a direction that waits for an interface is not hung.
    pub fn alive(&self, now: Instant) -> bool {
        self.snapshots().iter().all(|s| s.is_fresh(now))
    }

    /// True when both directions forward: threads alive and every port up.
    pub fn ready(&self, now: Instant) -> bool {
        self.not_ready(now).is_empty()
    }

    /// Why qosd is not ready, one line a reason (empty when ready).
    pub fn not_ready(&self, now: Instant) -> Vec<String> {
        let snaps = self.snapshots();
        let mut why = Vec::new();
        for (dir, s) in Direction::BOTH.iter().zip(&snaps) {
            if !s.is_fresh(now) {
                why.push(format!("the {} data path is not running", dir.as_str()));
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
    /// a second): the bytes each category sent between the snapshots of
    /// this call and the last, over the time between those snapshots.
    pub fn update_rates(&self) {
        let snaps = self.snapshots();
        if let Ok(mut st) = self.hosts.lock() {
            st.update(&snaps);
        }
        if let Ok(mut st) = self.rates.lock() {
            st.update(snaps);
        }
    }

    /// Every LAN computer seen, busiest first, with its rates over the
    /// last second (flows and apps not filled in: see
    /// [`hosts::count_flows`]).
    pub fn hosts(&self, now: Instant) -> Vec<HostSummary> {
        let snaps = self.snapshots();
        self.hosts
            .lock()
            .map(|st| hosts::summarise(&snaps, &st, now))
            .unwrap_or_default()
    }

    /// Counts what the flows of `shared` without an app carried since the
    /// last call into the discovery table (see [`unknown::Discovery`]):
    /// once a second, so that flows are seen before they leave. Visits the
    /// whole flow table: not on a thread that must stay responsive.
    pub fn update_unknown(&self, shared: &crate::engine::Shared, now: Instant) {
        // A poisoned lock still holds a whole table (each flow's counts are
        // added in one step): keep counting.
        self.unknown
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .update(shared, now);
    }

    /// The `n` unknown keys with the most bytes since qosd started, and
    /// the total (`/api/v1/unknown`).
    pub fn unknown(&self, n: usize) -> unknown::UnknownReport {
        self.unknown
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .top(n)
    }

    /// Current rates (bits/s) per direction and category, in the category
    /// layout of the snapshots they were computed from.
    pub fn rates(&self) -> [Vec<f64>; 2] {
        self.rates.lock().map(|r| r.rates()).unwrap_or_default()
    }

    /// Current rates per direction and category, in the category layout of
    /// `snaps` (which may have changed since the rates were computed).
    pub fn rates_for(&self, snaps: &[Snapshot; 2]) -> [Vec<f64>; 2] {
        self.rates
            .lock()
            .map(|r| r.rates_for(snaps))
            .unwrap_or_default()
    }

    /// The 99th percentile of the queue delay (ms) of what each category
    /// sent over the rates' last interval (about a second), per direction,
    /// in the category layout of `snaps`; `None` where it sent nothing.
    pub fn recent_delays_for(&self, snaps: &[Snapshot; 2]) -> [Vec<Option<f64>>; 2] {
        self.rates
            .lock()
            .map(|r| r.delays_for(snaps))
            .unwrap_or_default()
    }

    /// Counts a configuration reload that succeeded (`ok`) or was refused.
    pub fn count_reload(&self, ok: bool) {
        let [good, bad] = &self.reloads;
        if ok { good } else { bad }.fetch_add(1, Ordering::Relaxed);
    }

    /// Reloads counted so far: (success, failure).
    pub fn reload_counts(&self) -> [u64; 2] {
        [
            self.reloads[0].load(Ordering::Relaxed),
            self.reloads[1].load(Ordering::Relaxed),
        ]
    }
}
