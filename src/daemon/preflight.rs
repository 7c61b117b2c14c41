//! Start-up checks of the two interfaces, and the offload settings qosd
//! changes while it runs (restored when the guard drops, including on
//! errors and panics that unwind).

use crate::config::Config;
use crate::io::netdev::{self, Offloads};

/// Why the daemon cannot start on these interfaces (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
    /// The interface does not exist.
    #[error(
        "interface {iface} ({role}) does not exist; set interfaces.{role} in the configuration (see `ip link`)"
    )]
    Missing {
        /// Name.
        iface: String,
        /// "lan" or "wan".
        role: &'static str,
    },
    /// The interface is down.
    #[error("interface {iface} ({role}) is down; bring it up with: ip link set {iface} up")]
    Down {
        /// Name.
        iface: String,
        /// "lan" or "wan".
        role: &'static str,
    },
    /// Both interfaces are ports of one kernel bridge: every frame would be
    /// forwarded twice.
    #[error(
        "{lan} and {wan} are both ports of the kernel bridge {bridge}, which would forward every frame a second time; remove them with: ip link set {lan} nomaster && ip link set {wan} nomaster"
    )]
    Bridged {
        /// LAN interface.
        lan: String,
        /// WAN interface.
        wan: String,
        /// The bridge.
        bridge: String,
    },
    /// Offloads are on and qosd may not change them.
    #[error(
        "{iface} has {names} on, which hand qosd merged frames larger than the MTU; turn them off with: ethtool -K {iface} gro off gso off tso off lro off (or set datapath.manage_offloads = true)"
    )]
    Offloads {
        /// Name.
        iface: String,
        /// Which ones.
        names: String,
    },
    /// The bypass bridge could not be removed.
    #[error(
        "cannot remove the bypass bridge {bridge}: {source}; remove it with: ip link del {bridge}"
    )]
    Bypass {
        /// The bridge.
        bridge: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// Offloads could not be changed.
    #[error(
        "cannot turn off {names} on {iface}: {source}; turn them off with: ethtool -K {iface} gro off gso off tso off lro off"
    )]
    OffloadChange {
        /// Name.
        iface: String,
        /// Which ones.
        names: String,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Restores interfaces' offloads when dropped.
#[derive(Debug, Default)]
pub struct OffloadGuard {
    saved: Vec<(String, Offloads)>,
}

impl OffloadGuard {
    /// True when nothing needs restoring.
    pub fn is_empty(&self) -> bool {
        self.saved.is_empty()
    }
}

impl Drop for OffloadGuard {
    fn drop(&mut self) {
        for (iface, before) in self.saved.drain(..) {
            if let Err(e) = netdev::set_offloads(&iface, before) {
                tracing::warn!(%iface, error = %e, "could not restore offloads ({})", before.names());
            } else {
                tracing::info!(%iface, "restored offloads: {}", before.names());
            }
        }
    }
}

/// The result of the checks: the frame size to use and the offload guard.
#[derive(Debug)]
pub struct Preflight {
    /// Largest frame to receive and forward (Ethernet header and up to two
    /// VLAN tags included).
    pub max_frame: usize,
    /// Restores offloads on drop.
    pub offloads: OffloadGuard,
    /// The fail-open bypass bridge the interfaces are in, to remove once
    /// qosd is ready to forward.
    pub bypass: Option<String>,
}

/// Checks both interfaces and prepares them.
pub fn check(cfg: &Config) -> Result<Preflight, PreflightError> {
    let (lan, wan) = (&cfg.interfaces.lan, &cfg.interfaces.wan);
    let mut devs = Vec::new();
    for (iface, role) in [(lan, "lan"), (wan, "wan")] {
        let dev = netdev::netdev(iface).ok_or_else(|| PreflightError::Missing {
            iface: iface.clone(),
            role,
        })?;
        if !dev.up {
            return Err(PreflightError::Down {
                iface: iface.clone(),
                role,
            });
        }
        devs.push(dev);
    }
    let mut bypass = None;
    for dev in &devs {
        let Some(master) = &dev.master else { continue };
        if !netdev::is_bridge(master) {
            continue;
        }
        if *master == cfg.daemon.bypass_bridge {
            // The fail-open bypass: qosd takes over from it once its
            // sockets are open (see `remove_bypass`).
            bypass = Some(master.clone());
        } else if devs
            .iter()
            .filter(|d| d.master.as_ref() == Some(master))
            .count()
            == 2
        {
            return Err(PreflightError::Bridged {
                lan: lan.clone(),
                wan: wan.clone(),
                bridge: master.clone(),
            });
        }
    }
    let mtu = devs.iter().map(|d| d.mtu).max().unwrap_or(1500);
    let max_frame = cfg
        .datapath
        .max_frame
        .map(|m| m as usize)
        .unwrap_or(mtu + 14 + 8);

    let mut guard = OffloadGuard::default();
    for iface in [lan, wan] {
        let Ok(now) = netdev::offloads(iface) else {
            continue;
        }; // no ethtool support: nothing to turn off
        if !now.any() {
            continue;
        }
        if !cfg.datapath.manage_offloads {
            return Err(PreflightError::Offloads {
                iface: iface.clone(),
                names: now.names(),
            });
        }
        match netdev::set_offloads(iface, Offloads::default()) {
            Ok(after) if !after.any() => {
                tracing::info!(%iface, "turned off offloads: {} (restored at exit)", now.names());
                guard.saved.push((iface.clone(), now));
            }
            Ok(after) => {
                guard.saved.push((iface.clone(), now));
                return Err(PreflightError::OffloadChange {
                    iface: iface.clone(),
                    names: after.names(),
                    source: std::io::Error::other("the driver keeps them on"),
                });
            }
            Err(source) => {
                return Err(PreflightError::OffloadChange {
                    iface: iface.clone(),
                    names: now.names(),
                    source,
                });
            }
        }
    }
    Ok(Preflight {
        max_frame,
        offloads: guard,
        bypass,
    })
}

/// Removes the fail-open bypass bridge: from here on qosd forwards.
pub fn remove_bypass(bridge: &str) -> Result<(), PreflightError> {
    netdev::remove_bridge(bridge).map_err(|source| PreflightError::Bypass {
        bridge: bridge.to_owned(),
        source,
    })?;
    tracing::info!("took over from the bypass bridge {bridge}");
    Ok(())
}
