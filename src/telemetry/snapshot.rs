//! What one direction of the data path publishes ten times a second: its
//! plain counters, copied into a shared cell for the control plane.

use std::sync::{Arc, Mutex};

use super::ports::PortHealth;
use crate::config::Config;
use crate::engine::EngineCounters;
use crate::engine::accounting::Accounting;
use crate::engine::hosts::HostCounters;
use crate::shaper::CategoryCounters;
use crate::time::Instant;

/// Frame counts at the interfaces, for one direction.
#[derive(Debug, Clone, Default)]
pub struct IoCounters {
    /// Frames received on the ingress interface.
    pub rx_frames: u64,
    /// Their bytes.
    pub rx_bytes: u64,
    /// Frames handed to the egress interface.
    pub tx_frames: u64,
    /// Their bytes.
    pub tx_bytes: u64,
    /// Frames the egress interface refused for a reason other than a full
    /// queue or a link that is down (too large...).
    pub tx_errors: u64,
    /// Receive calls that failed.
    pub rx_errors: u64,
    /// Frames larger than the receive buffer (offloads left on): dropped.
    pub oversized: u64,
    /// Their bytes (as far as received).
    pub oversized_bytes: u64,
    /// Bytes of the frames the egress interface refused.
    pub tx_error_bytes: u64,
    /// Frames the kernel dropped before qosd read them (its socket queue
    /// was full: qosd fell behind).
    pub kernel_drops: u64,
    /// Frames whose partial TCP/UDP checksum qosd completed.
    pub checksum_completed: u64,
    /// Frames the shaper dropped (any reason; by category in its counters).
    pub shaper_dropped: u64,
    /// Frames given up because the egress queue stayed full through the
    /// send's wait budget.
    pub tx_queue_full: u64,
    /// Their bytes.
    pub tx_queue_full_bytes: u64,
    /// Times a send waited for a full egress queue.
    pub tx_retries: u64,
    /// Frames dropped because the egress interface was down, without
    /// carrier or gone when the shaper released them.
    pub egress_down: u64,
    /// Their bytes.
    pub egress_down_bytes: u64,
    /// Frames of voice flows that rang the data path's doorbell as they
    /// arrived (AF_XDP backend; see `engine::bells`).
    pub bell_rings: u64,
}

/// What one direction publishes for metrics and the API.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Interface counters.
    pub io: IoCounters,
    /// Engine counters.
    pub engine: EngineCounters,
    /// Shaper counters by category, in the layout of `config`.
    pub categories: Vec<CategoryCounters>,
    /// Per-app traffic and TCP quality, in the layout of `config`.
    pub accounting: Accounting,
    /// What categories removed by reloads had counted (added to the
    /// direction's totals, which must never go back).
    pub retired: CategoryCounters,
    /// The configuration whose categories `categories` follows (it can lag
    /// the installed one for a moment after a reload).
    pub config: Option<Arc<Config>>,
    /// When it was taken.
    pub at: Instant,
    /// The thread is running.
    pub running: bool,
    /// Its receiving port (ingress interface), then its sending port
    /// (egress interface).
    pub ports: Vec<PortHealth>,
    /// What each LAN computer sent or received this way (bytes by category
    /// in the layout of `config`).
    pub hosts: Vec<HostCounters>,
    /// How its receiving socket gets frames (`datapath.backend`, as
    /// `auto` resolved it), while open.
    pub backend: Option<crate::config::Backend>,
}

impl Snapshot {
    /// From a running thread, published within the last 2 s (the data path
    /// publishes every 100 ms, and at once when a port changes).
    pub fn is_fresh(&self, now: Instant) -> bool {
        self.running && now.nanos_since(self.at) < 2_000_000_000
    }
}

/// The shared place a direction publishes its snapshot.
pub type SnapshotCell = Arc<Mutex<Snapshot>>;
