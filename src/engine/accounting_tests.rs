//! Per-app accounting and TCP quality ([`super::accounting`]) through the
//! real engines in virtual time: crafted TCP segments up through the
//! upload engine and answers down through the download engine, as in
//! `wan_tests`.

use std::sync::Arc;

use super::accounting::{Accounting, RTT_BUCKET_BOUNDS_NS, TcpSegments};
use super::frame::Frame;
use super::wan_tests::{ACK, Engine, SYN, engines_with, frame, ms, seg, up_and_out};
use crate::classify::tests::udp;
use crate::config::{Catalog, Config, Direction};
use crate::shaper::ShaperConfig;

/// Port 443 to the test server: business on the way up, bulk on the way
/// down, so a sample in the wrong direction lands in the wrong category.
const SPLIT: &str = r#"
[[rule]]
name = "up-443"
ports = 443
direction = "upload"
category = "business"

[[rule]]
name = "down-443"
ports = 443
direction = "download"
category = "bulk"
"#;

fn cat(e: &Engine, name: &str) -> usize {
    e.config().category_id(name).unwrap().index()
}

/// The bucket a round trip of `ms` milliseconds falls in.
fn bucket(ms: u64) -> usize {
    RTT_BUCKET_BOUNDS_NS.partition_point(|&b| b < ms * 1_000_000)
}

/// (direction, category index, bucket) of every round trip counted.
fn rtts(a: &Accounting) -> Vec<(Direction, usize, usize)> {
    let mut v = Vec::new();
    for d in Direction::BOTH {
        for (c, h) in a.rtt(d).iter().enumerate() {
            for (b, n) in h.counts.iter().enumerate() {
                v.extend(std::iter::repeat_n((d, c, b), *n as usize));
            }
        }
    }
    v
}

#[test]
fn a_round_trip_lands_in_its_flows_category_and_the_direction_it_times() {
    let (mut up, mut down) = engines_with(SPLIT);
    let (business, bulk) = (cat(&up, "business"), cat(&up, "bulk"));
    // A LAN sender's data segment (the first arms the flow's probe),
    // acknowledged 30 ms after it left qosd: the upload's round trip.
    for (ts, at) in [(99, 0), (100, 10)] {
        let f = frame(&seg(true, 1, 1, ACK, Some((ts, 7)), 100));
        up_and_out(&mut up, f, ms(at), ms(at));
    }
    down.ingress(frame(&seg(false, 1, 101, ACK, Some((900, 100)), 0)), ms(40));
    assert_eq!(
        rtts(down.accounting()),
        [(Direction::Upload, business, bucket(30))]
    );
    // The LAN end's bare ACK, answered by the far end's next data segment
    // 250 ms later: the download's round trip, in the download's category.
    for (ts, at) in [(300, 100), (301, 110)] {
        let f = frame(&seg(true, 101, 1, ACK, Some((ts, 900)), 0));
        up_and_out(&mut up, f, ms(at), ms(at));
    }
    down.ingress(
        frame(&seg(false, 1, 101, ACK, Some((901, 301)), 1000)),
        ms(360),
    );
    assert_eq!(
        rtts(down.accounting()),
        [
            (Direction::Upload, business, bucket(30)),
            (Direction::Download, bulk, bucket(250)),
        ]
    );
    let h = &down.accounting().rtt(Direction::Download)[bulk];
    assert_eq!(h.sum_ns, 250_000_000);
    // The upload thread measures no round trip: it has no meter.
    assert!(up.accounting().rtt(Direction::Upload).is_empty());
}

#[test]
fn a_client_handshake_times_the_download_and_satellite_round_trips_have_buckets() {
    let (mut up, mut down) = engines_with(SPLIT);
    up_and_out(
        &mut up,
        frame(&seg(true, 5000, 0, SYN, None, 0)),
        ms(0),
        ms(0),
    );
    down.ingress(frame(&seg(false, 9000, 5001, SYN | ACK, None, 0)), ms(640));
    let bulk = cat(&down, "bulk");
    assert_eq!(
        rtts(down.accounting()),
        [(Direction::Download, bulk, bucket(640))]
    );
    // 640 ms is told from 600 and from 700 (a geostationary hop at rest
    // and under load are in different buckets).
    assert_ne!(bucket(640), bucket(600));
    assert_ne!(bucket(640), bucket(710));
}

fn segments(e: &Engine, category: &str) -> TcpSegments {
    e.accounting().segments()[cat(e, category)]
}

#[test]
fn a_retransmitted_segment_counts_once_and_syns_and_bare_acks_are_not_data() {
    let (mut up, mut down) = engines_with(SPLIT);
    let send = |up: &mut Engine, seq: u32, flags: u8, len: usize, at: u64| {
        up_and_out(
            up,
            frame(&seg(true, seq, 1, flags, None, len)),
            ms(at),
            ms(at),
        );
    };
    send(&mut up, 999, SYN, 0, 0);
    send(&mut up, 1000, ACK, 0, 1);
    assert_eq!(segments(&up, "business"), TcpSegments::default());
    send(&mut up, 1000, ACK, 100, 2);
    send(&mut up, 1100, ACK, 100, 3);
    send(&mut up, 1000, ACK, 100, 400);
    send(&mut up, 1200, ACK, 100, 401);
    assert_eq!(
        segments(&up, "business"),
        TcpSegments {
            data: 4,
            retransmitted: 1
        }
    );
    // The far end's segments count in the download, in its category.
    down.ingress(frame(&seg(false, 1, 1300, ACK, None, 500)), ms(402));
    down.ingress(frame(&seg(false, 501, 1300, ACK, None, 500)), ms(403));
    down.ingress(frame(&seg(false, 1, 1300, ACK, None, 500)), ms(600));
    assert_eq!(
        segments(&down, "bulk"),
        TcpSegments {
            data: 3,
            retransmitted: 1
        }
    );
    assert_eq!(segments(&up, "bulk"), TcpSegments::default());
}

const PC: [u8; 4] = [192, 168, 1, 10];
const SRV: [u8; 4] = [198, 19, 1, 1];

fn offer(e: &mut Engine, bytes: &[u8], n: usize, at: u64) {
    for _ in 0..n {
        e.ingress(
            Frame::new(vec![0u8; 2048].into_boxed_slice(), bytes),
            ms(at),
        );
    }
}

/// (app name, category name) -> packets, as the engine counted them.
fn by_app(e: &Engine) -> Vec<(String, String, u64)> {
    let cfg = e.config();
    let mut v: Vec<_> = e
        .accounting()
        .apps()
        .map(|(app, c, n)| {
            let app = app.map_or("unknown".to_owned(), |i| cfg.catalog.apps[i].name.clone());
            (app, cfg.category[c].name.clone(), n.packets)
        })
        .collect();
    v.sort();
    v
}

fn reload(e: &mut Engine, cfg: &Config) {
    e.shared().reload(cfg);
    assert!(e.refresh(ShaperConfig::from_config).is_some());
}

#[test]
fn apps_are_counted_by_category_and_keep_their_counts_by_name_across_reloads() {
    let (mut up, _) = engines_with("");
    let ntp = udp(PC, 40123, SRV, 123, &[0u8; 48], 0);
    let other = udp(PC, 40000, SRV, 40001, &[0u8; 200], 0);
    offer(&mut up, &ntp, 3, 0);
    offer(&mut up, &other, 2, 0);
    let counted = vec![
        ("ntp".to_owned(), "control".to_owned(), 3),
        ("unknown".to_owned(), "browsing".to_owned(), 2),
    ];
    assert_eq!(by_app(&up), counted);
    // The apps' cells add up to what the queue counted per category.
    for (i, c) in up.category_counters().iter().enumerate() {
        let (p, b) = up
            .accounting()
            .apps()
            .filter(|(_, cat, _)| *cat == i)
            .fold((0, 0), |(p, b), (_, _, n)| (p + n.packets, b + n.bytes));
        assert_eq!((p, b), (c.arrived.packets, c.arrived.bytes), "category {i}");
    }

    // The catalog in reverse and the categories reordered: every count
    // stays with its app and category names.
    let mut cfg = crate::config::load_str(
        "t.toml",
        &toml_reversed_categories(),
        &crate::config::Env::None,
    )
    .unwrap();
    assert_ne!(
        cfg.category_id("control"),
        up.config().category_id("control")
    );
    let mut apps = cfg.catalog.apps.clone();
    apps.reverse();
    cfg.catalog = Arc::new(Catalog { apps });
    reload(&mut up, &cfg);
    assert_eq!(by_app(&up), counted);
    offer(&mut up, &ntp, 1, 1);
    assert_eq!(by_app(&up)[0].2, 4, "{:?}", by_app(&up));

    // ntp removed from the catalog: its counts leave with it, the rest stay.
    let mut cfg = (**up.config()).clone();
    let apps = cfg
        .catalog
        .apps
        .iter()
        .filter(|a| a.name != "ntp")
        .cloned()
        .collect();
    cfg.catalog = Arc::new(Catalog { apps });
    reload(&mut up, &cfg);
    assert_eq!(
        by_app(&up),
        [("unknown".to_owned(), "browsing".to_owned(), 2)]
    );
}

/// The default configuration with its categories in reverse order (ids
/// change, names stay).
fn toml_reversed_categories() -> String {
    let text = crate::config::DEFAULT_CONFIG_TOML;
    let mut head = String::new();
    let mut cats: Vec<String> = Vec::new();
    let mut tail = String::new();
    let mut in_cat = false;
    for line in text.lines() {
        if line.trim() == "[[category]]" {
            in_cat = true;
            cats.push(String::new());
        } else if line.starts_with('[') {
            in_cat = false;
        }
        let to = match cats.last_mut() {
            Some(c) if in_cat => c,
            Some(_) => &mut tail,
            None => &mut head,
        };
        to.push_str(line);
        to.push('\n');
    }
    cats.reverse();
    format!("{head}{}{tail}", cats.concat())
}
