//! `qosd run`: the inline daemon. It checks the interfaces, opens raw
//! sockets on both, starts the data path (upload: LAN -> WAN, download:
//! WAN -> LAN; one thread for both, or one each) and runs the control plane on tokio:
//! signals, reloads (SIGHUP, file changes, API), Prometheus metrics and the
//! admin API, and housekeeping.

mod control;
pub use control::load_token;
pub mod datapath;
pub mod ports;
pub mod preflight;
pub mod privileges;
pub mod state;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use self::datapath::Datapath;
use self::ports::{Port, Reopen};
use self::preflight::PreflightError;
use self::state::Handle;
use crate::config::{Backend, Config, ConfigErrors, Direction};
use crate::engine::{DirectionEngine, Shared};
use crate::io::afpacket::{OpenError, RxSocket, SocketOptions, TxSocket};
use crate::shaper::Shaper;

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
    /// The admin API or metrics cannot be set up safely.
    #[error("{0}")]
    Api(String),
    /// Anything else at start-up (threads, runtime).
    #[error("{0}")]
    Startup(String),
    /// An interface could not be re-opened for `daemon.reopen_timeout`:
    /// qosd stops so the fail-open bypass takes over.
    #[error("{0}; stopping so the fail-open bypass takes over")]
    Interface(String),
}

impl DaemonError {
    /// The exit status: 2 for problems an admin fixes in the configuration
    /// or the interfaces, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            DaemonError::Config(_) | DaemonError::Preflight(_) | DaemonError::Api(_) => 2,
            DaemonError::Open(OpenError::NoSuchInterface(_)) => 2,
            DaemonError::Open(_) | DaemonError::Startup(_) | DaemonError::Interface(_) => 1,
        }
    }
}

/// Runs the daemon until SIGTERM or SIGINT.
pub fn run(config_path: Option<&Path>) -> Result<(), DaemonError> {
    // The file's text is kept, to tell a later change on disk from the
    // file this configuration came from.
    let (file_text, cfg) = match config_path {
        Some(path) => crate::config::read_and_load(path),
        None => (None, crate::config::load_embedded()),
    };
    let cfg = cfg?;
    let token = control::load_token(&cfg)?;
    let pre = preflight::check(&cfg)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_name("qosd-control")
        .build()
        .map_err(|e| DaemonError::Startup(format!("cannot start the control plane: {e}")))?;
    // Bind the listeners before touching the data path, so an address in
    // use stops qosd before it forwards anything.
    let listeners = runtime.block_on(control::bind(&cfg))?;

    let opts = SocketOptions {
        rcvbuf: cfg.datapath.socket_buffer as usize,
        sndbuf: cfg.datapath.socket_buffer as usize / 4,
        backend: cfg.datapath.backend,
        max_frame: pre.max_frame,
    };
    // Each direction receives on one interface and sends on the other,
    // with sockets of its own, so it can re-open them alone.
    let (lan, wan) = (cfg.interfaces.lan.as_str(), cfg.interfaces.wan.as_str());
    let mut lan_rx = RxSocket::open(lan, opts)?;
    let mut wan_rx = RxSocket::open(wan, opts)?;
    let lan_tx = TxSocket::open(lan, opts)?;
    let wan_tx = TxSocket::open(wan, opts)?;
    if let Some(bridge) = &pre.bypass {
        preflight::remove_bypass(bridge)?;
        // Frames queued while the bridge still forwarded them were already
        // delivered: forwarding them again would duplicate them.
        let mut scratch = vec![0u8; datapath::buffer_size(pre.max_frame)];
        // AF_XDP took its frames from the bridge instead: keep those.
        for rx in [&mut lan_rx, &mut wan_rx] {
            while rx.receives_copies()
                && let Ok(Some(_)) = rx.recv(&mut scratch)
            {}
        }
    }
    if let Some(user) = &cfg.daemon.user {
        // CAP_NET_RAW to re-open a socket on an interface that was
        // re-created (a USB NIC re-plugged, a driver reset), CAP_NET_ADMIN
        // to turn its offloads off and to put offloads back at exit.
        // With AF_XDP possible also CAP_BPF (the program and its map)
        // and CAP_IPC_LOCK: its frame memory is locked memory, and raising
        // RLIMIT_MEMLOCK instead needs CAP_SYS_RESOURCE, which containers
        // often lack (the packaged unit sets LimitMEMLOCK instead).
        let mut keep = vec![
            caps::Capability::CAP_NET_RAW,
            caps::Capability::CAP_NET_ADMIN,
        ];
        if matches!(cfg.datapath.backend, Backend::Xdp | Backend::Auto) {
            keep.extend([caps::Capability::CAP_BPF, caps::Capability::CAP_IPC_LOCK]);
        }
        privileges::drop_to(user, &keep).map_err(|e| DaemonError::Startup(e.to_string()))?;
    }

    let shared = Arc::new(Shared::new(&cfg));
    let handle = Arc::new(
        Handle::new(
            Arc::clone(&shared),
            config_path.map(Path::to_path_buf),
            token,
        )
        .with_file_text(file_text),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let buffer = datapath::buffer_size(pre.max_frame);
    let reopen = Reopen {
        opts,
        manage_offloads: cfg.datapath.manage_offloads,
        timeout: cfg.daemon.reopen_timeout,
    };
    let t0 = crate::telemetry::now();
    let mut paths = Vec::new();
    for (dir, ports) in [
        (
            Direction::Upload,
            (
                Port::new(lan, "lan", lan_rx, t0),
                Port::new(wan, "wan", wan_tx, t0),
            ),
        ),
        (
            Direction::Download,
            (
                Port::new(wan, "wan", wan_rx, t0),
                Port::new(lan, "lan", lan_tx, t0),
            ),
        ),
    ] {
        let engine = DirectionEngine::new(
            dir,
            Arc::clone(&shared),
            Shaper::new(&datapath::shaper_config(&cfg, dir, buffer)),
        );
        let snapshot = Arc::clone(dir.pick_ref(&handle.telemetry.snapshots));
        let board = Arc::clone(&handle.telemetry.link);
        let dp = Datapath::new(dir, engine, ports, reopen, buffer, (snapshot, board))
            .map_err(|e| DaemonError::Startup(format!("cannot watch the interfaces: {e}")))?;
        paths.push((dir, dp));
    }
    // One thread for both directions unless configured otherwise: at
    // branch-office rates it wakes half as often as two.
    let groups: Vec<(&str, Vec<Datapath>)> = if cfg.datapath.threads >= 2 {
        paths
            .into_iter()
            .map(|(dir, dp)| (dir.as_str(), vec![dp]))
            .collect()
    } else {
        vec![("datapath", paths.into_iter().map(|(_, dp)| dp).collect())]
    };
    let mut threads = Vec::new();
    for (name, group) in groups {
        let stop = Arc::clone(&stop);
        let t = std::thread::Builder::new()
            .name(format!("qosd-{name}"))
            .spawn(move || datapath::run(group, &stop))
            .map_err(|e| DaemonError::Startup(format!("cannot start the data path thread: {e}")))?;
        threads.push(t);
    }
    log_startup(&cfg, pre.max_frame);

    let ended = runtime.block_on(control::run(Arc::clone(&handle), listeners));

    stop.store(true, Ordering::Relaxed);
    for t in threads {
        if t.join().is_err() {
            tracing::error!("a data path thread panicked");
        }
    }
    drop(pre.offloads); // restores the interfaces' offloads
    match ended {
        control::Ended::Stopped => {
            tracing::info!("stopped");
            Ok(())
        }
        control::Ended::GaveUp(why) => Err(DaemonError::Interface(why)),
    }
}

fn log_startup(cfg: &Config, max_frame: usize) {
    let cats: Vec<String> = cfg
        .category
        .iter()
        .map(|c| format!("{}(p{} w{})", c.name, c.priority, c.weight))
        .collect();
    tracing::info!(
        "qosd {} running: lan={} wan={} upload={} download={} overhead={} max_frame={} metrics=http://{}/metrics api=http://{} categories: {}",
        env!("CARGO_PKG_VERSION"),
        cfg.interfaces.lan,
        cfg.interfaces.wan,
        cfg.link.upload,
        cfg.link.download,
        cfg.link.overhead.upload,
        max_frame,
        cfg.metrics.listen,
        cfg.api.listen,
        cats.join(" ")
    );
}
