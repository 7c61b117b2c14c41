//! What the control plane knows about the running daemon: the shared
//! engine state, what the data path publishes ([`Telemetry`]) and the
//! admin token; and the reload and live-change operations ([`Control`]),
//! which every source (SIGHUP, the file watcher, the API) goes through.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::api::{ChangeError, Control};
use crate::config::{Config, ConfigErrors, Env};
use crate::engine::Shared;
use crate::metrics::{MetricsSource, MetricsView};
use crate::telemetry::{FlowStats, Telemetry, now};

/// The running daemon's state, as the control plane sees it.
pub struct Handle {
    /// Engine state shared by both directions.
    pub shared: Arc<Shared>,
    /// What the data path publishes, and what is derived from it.
    pub telemetry: Telemetry,
    /// The configuration file, if any (for reloads).
    pub config_path: Option<PathBuf>,
    /// The bearer token write requests must present, if configured.
    pub token: Option<String>,
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

impl Handle {
    /// State for a daemon started with `cfg`.
    pub fn new(shared: Arc<Shared>, config_path: Option<PathBuf>, token: Option<String>) -> Self {
        Handle {
            shared,
            telemetry: Telemetry::new(),
            config_path,
            token,
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

    /// Installs `cfg`, except its restart-only sections: the sockets,
    /// listeners and privileges in use were made from the running ones, and
    /// metrics and the API must keep describing those.
    fn install(&self, mut cfg: Config) {
        let old = self.shared.config();
        let pending = old.interfaces != cfg.interfaces
            || old.metrics.listen != cfg.metrics.listen
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
        // metrics.top_hosts is read at each scrape: it applies now.
        cfg.metrics.listen = old.metrics.listen;
        cfg.api.clone_from(&old.api);
        cfg.datapath.clone_from(&old.datapath);
        cfg.daemon.clone_from(&old.daemon);
        self.shared.reload(&cfg);
    }
}

impl Control for Handle {
    fn shared(&self) -> &Shared {
        &self.shared
    }

    fn telemetry(&self) -> &Telemetry {
        &self.telemetry
    }

    fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    fn restart_pending(&self) -> bool {
        self.restart_pending.load(Ordering::Relaxed)
    }

    /// Re-reads the configuration file (or the embedded default) and
    /// installs it; a bad one is refused and the running one stays.
    fn reload(&self) -> Result<Arc<Config>, ConfigErrors> {
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
        self.telemetry.count_reload(result.is_ok());
        let cfg = result?;
        self.install(cfg);
        Ok(self.shared.config())
    }

    /// Changes one category of the running configuration: `changes` maps
    /// keys (weight, priority, min, max) to TOML values. Validated like the
    /// file; applied without losing queued packets. Not written to the file.
    fn change_category(
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
}

impl MetricsSource for Handle {
    fn view(&self) -> MetricsView {
        let t = &self.telemetry;
        let snapshots = t.snapshots();
        MetricsView {
            config: self.shared.config(),
            rates: t.rates_for(&snapshots),
            snapshots,
            flows: FlowStats::of(&self.shared),
            reloads: t.reload_counts(),
            uptime_seconds: t.uptime_seconds(),
            ready: t.ready(now()),
            link: t.link.published(),
            hosts: match self.shared.config().metrics.top_hosts {
                0 => Vec::new(),
                n => {
                    let mut hosts = t.hosts(now());
                    hosts.truncate(n as usize);
                    hosts
                }
            },
        }
    }
}
