//! The control plane on tokio: HTTP listeners (metrics and admin API),
//! signals, reloads on SIGHUP and on configuration file changes, the
//! systemd notifications, and once-a-second housekeeping.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::mpsc;

use super::DaemonError;
use super::state::Handle;
use crate::api::{ApiState, Control, api_routes, metrics_routes};
use crate::config::Config;
use crate::telemetry::now;

/// How long a file must stay quiet before a change is reloaded (editors
/// write in several steps).
const DEBOUNCE: Duration = Duration::from_millis(500);

/// Reads and checks the admin token named by `api.token_file`. qosd
/// refuses to start when the file can be read by other users, or when the
/// API listens beyond loopback without a token.
pub fn load_token(cfg: &Config) -> Result<Option<String>, DaemonError> {
    let listen = cfg.api.listen;
    let Some(path) = &cfg.api.token_file else {
        if !listen.ip().is_loopback() {
            return Err(DaemonError::Api(format!(
                "api.listen is {listen}, which is not loopback, and no api.token_file is set: anyone who reaches it could change qosd; set a token file (chmod 600) or listen on 127.0.0.1"
            )));
        }
        return Ok(None);
    };
    let meta = std::fs::metadata(path)
        .map_err(|e| DaemonError::Api(format!("api.token_file {}: {e}", path.display())))?;
    let mode = meta.permissions().mode();
    if mode & 0o007 != 0 {
        return Err(DaemonError::Api(format!(
            "api.token_file {} is readable or writable by every user (mode {:o}); run: chmod 600 {}",
            path.display(),
            mode & 0o777,
            path.display()
        )));
    }
    let token = std::fs::read_to_string(path)
        .map_err(|e| DaemonError::Api(format!("api.token_file {}: {e}", path.display())))?;
    let token = token.trim().to_owned();
    if token.len() < 16 {
        return Err(DaemonError::Api(format!(
            "api.token_file {} holds a token shorter than 16 characters",
            path.display()
        )));
    }
    Ok(Some(token))
}

/// The bound listeners.
pub struct Listeners {
    metrics: TcpListener,
    /// `None` when the API shares the metrics address.
    api: Option<TcpListener>,
}

async fn listen(addr: SocketAddr, what: &str) -> Result<TcpListener, DaemonError> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| DaemonError::Api(format!("cannot listen on {addr} ({what}.listen): {e}")))
}

/// Binds `metrics.listen` and `api.listen` (once if they are the same).
pub async fn bind(cfg: &Config) -> Result<Listeners, DaemonError> {
    let metrics = listen(cfg.metrics.listen, "metrics").await?;
    let api = if cfg.api.listen == cfg.metrics.listen {
        None
    } else {
        Some(listen(cfg.api.listen, "api").await?)
    };
    Ok(Listeners { metrics, api })
}

/// Watches the directory of `path` (so a save by rename is seen) and
/// sends a message for every event that touches the file.
fn watch(path: &Path, tx: mpsc::Sender<()>) -> Option<notify::RecommendedWatcher> {
    use notify::Watcher;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let name = path.file_name()?.to_owned();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        // Reads (qosd's own included) are no change: counting them would
        // re-arm the debounce with every look at the file.
        if let Ok(ev) = event
            && !matches!(ev.kind, notify::EventKind::Access(_))
            && ev
                .paths
                .iter()
                .any(|p| p.file_name() == Some(name.as_os_str()))
        {
            let _ = tx.try_send(());
        }
    })
    .map_err(|e| {
        tracing::warn!(
            "cannot watch {} for changes: {e}; SIGHUP still reloads",
            dir.display()
        )
    })
    .ok()?;
    match watcher.watch(&dir, notify::RecursiveMode::NonRecursive) {
        Ok(()) => Some(watcher),
        Err(e) => {
            tracing::warn!(
                "cannot watch {} for changes: {e}; SIGHUP still reloads",
                dir.display()
            );
            None
        }
    }
}

fn reload_and_log(handle: &Handle, why: &str) {
    match handle.reload() {
        Ok(cfg) => tracing::info!("configuration reloaded from {} ({why})", cfg.source),
        Err(e) => tracing::error!("reload ({why}) rejected, the running configuration stays:\n{e}"),
    }
}

/// Serves HTTP and handles signals, reloads and housekeeping until
/// SIGTERM or SIGINT, or until an interface cannot be re-opened.
pub async fn run(handle: Arc<Handle>, listeners: Listeners) -> Ended {
    use tokio::signal::unix::{SignalKind, signal};

    let registry =
        crate::metrics::registry(Arc::clone(&handle) as Arc<dyn crate::metrics::MetricsSource>);
    let state = ApiState {
        control: Arc::clone(&handle) as Arc<dyn Control>,
        registry,
    };
    let (metrics_app, api_app) = match listeners.api {
        None => (
            metrics_routes()
                .merge(api_routes())
                .with_state(state.clone()),
            None,
        ),
        Some(l) => (
            metrics_routes().with_state(state.clone()),
            Some((l, api_routes().with_state(state))),
        ),
    };
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listeners.metrics, metrics_app).await {
            tracing::error!("metrics server stopped: {e}");
        }
    });
    if let Some((l, app)) = api_app {
        tokio::spawn(async move {
            if let Err(e) = axum::serve(l, app).await {
                tracing::error!("API server stopped: {e}");
            }
        });
    }

    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return Ended::Stopped;
    };
    let (tx, mut changes) = mpsc::channel::<()>(16);
    let _watcher = handle.config_path.as_deref().and_then(|p| watch(p, tx));
    let mut pending: Option<tokio::time::Instant> = None;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut announced_ready = false;
    let mut last_status = String::new();
    let mut ended = Ended::Stopped;
    loop {
        let debounce = async {
            match pending {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = term.recv() => { tracing::info!("SIGTERM: stopping"); break; }
            _ = int.recv() => { tracing::info!("SIGINT: stopping"); break; }
            _ = hup.recv() => reload_and_log(&handle, "SIGHUP"),
            Some(()) = changes.recv() => pending = Some(tokio::time::Instant::now() + DEBOUNCE),
            _ = debounce => {
                pending = None;
                let h = Arc::clone(&handle);
                let _ = tokio::task::spawn_blocking(move || {
                    if h.file_changed() {
                        reload_and_log(&h, "file changed");
                    }
                })
                .await;
            }
            _ = tick.tick() => {
                let now = now();
                let telemetry = &handle.telemetry;
                if let Some(why) = telemetry.given_up() {
                    tracing::error!("{why}: stopping so the fail-open bypass takes over");
                    ended = Ended::GaveUp(why);
                    break;
                }
                // Unknown traffic is counted before expiry, so a leaving
                // flow's bytes are in; the walk visits the whole table, off
                // the runtime's thread (it feeds the watchdog).
                let h = Arc::clone(&handle);
                let _ = tokio::task::spawn_blocking(move || {
                    h.telemetry.update_unknown(&h.shared, now);
                })
                .await;
                handle.shared.table.expire(now);
                // A lowered max_flows and keys of expired flows are worked
                // off here a bounded amount a second, not on the data path.
                handle.shared.table.trim();
                telemetry.update_rates();
                // systemd: ready once both directions run; the watchdog is
                // fed only while the data path keeps publishing, so a hung
                // thread gets qosd restarted. A thread waiting for an
                // interface is not hung: restarting would not bring the
                // interface back sooner, and qosd re-opens it the moment
                // it returns.
                if telemetry.alive(now) {
                    if !announced_ready {
                        let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
                        announced_ready = true;
                    }
                    let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
                }
                let why = telemetry.not_ready(now);
                let status = if why.is_empty() {
                    "forwarding".to_owned()
                } else {
                    format!("not ready: {}", why.join("; "))
                };
                if status != last_status {
                    let _ = sd_notify::notify(&[sd_notify::NotifyState::Status(&status)]);
                    last_status = status;
                }
            }
        }
    }
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    ended
}

/// How the control plane ended.
#[derive(Debug)]
pub enum Ended {
    /// SIGTERM or SIGINT.
    Stopped,
    /// An interface could not be re-opened: the reason.
    GaveUp(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn event(rx: &mut mpsc::Receiver<()>, within: Duration) -> bool {
        tokio::time::timeout(within, rx.recv()).await.is_ok()
    }

    struct TempDir(std::path::PathBuf);
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// Reading the file (as qosd does to compare it) is no event, or the
    /// debounce would re-arm itself with every look and qosd would re-read
    /// its file twice a second forever; writing it, and replacing it by
    /// rename, are events.
    #[tokio::test(flavor = "current_thread")]
    async fn the_watcher_reports_writes_and_renames_not_reads() {
        let dir = TempDir(std::env::temp_dir().join(format!("qosd-watch-{}", std::process::id())));
        std::fs::create_dir_all(&dir.0).unwrap();
        let path = dir.0.join("qosd.toml");
        std::fs::write(&path, "a = 1\n").unwrap();
        let (tx, mut rx) = mpsc::channel::<()>(16);
        let _w = watch(&path, tx).expect("watcher");
        for _ in 0..3 {
            let _ = std::fs::read_to_string(&path).unwrap();
        }
        assert!(
            !event(&mut rx, Duration::from_millis(300)).await,
            "reading the file woke the watcher"
        );
        std::fs::write(&path, "a = 2\n").unwrap();
        assert!(
            event(&mut rx, Duration::from_secs(5)).await,
            "a write was missed"
        );
        while rx.try_recv().is_ok() {}
        let tmp = dir.0.join("qosd.toml.swp");
        std::fs::write(&tmp, "a = 3\n").unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        assert!(
            event(&mut rx, Duration::from_secs(5)).await,
            "a rename was missed"
        );
    }
}
