//! HTTP endpoints of the running daemon: Prometheus `/metrics`, `/healthz`,
//! `/readyz`, and the admin API under `/api/v1` (JSON). Reads may be open
//! on loopback; writes need `Authorization: Bearer <token>`. Errors are
//! JSON: `{"error": "...", "errors": [...]}` with the matching status.
//!
//! The handlers read what the data path publishes ([`Telemetry`]) and ask
//! for live changes through [`Control`], which the daemon implements: the
//! API knows nothing of threads or sockets, and is tested in-process.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde::Serialize;
use serde_json::{Value, json};

use crate::config::{Config, ConfigErrors, Direction};
use crate::engine::Shared;
use crate::flow::FlowKey;
use crate::offline::{FlowReport, describe_flow};
use crate::telemetry::{FlowStats, Telemetry, by_interface, now};

/// What the API needs of a running qosd: the state to read and the live
/// changes to make.
pub trait Control: Send + Sync {
    /// Engine state shared by both directions (configuration in force,
    /// flow table).
    fn shared(&self) -> &Shared;
    /// What the data path publishes.
    fn telemetry(&self) -> &Telemetry;
    /// The bearer token write requests must present; `None`: the API is
    /// read-only.
    fn token(&self) -> Option<&str>;
    /// True when the file sets restart-only sections to values other than
    /// the running ones.
    fn restart_pending(&self) -> bool;
    /// Re-reads the configuration file (or the embedded default) and
    /// installs it; a bad one is refused and the running one stays.
    fn reload(&self) -> Result<Arc<Config>, ConfigErrors>;
    /// Changes one category of the running configuration: `changes` maps
    /// keys (weight, priority, min, max) to TOML values. Validated like the
    /// file; applied without losing queued packets. Not written to the file.
    fn change_category(
        &self,
        name: &str,
        changes: &toml::Table,
    ) -> Result<Arc<Config>, ChangeError>;
}

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

/// Shared state of the HTTP handlers.
#[derive(Clone)]
pub struct ApiState {
    /// The running qosd.
    pub control: Arc<dyn Control>,
    /// The Prometheus registry with qosd's collector.
    pub registry: prometheus::Registry,
}

fn error(status: StatusCode, message: impl Into<String>, details: Vec<String>) -> Response {
    let mut body = serde_json::Map::new();
    body.insert("error".into(), Value::String(message.into()));
    if !details.is_empty() {
        body.insert("errors".into(), json!(details));
    }
    (status, axum::Json(Value::Object(body))).into_response()
}

/// Routes for the metrics listener.
pub fn metrics_routes() -> Router<ApiState> {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

/// Routes for the admin API listener, the web console's pages included.
pub fn api_routes() -> Router<ApiState> {
    Router::new()
        .route("/api/v1/status", get(status))
        .route("/api/v1/categories", get(categories))
        .route(
            "/api/v1/categories/{name}",
            put(put_category).get(get_category),
        )
        .route("/api/v1/flows", get(flows))
        .route("/api/v1/hosts", get(hosts))
        .route("/api/v1/unknown", get(unknown))
        .route("/api/v1/reload", post(reload))
        .merge(crate::console::console_routes())
        .fallback(|| async {
            error(
                StatusCode::NOT_FOUND,
                "no such endpoint (see /api/v1/status, /api/v1/categories, /api/v1/flows, /api/v1/hosts, /api/v1/unknown)",
                Vec::new(),
            )
        })
}

async fn metrics(State(st): State<ApiState>) -> Response {
    let text = tokio::task::spawn_blocking(move || crate::metrics::encode(&st.registry))
        .await
        .unwrap_or_default();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(st): State<ApiState>) -> Response {
    let why = st.control.telemetry().not_ready(now());
    if why.is_empty() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        let mut body = String::from("not ready:\n");
        for line in why {
            body.push_str("  ");
            body.push_str(&line);
            body.push('\n');
        }
        (StatusCode::SERVICE_UNAVAILABLE, body).into_response()
    }
}

/// Checks the bearer token of a write request; the refusal if it fails.
fn refuse_unauthorized(st: &ApiState, headers: &HeaderMap) -> Option<Response> {
    let Some(token) = st.control.token() else {
        return Some(error(
            StatusCode::FORBIDDEN,
            "the API is read-only: set api.token_file to allow changes",
            Vec::new(),
        ));
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match presented {
        None => Some(error(
            StatusCode::UNAUTHORIZED,
            "missing Authorization: Bearer <token>",
            Vec::new(),
        )),
        Some(p) if constant_time_eq(p.trim().as_bytes(), token.as_bytes()) => None,
        Some(_) => Some(error(StatusCode::FORBIDDEN, "wrong token", Vec::new())),
    }
}

/// Compares without an early exit, so timing does not reveal the token.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for (i, x) in a.iter().enumerate() {
        diff |= usize::from(x ^ b.get(i % b.len().max(1)).copied().unwrap_or(0));
    }
    diff == 0
}

#[derive(Serialize)]
struct DirectionStatus {
    running: bool,
    rx_frames: u64,
    rx_bytes: u64,
    tx_frames: u64,
    tx_bytes: u64,
    dropped_frames: u64,
    rate_bps: f64,
}

async fn status(State(st): State<ApiState>) -> Response {
    let (c, t) = (&st.control, st.control.telemetry());
    let cfg = c.shared().config();
    let snaps = t.snapshots();
    let rates = t.rates_for(&snaps);
    let now = now();
    let why = t.not_ready(now);
    let links: Vec<Value> = by_interface(snaps.iter().flat_map(|s| s.ports.iter()))
        .iter()
        .map(|p| {
            json!({
                "interface": p.interface,
                "role": p.role,
                "state": p.state.as_str(),
                "since_seconds": now.nanos_since(p.since) as f64 / 1e9,
                "reopens": p.reopens,
                "error": p.error,
            })
        })
        .collect();
    let dir = |d: Direction| {
        let s = d.pick_ref(&snaps);
        let dropped: u64 = s
            .categories
            .iter()
            .map(|c| c.dropped_total().packets)
            .sum::<u64>()
            + s.retired.dropped_total().packets
            + s.io.oversized
            + s.io.tx_errors;
        DirectionStatus {
            running: s.running,
            rx_frames: s.io.rx_frames,
            rx_bytes: s.io.rx_bytes,
            tx_frames: s.io.tx_frames,
            tx_bytes: s.io.tx_bytes,
            dropped_frames: dropped,
            rate_bps: d.pick_ref(&rates).iter().sum(),
        }
    };
    let published = t.link.published();
    let live = |d: Direction| match d.pick(published.status).rate.bps() {
        0 => cfg.link.rate(d).bps(),
        r => r,
    };
    let wan = |d: Direction| {
        let w = d.pick(published.status);
        let ms = |x: Option<std::time::Duration>| x.map(|x| x.as_secs_f64() * 1e3);
        json!({
            "rate_bps": live(d),
            "min_bps": w.enabled.then_some(w.min.bps()),
            "max_bps": w.enabled.then_some(w.max.bps()),
            "capacity_bps": w.capacity.map(|c| c.bps()),
            "delivered_bps": w.delivered.map(|c| c.bps()),
            "load": w.load,
            "baseline_ms": ms(w.baseline),
            "delay_ms": ms(w.delay),
            "changes": { "bloat": w.changes[0], "raise": w.changes[1] },
        })
    };
    let samples: serde_json::Map<String, Value> = crate::wan::Source::ALL
        .iter()
        .zip(published.samples)
        .map(|(s, n)| (s.as_str().to_owned(), json!(n)))
        .collect();
    axum::Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": t.uptime_seconds(),
        "config": cfg.source,
        "interfaces": { "lan": cfg.interfaces.lan, "wan": cfg.interfaces.wan },
        "link": {
            "upload_bps": live(Direction::Upload),
            "download_bps": live(Direction::Download),
            "configured_upload_bps": cfg.link.upload.bps(),
            "configured_download_bps": cfg.link.download.bps(),
        },
        "autorate": {
            "enabled": cfg.autorate.enabled,
            "upload": wan(Direction::Upload),
            "download": wan(Direction::Download),
            "samples": samples,
        },
        "ready": why.is_empty(),
        "not_ready": why,
        "links": links,
        "flows": c.shared().table.len(),
        "upload": dir(Direction::Upload),
        "download": dir(Direction::Download),
        "reloads": { "success": t.reload_counts()[0], "failure": t.reload_counts()[1] },
        "restart_pending": c.restart_pending(),
    }))
    .into_response()
}

/// One category: its settings and live counters per direction.
fn category_json(t: &Telemetry, cfg: &Config, i: usize, flows: &[u64]) -> Option<Value> {
    let c = cfg.category.get(i)?;
    let snaps = t.snapshots();
    let rates = t.rates_for(&snaps);
    let recent = t.recent_delays_for(&snaps);
    let per_dir = |d: Direction| {
        let snap = d.pick_ref(&snaps);
        // The snapshot's layout can lag a reload for a moment: find the
        // category by name in it.
        let at = snap.config.as_ref().map_or(Some(i), |l| {
            l.category.iter().position(|x| x.name == c.name)
        });
        let s = at
            .and_then(|j| snap.categories.get(j))
            .cloned()
            .unwrap_or_default();
        let rate = at.and_then(|j| d.pick_ref(&rates).get(j)).copied();
        let recent_p99 = at
            .and_then(|j| d.pick_ref(&recent).get(j))
            .copied()
            .flatten();
        let ms = |q: f64| s.delay_fine.quantile(q).map(|d| d.as_secs_f64() * 1000.0);
        json!({
            "min_bps": c.min_rate(d, &cfg.link).bps(),
            "max_bps": c.max_rate(d, &cfg.link).bps(),
            "rate_bps": rate.unwrap_or(0.0),
            "packets": s.arrived.packets,
            "bytes": s.arrived.bytes,
            "sent_packets": s.sent.packets,
            "sent_bytes": s.sent.bytes,
            "dropped_packets": s.dropped_total().packets,
            "dropped": { "codel": s.dropped_codel.packets, "overflow": s.dropped_overflow.packets, "ceiling": s.dropped_ceiling.packets, "isp_queue": s.dropped_isp.packets },
            "backlog_packets": s.backlog.packets,
            "backlog_bytes": s.backlog.bytes,
            "delay_p50_ms": ms(0.5),
            "delay_p99_ms": ms(0.99),
            // The two above cover every packet since qosd started; this,
            // what was sent over the last second (the rate's interval):
            // the console's "right now".
            "recent_delay_p99_ms": recent_p99,
        })
    };
    Some(json!({
        "name": c.name,
        "priority": c.priority,
        "weight": c.weight,
        "min": serde_json::to_value(c.min).unwrap_or(Value::Null),
        "max": serde_json::to_value(c.max).unwrap_or(Value::Null),
        "dscp": c.dscp.map(|d| d.to_string()),
        "default": c.name == cfg.default_category,
        "active_flows": flows.get(i).copied().unwrap_or(0),
        "upload": per_dir(Direction::Upload),
        "download": per_dir(Direction::Download),
    }))
}

async fn categories(State(st): State<ApiState>) -> Response {
    let c = Arc::clone(&st.control);
    let body = tokio::task::spawn_blocking(move || {
        let cfg = c.shared().config();
        let flows = FlowStats::of(c.shared()).by_category;
        (0..cfg.category.len())
            .filter_map(|i| category_json(c.telemetry(), &cfg, i, &flows))
            .collect::<Vec<_>>()
    })
    .await
    .unwrap_or_default();
    axum::Json(body).into_response()
}

async fn get_category(State(st): State<ApiState>, Path(name): Path<String>) -> Response {
    let cfg = st.control.shared().config();
    let Some(i) = cfg.category.iter().position(|c| c.name == name) else {
        return error(
            StatusCode::NOT_FOUND,
            format!("no category named \"{name}\""),
            Vec::new(),
        );
    };
    // Counting flows per category visits the whole table: not on the
    // runtime's only thread, which also feeds the systemd watchdog.
    let c = Arc::clone(&st.control);
    match tokio::task::spawn_blocking(move || {
        let flows = FlowStats::of(c.shared()).by_category;
        category_json(c.telemetry(), &cfg, i, &flows)
    })
    .await
    {
        Ok(body) => axum::Json(body).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string(), Vec::new()),
    }
}

/// Keys `PUT /api/v1/categories/{name}` accepts.
const CHANGEABLE: [&str; 4] = ["weight", "priority", "min", "max"];

fn json_to_toml(v: &Value) -> Option<toml::Value> {
    Some(match v {
        Value::Bool(b) => toml::Value::Boolean(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => toml::Value::Integer(i),
            None => toml::Value::Float(n.as_f64()?),
        },
        Value::String(s) => toml::Value::String(s.clone()),
        Value::Object(m) => {
            let mut t = toml::Table::new();
            for (k, v) in m {
                t.insert(k.clone(), json_to_toml(v)?);
            }
            toml::Value::Table(t)
        }
        Value::Array(_) | Value::Null => return None,
    })
}

async fn put_category(
    State(st): State<ApiState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(refusal) = refuse_unauthorized(&st, &headers) {
        return refusal;
    }
    let parsed: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("body is not valid JSON: {e}"),
                Vec::new(),
            );
        }
    };
    let Value::Object(fields) = parsed else {
        return error(
            StatusCode::BAD_REQUEST,
            "body must be a JSON object, e.g. {\"weight\": 40}",
            Vec::new(),
        );
    };
    if fields.is_empty() {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "nothing to change: give weight, priority, min or max",
            Vec::new(),
        );
    }
    let mut changes = toml::Table::new();
    let mut problems = Vec::new();
    for (k, v) in &fields {
        if !CHANGEABLE.contains(&k.as_str()) {
            problems.push(format!(
                "{k}: cannot be changed here (changeable: weight, priority, min, max)"
            ));
            continue;
        }
        match json_to_toml(v) {
            Some(t) => {
                changes.insert(k.clone(), t);
            }
            None => problems.push(format!(
                "{k}: expected a number, a string or an {{upload, download}} object"
            )),
        }
    }
    if !problems.is_empty() {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            problems.join("; "),
            problems,
        );
    }
    let c = Arc::clone(&st.control);
    // The reply counts flows per category, a pass over the whole table:
    // with the change, off the runtime thread.
    let result = tokio::task::spawn_blocking(move || {
        let cfg = c.change_category(&name, &changes)?;
        let i = cfg
            .category
            .iter()
            .position(|c| c.name == name)
            .unwrap_or(0);
        let flows = FlowStats::of(c.shared()).by_category;
        Ok((category_json(c.telemetry(), &cfg, i, &flows), name))
    })
    .await;
    match result {
        Ok(Ok((body, name))) => {
            tracing::info!(
                "category {name} changed through the API: {}",
                serde_json::Value::Object(fields)
            );
            axum::Json(body).into_response()
        }
        Ok(Err(ChangeError::UnknownCategory(n))) => error(
            StatusCode::NOT_FOUND,
            format!("no category named \"{n}\""),
            Vec::new(),
        ),
        Ok(Err(ChangeError::Invalid(errors))) => {
            let details: Vec<String> = errors
                .0
                .iter()
                .map(|e| format!("{}: {}", e.key, e.message))
                .collect();
            error(
                StatusCode::UNPROCESSABLE_ENTITY,
                details.join("; "),
                details,
            )
        }
        Ok(Err(ChangeError::Internal(e))) => {
            error(StatusCode::INTERNAL_SERVER_ERROR, e, Vec::new())
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string(), Vec::new()),
    }
}

async fn reload(State(st): State<ApiState>, headers: HeaderMap) -> Response {
    if let Some(refusal) = refuse_unauthorized(&st, &headers) {
        return refusal;
    }
    let c = Arc::clone(&st.control);
    match tokio::task::spawn_blocking(move || c.reload()).await {
        Ok(Ok(cfg)) => {
            tracing::info!("configuration reloaded from {} (API)", cfg.source);
            axum::Json(json!({ "reloaded": true, "config": cfg.source })).into_response()
        }
        Ok(Err(errors)) => {
            tracing::error!("reload rejected (API), the running configuration stays:\n{errors}");
            let details: Vec<String> = errors.0.iter().map(ToString::to_string).collect();
            error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "the new configuration is invalid; the running one stays",
                details,
            )
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string(), Vec::new()),
    }
}

async fn flows(State(st): State<ApiState>, Query(q): Query<HashMap<String, String>>) -> Response {
    let top = match top_param(&q) {
        Ok(n) => n,
        Err(refusal) => return *refusal,
    };
    let c = Arc::clone(&st.control);
    let list = tokio::task::spawn_blocking(move || top_flows(c.shared(), top))
        .await
        .unwrap_or_default();
    axum::Json(list).into_response()
}

/// `GET /api/v1/hosts?top=N`: the LAN computers with the most traffic now
/// (default 20): MAC, addresses, rates each way overall and per category,
/// bytes, flows and their busiest apps.
async fn hosts(State(st): State<ApiState>, Query(q): Query<HashMap<String, String>>) -> Response {
    let top = match top_param(&q) {
        Ok(n) => n,
        Err(refusal) => return *refusal,
    };
    let c = Arc::clone(&st.control);
    let list = tokio::task::spawn_blocking(move || {
        let mut hosts = c.telemetry().hosts(crate::telemetry::now());
        hosts.truncate(top);
        crate::telemetry::hosts::count_flows(c.shared(), &mut hosts);
        hosts
    })
    .await
    .unwrap_or_default();
    axum::Json(list).into_response()
}

/// `GET /api/v1/unknown?top=N`: the traffic qosd could not name, by the
/// host name's registrable domain or by protocol and server port, most
/// bytes first (default 20, at most 1000), since qosd started, with the
/// total: `{"unknown": [{"key", "kind", "bytes", "upload_bytes",
/// "download_bytes", "flows", "example"}], "total_bytes"}`.
async fn unknown(State(st): State<ApiState>, Query(q): Query<HashMap<String, String>>) -> Response {
    let top = match top_param_up_to(&q, UNKNOWN_TOP_MAX) {
        Ok(n) => n,
        Err(refusal) => return *refusal,
    };
    let c = Arc::clone(&st.control);
    // Brought up to date first (a walk of the flow table, as the
    // housekeeping's each second), so the answer includes this second.
    let report = tokio::task::spawn_blocking(move || {
        let t = c.telemetry();
        t.update_unknown(c.shared(), now());
        t.unknown(top)
    })
    .await
    .unwrap_or_default();
    axum::Json(report).into_response()
}

/// The most keys `/api/v1/unknown` lists (its table holds 1024).
const UNKNOWN_TOP_MAX: usize = 1000;

/// The `top` query parameter: 20 when absent, else 1 to 10 000.
fn top_param(q: &HashMap<String, String>) -> Result<usize, Box<Response>> {
    top_param_up_to(q, 10_000)
}

/// The `top` query parameter: 20 when absent, else 1 to `max`.
fn top_param_up_to(q: &HashMap<String, String>, max: usize) -> Result<usize, Box<Response>> {
    match q.get("top").map(|t| t.parse::<usize>()) {
        None => Ok(20),
        Some(Ok(n)) if (1..=max).contains(&n) => Ok(n),
        Some(_) => Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            format!("top must be a number from 1 to {max}"),
            Vec::new(),
        ))),
    }
}

/// A flow in the API: the fields of `qosd classify --json`, plus the host
/// name learned and the flow's id.
#[derive(Serialize)]
pub struct FlowView {
    #[serde(flatten)]
    report: FlowReport,
    host: Option<String>,
    id: u64,
}

/// The `n` flows with the most bytes.
pub fn top_flows(shared: &Shared, n: usize) -> Vec<FlowView> {
    top_flow_reports(shared, n)
        .into_iter()
        .map(|r| FlowView {
            host: r.host.clone(),
            id: r.id,
            report: r,
        })
        .collect()
}

/// The `n` flows with the most bytes, most first; among equals the older
/// flow (lower id) first.
pub fn top_flow_reports(shared: &Shared, n: usize) -> Vec<FlowReport> {
    let installed = shared.installed();
    let (cfg, classifier) = (&installed.config, &installed.classifier);
    let table = &shared.table;
    // Only the n largest so far, the least of them on top to be replaced:
    // memory for n keys, not a copy of every key (~770 MB at 16M flows).
    let mut largest: BinaryHeap<Reverse<(u64, Reverse<u64>, FlowKey)>> =
        BinaryHeap::with_capacity(n.min(table.len()));
    table.for_each(|k, f| {
        let rank = (f.total_bytes(), Reverse(f.id()), *k);
        if largest.len() < n {
            largest.push(Reverse(rank));
        } else if let Some(mut least) = largest.peek_mut()
            && rank > least.0
        {
            *least = Reverse(rank);
        }
    });
    // Ascending in Reverse is descending in bytes.
    largest
        .into_sorted_vec()
        .into_iter()
        .filter_map(|Reverse((_, _, k))| table.get(&k, |f| describe_flow(&k, f, classifier, cfg)))
        .collect()
}
