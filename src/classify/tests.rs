//! Classifier pipeline tests on frames built here, through the real flow
//! table: precedence, per-direction rules, bidirectional verdicts, reloads.

use std::sync::Arc;
use std::time::Duration;

use etherparse::PacketBuilder;

use super::*;
use crate::config::{Env, load_str};
use crate::flow::FlowTable;

pub(crate) const TEST_CONFIG: &str = r#"
default_category = "browsing"
[link]
upload = "20 Mbit"
download = "50 Mbit"
[[category]]
name = "control"
priority = 0
[[category]]
name = "voice"
priority = 1
[[category]]
name = "video"
priority = 2
[[category]]
name = "business"
priority = 3
[[category]]
name = "browsing"
priority = 3
[[category]]
name = "streaming"
priority = 3
[[category]]
name = "bulk"
priority = 4
"#;

pub(crate) fn config(extra: &str) -> Config {
    load_str("test.toml", &format!("{TEST_CONFIG}{extra}"), &Env::None).unwrap()
}

pub(crate) fn udp(
    src: [u8; 4],
    sp: u16,
    dst: [u8; 4],
    dp: u16,
    payload: &[u8],
    dscp: u8,
) -> Vec<u8> {
    let mut out = Vec::new();
    let mut ip = etherparse::Ipv4Header::new(0, 64, etherparse::IpNumber::UDP, src, dst).unwrap();
    ip.dscp = etherparse::IpDscp::try_new(dscp).unwrap();
    PacketBuilder::ethernet2([2; 6], [4; 6])
        .ip(etherparse::IpHeaders::Ipv4(ip, Default::default()))
        .udp(sp, dp)
        .write(&mut out, payload)
        .unwrap();
    out
}

pub(crate) fn tcp(
    src: [u8; 4],
    sp: u16,
    dst: [u8; 4],
    dp: u16,
    payload: &[u8],
    syn: bool,
) -> Vec<u8> {
    let mut out = Vec::new();
    let mut b = PacketBuilder::ethernet2([2; 6], [4; 6])
        .ipv4(src, dst, 64)
        .tcp(sp, dp, 1, 65535);
    if syn {
        b = b.syn();
    } else {
        b = b.ack(1);
    }
    b.write(&mut out, payload).unwrap();
    out
}

/// Runs frames through a table and classifier; returns each packet's
/// category name and the final flow's decided_by name.
pub(crate) struct Harness {
    pub cfg: Config,
    pub classifier: Classifier,
    pub table: FlowTable,
    pub now: Instant,
    pub names: Arc<dyn NameLookup + Send + Sync>,
}

impl Harness {
    pub fn new(cfg: Config) -> Self {
        Harness {
            classifier: Classifier::new(&cfg, 1),
            table: FlowTable::new(&cfg.flows),
            cfg,
            now: Instant::from_nanos(1_000_000_000),
            names: Arc::new(NoNames),
        }
    }

    /// Classifies one frame; returns (category name, decided_by, app).
    pub fn send(&mut self, frame: &[u8], dir: Direction) -> (String, String, Option<String>) {
        self.now = self.now + Duration::from_millis(20);
        let pkt = PacketMeta::parse(frame);
        let (key, side) = FlowKey::of(&pkt);
        let now = self.now;
        let classifier = &self.classifier;
        let names = &*self.names;
        let (cat, by, app) = self.table.with_flow(&key, side, &pkt, dir, now, |flow, _| {
            let v = classifier.classify(flow, &key, side, &pkt, dir, now, names);
            (v.category, flow.class.decided_by, flow.class.app)
        });
        (
            self.cfg.category(cat).unwrap().name.clone(),
            self.classifier.decided_by_name(by).into_owned(),
            app.and_then(|a| self.classifier.app_name(a))
                .map(str::to_owned),
        )
    }

    pub fn reload(&mut self, cfg: Config) {
        let generation = self.classifier.generation() + 1;
        self.classifier = Classifier::new(&cfg, generation);
        self.cfg = cfg;
    }
}

const PC: [u8; 4] = [192, 168, 1, 10];
const SRV: [u8; 4] = [198, 19, 1, 1];

#[test]
fn rules_come_first_and_settle_at_once() {
    let cfg = config(
        "[[rule]]\nname = \"pbx\"\nprotocol = \"udp\"\ndst_ports = \"5060\"\ncategory = \"voice\"\n",
    );
    let mut h = Harness::new(cfg);
    let up = udp(PC, 5060, SRV, 5060, b"INVITE sip:x SIP/2.0\r\n", 0);
    let (cat, by, app) = h.send(&up, Direction::Upload);
    assert_eq!((cat.as_str(), by.as_str()), ("voice", "rule:pbx"));
    // The catalog still names the app (by its payload), the rule decides.
    assert_eq!(app.as_deref(), Some("sip"));
    // The reply half of the flow gets the same verdict.
    let down = udp(SRV, 5060, PC, 5060, b"SIP/2.0 200 OK\r\n", 0);
    assert_eq!(h.send(&down, Direction::Download).0, "voice");
    let (key, _) = FlowKey::of(&PacketMeta::parse(&up));
    assert!(h.table.get(&key, |f| f.class.settled).unwrap());
}

#[test]
fn catalog_port_signature_and_default() {
    let mut h = Harness::new(config(""));
    // The catalog knows DNS by port.
    let dns = udp(
        PC,
        40000,
        SRV,
        53,
        b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00",
        0,
    );
    let (cat, by, app) = h.send(&dns, Direction::Upload);
    assert_eq!(
        (cat.as_str(), by.as_str(), app.as_deref()),
        ("control", "port", Some("dns"))
    );
    // Unknown TCP stays in the default category.
    let other = tcp(PC, 40001, SRV, 12345, b"", true);
    assert_eq!(h.send(&other, Direction::Upload).1, "default");
}

#[test]
fn direction_rules_give_each_half_its_own_category() {
    let cfg = config(
        "[[rule]]\nname = \"nas-up\"\nsrc_cidrs = \"192.168.1.10\"\ndirection = \"upload\"\ncategory = \"bulk\"\n",
    );
    let mut h = Harness::new(cfg);
    let up = tcp(PC, 40000, SRV, 443, b"", true);
    let down = tcp(SRV, 443, PC, 40000, b"", false);
    assert_eq!(h.send(&up, Direction::Upload).0, "bulk");
    assert_eq!(h.send(&down, Direction::Download).0, "browsing");
    assert_eq!(h.send(&up, Direction::Upload).0, "bulk");
}

#[test]
fn src_and_dst_follow_the_initiator() {
    // dst_ports = 443 must match the connection to a server's 443, from
    // both halves, and not a connection *from* port 443.
    let cfg = config("[[rule]]\nname = \"web\"\ndst_ports = 443\ncategory = \"business\"\n");
    let mut h = Harness::new(cfg);
    let syn = tcp(PC, 40000, SRV, 443, b"", true);
    let synack = tcp(SRV, 443, PC, 40000, b"", false);
    assert_eq!(h.send(&syn, Direction::Upload).0, "business");
    assert_eq!(h.send(&synack, Direction::Download).0, "business");
    let reverse = tcp(SRV, 443, PC, 40005, b"", true);
    assert_eq!(h.send(&reverse, Direction::Download).0, "browsing");
}

#[test]
fn host_rules_wait_for_the_host_name() {
    // A rule on host names cannot decide from the SYN: the verdict stays
    // provisional (default) and the flow pending.
    let cfg =
        config("[[rule]]\nname = \"sp\"\nhosts = \"*.sharepoint.com\"\ncategory = \"business\"\n");
    let mut h = Harness::new(cfg);
    let syn = tcp(PC, 40000, SRV, 443, b"", true);
    assert_eq!(h.send(&syn, Direction::Upload).0, "browsing");
    let (key, _) = FlowKey::of(&PacketMeta::parse(&syn));
    assert!(!h.table.get(&key, |f| f.class.settled).unwrap());
}

#[test]
fn dscp_trust_is_optional() {
    // Large packets: not the small isochronous kind the media heuristic claims.
    let ef = udp(PC, 40000, SRV, 40000, &[0u8; 1200], 46);
    let mut h = Harness::new(config(""));
    for _ in 0..30 {
        h.send(&ef, Direction::Upload);
    }
    assert_eq!(h.send(&ef, Direction::Upload).1, "default");

    let mut h = Harness::new(config("[classify]\ntrust_dscp = true\n"));
    for _ in 0..30 {
        h.send(&ef, Direction::Upload);
    }
    assert_eq!(
        h.send(&ef, Direction::Upload),
        ("voice".into(), "dscp".into(), None)
    );
}

#[test]
fn long_high_volume_default_flows_become_bulk() {
    let mut h = Harness::new(config("[classify]\nbulk_after_bytes = 100000\n"));
    let data = tcp(SRV, 8080, PC, 40000, &[0u8; 1400], false);
    let first = h.send(&data, Direction::Download);
    assert_eq!(first.0, "browsing");
    let mut last = first;
    for _ in 0..100 {
        last = h.send(&data, Direction::Download);
    }
    assert_eq!((last.0.as_str(), last.1.as_str()), ("bulk", "volume"));
}

#[test]
fn reload_reclassifies_existing_flows() {
    let mut h = Harness::new(config(""));
    let up = udp(PC, 40000, SRV, 9999, &[0u8; 1200], 0);
    for _ in 0..30 {
        h.send(&up, Direction::Upload);
    }
    assert_eq!(h.send(&up, Direction::Upload).0, "browsing");
    h.reload(config(
        "[[rule]]\nname = \"game\"\nports = 9999\ncategory = \"bulk\"\n",
    ));
    assert_eq!(
        h.send(&up, Direction::Upload),
        ("bulk".into(), "rule:game".into(), None)
    );
}

#[test]
fn rules_can_name_catalog_apps() {
    let cfg =
        config("[[rule]]\nname = \"no-dns-priority\"\napps = [\"dns\"]\ncategory = \"bulk\"\n");
    let mut h = Harness::new(cfg);
    let dns = udp(
        PC,
        40000,
        SRV,
        53,
        b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00",
        0,
    );
    assert_eq!(h.send(&dns, Direction::Upload).1, "rule:no-dns-priority");
}

#[test]
fn unknown_rule_app_is_a_config_error() {
    let text = format!("{TEST_CONFIG}[[rule]]\napps = [\"nosuchapp\"]\ncategory = \"bulk\"\n");
    let errs = load_str("test.toml", &text, &Env::None).unwrap_err().0;
    assert!(
        errs.iter()
            .any(|e| e.key == "rule[0].apps[0]" && e.message.contains("unknown app")),
        "{errs:?}"
    );
}

#[test]
fn small_isochronous_udp_is_real_time() {
    // 20 ms, 172-byte payloads, unknown ports: a voice stream by behaviour.
    let mut h = Harness::new(config(""));
    let pkt = udp(PC, 41000, SRV, 41000, &[0x55u8; 172], 0);
    let mut last = h.send(&pkt, Direction::Upload);
    for _ in 0..30 {
        last = h.send(&pkt, Direction::Upload);
    }
    assert_eq!((last.0.as_str(), last.1.as_str()), ("voice", "heuristic"));
}
