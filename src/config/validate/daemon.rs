//! The sections that take effect at the next restart only: `[datapath]`,
//! `[daemon]`, and the listen addresses and token of `[metrics]` and
//! `[api]`.

use std::path::Path;
use std::time::Duration;

use super::super::model::{Api, Backend, Daemon, Datapath, Interfaces, Metrics};
use super::super::raw::{RawApi, RawDaemon, RawDatapath, RawMetrics};
use super::Problems;
use super::values::{
    default_addr, int_in_range, parse_bool, parse_interface, parse_listen, parse_timeout,
    relative_path,
};

/// Default address of the Prometheus endpoint.
pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9477";
/// Default address of the admin API.
pub const DEFAULT_API_LISTEN: &str = "127.0.0.1:9478";

pub(super) fn datapath(raw: &RawDatapath, p: &mut Problems) -> Datapath {
    Datapath {
        backend: p.optional("datapath.backend", &raw.backend, Backend::Auto, |s| match s
            .trim()
            .to_ascii_lowercase()
            .as_str()
        {
            "pnet" => Ok(Backend::Pnet),
            "ring" => Ok(Backend::Ring),
            "xdp" => Ok(Backend::Xdp),
            "auto" => Ok(Backend::Auto),
            _ => Err(format!(
                "unknown backend \"{s}\" (use \"auto\", \"xdp\", \"ring\" or \"pnet\")"
            )),
        }),
        manage_offloads: p.optional(
            "datapath.manage_offloads",
            &raw.manage_offloads,
            true,
            parse_bool,
        ),
        max_frame: raw.max_frame.as_ref().and_then(|v| {
            p.parse("datapath.max_frame", v, |s| {
                int_in_range(128, 65_535, "max_frame")(s).map(|n| n as u32)
            })
        }),
        socket_buffer: p.optional("datapath.socket_buffer", &raw.socket_buffer, 4 << 20, |s| {
            int_in_range(65_536, 1 << 30, "socket_buffer")(s).map(|n| n as u32)
        }),
        threads: p.optional("datapath.threads", &raw.threads, 1, |s| {
            int_in_range(1, 2, "threads")(s).map(|n| n as u8)
        }),
    }
}

/// `[daemon]`; `interfaces` because the bypass bridge must be neither.
pub(super) fn daemon(raw: &RawDaemon, interfaces: &Interfaces, p: &mut Problems) -> Daemon {
    let daemon = Daemon {
        reopen_timeout: p.optional(
            "daemon.reopen_timeout",
            &raw.reopen_timeout,
            Duration::from_secs(10),
            parse_timeout,
        ),
        bypass_bridge: p.optional(
            "daemon.bypass_bridge",
            &raw.bypass_bridge,
            "qosd-bypass".to_owned(),
            |s| {
                if s.is_empty() {
                    Ok(String::new())
                } else {
                    parse_interface(s)
                }
            },
        ),
        user: raw.user.as_ref().and_then(|v| {
            p.parse("daemon.user", v, |s| {
                let ok = !s.is_empty()
                    && s.len() <= 32
                    && s.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
                if ok {
                    Ok(s.to_owned())
                } else {
                    Err(format!("\"{s}\" is not a user name"))
                }
            })
        }),
    };
    if !daemon.bypass_bridge.is_empty()
        && (daemon.bypass_bridge == interfaces.lan || daemon.bypass_bridge == interfaces.wan)
    {
        p.add(
            "daemon.bypass_bridge",
            "must not be one of the two interfaces",
        );
    }
    daemon
}

pub(super) fn metrics(raw: &RawMetrics, p: &mut Problems) -> Metrics {
    Metrics {
        listen: p.optional(
            "metrics.listen",
            &raw.listen,
            default_addr(DEFAULT_METRICS_LISTEN),
            parse_listen,
        ),
        top_hosts: p.optional("metrics.top_hosts", &raw.top_hosts, 0, |s| {
            int_in_range(0, 100, "top_hosts")(s).map(|n| n as u32)
        }),
    }
}

pub(super) fn api(raw: &RawApi, base_dir: &Path, p: &mut Problems) -> Api {
    let listen = p.optional(
        "api.listen",
        &raw.listen,
        default_addr(DEFAULT_API_LISTEN),
        parse_listen,
    );
    let token_file = raw
        .token_file
        .as_ref()
        .and_then(|v| p.parse("api.token_file", v, |s| relative_path(s, base_dir)));
    Api { listen, token_file }
}
