use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::classify::tests::udp;
use crate::config::Direction;
use crate::engine::frame::{Frame, FramePool};
use crate::engine::{DirectionEngine, Shared};
use crate::shaper::{Shaper, ShaperConfig};
use crate::telemetry::{FlowStats, Snapshot};
use crate::time::Instant;

const PC: [u8; 4] = [192, 168, 1, 10];
const SRV: [u8; 4] = [198, 19, 1, 1];

fn frame(pool: &mut FramePool, bytes: &[u8]) -> Frame {
    Frame::new(pool.get(), bytes)
}

/// What the data path of `e` publishes.
fn published(e: &DirectionEngine<Shaper<Frame>>) -> Snapshot {
    Snapshot {
        categories: e.category_counters().to_vec(),
        retired: e.queue().retired().clone(),
        accounting: e.accounting().clone(),
        config: Some(Arc::clone(e.config())),
        running: true,
        ..Snapshot::default()
    }
}

/// One direction's engine as the daemon builds it.
type Engine = DirectionEngine<Shaper<Frame>>;

/// The embedded configuration, its shared state and both directions'
/// engines over it.
fn default_engines() -> (Config, Arc<Shared>, Engine, Engine) {
    let cfg = crate::config::load_str(
        crate::config::EMBEDDED_NAME,
        crate::config::DEFAULT_CONFIG_TOML,
        &crate::config::Env::None,
    )
    .unwrap();
    let shared = Arc::new(Shared::new(&cfg));
    let engine = |d| {
        DirectionEngine::new(
            d,
            Arc::clone(&shared),
            Shaper::new(&ShaperConfig::from_config(&cfg, d)),
        )
    };
    let (up, down) = (engine(Direction::Upload), engine(Direction::Download));
    (cfg, shared, up, down)
}

/// What a scrape sees of `snapshots` under `shared`'s configuration.
fn view(shared: &Shared, snapshots: [Snapshot; 2]) -> MetricsView {
    MetricsView {
        config: shared.config(),
        snapshots,
        rates: Default::default(),
        flows: FlowStats::default(),
        reloads: [0; 2],
        uptime_seconds: 1.0,
        ready: true,
        link: Default::default(),
        hosts: Vec::new(),
    }
}

/// The counters Prometheus sees for a category stay with its name when a
/// reload reorders the file's categories, and the direction's totals never
/// go back when a reload removes one (Prometheus reads a decrease as a
/// counter reset, and the voice-drop alert would fire on another category's
/// drops).
#[test]
fn reloads_that_reorder_or_remove_categories_keep_counters_with_their_names() {
    let layout = |cats: &[&str]| {
        let mut t = String::from(
            "default_category = \"voice\"\n[link]\nupload = \"2 Mbit\"\ndownload = \"2 Mbit\"\n",
        );
        for c in cats {
            t += &format!("[[category]]\nname = \"{c}\"\npriority = 3\nmax = \"20%\"\n");
        }
        for (c, port) in [("bulk", 5201), ("business", 5301)] {
            if cats.contains(&c) {
                t += &format!("[[rule]]\nports = {port}\ncategory = \"{c}\"\n");
            }
        }
        crate::config::load_str("t.toml", &t, &crate::config::Env::None).unwrap()
    };
    let a = layout(&["voice", "business", "bulk"]);
    let shared = Arc::new(Shared::new(&a));
    let mut e = DirectionEngine::new(
        Direction::Upload,
        Arc::clone(&shared),
        Shaper::new(&ShaperConfig::from_config(&a, Direction::Upload)),
    );
    let mut pool = FramePool::new(2048, 0);
    let mut now = Instant::from_nanos(1);
    // More than the 400 kbit/s ceilings take, so both sides also drop.
    let mut offer = |e: &mut DirectionEngine<Shaper<Frame>>, now: &mut Instant| {
        for i in 0..400u16 {
            let port = if i % 2 == 0 { 5201 } else { 5301 };
            let f = udp(PC, 40000 + i % 8, SRV, port, &[0u8; 1000], 0);
            e.ingress(frame(&mut pool, &f), *now);
            *now = *now + Duration::from_micros(500);
            while let Some(f) = e.dequeue(*now) {
                pool.put(f.into_buffer());
            }
            e.drain_dropped(|f, _| pool.put(f.into_buffer()));
        }
    };
    let metrics = |e: &DirectionEngine<Shaper<Frame>>| {
        let mut out = HashMap::new();
        for family in build(&view(&shared, [published(e), Snapshot::default()])) {
            for m in family.get_metric() {
                let labels: Vec<String> = m
                    .get_label()
                    .iter()
                    .filter(|l| l.name() != "direction" || l.value() == "upload")
                    .map(|l| format!("{}={}", l.name(), l.value()))
                    .collect();
                let key = format!("{}{{{}}}", family.name(), labels.join(","));
                out.insert(key, m.get_counter().get_value());
            }
        }
        out
    };
    let sent = |m: &HashMap<String, f64>, c: &str| {
        m[&format!("qosd_category_sent_bytes_total{{direction=upload,category={c}}}")]
    };
    let drops = |m: &HashMap<String, f64>| {
        ["codel", "overflow", "ceiling"]
            .iter()
            .map(|r| m[&format!("qosd_dropped_packets_total{{direction=upload,reason={r}}}")])
            .sum::<f64>()
    };
    let reload = |e: &mut DirectionEngine<Shaper<Frame>>, cfg: &Config| {
        shared.reload(cfg);
        assert!(e.refresh(ShaperConfig::from_config).is_some());
    };

    offer(&mut e, &mut now);
    let m1 = metrics(&e);
    let (bulk, business) = (sent(&m1, "bulk"), sent(&m1, "business"));
    assert!(bulk > 0.0 && business > 0.0 && drops(&m1) > 0.0, "{m1:?}");

    // The same categories in another order.
    reload(&mut e, &layout(&["voice", "bulk", "business"]));
    assert_eq!(e.category_origin(), [Some(0), Some(2), Some(1)]);
    let m2 = metrics(&e);
    assert_eq!(sent(&m2, "bulk"), bulk);
    assert_eq!(sent(&m2, "business"), business);
    assert_eq!(drops(&m2), drops(&m1));

    // Business removed: its counters leave, the totals stay.
    offer(&mut e, &mut now);
    let m3 = metrics(&e);
    reload(&mut e, &layout(&["voice", "bulk"]));
    let m4 = metrics(&e);
    assert_eq!(sent(&m4, "bulk"), sent(&m3, "bulk"));
    assert!(!m4.keys().any(|k| k.contains("category=business")));
    assert_eq!(drops(&m4), drops(&m3), "the direction's drops went back");
}

/// The per-app and TCP-quality families: their label names are a contract
/// (dashboards and alerts use them), the app label comes from the layout
/// the counters were taken in, and the round trips come out as a
/// Prometheus histogram whose +Inf bucket is its count.
#[test]
fn app_and_tcp_quality_families_have_their_labels() {
    let (cfg, shared, mut up, down) = default_engines();
    let mut pool = FramePool::new(2048, 0);
    for _ in 0..3 {
        let f = udp(PC, 40123, SRV, 123, &[0u8; 48], 0);
        up.ingress(frame(&mut pool, &f), Instant::from_nanos(1));
    }
    let families = build(&view(&shared, [published(&up), published(&down)]));
    let family = |name: &str| {
        families
            .iter()
            .find(|f| f.name() == name)
            .unwrap_or_else(|| panic!("{name} missing"))
    };
    let names = |m: &prometheus::proto::Metric| {
        m.get_label()
            .iter()
            .map(|l| format!("{}={}", l.name(), l.value()))
            .collect::<Vec<_>>()
    };
    let apps = family("qosd_app_packets_total");
    assert_eq!(apps.get_metric().len(), 1, "only cells that counted");
    assert_eq!(
        names(&apps.get_metric()[0]),
        ["direction=upload", "app=ntp", "category=control"]
    );
    assert_eq!(apps.get_metric()[0].get_counter().get_value(), 3.0);
    let bytes = family("qosd_app_bytes_total").get_metric()[0].get_counter();
    assert!(bytes.get_value() > 3.0 * 48.0);
    for name in [
        "qosd_tcp_data_packets_total",
        "qosd_tcp_retransmitted_packets_total",
        "qosd_tcp_rtt_seconds",
    ] {
        let f = family(name);
        // Every category, both directions (the download's snapshot holds
        // both directions' round trips).
        assert_eq!(f.get_metric().len(), 2 * cfg.category.len(), "{name}");
        for m in f.get_metric() {
            let n = names(m);
            assert!(
                n.len() == 2 && n[0].starts_with("direction=") && n[1].starts_with("category="),
                "{name}: {n:?}"
            );
        }
    }
    let h = family("qosd_tcp_rtt_seconds").get_metric()[0].get_histogram();
    assert_eq!(
        h.get_bucket().len(),
        crate::engine::accounting::RTT_BUCKET_BOUNDS_NS.len()
    );
    assert_eq!(h.get_bucket()[0].upper_bound(), 0.001);
    assert_eq!(h.get_bucket().last().unwrap().upper_bound(), 2.0);
}

/// `qosd_unclassified_bytes_total{direction}`: the bytes of packets whose
/// verdict named no app, per direction, both directions exported from the
/// start; a named app's bytes stay out of it.
#[test]
fn unclassified_bytes_are_the_unknown_app_s_per_direction() {
    let (_, shared, mut up, down) = default_engines();
    let series = |up: &DirectionEngine<Shaper<Frame>>, down: &DirectionEngine<Shaper<Frame>>| {
        let families = build(&view(&shared, [published(up), published(down)]));
        let f = families
            .iter()
            .find(|f| f.name() == "qosd_unclassified_bytes_total")
            .expect("qosd_unclassified_bytes_total missing");
        assert_eq!(f.get_field_type(), MetricType::COUNTER);
        f.get_metric()
            .iter()
            .map(|m| {
                let l: Vec<(String, String)> = m
                    .get_label()
                    .iter()
                    .map(|l| (l.name().to_owned(), l.value().to_owned()))
                    .collect();
                (l, m.get_counter().get_value())
            })
            .collect::<Vec<_>>()
    };
    let label = |d: &str| vec![("direction".to_owned(), d.to_owned())];
    assert_eq!(
        series(&up, &down),
        [(label("upload"), 0.0), (label("download"), 0.0)]
    );
    let mut pool = FramePool::new(2048, 0);
    // NTP (port 123) is a catalog app: not counted.
    let ntp = udp(PC, 40123, SRV, 123, &[0u8; 48], 0);
    up.ingress(frame(&mut pool, &ntp), Instant::from_nanos(1));
    // Nothing names UDP to port 39999: counted, frame lengths.
    let odd = udp(PC, 40124, SRV, 39_999, &[0u8; 100], 0);
    up.ingress(frame(&mut pool, &odd), Instant::from_nanos(2));
    up.ingress(frame(&mut pool, &odd), Instant::from_nanos(3));
    assert_eq!(
        series(&up, &down),
        [
            (label("upload"), 2.0 * odd.len() as f64),
            (label("download"), 0.0)
        ]
    );
}
