//! `qosd status` and `qosd top`: the admin API seen from a terminal.

use std::fmt::Write as _;
use std::net::SocketAddr;

use serde_json::Value;

/// Why the API could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Connection or HTTP failure.
    #[error("cannot read {url}: {message} (is qosd running, and is api.listen {addr}?)")]
    Http {
        /// What was requested.
        url: String,
        /// The address tried.
        addr: SocketAddr,
        /// What went wrong.
        message: String,
    },
}

/// A client of one qosd's admin API.
pub struct Client {
    addr: SocketAddr,
    agent: ureq::Agent,
}

impl Client {
    /// A client of the API at `addr`.
    pub fn new(addr: SocketAddr) -> Self {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(std::time::Duration::from_secs(3)))
            .build()
            .into();
        Client { addr, agent }
    }

    /// GETs `path` as JSON.
    pub fn get(&self, path: &str) -> Result<Value, ClientError> {
        let url = format!("http://{}{path}", self.addr);
        let err = |message: String| ClientError::Http {
            url: url.clone(),
            addr: self.addr,
            message,
        };
        let mut resp = self
            .agent
            .get(&url)
            .call()
            .map_err(|e| err(e.to_string()))?;
        resp.body_mut()
            .read_json::<Value>()
            .map_err(|e| err(e.to_string()))
    }
}

static NULL: Value = Value::Null;

/// The value at a JSON pointer, or null.
fn at<'a>(v: &'a Value, pointer: &str) -> &'a Value {
    v.pointer(pointer).unwrap_or(&NULL)
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or(0.0)
}

fn mbit(v: &Value) -> String {
    format!("{:.2}", f(v) / 1e6)
}

fn ms(v: &Value) -> String {
    match v.as_f64() {
        Some(x) => format!("{x:.1}"),
        None => "-".into(),
    }
}

/// The one-shot summary `qosd status` prints.
pub fn render_status(status: &Value, categories: &Value) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "qosd {} up {:.0} s, {} ({})",
        status["version"].as_str().unwrap_or("?"),
        f(&status["uptime_seconds"]),
        if status["ready"].as_bool() == Some(true) {
            "forwarding"
        } else {
            "NOT READY"
        },
        status["config"].as_str().unwrap_or("?")
    );
    for why in status["not_ready"].as_array().into_iter().flatten() {
        let _ = writeln!(s, "not ready: {}", why.as_str().unwrap_or("?"));
    }
    if status["restart_pending"].as_bool() == Some(true) {
        let _ = writeln!(
            s,
            "restart pending: the file changes interfaces, [datapath], [daemon] or listen addresses; the running ones stay until qosd restarts"
        );
    }
    let _ = writeln!(
        s,
        "lan {} / wan {}, shaping {} Mbit/s up, {} Mbit/s down, {} flows",
        at(status, "/interfaces/lan").as_str().unwrap_or("?"),
        at(status, "/interfaces/wan").as_str().unwrap_or("?"),
        mbit(at(status, "/link/upload_bps")),
        mbit(at(status, "/link/download_bps")),
        status["flows"]
    );
    for d in ["upload", "download"] {
        let x = &status[d];
        let _ = writeln!(
            s,
            "{d:>8}: {} Mbit/s now, {} frames in, {} out, {} dropped",
            mbit(&x["rate_bps"]),
            x["rx_frames"],
            x["tx_frames"],
            x["dropped_frames"]
        );
    }
    s.push_str(&render_wan(status));
    s.push('\n');
    s.push_str(&render_categories(status, categories));
    s
}

/// The link's line of status and top: the WAN delay per direction and,
/// with autorate, the rate within its bounds and the capacity estimate.
fn render_wan(status: &Value) -> String {
    let a = &status["autorate"];
    if a.is_null() {
        return String::new();
    }
    let mut s = String::new();
    let on = a["enabled"].as_bool() == Some(true);
    for d in ["upload", "download"] {
        let x = &a[d];
        let delay = match (x["baseline_ms"].as_f64(), x["delay_ms"].as_f64()) {
            (Some(b), Some(n)) => format!("WAN delay {n:.1} ms (baseline {b:.1} ms)"),
            _ => "WAN delay not measured yet".to_owned(),
        };
        if on {
            let _ = writeln!(
                s,
                "{d:>8}: autorate {} Mbit/s in [{}, {}], capacity ~{} Mbit/s, {delay}, {} cuts, {} raises",
                mbit(&x["rate_bps"]),
                mbit(&x["min_bps"]),
                mbit(&x["max_bps"]),
                mbit(&x["capacity_bps"]),
                at(x, "/changes/bloat"),
                at(x, "/changes/raise"),
            );
        } else {
            let _ = writeln!(s, "{d:>8}: {delay}");
        }
    }
    s
}

/// The per-category table (rates, share, delay, drops) of status and top.
pub fn render_categories(status: &Value, categories: &Value) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<10} {:>3} {:>5} | {:>8} {:>5} {:>7} {:>6} | {:>8} {:>5} {:>7} {:>6} | {:>6}",
        "category",
        "pri",
        "wt",
        "up Mb/s",
        "share",
        "p99 ms",
        "drops",
        "dn Mb/s",
        "share",
        "p99 ms",
        "drops",
        "flows"
    );
    let link_up = f(at(status, "/link/upload_bps")).max(1.0);
    let link_down = f(at(status, "/link/download_bps")).max(1.0);
    for c in categories.as_array().map(Vec::as_slice).unwrap_or_default() {
        let (u, d) = (&c["upload"], &c["download"]);
        let _ = writeln!(
            s,
            "{:<10} {:>3} {:>5} | {:>8} {:>4.0}% {:>7} {:>6} | {:>8} {:>4.0}% {:>7} {:>6} | {:>6}",
            c["name"].as_str().unwrap_or("?"),
            c["priority"],
            c["weight"],
            mbit(&u["rate_bps"]),
            f(&u["rate_bps"]) * 100.0 / link_up,
            ms(&u["delay_p99_ms"]),
            u["dropped_packets"],
            mbit(&d["rate_bps"]),
            f(&d["rate_bps"]) * 100.0 / link_down,
            ms(&d["delay_p99_ms"]),
            d["dropped_packets"],
            c["active_flows"]
        );
    }
    s
}

/// The top-flows table of `qosd top`.
pub fn render_flows(flows: &Value) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<5} {:<42} {:<42} {:<18} {:<10} {:<14} {:>10}",
        "proto", "src", "dst", "app", "category", "decided_by", "bytes"
    );
    for fl in flows.as_array().map(Vec::as_slice).unwrap_or_default() {
        let app = fl["app"].as_str().or(fl["host"].as_str()).unwrap_or("-");
        let _ = writeln!(
            s,
            "{:<5} {:<42} {:<42} {:<18.18} {:<10} {:<14.14} {:>10}",
            fl["proto"].as_str().unwrap_or("?"),
            fl["src"].as_str().unwrap_or("?"),
            fl["dst"].as_str().unwrap_or("?"),
            app,
            fl["category"].as_str().unwrap_or("?"),
            fl["decided_by"].as_str().unwrap_or("?"),
            fl["bytes"]
        );
    }
    s
}

/// The hosts panel of `qosd top`: the busiest LAN computers.
pub fn render_hosts(hosts: &Value) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<17} {:<34} {:>9} {:>9} {:>6}  top apps",
        "host (MAC)", "addresses", "up Mbit/s", "down", "flows"
    );
    for h in hosts.as_array().map(Vec::as_slice).unwrap_or_default() {
        let list = |key: &str, field: Option<&str>| -> String {
            h[key]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .filter_map(|v| match field {
                    Some(f) => v[f].as_str(),
                    None => v.as_str(),
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(
            s,
            "{:<17} {:<34.34} {:>9} {:>9} {:>6}  {}",
            h["mac"].as_str().unwrap_or("?"),
            list("addresses", None),
            mbit(at(h, "/rate_bps/upload")),
            mbit(at(h, "/rate_bps/download")),
            h["flows"],
            list("top_apps", Some("app")),
        );
    }
    s
}

/// The "Unknown traffic" panel of `qosd top`: the keys of
/// `/api/v1/unknown` (what no app named, by host name or port) with their
/// bytes, and their share of all unknown bytes.
pub fn render_unknown(report: &Value) -> String {
    let mut s = String::new();
    let total = report["total_bytes"].as_u64().unwrap_or(0);
    let _ = writeln!(
        s,
        "Unknown traffic: {} since start",
        human_bytes(total as f64)
    );
    let list = report["unknown"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    if list.is_empty() {
        let _ = writeln!(s, "  (none yet)");
    }
    for e in list {
        let bytes = e["bytes"].as_u64().unwrap_or(0);
        let _ = writeln!(
            s,
            "  {:<32.32} {:<4} {:>10} {:>4.0}%  {:>5} flows  e.g. {}",
            e["key"].as_str().unwrap_or("?"),
            e["kind"].as_str().unwrap_or("?"),
            human_bytes(bytes as f64),
            bytes as f64 * 100.0 / total.max(1) as f64,
            e["flows"],
            e["example"].as_str().unwrap_or("-"),
        );
    }
    s
}

/// "1.5 MB": bytes in decimal units, as people read a volume.
fn human_bytes(b: f64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = b;
    let mut unit = UNITS[0];
    for u in &UNITS[1..] {
        if v < 1000.0 {
            break;
        }
        v /= 1000.0;
        unit = u;
    }
    if unit == "B" {
        format!("{v:.0} {unit}")
    } else {
        format!("{v:.1} {unit}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_what_the_api_returns() {
        let status = json!({"version": "0.1.0", "uptime_seconds": 12.0, "ready": true, "config": "/etc/qosd/qosd.toml",
            "interfaces": {"lan": "lan0", "wan": "wan0"}, "link": {"upload_bps": 20e6, "download_bps": 50e6}, "flows": 3,
            "upload": {"rate_bps": 10e6, "rx_frames": 5, "tx_frames": 4, "dropped_frames": 1},
            "download": {"rate_bps": 1e6, "rx_frames": 5, "tx_frames": 5, "dropped_frames": 0}});
        let cats = json!([{"name": "voice", "priority": 1, "weight": 10, "active_flows": 2,
            "upload": {"rate_bps": 2e6, "delay_p99_ms": 0.4, "dropped_packets": 0},
            "download": {"rate_bps": 5e6, "delay_p99_ms": null, "dropped_packets": 3}}]);
        let out = render_status(&status, &cats);
        assert!(out.contains("forwarding"), "{out}");
        assert!(!out.contains("restart pending"), "{out}");
        let mut pending = status.clone();
        pending["restart_pending"] = json!(true);
        assert!(render_status(&pending, &cats).contains("restart pending"));
        assert!(out.contains("voice"), "{out}");
        assert!(out.contains("10.00 Mbit/s now"), "{out}");
        // 2 Mbit/s of a 20 Mbit/s upload is 10%.
        assert!(out.contains(" 10%"), "{out}");
        // The link: WAN delay always, autorate's bounds when it is on.
        assert!(!out.contains("autorate"), "{out}");
        let mut auto = status.clone();
        auto["autorate"] = json!({"enabled": true,
            "upload": {"rate_bps": 6e6, "min_bps": 2e6, "max_bps": 19e6, "capacity_bps": 6.5e6,
                       "baseline_ms": 30.0, "delay_ms": 41.5, "changes": {"bloat": 3, "raise": 7}},
            "download": {"rate_bps": 15e6, "min_bps": 5e6, "max_bps": 47e6, "capacity_bps": null,
                         "baseline_ms": null, "delay_ms": null, "changes": {"bloat": 0, "raise": 0}}});
        let a = render_status(&auto, &cats);
        assert!(
            a.contains("autorate 6.00 Mbit/s in [2.00, 19.00], capacity ~6.50 Mbit/s, WAN delay 41.5 ms (baseline 30.0 ms), 3 cuts, 7 raises"),
            "{a}"
        );
        assert!(a.contains("WAN delay not measured yet"), "{a}");
        auto["autorate"]["enabled"] = json!(false);
        let off = render_status(&auto, &cats);
        assert!(
            !off.contains("autorate") && off.contains("WAN delay 41.5 ms"),
            "{off}"
        );
        let flows = json!([{"proto": "udp", "src": "198.18.0.10:5004", "dst": "198.18.0.20:5004", "app": null, "host": "x.example", "category": "voice", "decided_by": "rule:voice", "bytes": 1000}]);
        assert!(render_flows(&flows).contains("x.example"));
        let hosts = json!([{"mac": "02:00:c6:12:00:0a", "addresses": ["198.18.0.10", "2001:2::10"],
            "rate_bps": {"upload": 8.8e6, "download": 20.1e6}, "flows": 17,
            "top_apps": [{"app": "Zoom", "bytes": 10}, {"app": "unknown", "bytes": 5}]}]);
        let text = render_hosts(&hosts);
        assert!(text.contains("02:00:c6:12:00:0a"), "{text}");
        assert!(text.contains("198.18.0.10, 2001:2::10"), "{text}");
        assert!(text.contains("8.8") && text.contains("20.1"), "{text}");
        assert!(text.contains("Zoom, unknown"), "{text}");
    }

    #[test]
    fn renders_the_unknown_traffic_panel() {
        let report = json!({"unknown": [
            {"key": "example.co.uk", "kind": "host", "bytes": 1_500_000, "upload_bytes": 500_000,
             "download_bytes": 1_000_000, "flows": 3, "example": "cdn.example.co.uk"},
            {"key": "udp/3478", "kind": "port", "bytes": 500, "upload_bytes": 250,
             "download_bytes": 250, "flows": 1, "example": "192.0.2.7:3478"}],
            "total_bytes": 2_000_000});
        let text = render_unknown(&report);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "Unknown traffic: 2.0 MB since start");
        assert!(
            lines[1].contains("example.co.uk") && lines[1].contains("1.5 MB"),
            "{text}"
        );
        assert!(
            lines[1].contains(" 75%") && lines[1].contains("e.g. cdn.example.co.uk"),
            "{text}"
        );
        assert!(
            lines[2].contains("udp/3478") && lines[2].contains("500 B"),
            "{text}"
        );
        let empty = render_unknown(&json!({"unknown": [], "total_bytes": 0}));
        assert!(empty.contains("(none yet)"), "{empty}");
    }
}
