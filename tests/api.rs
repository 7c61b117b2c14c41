//! The admin API and metrics endpoints in-process (no network namespace,
//! no root): authentication, validation, errors, reloads, exposition.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};
use tower::ServiceExt;

use qosd::api::{ApiState, Control, api_routes, metrics_routes};
use qosd::classify::{ClassCache, PacketCtx};
use qosd::config::Direction;
use qosd::daemon::state::Handle;
use qosd::engine::Shared;
use qosd::flow::FlowKey;
use qosd::packet::PacketMeta;
use qosd::time::Instant;

const TOKEN: &str = "s3cret-token-for-tests-0123";

struct Fixture {
    dir: PathBuf,
    config: PathBuf,
    handle: Arc<Handle>,
}

fn base_config() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/qosd.toml")).unwrap()
}

fn fixture(name: &str, token: Option<&str>) -> Fixture {
    let dir = std::env::temp_dir().join(format!("qosd-api-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("qosd.toml");
    std::fs::write(&config, base_config()).unwrap();
    let cfg = qosd::config::load_file(&config).unwrap();
    let shared = Arc::new(Shared::new(&cfg));
    let handle = Arc::new(Handle::new(
        shared,
        Some(config.clone()),
        token.map(str::to_owned),
    ));
    Fixture {
        dir,
        config,
        handle,
    }
}

impl Fixture {
    fn app(&self) -> axum::Router {
        let registry = qosd::metrics::registry(
            Arc::clone(&self.handle) as Arc<dyn qosd::metrics::MetricsSource>
        );
        let state = ApiState {
            control: Arc::clone(&self.handle) as Arc<dyn Control>,
            registry,
        };
        metrics_routes().merge(api_routes()).with_state(state)
    }

    async fn call(
        &self,
        method: &str,
        uri: &str,
        auth: Option<&str>,
        body: &str,
    ) -> (StatusCode, String) {
        let auth = auth.map(|a| ("authorization", a));
        let (status, _, bytes) = self.request(method, uri, auth.as_slice(), body).await;
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }

    /// A request with `headers`: the status, the response's headers and
    /// its body.
    async fn request(
        &self,
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
        let mut req = Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = self
            .app()
            .oneshot(req.body(Body::from(body.to_owned())).unwrap())
            .await
            .unwrap();
        let (status, headers) = (resp.status(), resp.headers().clone());
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, headers, bytes.to_vec())
    }

    fn weight(&self, category: &str) -> u32 {
        let cfg = self.handle.shared.config();
        cfg.category
            .iter()
            .find(|c| c.name == category)
            .unwrap()
            .weight
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn bearer() -> String {
    format!("Bearer {TOKEN}")
}

#[tokio::test]
async fn writes_need_the_right_token() {
    let fx = fixture("auth", Some(TOKEN));
    let body = r#"{"weight": 40}"#;
    let (s, b) = fx
        .call("PUT", "/api/v1/categories/business", None, body)
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{b}");
    assert!(
        serde_json::from_str::<Value>(&b).unwrap()["error"]
            .as_str()
            .unwrap()
            .contains("Bearer")
    );
    let (s, _) = fx
        .call(
            "PUT",
            "/api/v1/categories/business",
            Some("Bearer wrong-token-wrong-token"),
            body,
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = fx
        .call(
            "PUT",
            "/api/v1/categories/business",
            Some("Basic abc"),
            body,
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(fx.weight("business"), 50, "a refused write changed nothing");
    let (s, b) = fx
        .call("PUT", "/api/v1/categories/business", Some(&bearer()), body)
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(serde_json::from_str::<Value>(&b).unwrap()["weight"], 40);
    assert_eq!(fx.weight("business"), 40);
    // Reads need no token.
    let (s, _) = fx.call("GET", "/api/v1/categories", None, "").await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn without_a_token_file_the_api_is_read_only() {
    let fx = fixture("readonly", None);
    let (s, b) = fx
        .call(
            "PUT",
            "/api/v1/categories/business",
            Some(&bearer()),
            r#"{"weight": 40}"#,
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    assert!(b.contains("read-only"));
    let (s, _) = fx.call("POST", "/api/v1/reload", None, "").await;
    assert_eq!(s, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn bad_requests_get_the_right_status_and_a_json_message() {
    let fx = fixture("errors", Some(TOKEN));
    let auth = bearer();
    let cases: &[(&str, &str, StatusCode, &str)] = &[
        (
            "/api/v1/categories/business",
            "{weight: 40",
            StatusCode::BAD_REQUEST,
            "not valid JSON",
        ),
        (
            "/api/v1/categories/business",
            "[1, 2]",
            StatusCode::BAD_REQUEST,
            "JSON object",
        ),
        (
            "/api/v1/categories/nosuch",
            r#"{"weight": 40}"#,
            StatusCode::NOT_FOUND,
            "no category named",
        ),
        (
            "/api/v1/categories/business",
            r#"{"weight": 0}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "category[3].weight: weight 0 is out of range",
        ),
        (
            "/api/v1/categories/voice",
            r#"{"min": "90%"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "the min guarantees add up to",
        ),
        (
            "/api/v1/categories/voice",
            r#"{"max": "5 Mbt"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown unit",
        ),
        (
            "/api/v1/categories/voice",
            r#"{"min": "50%", "max": "40%"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "is above max",
        ),
        (
            "/api/v1/categories/voice",
            r#"{"name": "phone"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "cannot be changed here",
        ),
        (
            "/api/v1/categories/voice",
            r#"{}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "nothing to change",
        ),
    ];
    for (uri, body, status, fragment) in cases {
        let (s, b) = fx.call("PUT", uri, Some(&auth), body).await;
        assert_eq!(s, *status, "{uri} {body}: {b}");
        let v: Value = serde_json::from_str(&b).unwrap_or_else(|_| panic!("not JSON: {b}"));
        let msg = v["error"].as_str().unwrap_or_default();
        assert!(msg.contains(fragment), "{uri} {body}: {msg}");
    }
    // Nothing changed.
    assert_eq!(fx.weight("business"), 50);
    let (s, b) = fx.call("GET", "/api/v1/nope", None, "").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(b.contains("error"));
}

#[tokio::test]
async fn per_direction_and_rate_changes_apply() {
    let fx = fixture("rates", Some(TOKEN));
    let body =
        json!({"min": {"upload": "2 Mbit", "download": "20%"}, "max": "12 Mbit", "priority": 2})
            .to_string();
    let (s, b) = fx
        .call("PUT", "/api/v1/categories/bulk", Some(&bearer()), &body)
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let v: Value = serde_json::from_str(&b).unwrap();
    assert_eq!(v["upload"]["min_bps"], 2_000_000);
    assert_eq!(v["download"]["min_bps"], 46_000_000 / 5);
    assert_eq!(v["upload"]["max_bps"], 12_000_000);
    assert_eq!(v["priority"], 2);
}

#[tokio::test]
async fn reload_keeps_the_running_config_when_the_file_is_bad() {
    let fx = fixture("reload", Some(TOKEN));
    std::fs::write(
        &fx.config,
        base_config().replace("weight = 50", "weight = 60"),
    )
    .unwrap();
    let (s, b) = fx.call("POST", "/api/v1/reload", Some(&bearer()), "").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(fx.weight("business"), 60);
    std::fs::write(
        &fx.config,
        base_config().replace("weight = 50", "weight = \"lots\""),
    )
    .unwrap();
    let (s, b) = fx.call("POST", "/api/v1/reload", Some(&bearer()), "").await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert!(b.contains("category[3].weight"), "{b}");
    assert_eq!(fx.weight("business"), 60, "the running configuration stays");
    assert_eq!(fx.handle.telemetry.reload_counts(), [1, 1]);
    let (_, metrics) = fx.call("GET", "/metrics", None, "").await;
    assert!(
        metrics.contains("qosd_config_reloads_total{result=\"failure\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("qosd_config_reloads_total{result=\"success\"} 1"));
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let fx = fixture("health", None);
    assert_eq!(fx.call("GET", "/healthz", None, "").await.0, StatusCode::OK);
    // No data path in this test: not ready.
    assert_eq!(
        fx.call("GET", "/readyz", None, "").await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    let (s, text) = fx.call("GET", "/metrics", None, "").await;
    assert_eq!(s, StatusCode::OK);
    for family in [
        "qosd_build_info",
        "qosd_flows ",
        "qosd_classifier_decisions_total",
        "qosd_datapath_running",
        "qosd_unclassified_bytes_total{direction=\"upload\"} 0",
        "qosd_unclassified_bytes_total{direction=\"download\"} 0",
    ] {
        assert!(text.contains(family), "{family} missing");
    }
    let (s, b) = fx.call("GET", "/api/v1/status", None, "").await;
    assert_eq!(s, StatusCode::OK);
    let v: Value = serde_json::from_str(&b).unwrap();
    assert_eq!(v["interfaces"]["lan"], "lan0");
    assert_eq!(v["ready"], false);
    let (s, b) = fx.call("GET", "/api/v1/flows?top=5", None, "").await;
    assert_eq!((s, b.as_str()), (StatusCode::OK, "[]"));
    assert_eq!(
        fx.call("GET", "/api/v1/flows?top=zero", None, "").await.0,
        StatusCode::BAD_REQUEST
    );
}

/// Adds a one-packet UDP flow (the `n`th) whose frame is `len` bytes;
/// returns its id.
fn add_flow(handle: &Handle, n: u8, len: usize) -> u64 {
    let mut frame = Vec::new();
    etherparse::PacketBuilder::ethernet2([2; 6], [4; 6])
        .ipv4([10, 0, 0, n], [198, 19, 1, 1], 64)
        .udp(40000, 5000)
        .write(&mut frame, &vec![0; len - 42])
        .unwrap();
    assert_eq!(frame.len(), len);
    let pkt = PacketMeta::parse(&frame);
    let (key, side) = FlowKey::of(&pkt);
    let now = Instant::from_nanos(1);
    let mut cache = ClassCache::new();
    let (flow, _) = handle
        .shared
        .table
        .track(&mut cache, &key, side, &pkt, Direction::Upload, now);
    flow.id()
}

#[tokio::test]
async fn top_flows_are_the_largest_most_first() {
    let fx = fixture("top", None);
    let sizes = [500, 300, 900, 300, 100, 700, 300, 60];
    let ids: Vec<u64> = (1..)
        .zip(sizes)
        .map(|(n, len)| add_flow(&fx.handle, n, len))
        .collect();
    let top = |n| -> Vec<(u64, u64)> {
        qosd::api::top_flow_reports(&fx.handle.shared, n)
            .into_iter()
            .map(|r| (r.bytes, r.id))
            .collect()
    };
    // Most bytes first; of the three 300-byte flows the older ones first.
    let all = vec![
        (900, ids[2]),
        (700, ids[5]),
        (500, ids[0]),
        (300, ids[1]),
        (300, ids[3]),
        (300, ids[6]),
        (100, ids[4]),
        (60, ids[7]),
    ];
    assert_eq!(top(1), all[..1]);
    assert_eq!(top(4), all[..4]);
    // Cut in the middle of the tie.
    assert_eq!(top(5), all[..5]);
    assert_eq!(top(8), all);
    assert_eq!(top(10_000), all);
    assert!(top(0).is_empty());

    let (s, b) = fx.call("GET", "/api/v1/flows?top=3", None, "").await;
    assert_eq!(s, StatusCode::OK);
    let v: Value = serde_json::from_str(&b).unwrap();
    let bytes: Vec<u64> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["bytes"].as_u64().unwrap())
        .collect();
    assert_eq!(bytes, [900, 700, 500]);
}

#[test]
fn token_file_rules() {
    let dir = std::env::temp_dir().join(format!("qosd-token-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let token = dir.join("token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    let with = |listen: &str, file: Option<&std::path::Path>| {
        let mut text = base_config().replace(
            "listen = \"127.0.0.1:9478\"",
            &format!("listen = \"{listen}\""),
        );
        if let Some(f) = file {
            text = text.replace(
                "# token_file = \"/etc/qosd/api-token\"",
                &format!("token_file = \"{}\"", f.display()),
            );
        }
        qosd::config::load_str("t.toml", &text, &qosd::config::Env::None).unwrap()
    };
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = qosd::daemon::load_token(&with("127.0.0.1:9478", Some(&token))).unwrap_err();
    assert!(err.to_string().contains("chmod 600"), "{err}");
    assert_eq!(err.exit_code(), 2);
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(
        qosd::daemon::load_token(&with("127.0.0.1:9478", Some(&token)))
            .unwrap()
            .as_deref(),
        Some(TOKEN)
    );
    // Beyond loopback only with a token.
    assert!(
        qosd::daemon::load_token(&with("0.0.0.0:9478", None))
            .unwrap_err()
            .to_string()
            .contains("not loopback")
    );
    assert!(qosd::daemon::load_token(&with("0.0.0.0:9478", Some(&token))).is_ok());
    assert!(
        qosd::daemon::load_token(&with("127.0.0.1:9478", None))
            .unwrap()
            .is_none()
    );
    std::fs::write(&token, "short").unwrap();
    assert!(qosd::daemon::load_token(&with("127.0.0.1:9478", Some(&token))).is_err());
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A reload applies what it can (a weight) and keeps the running values
/// of what only a restart applies (the interfaces the sockets are on, the
/// listen addresses), so status and metrics keep describing the running
/// daemon; it says a restart is pending until the file agrees again.
#[tokio::test]
async fn restart_only_sections_keep_their_running_values() {
    let fx = fixture("restart", Some(TOKEN));
    let status = |body: &str| serde_json::from_str::<Value>(body).unwrap();
    let (_, b) = fx.call("GET", "/api/v1/status", None, "").await;
    assert_eq!(status(&b)["restart_pending"], json!(false), "{b}");
    std::fs::write(
        &fx.config,
        base_config()
            .replace("lan = \"lan0\"", "lan = \"eth9\"")
            .replace("127.0.0.1:9477", "127.0.0.1:19477")
            .replace("weight = 50", "weight = 60"),
    )
    .unwrap();
    let (s, b) = fx.call("POST", "/api/v1/reload", Some(&bearer()), "").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(fx.weight("business"), 60, "the rest of the file applies");
    let cfg = fx.handle.shared.config();
    assert_eq!(cfg.interfaces.lan, "lan0", "the sockets are still on lan0");
    assert_eq!(cfg.metrics.listen.port(), 9477);
    let (_, b) = fx.call("GET", "/api/v1/status", None, "").await;
    let st = status(&b);
    assert_eq!(st["interfaces"]["lan"], json!("lan0"), "{b}");
    assert_eq!(st["restart_pending"], json!(true), "{b}");
    let (_, metrics) = fx.call("GET", "/metrics", None, "").await;
    assert!(!metrics.contains("eth9"), "{metrics}");

    std::fs::write(&fx.config, base_config()).unwrap();
    let (s, b) = fx.call("POST", "/api/v1/reload", Some(&bearer()), "").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (_, b) = fx.call("GET", "/api/v1/status", None, "").await;
    assert_eq!(status(&b)["restart_pending"], json!(false), "{b}");
}

/// A change on disk is judged against the text last loaded (at start or by
/// any reload, valid or not), not against a later look at the file: an
/// edit made between the start and the first look is not missed, and a bad
/// edit is reported once, not at every event.
#[test]
fn file_changes_are_judged_against_the_text_last_loaded() {
    let fx = fixture("changed", None);
    // A handle that does not know what it loaded treats the file as new.
    assert!(fx.handle.file_changed());
    let (text, cfg) = qosd::config::read_and_load(&fx.config);
    let handle = Handle::new(
        Arc::new(Shared::new(&cfg.unwrap())),
        Some(fx.config.clone()),
        None,
    )
    .with_file_text(text);
    assert!(!handle.file_changed());
    std::fs::write(
        &fx.config,
        base_config().replace("weight = 50", "weight = 60"),
    )
    .unwrap();
    assert!(handle.file_changed(), "an edit after the start is a change");
    handle.reload().unwrap();
    assert!(!handle.file_changed());
    std::fs::write(
        &fx.config,
        base_config().replace("weight = 50", "weight = 0"),
    )
    .unwrap();
    assert!(handle.file_changed());
    assert!(handle.reload().is_err());
    assert!(!handle.file_changed(), "a refused text is not retried");
    std::fs::remove_file(&fx.config).unwrap();
    assert!(
        !handle.file_changed(),
        "a file being replaced is no change yet"
    );
}

/// Rates divide the bytes by the time between the snapshots they come
/// from (published every 100 ms, read once a second), so they do not
/// jitter with the gap between the two clocks; a direction whose snapshot
/// has not moved keeps its last rates.
#[test]
fn rates_use_the_time_between_snapshots() {
    use qosd::shaper::CategoryCounters;
    use qosd::time::Instant;
    let fx = fixture("rates", None);
    let n = fx.handle.shared.config().category.len();
    let publish = |dir: usize, at_ms: u64, bytes: u64| {
        let mut s = fx.handle.telemetry.snapshots[dir].lock().unwrap();
        s.at = Instant::from_nanos(at_ms * 1_000_000);
        s.categories = vec![CategoryCounters::default(); n];
        s.categories[2].sent.bytes = bytes;
    };
    publish(0, 1_000, 0);
    publish(1, 1_000, 0);
    fx.handle.telemetry.update_rates();
    // 1.1 MB in the 1.1 s between the snapshots: 8 Mbit/s, whenever the
    // control plane looks.
    publish(0, 2_100, 1_100_000);
    fx.handle.telemetry.update_rates();
    let rates = fx.handle.telemetry.rates();
    assert!((rates[0][2] - 8.0e6).abs() < 1.0, "{rates:?}");
    publish(0, 3_000, 2_000_000);
    publish(1, 2_000, 500_000);
    fx.handle.telemetry.update_rates();
    let rates = fx.handle.telemetry.rates();
    assert!((rates[0][2] - 8.0e6).abs() < 1.0, "{rates:?}");
    assert!((rates[1][2] - 4.0e6).abs() < 1.0, "{rates:?}");
    // The upload thread has not published since: its rates stay.
    publish(1, 3_000, 1_000_000);
    fx.handle.telemetry.update_rates();
    let rates = fx.handle.telemetry.rates();
    assert!((rates[0][2] - 8.0e6).abs() < 1.0, "{rates:?}");
    assert!((rates[1][2] - 4.0e6).abs() < 1.0, "{rates:?}");
}

/// Across a reload that reorders categories, a category's rate is computed
/// from its own bytes before and after (matched by name), and read in the
/// layout of the snapshot it is shown with.
#[test]
fn rates_follow_categories_across_a_reorder() {
    use qosd::shaper::CategoryCounters;
    use qosd::time::Instant;
    let layout = |cats: &[&str]| {
        let mut t = String::from(
            "default_category = \"a\"\n[link]\nupload = \"10 Mbit\"\ndownload = \"10 Mbit\"\n",
        );
        for c in cats {
            t += &format!("[[category]]\nname = \"{c}\"\n");
        }
        Arc::new(qosd::config::load_str("t.toml", &t, &qosd::config::Env::None).unwrap())
    };
    let (ab, ba) = (layout(&["a", "b"]), layout(&["b", "a"]));
    let fx = fixture("reorder", None);
    let publish = |at_ms: u64, layout: &Arc<qosd::config::Config>, bytes: [u64; 2]| {
        let mut s = fx.handle.telemetry.snapshots[0].lock().unwrap();
        s.at = Instant::from_nanos(at_ms * 1_000_000);
        s.config = Some(Arc::clone(layout));
        s.categories = bytes
            .iter()
            .map(|&b| {
                let mut c = CategoryCounters::default();
                c.sent.bytes = b;
                c
            })
            .collect();
    };
    // a: 1 MB/s, b: 0.25 MB/s throughout.
    publish(1_000, &ab, [1_000_000, 250_000]);
    fx.handle.telemetry.update_rates();
    publish(2_000, &ba, [500_000, 2_000_000]);
    fx.handle.telemetry.update_rates();
    let snaps = fx.handle.telemetry.snapshots();
    let rates = fx.handle.telemetry.rates_for(&snaps);
    assert_eq!(rates[0], [2.0e6, 8.0e6], "b then a, as the snapshot");
    // Shown with a snapshot still in the old layout, they follow it.
    publish(2_000, &ab, [2_000_000, 500_000]);
    let rates = fx
        .handle
        .telemetry
        .rates_for(&fx.handle.telemetry.snapshots());
    assert_eq!(rates[0], [8.0e6, 2.0e6]);
}

/// A thread that panicked while holding a direction's snapshot cell
/// poisons it; the snapshot in it is still whole. Readiness and metrics
/// keep reading it (before, a poisoned cell read as an empty snapshot: a
/// data path that had stopped, for good).
#[test]
fn a_poisoned_snapshot_cell_is_still_read() {
    let fx = fixture("poisoned", None);
    let now = Instant::from_nanos(10_000_000_000);
    for cell in &fx.handle.telemetry.snapshots {
        let mut s = cell.lock().unwrap();
        s.running = true;
        s.at = now;
        s.engine.ip_frames = 7;
    }
    let cell = Arc::clone(&fx.handle.telemetry.snapshots[0]);
    let poisoner = std::thread::spawn(move || {
        let _held = cell.lock().unwrap();
        panic!("poisoning the snapshot cell on purpose");
    });
    assert!(poisoner.join().is_err());
    assert!(fx.handle.telemetry.snapshots[0].is_poisoned());
    assert!(fx.handle.telemetry.ready(now));
    assert_eq!(fx.handle.telemetry.snapshots()[0].engine.ip_frames, 7);
}

/// The DPI memory in use, its limit and the refusals per direction and
/// kind are exported, with values from the budget and the snapshots.
#[tokio::test]
async fn dpi_memory_and_refusals_are_exported() {
    let fx = fixture("dpi", None);
    fx.handle.telemetry.snapshots[0]
        .lock()
        .unwrap()
        .engine
        .dpi_refusals = [3, 1, 0, 2];
    // A flow holding half a ClientHello.
    let mut hello = vec![
        0x16, 0x03, 0x01, 0x08, 0x00, 0x01, 0x00, 0x07, 0xfc, 0x03, 0x03,
    ];
    hello.resize(1400, 0x42);
    let mut frame = Vec::new();
    etherparse::PacketBuilder::ethernet2([2; 6], [4; 6])
        .ipv4([192, 168, 1, 10], [198, 19, 1, 1], 64)
        .tcp(40000, 443, 1, 65535)
        .ack(1)
        .write(&mut frame, &hello)
        .unwrap();
    let pkt = PacketMeta::parse(&frame);
    let shared = &fx.handle.shared;
    let classifier = shared.classifier();
    let ctx = PacketCtx::new(&pkt, Direction::Upload, Instant::from_nanos(1));
    classifier.observe(&shared.table, &mut ClassCache::new(), &ctx, &shared.names);
    let used = shared.dpi.used();
    assert!(used > 1400, "{used}");
    let (_, text) = fx.call("GET", "/metrics", None, "").await;
    for line in [
        format!("qosd_dpi_memory_bytes {used}"),
        format!("qosd_dpi_memory_limit_bytes {}", 32 << 20),
        "qosd_dpi_refusals_total{direction=\"upload\",kind=\"flow\"} 3".to_owned(),
        "qosd_dpi_refusals_total{direction=\"upload\",kind=\"tls\"} 1".to_owned(),
        "qosd_dpi_refusals_total{direction=\"upload\",kind=\"dns\"} 2".to_owned(),
        "qosd_dpi_refusals_total{direction=\"download\",kind=\"quic\"} 0".to_owned(),
    ] {
        assert!(text.lines().any(|l| l == line), "{line} missing");
    }
}

/// `/api/v1/hosts`: each LAN computer with its addresses, its rate each way
/// and per category, its flows and their apps, busiest first.
#[tokio::test]
async fn hosts_show_each_computer_with_its_rates_flows_and_apps() {
    use qosd::engine::hosts::HostTable;
    let fx = fixture("hosts", None);
    let cfg = fx.handle.shared.config();
    // Two computers, 10.0.0.1 and 10.0.0.2, with one flow each.
    add_flow(&fx.handle, 1, 500);
    add_flow(&fx.handle, 2, 700);
    let v4 = |n: u8| {
        let mut a = [0u8; 16];
        a[10..].copy_from_slice(&[0xff, 0xff, 10, 0, 0, n]);
        a
    };
    let mut up = HostTable::default();
    let publish = |t: &HostTable, at_ms: u64| {
        let mut s = fx.handle.telemetry.snapshots[0].lock().unwrap();
        s.at = Instant::from_nanos(at_ms * 1_000_000);
        s.config = Some(cfg.clone());
        s.hosts = t.hosts().copied().collect();
    };
    let t0 = Instant::from_nanos(1);
    up.observe(1, [2, 0, 0, 0, 0, 1], None, Some(&v4(1)), 2, 1_000, t0);
    up.observe(2, [2, 0, 0, 0, 0, 2], None, Some(&v4(2)), 3, 1_000, t0);
    publish(&up, 1_000);
    fx.handle.telemetry.update_rates();
    // A second later: host 1 sent 125 kB (1 Mbit/s), host 2 250 kB.
    up.observe(1, [2, 0, 0, 0, 0, 1], None, None, 2, 125_000, t0);
    up.observe(2, [2, 0, 0, 0, 0, 2], None, None, 3, 250_000, t0);
    publish(&up, 2_000);
    fx.handle.telemetry.update_rates();

    let (s, b) = fx.call("GET", "/api/v1/hosts?top=5", None, "").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let v: Value = serde_json::from_str(&b).unwrap();
    let hosts = v.as_array().unwrap();
    assert_eq!(hosts.len(), 2, "{b}");
    let h = &hosts[0];
    assert_eq!(h["mac"], "02:00:00:00:00:02");
    assert_eq!(h["addresses"], json!(["10.0.0.2"]));
    assert_eq!(h["rate_bps"]["upload"].as_f64(), Some(2e6));
    assert_eq!(h["bytes"]["upload"].as_u64(), Some(251_000));
    assert_eq!(h["categories"][0]["name"], cfg.category[3].name.as_str());
    assert_eq!(h["categories"][0]["rate_bps"]["upload"].as_f64(), Some(2e6));
    assert_eq!(h["flows"].as_u64(), Some(1));
    assert_eq!(h["top_apps"][0]["bytes"].as_u64(), Some(700));
    assert_eq!(hosts[1]["mac"], "02:00:00:00:00:01");
    assert_eq!(hosts[1]["rate_bps"]["upload"].as_f64(), Some(1e6));

    let (s, b) = fx.call("GET", "/api/v1/hosts?top=1", None, "").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        serde_json::from_str::<Value>(&b)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let (s, _) = fx.call("GET", "/api/v1/hosts?top=0", None, "").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}

/// A UDP packet of `len` bytes from 10.0.0.`n`:40000 to 198.19.1.1:`port`,
/// counted in its flow (travelling `dir`, from the LAN when upload), not
/// classified: no app, as nothing named it.
fn unknown_packet(handle: &Handle, n: u8, port: u16, len: usize, dir: Direction) -> u64 {
    let (src, dst, sp, dp) = match dir {
        Direction::Upload => ([10, 0, 0, n], [198, 19, 1, 1], 40000, port),
        Direction::Download => ([198, 19, 1, 1], [10, 0, 0, n], port, 40000),
    };
    let mut frame = Vec::new();
    etherparse::PacketBuilder::ethernet2([2; 6], [4; 6])
        .ipv4(src, dst, 64)
        .udp(sp, dp)
        .write(&mut frame, &vec![0; len - 42])
        .unwrap();
    let pkt = PacketMeta::parse(&frame);
    let (key, side) = FlowKey::of(&pkt);
    let mut cache = ClassCache::new();
    let (flow, _) =
        handle
            .shared
            .table
            .track(&mut cache, &key, side, &pkt, dir, Instant::from_nanos(1));
    flow.id()
}

/// `/api/v1/unknown`: the bytes of flows without an app, by the host
/// name's registrable domain or by protocol and server port, most first,
/// counted once however often it is asked, with `top` checked.
#[tokio::test]
async fn unknown_traffic_is_grouped_by_name_or_port() {
    let fx = fixture("unknown", None);
    let get = |uri: &'static str| {
        let fx = &fx;
        async move {
            let (s, b) = fx.call("GET", uri, None, "").await;
            assert_eq!(s, StatusCode::OK, "{b}");
            serde_json::from_str::<Value>(&b).unwrap()
        }
    };
    let v = get("/api/v1/unknown").await;
    assert_eq!(v, json!({"unknown": [], "total_bytes": 0}));

    // Two flows to udp/3478 (1000 up, 300 down), one to udp/5000 whose
    // host name was learned as cdn.example.co.uk (2000 up).
    unknown_packet(&fx.handle, 1, 3478, 600, Direction::Upload);
    unknown_packet(&fx.handle, 1, 3478, 300, Direction::Download);
    unknown_packet(&fx.handle, 2, 3478, 400, Direction::Upload);
    unknown_packet(&fx.handle, 3, 5000, 2000, Direction::Upload);
    let named = {
        let mut frame = Vec::new();
        etherparse::PacketBuilder::ethernet2([2; 6], [4; 6])
            .ipv4([10, 0, 0, 3], [198, 19, 1, 1], 64)
            .udp(40000, 5000)
            .write(&mut frame, &[0; 8])
            .unwrap();
        FlowKey::of(&PacketMeta::parse(&frame)).0
    };
    fx.handle.shared.table.get(&named, |f| {
        f.value.lock().host = Some("cdn.example.co.uk".into());
    });
    let v = get("/api/v1/unknown?top=5").await;
    assert_eq!(
        v,
        json!({
            "unknown": [
                {"key": "example.co.uk", "kind": "host", "bytes": 2000, "upload_bytes": 2000,
                 "download_bytes": 0, "flows": 1, "example": "cdn.example.co.uk"},
                {"key": "udp/3478", "kind": "port", "bytes": 1300, "upload_bytes": 1000,
                 "download_bytes": 300, "flows": 2, "example": "198.19.1.1:3478"},
            ],
            "total_bytes": 3300,
        })
    );
    // Asked again: nothing new, nothing counted twice.
    assert_eq!(get("/api/v1/unknown?top=5").await, v);
    // One more packet: only its bytes are added.
    unknown_packet(&fx.handle, 2, 3478, 100, Direction::Download);
    let v = get("/api/v1/unknown?top=1").await;
    assert_eq!(v["unknown"].as_array().unwrap().len(), 1);
    assert_eq!(v["total_bytes"], 3400);
    let v = get("/api/v1/unknown?top=1000").await;
    assert_eq!(v["unknown"][1]["bytes"], 1400);
    assert_eq!(v["unknown"][1]["download_bytes"], 400);
    assert_eq!(v["unknown"][1]["flows"], 2);

    for bad in ["0", "1001", "-1", "ten", ""] {
        let (s, b) = fx
            .call("GET", &format!("/api/v1/unknown?top={bad}"), None, "")
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "top={bad}: {b}");
        let e: Value = serde_json::from_str(&b).unwrap();
        assert_eq!(e["error"], "top must be a number from 1 to 1000", "{b}");
    }
}

/// `metrics.top_hosts = N` exports the N busiest computers' rates; none by
/// default; it applies at a reload (it is not a listener).
#[tokio::test]
async fn the_busiest_hosts_get_rate_series_when_asked() {
    use qosd::engine::hosts::HostTable;
    let fx = fixture("tophosts", Some(TOKEN));
    let mut up = HostTable::default();
    let publish = |t: &HostTable, at_ms: u64| {
        let mut s = fx.handle.telemetry.snapshots[0].lock().unwrap();
        s.at = Instant::from_nanos(at_ms * 1_000_000);
        s.config = Some(fx.handle.shared.config());
        s.hosts = t.hosts().copied().collect();
    };
    let t0 = Instant::from_nanos(1);
    for (tag, bytes) in [(1u8, 0u64), (2, 0)] {
        up.observe(
            u32::from(tag),
            [2, 0, 0, 0, 0, tag],
            None,
            None,
            0,
            bytes,
            t0,
        );
    }
    publish(&up, 1_000);
    fx.handle.telemetry.update_rates();
    up.observe(1, [2, 0, 0, 0, 0, 1], None, None, 0, 125_000, t0);
    up.observe(2, [2, 0, 0, 0, 0, 2], None, None, 0, 250_000, t0);
    publish(&up, 2_000);
    fx.handle.telemetry.update_rates();
    let series =
        "qosd_host_rate_bits_per_second{direction=\"upload\",host=\"02:00:00:00:00:02\"} 2000000";
    let (_, m) = fx.call("GET", "/metrics", None, "").await;
    assert!(
        !m.contains("qosd_host_rate_bits_per_second{"),
        "none by default:\n{m}"
    );

    std::fs::write(
        &fx.config,
        base_config().replace("top_hosts = 0", "top_hosts = 1"),
    )
    .unwrap();
    let (s, b) = fx.call("POST", "/api/v1/reload", Some(&bearer()), "").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (_, b) = fx.call("GET", "/api/v1/status", None, "").await;
    assert_eq!(
        serde_json::from_str::<Value>(&b).unwrap()["restart_pending"],
        json!(false)
    );
    let (_, m) = fx.call("GET", "/metrics", None, "").await;
    assert!(m.contains(series), "{m}");
    assert!(
        !m.contains("host=\"02:00:00:00:00:01\""),
        "only the busiest one:\n{m}"
    );
}

/// `recent_delay_p99_ms` is the queue delay of what was sent over the
/// last interval, not since qosd started: a past burst of 500 ms delays
/// does not hide that the queue is short now, and a category that sent
/// nothing since has none (null), while `delay_p99_ms` keeps the history.
#[tokio::test]
async fn recent_delay_is_that_of_the_last_interval() {
    use qosd::shaper::CategoryCounters;
    let fx = fixture("recent", None);
    let cfg = fx.handle.shared.config();
    let n = cfg.category.len();
    let bulk = cfg.category.iter().position(|c| c.name == "bulk").unwrap();
    let voice = cfg.category.iter().position(|c| c.name == "voice").unwrap();
    let mut counters = vec![CategoryCounters::default(); n];
    let publish = |at_ms: u64, counters: &[CategoryCounters]| {
        let mut s = fx.handle.telemetry.snapshots[0].lock().unwrap();
        s.at = Instant::from_nanos(at_ms * 1_000_000);
        s.categories = counters.to_vec();
    };
    // Before: 1 000 packets of bulk waited 500 ms, 100 of voice 1 ms.
    for _ in 0..1_000 {
        counters[bulk].delay_fine.record(500_000_000);
    }
    for _ in 0..100 {
        counters[voice].delay_fine.record(1_000_000);
    }
    publish(1_000, &counters);
    fx.handle.telemetry.update_rates();
    // In the last second: 100 bulk packets at 2 ms, no voice.
    for _ in 0..100 {
        counters[bulk].delay_fine.record(2_000_000);
    }
    publish(2_000, &counters);
    fx.handle.telemetry.update_rates();
    let (s, b) = fx.call("GET", "/api/v1/categories", None, "").await;
    assert_eq!(s, StatusCode::OK);
    let v: Value = serde_json::from_str(&b).unwrap();
    let up = |name: &str| {
        v.as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap()["upload"]
            .clone()
    };
    let recent = up("bulk")["recent_delay_p99_ms"].as_f64().unwrap();
    assert!((recent - 2.0).abs() < 0.1, "{recent}");
    let since_start = up("bulk")["delay_p99_ms"].as_f64().unwrap();
    assert!(since_start > 400.0, "{since_start}");
    assert_eq!(up("voice")["recent_delay_p99_ms"], Value::Null);
    assert!(up("voice")["delay_p99_ms"].as_f64().is_some());
}

/// The web console: every file is served without the token, with its type,
/// a validator and the security headers; a current copy gets a 304; the
/// console adds no way around the API's token; and no file holds a token.
#[tokio::test]
async fn the_console_is_served_with_its_security_headers() {
    let fx = fixture("console", Some(TOKEN));
    for asset in qosd::console::ASSETS {
        let (s, h, body) = fx.request("GET", asset.path, &[], "").await;
        assert_eq!(s, StatusCode::OK, "{}", asset.path);
        assert_eq!(h["content-type"], asset.content_type, "{}", asset.path);
        assert_eq!(body, asset.body, "{}", asset.path);
        assert_eq!(h["cache-control"], "no-cache");
        let csp = h["content-security-policy"].to_str().unwrap();
        for directive in [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "connect-src 'self'",
            "frame-ancestors 'none'",
            "base-uri 'none'",
            "form-action 'none'",
        ] {
            assert!(csp.contains(directive), "{}: {csp}", asset.path);
        }
        assert!(!csp.contains("unsafe"), "{csp}");
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["x-frame-options"], "DENY");
        assert_eq!(h["referrer-policy"], "no-referrer");
        // Revalidation over a slow link: a 304, still with the headers.
        let etag = h["etag"].to_str().unwrap().to_owned();
        let (s, h, body) = fx
            .request("GET", asset.path, &[("if-none-match", &etag)], "")
            .await;
        assert_eq!(s, StatusCode::NOT_MODIFIED, "{}", asset.path);
        assert!(body.is_empty());
        assert_eq!(h["x-frame-options"], "DENY");
        assert!(h.contains_key("content-security-policy"));
        // The token never appears in what is served.
        let text = String::from_utf8_lossy(asset.body);
        assert!(!text.contains(TOKEN), "{}", asset.path);
    }
    let (_, _, page) = fx.request("GET", "/", &[], "").await;
    let page = String::from_utf8_lossy(&page);
    assert!(page.starts_with("<!doctype html>"), "{page}");
    // No inline script or style for the CSP to refuse.
    assert!(!page.contains("style="), "inline style attribute");
    assert!(!page.contains("<style"), "inline style element");
    for script in page.split("<script").skip(1) {
        assert!(script.contains("src=\""), "inline script: {script}");
    }
    // The console changes nothing about the API: edits still need the
    // token, reads are as open as before.
    let (s, _) = fx
        .call("PUT", "/api/v1/categories/bulk", None, r#"{"weight": 40}"#)
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _) = fx.call("POST", "/api/v1/reload", None, "").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(fx.weight("bulk"), 5);
    let (s, _) = fx.call("GET", "/api/v1/categories", None, "").await;
    assert_eq!(s, StatusCode::OK);
    // Nothing else is served at the top: unknown paths are the API's 404.
    let (s, b) = fx.call("GET", "/console.js.map", None, "").await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{b}");
}

/// A flow still being inspected without an app waits 2 s before it counts
/// as unknown (its handshake usually names it first); then all its bytes
/// count, once.
#[test]
fn pending_flows_count_as_unknown_after_their_grace() {
    let fx = fixture("unknown-grace", None);
    let t = &fx.handle.telemetry;
    // Its first packet at 1 ns.
    unknown_packet(&fx.handle, 1, 3478, 500, Direction::Upload);
    t.update_unknown(&fx.handle.shared, Instant::from_nanos(1_999_999_999));
    assert_eq!(t.unknown(10).total_bytes, 0);
    t.update_unknown(&fx.handle.shared, Instant::from_nanos(2_000_000_001));
    assert_eq!(t.unknown(10).total_bytes, 500);
    t.update_unknown(&fx.handle.shared, Instant::from_nanos(3_000_000_001));
    let r = t.unknown(10);
    assert_eq!((r.total_bytes, r.unknown[0].flows), (500, 1));
}
