//! `qosd run`: the inline daemon. It checks the interfaces, opens raw
//! sockets on both, starts one data-path thread per direction (upload:
//! LAN -> WAN, download: WAN -> LAN) and runs the control plane on tokio:
//! signals, periodic housekeeping, and (later) metrics and the admin API.

pub mod datapath;
pub mod preflight;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use self::datapath::{Datapath, IoCounters, Snapshot, SnapshotCell};
use self::preflight::PreflightError;
use crate::config::{Config, ConfigErrors, Direction};
use crate::engine::frame::FramePool;
use crate::engine::{DirectionEngine, Shared};
use crate::io::afpacket::{AfPacket, OpenError, SocketOptions};
use crate::shaper::{Shaper, ShaperConfig};

/// Why the daemon stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The configuration is invalid.
    #[error("{0}")]
    Config(#[from] ConfigErrors),
    /// The interfaces are not usable as they are.
    #[error("{0}")]
    Preflight(#[from] PreflightError),
    /// A socket could not be opened.
    #[error("{0}")]
    Open(#[from] OpenError),
    /// Anything else at start-up (threads, runtime).
    #[error("{0}")]
    Startup(String),
}

impl DaemonError {
    /// The exit status: 2 for problems an admin fixes in the configuration
    /// or the interfaces, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            DaemonError::Config(_) | DaemonError::Preflight(_) => 2,
            DaemonError::Open(OpenError::NoSuchInterface(_)) => 2,
            DaemonError::Open(_) | DaemonError::Startup(_) => 1,
        }
    }
}

/// The running daemon's shared state, as the control plane sees it.
pub struct Handle {
    /// Engine state shared by both directions.
    pub shared: Arc<Shared>,
    /// Upload and download snapshots (by [`Direction::index`]).
    pub snapshots: [SnapshotCell; 2],
    /// The configuration file, if any (for reloads).
    pub config_path: Option<PathBuf>,
}

impl Handle {
    /// Copies of both directions' latest snapshots.
    pub fn snapshots(&self) -> [Snapshot; 2] {
        let get = |c: &SnapshotCell| c.lock().map(|s| s.clone()).unwrap_or_default();
        let [up, down] = &self.snapshots;
        [get(up), get(down)]
    }
}

/// Runs the daemon until SIGTERM or SIGINT.
pub fn run(config_path: Option<&Path>) -> Result<(), DaemonError> {
    let cfg = crate::config::load(config_path)?;
    let pre = preflight::check(&cfg)?;
    let opts = SocketOptions {
        rcvbuf: cfg.datapath.socket_buffer as usize,
        sndbuf: cfg.datapath.socket_buffer as usize / 4,
    };
    let (lan_rx, lan_tx) = AfPacket::open(&cfg.interfaces.lan, opts)?.split();
    let (wan_rx, wan_tx) = AfPacket::open(&cfg.interfaces.wan, opts)?.split();

    let shared = Arc::new(Shared::new(&cfg));
    let handle = Arc::new(Handle {
        shared: Arc::clone(&shared),
        snapshots: [
            Arc::new(Mutex::new(Snapshot::default())),
            Arc::new(Mutex::new(Snapshot::default())),
        ],
        config_path: config_path.map(Path::to_path_buf),
    });
    let stop = Arc::new(AtomicBool::new(false));
    let buffer = datapath::buffer_size(pre.max_frame);
    let mut threads = Vec::new();
    for (dir, rx, tx) in [
        (Direction::Upload, lan_rx, wan_tx),
        (Direction::Download, wan_rx, lan_tx),
    ] {
        let dp = Datapath {
            dir,
            engine: DirectionEngine::new(
                dir,
                Arc::clone(&shared),
                Shaper::new(&ShaperConfig::from_config(&cfg, dir)),
            ),
            rx,
            tx,
            pool: FramePool::new(buffer, 256),
            io: IoCounters::default(),
            snapshot: Arc::clone(dir.pick_ref(&handle.snapshots)),
        };
        let stop = Arc::clone(&stop);
        let t = std::thread::Builder::new()
            .name(format!("qosd-{}", dir.as_str()))
            .spawn(move || dp.run(&stop))
            .map_err(|e| DaemonError::Startup(format!("cannot start the data path thread: {e}")))?;
        threads.push(t);
    }
    log_startup(&cfg, pre.max_frame);

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_name("qosd-control")
        .build()
        .map_err(|e| DaemonError::Startup(format!("cannot start the control plane: {e}")))?;
    runtime.block_on(control_plane(Arc::clone(&handle)));

    stop.store(true, Ordering::Relaxed);
    for t in threads {
        if t.join().is_err() {
            tracing::error!("a data path thread panicked");
        }
    }
    drop(pre.offloads); // restores the interfaces' offloads
    tracing::info!("stopped");
    Ok(())
}

fn log_startup(cfg: &Config, max_frame: usize) {
    let cats: Vec<String> = cfg
        .category
        .iter()
        .map(|c| format!("{}(p{} w{})", c.name, c.priority, c.weight))
        .collect();
    tracing::info!(
        "qosd {} running: lan={} wan={} upload={} download={} overhead={} max_frame={} categories: {}",
        env!("CARGO_PKG_VERSION"),
        cfg.interfaces.lan,
        cfg.interfaces.wan,
        cfg.link.upload,
        cfg.link.download,
        cfg.link.overhead.upload,
        max_frame,
        cats.join(" ")
    );
}

/// Signals and housekeeping until SIGTERM/SIGINT.
async fn control_plane(handle: Arc<Handle>) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = term.recv() => { tracing::info!("SIGTERM: stopping"); break; }
            _ = int.recv() => { tracing::info!("SIGINT: stopping"); break; }
            _ = hup.recv() => { reload(&handle); }
            _ = tick.tick() => {
                handle.shared.table.expire(datapath::now());
            }
        }
    }
}

/// Re-reads the configuration file; a bad one is rejected and the running
/// configuration stays.
pub fn reload(handle: &Handle) -> bool {
    match crate::config::load(handle.config_path.as_deref()) {
        Ok(cfg) => {
            handle.shared.reload(&cfg);
            tracing::info!("configuration reloaded from {}", cfg.source);
            true
        }
        Err(e) => {
            tracing::error!("reload rejected, the running configuration stays:\n{e}");
            false
        }
    }
}
