//! Classifier pipeline tests on frames built here, through the real flow
//! table: precedence, per-direction rules, bidirectional verdicts, reloads.

use std::sync::Arc;
use std::time::Duration;

use etherparse::PacketBuilder;

use super::budget::Holder;
use super::dns_stream::DnsTcp;
use super::inspect::DpiState;
use super::*;
use crate::config::{Direction, Env, load_str};
use crate::flow::FlowKey;

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

/// A one-way TCP stream: source address and port, destination's.
type Stream = ([u8; 4], u16, [u8; 4], u16);

thread_local! {
    /// The next sequence number of each stream [`tcp`] built in this
    /// test's thread.
    static NEXT_SEQ: std::cell::RefCell<std::collections::HashMap<Stream, u32>> =
        Default::default();
}

/// A TCP segment (a SYN, or an ACK with `payload`), numbered after the
/// segments built before it for the same stream in this thread, as a real
/// sender numbers them (the classifier reassembles by sequence number).
pub(crate) fn tcp(
    src: [u8; 4],
    sp: u16,
    dst: [u8; 4],
    dp: u16,
    payload: &[u8],
    syn: bool,
) -> Vec<u8> {
    let seq = NEXT_SEQ.with(|m| {
        let mut m = m.borrow_mut();
        let next = m.entry((src, sp, dst, dp)).or_insert(1);
        let seq = *next;
        *next = next.wrapping_add(payload.len() as u32 + u32::from(syn));
        seq
    });
    let mut out = Vec::new();
    let mut b = PacketBuilder::ethernet2([2; 6], [4; 6])
        .ipv4(src, dst, 64)
        .tcp(sp, dp, seq, 65535);
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
    pub table: ClassTable,
    pub cache: ClassCache,
    pub now: Instant,
    pub names: Arc<dyn NameLookup + Send + Sync>,
}

impl Harness {
    pub fn new(cfg: Config) -> Self {
        Harness {
            classifier: Classifier::new(&cfg, 1),
            table: ClassTable::new(&cfg.flows),
            cache: ClassCache::new(),
            cfg,
            now: Instant::from_nanos(1_000_000_000),
            names: Arc::new(NoNames),
        }
    }

    /// Classifies one frame; returns (category name, decided_by, app).
    pub fn send(&mut self, frame: &[u8], dir: Direction) -> (String, String, Option<String>) {
        self.now = self.now + Duration::from_millis(20);
        let pkt = PacketMeta::parse(frame);
        let ctx = PacketCtx::new(&pkt, dir, self.now);
        let (v, _) = self
            .classifier
            .observe(&self.table, &mut self.cache, &ctx, &*self.names);
        let (by, app) = self
            .table
            .get(&ctx.key, |f| {
                let c = f.value.lock();
                (c.decided_by, c.app)
            })
            .unwrap();
        let cat = v.category;
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
    assert!(h.table.get(&key, |f| f.value.lock().settled).unwrap());
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

/// A flow first seen from the server's side (a capture or a qosd restart
/// that began mid-connection, or its SYN-ACK) still has the client as its
/// initiator: `dst_ports` looks at the server's port and the client's next
/// request is parsed.
#[test]
fn roles_come_from_the_handshake_and_port_ranks_not_the_first_packet() {
    let cfg = config(
        "[[rule]]\nname = \"web\"\ndst_ports = 8080\ncategory = \"business\"\n\
         [[rule]]\nname = \"nas\"\nhosts = \"nas.example\"\ncategory = \"bulk\"\n",
    );
    let mut h = Harness::new(cfg);
    // The server's data segment comes first (rank 1 port vs ephemeral).
    let answer = tcp(SRV, 8080, PC, 51000, b"HTTP/1.1 200 OK\r\n\r\n", false);
    assert_eq!(h.send(&answer, Direction::Download).0, "business");
    // Picked up at its SYN-ACK, between two high ports.
    let mut synack = Vec::new();
    PacketBuilder::ethernet2([2; 6], [4; 6])
        .ipv4(SRV, PC, 64)
        .tcp(40000, 50001, 1, 65535)
        .syn()
        .ack(1)
        .write(&mut synack, b"")
        .unwrap();
    h.send(&synack, Direction::Download);
    let request = tcp(
        PC,
        50001,
        SRV,
        40000,
        b"GET / HTTP/1.1\r\nHost: nas.example\r\n\r\n",
        false,
    );
    assert_eq!(h.send(&request, Direction::Upload).0, "bulk");
    let (key, _) = FlowKey::of(&PacketMeta::parse(&request));
    let initiator = h
        .table
        .get(&key, |f| (f.initiator(), f.first_direction()))
        .unwrap();
    assert_eq!(initiator.1, Direction::Upload);
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
    assert!(!h.table.get(&key, |f| f.value.lock().settled).unwrap());
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

/// Neither direction alone reaches the threshold; together they do.
#[test]
fn volume_counts_both_directions() {
    let mut h = Harness::new(config("[classify]\nbulk_after_bytes = 100000\n"));
    let up = tcp(PC, 40000, SRV, 8080, &[0u8; 1400], false);
    let down = tcp(SRV, 8080, PC, 40000, &[0u8; 1400], false);
    let mut last = None;
    for _ in 0..60 {
        h.send(&up, Direction::Upload);
        last = Some(h.send(&down, Direction::Download));
    }
    let (cat, by, _) = last.unwrap();
    assert_eq!((cat.as_str(), by.as_str()), ("bulk", "volume"));
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

/// A call is watched for its lifetime: when one side turns its camera on
/// its direction moves to video, and back to voice when it turns it off;
/// the other direction stays as its own packets say.
#[test]
fn a_call_moves_between_voice_and_video_as_it_changes() {
    let mut h = Harness::new(config(""));
    let mut seq = 0u16;
    let mut rtp = |from_pc: bool, len: usize| {
        seq = seq.wrapping_add(1);
        // RTP version 2, payload type 111 (Opus, dynamic), SSRC 7.
        let mut p = vec![0x80, 111];
        p.extend(seq.to_be_bytes());
        p.extend((u32::from(seq) * 960).to_be_bytes());
        p.extend(7u32.to_be_bytes());
        p.resize(12 + len, 0xd5);
        if from_pc {
            udp(PC, 41000, SRV, 42000, &p, 0)
        } else {
            udp(SRV, 42000, PC, 41000, &p, 0)
        }
    };
    // Two seconds of audio both ways (20 ms, 160-byte Opus frames).
    let mut up = (String::new(), String::new(), None);
    for _ in 0..100 {
        up = h.send(&rtp(true, 160), Direction::Upload);
        h.send(&rtp(false, 160), Direction::Download);
    }
    assert_eq!(up.0, "voice");
    // The camera goes on upstream: 1100-byte frames every 10 ms.
    for _ in 0..150 {
        up = h.send(&rtp(true, 1100), Direction::Upload);
        h.now = h.now - Duration::from_millis(10);
    }
    assert_eq!(up.0, "video");
    let down = h.send(&rtp(false, 160), Direction::Download);
    assert_eq!(down.0, "voice", "the other half still carries audio");
    // And off again: back to voice within a few windows.
    for _ in 0..250 {
        up = h.send(&rtp(true, 160), Direction::Upload);
    }
    assert_eq!(up.0, "voice");
    // An admin's rule is never second-guessed.
    let mut h = Harness::new(config(
        "[[rule]]\nname = \"pbx\"\ndst_ports = 42000\ncategory = \"voice\"\n",
    ));
    for _ in 0..300 {
        up = h.send(
            &udp(PC, 41000, SRV, 42000, &[0x11; 1100], 0),
            Direction::Upload,
        );
        h.now = h.now - Duration::from_millis(10);
    }
    assert_eq!(up.0, "voice");
}

/// A call's media that goes peer to peer, to an address and port nothing
/// names, inherits the app and category of the flow that used the same
/// LAN endpoint just before; another local port does not.
#[test]
fn media_inherits_the_app_of_its_lan_endpoint() {
    let mut h = Harness::new(config(""));
    const PEER: [u8; 4] = [198, 18, 7, 7];
    // The client's checks with Zoom's media router (UDP 8801).
    let checks = udp(PC, 41000, SRV, 8801, &[0x05; 200], 0);
    assert_eq!(
        h.send(&checks, Direction::Upload).2.as_deref(),
        Some("zoom-media")
    );
    // Opaque media from the same local port to the other party.
    let opaque = |len: usize, sp: u16| udp(PC, sp, PEER, 50123, &vec![0xa7; len], 0);
    let p2p = h.send(&opaque(900, 41000), Direction::Upload);
    assert_eq!(
        (p2p.1.as_str(), p2p.2.as_deref()),
        ("endpoint", Some("zoom-media"))
    );
    assert_eq!(p2p.0, "video");
    let other = h.send(&opaque(900, 41001), Direction::Upload);
    assert_eq!((other.0.as_str(), other.2), ("browsing", None));
    // Long after, the endpoint is forgotten.
    h.now = h.now + Duration::from_secs(endpoints::HOLD_SECS + 5);
    let late = h.send(
        &udp(PC, 41000, PEER, 50124, &[0xa7; 900], 0),
        Direction::Upload,
    );
    assert_eq!(late.2, None);
}

/// A ClientHello without a server name, or with an IP address in its
/// place, is named by the server's certificate (TLS 1.2 sends it in
/// clear); with a real name the server's flight is not read.
#[test]
fn a_hello_without_a_name_is_named_by_the_certificate() {
    use crate::classify::dpi::tls_server::tests::flight_for;
    let flight = flight_for("teams.microsoft.com");
    for (sp, sni) in [
        (40000u16, None),
        (40001, Some("52.112.0.9")),
        (40002, Some("example.org")),
    ] {
        let mut h = Harness::new(config(""));
        let hello = tls_record(&hello_message(sni.unwrap_or("").as_bytes(), 300));
        let hello_frame = tcp(PC, sp, SRV, 443, &hello, false);
        h.send(&hello_frame, Direction::Upload);
        let (cat, by, app) = h.send(&tcp(SRV, 443, PC, sp, &flight, false), Direction::Download);
        if sni == Some("example.org") {
            // Named by its hello: the certificate's name never replaces it.
            assert_eq!((by.as_str(), app), ("default", None));
            let key = FlowKey::of(&PacketMeta::parse(&hello_frame)).0;
            let host = h.table.get(&key, |f| f.value.lock().host.clone()).unwrap();
            assert_eq!(host.as_deref(), Some("example.org"));
        } else {
            assert_eq!(
                (by.as_str(), app.as_deref()),
                ("tls-cert", Some("teams")),
                "{sni:?}"
            );
            assert_eq!(cat, "business");
        }
    }
    // The flight over two segments.
    let mut h = Harness::new(config(""));
    let hello = tls_record(&hello_message(b"", 300));
    h.send(&tcp(PC, 40003, SRV, 443, &hello, false), Direction::Upload);
    let (first, second) = flight.split_at(flight.len() / 2);
    let (_, by, _) = h.send(&tcp(SRV, 443, PC, 40003, first, false), Direction::Download);
    assert_eq!(by, "default");
    let (_, by, app) = h.send(
        &tcp(SRV, 443, PC, 40003, second, false),
        Direction::Download,
    );
    assert_eq!((by.as_str(), app.as_deref()), ("tls-cert", Some("teams")));
}

/// Agora's SD-RTN names its edge in its first datagram: the flow is the
/// call's, whatever port and address it uses.
#[test]
fn sd_rtn_names_its_edge() {
    let mut h = Harness::new(config(""));
    let opening = crate::classify::dpi::agora::tests::opening("edge-4.sd-rtn.com");
    let (cat, by, app) = h.send(&udp(PC, 45000, SRV, 4701, &opening, 0), Direction::Upload);
    assert_eq!(
        (cat.as_str(), by.as_str(), app.as_deref()),
        ("video", "payload", Some("agora-rtc"))
    );
}

/// A TCP segment from the client with sequence number `seq`.
fn client_segment(sp: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ethernet2([2; 6], [4; 6])
        .ipv4(PC, SRV, 64)
        .tcp(sp, 443, seq, 65535)
        .ack(1)
        .write(&mut out, payload)
        .unwrap();
    out
}

/// A ClientHello is read however TCP delivered it: retransmitted whole or
/// in part, cut into a tiny first segment and the rest, or reordered; the
/// stream is put back together by sequence number.
#[test]
fn a_client_hello_is_reassembled_by_sequence_number() {
    // A ClientHello whose server name comes last, after 1500 bytes of
    // padding: in the second half of the stream.
    let name = b"contoso.sharepoint.com";
    let mut exts = vec![0x00, 0x15, 0x05, 0xdc];
    exts.extend([0u8; 1500]);
    exts.extend([0x00, 0x00]);
    exts.extend(((name.len() + 5) as u16).to_be_bytes());
    exts.extend(((name.len() + 3) as u16).to_be_bytes());
    exts.push(0);
    exts.extend((name.len() as u16).to_be_bytes());
    exts.extend(name);
    let mut body = vec![0x03, 0x03];
    body.extend([0x11; 32]);
    body.extend([0, 0x00, 0x02, 0x13, 0x01, 0x01, 0x00]);
    body.extend((exts.len() as u16).to_be_bytes());
    body.extend(exts);
    let mut msg = vec![1, 0];
    msg.extend((body.len() as u16).to_be_bytes());
    msg.extend(body);
    let hello = tls_record(&msg);
    let isn = 0xffff_fc00u32; // the stream's numbers wrap around 2^32
    let at = |off: usize| isn.wrapping_add(1).wrapping_add(off as u32);
    type Plan = &'static [(usize, usize)];
    const END: usize = usize::MAX;
    let plans: [(&str, Plan); 7] = [
        ("in order", &[(0, 1400), (1400, END)]),
        (
            "first segment retransmitted",
            &[(0, 1400), (0, 1400), (1400, END)],
        ),
        (
            "a stale copy of the start",
            &[(0, 1400), (0, 800), (1400, END)],
        ),
        (
            "overlapping resegmentation",
            &[(0, 1400), (1000, 1500), (1500, END)],
        ),
        ("tiny first segment", &[(0, 1), (1, END)]),
        (
            "three bytes, then the rest",
            &[(0, 3), (3, 700), (700, END)],
        ),
        ("second segment first", &[(1400, END), (0, 1400)]),
    ];
    for (i, (what, plan)) in plans.into_iter().enumerate() {
        let mut h = Harness::new(config(""));
        let sp = 41000 + i as u16;
        let mut syn = Vec::new();
        PacketBuilder::ethernet2([2; 6], [4; 6])
            .ipv4(PC, SRV, 64)
            .tcp(sp, 443, isn, 65535)
            .syn()
            .write(&mut syn, b"")
            .unwrap();
        h.send(&syn, Direction::Upload);
        let mut last = String::new();
        for &(from, to) in plan {
            let end = to.min(hello.len());
            last = h
                .send(
                    &client_segment(sp, at(from), &hello[from..end]),
                    Direction::Upload,
                )
                .1;
        }
        assert_eq!(last, "sni", "{what}");
        assert_eq!(h.used(), 0, "{what}: state freed");
    }
}

/// A Zoom media connection's audio is voice and its video and screen
/// share video, packet by packet, whatever the flow's own verdict.
#[test]
fn zoom_media_is_queued_by_what_each_datagram_carries() {
    use crate::classify::dpi::zoom::tests::datagram;
    let mut h = Harness::new(config(""));
    const MMR: [u8; 4] = [170, 114, 3, 4];
    let send = |h: &mut Harness, inner: u8, len: usize| {
        h.send(
            &udp(PC, 52000, MMR, 8801, &datagram(inner, len), 0),
            Direction::Upload,
        )
    };
    assert_eq!(send(&mut h, 16, 1000).2.as_deref(), Some("zoom-media"));
    for _ in 0..30 {
        assert_eq!(send(&mut h, 15, 120).0, "voice");
        assert_eq!(send(&mut h, 16, 1000).0, "video");
        assert_eq!(send(&mut h, 30, 900).0, "video");
    }
    // What is not media (a type the layout does not name) keeps the
    // flow's category.
    assert_eq!(send(&mut h, 21, 60).0, "video");
    // Another app's datagrams that happen to start alike are left alone.
    let other = udp(PC, 52001, SRV, 40000, &datagram(15, 120), 0);
    assert_ne!(h.send(&other, Direction::Upload).0, "voice");
}

// The DPI memory budget: per-flow state is bounded, counted and freed.

use crate::classify::dpi::quic::Version;
use crate::classify::dpi::quic::tests::{crypto_frame, hello_message, protect};

/// A TLS handshake record carrying `msg` (a ClientHello message).
pub(crate) fn tls_record(msg: &[u8]) -> Vec<u8> {
    let mut rec = vec![0x16, 0x03, 0x01];
    rec.extend_from_slice(&(msg.len() as u16).to_be_bytes());
    rec.extend_from_slice(msg);
    rec
}

/// A DNS response mapping `name` to `ip` (TTL 300), padded with an
/// additional record of `pad` bytes (as DNSSEC signatures would).
pub(crate) fn dns_answer(name: &str, ip: [u8; 4], pad: usize) -> Vec<u8> {
    let mut m = vec![
        0x12,
        0x34,
        0x81,
        0x80,
        0,
        1,
        0,
        1,
        0,
        0,
        0,
        u8::from(pad > 0),
    ];
    for label in name.split('.') {
        m.push(label.len() as u8);
        m.extend_from_slice(label.as_bytes());
    }
    m.extend_from_slice(&[0, 0, 1, 0, 1]);
    m.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 1, 44, 0, 4]);
    m.extend_from_slice(&ip);
    if pad > 0 {
        // An unknown-type record in the additional section.
        m.extend_from_slice(&[0, 0, 99, 0, 1, 0, 0, 0, 60]);
        m.extend_from_slice(&(pad as u16).to_be_bytes());
        m.extend(std::iter::repeat_n(0x5a, pad));
    }
    m
}

impl Harness {
    /// The DPI bytes `frame`'s flow holds.
    fn dpi_bytes(&self, frame: &[u8]) -> usize {
        let (key, _) = FlowKey::of(&PacketMeta::parse(frame));
        self.table
            .get(&key, |f| f.value.lock().dpi_bytes())
            .unwrap()
    }

    /// The DPI bytes of `frame`'s flow's DNS-over-TCP state.
    fn dns_bytes(&self, frame: &[u8]) -> usize {
        let (key, _) = FlowKey::of(&PacketMeta::parse(frame));
        self.table
            .get(&key, |f| {
                f.value
                    .lock()
                    .dns_stream
                    .as_ref()
                    .map_or(0, |d| d.res.bytes())
            })
            .unwrap()
    }

    fn used(&self) -> usize {
        self.classifier.budget().used()
    }
}

const RESOLVER: [u8; 4] = [198, 19, 2, 2];

/// A ClientHello split over two segments, a QUIC ClientHello over two
/// Initials, and a DNS answer over TCP split three ways (inside its length
/// prefix too) are all read with a budget in force; what each flow kept
/// while incomplete is in the budget, and is freed (the allocation, not
/// only its contents) once the flow settles or the message completes.
#[test]
fn split_handshakes_and_answers_classify_and_free_their_state() {
    let mut h = Harness::new(config("[classify]\ndpi_memory = \"64 KiB\"\n"));
    let names = Arc::new(dpi::dns::DnsCache::new(64));
    h.names = Arc::clone(&names) as Arc<dyn NameLookup + Send + Sync>;
    assert_eq!(h.used(), 0);

    // TLS: 1400 bytes, then the rest of a ~2 KiB hello.
    let hello = tls_record(&hello_message(b"contoso.sharepoint.com", 2000));
    let seg1 = tcp(PC, 40001, SRV, 443, &hello[..1400], false);
    let seg2 = tcp(PC, 40001, SRV, 443, &hello[1400..], false);
    h.send(&tcp(PC, 40001, SRV, 443, b"", true), Direction::Upload);
    h.send(&seg1, Direction::Upload);
    let held = h.dpi_bytes(&seg1);
    assert!(held >= 1400 + size_of::<DpiState>(), "{held}");
    assert!(
        held < 1600 + size_of::<DpiState>(),
        "not the 16 KiB cap: {held}"
    );
    assert_eq!(h.used(), held);
    let (_, by, _) = h.send(&seg2, Direction::Upload);
    assert_eq!(by, "sni");
    assert_eq!(h.dpi_bytes(&seg1), 0);
    assert_eq!(h.used(), 0);

    // QUIC: a ClientHello over two Initial packets.
    let msg = hello_message(b"www.youtube.com", 1900);
    let dcid = [0x42; 8];
    let i1 = protect(Version::V1, &dcid, 0, &crypto_frame(0, &msg[..1100]));
    let i2 = protect(Version::V1, &dcid, 1, &crypto_frame(1100, &msg[1100..]));
    let q1 = udp(PC, 50000, SRV, 443, &i1, 0);
    h.send(&q1, Direction::Upload);
    let held = h.dpi_bytes(&q1);
    assert!(held > 1100 && held < 4096, "{held}");
    assert_eq!(h.used(), held);
    let (_, by, _) = h.send(&udp(PC, 50000, SRV, 443, &i2, 0), Direction::Upload);
    assert_eq!(by, "quic-sni");
    assert_eq!((h.dpi_bytes(&q1), h.used()), (0, 0));

    // DNS over TCP from a resolver, split inside the length prefix and
    // inside the message.
    let answer = dns_answer("files.contoso.example", [203, 0, 113, 7], 300);
    let mut stream = (answer.len() as u16).to_be_bytes().to_vec();
    stream.extend_from_slice(&answer);
    h.send(&tcp(PC, 40002, RESOLVER, 53, b"", true), Direction::Upload);
    let cuts = [1, 60, stream.len()];
    let mut from = 0;
    for (i, to) in cuts.into_iter().enumerate() {
        let seg = tcp(RESOLVER, 53, PC, 40002, &stream[from..to], false);
        h.send(&seg, Direction::Download);
        from = to;
        let held = h.dns_bytes(&seg);
        assert_eq!(h.used(), h.dpi_bytes(&seg));
        if i == 0 {
            // Only a length byte: a position, no buffer.
            assert_eq!(held, size_of::<DnsTcp>());
        } else if i == 1 {
            // The 58 bytes of the message that came, nothing more.
            assert_eq!(held, size_of::<DnsTcp>() + 58);
        } else {
            assert_eq!(held, 0);
        }
    }
    assert_eq!(
        names
            .lookup("203.0.113.7".parse().unwrap(), h.now)
            .as_deref(),
        Some("files.contoso.example")
    );
}

/// A DNS message longer than [`DNS_TCP_KEEP`] (a DNSSEC-signed answer):
/// its start is learned from as soon as it is in, and no more of it is
/// kept while the rest goes by; a message that never completes holds at
/// most its kept start.
#[test]
fn long_dns_over_tcp_messages_keep_only_their_start() {
    let mut h = Harness::new(config(""));
    let names = Arc::new(dpi::dns::DnsCache::new(64));
    h.names = Arc::clone(&names) as Arc<dyn NameLookup + Send + Sync>;
    let answer = dns_answer("big.contoso.example", [203, 0, 113, 8], 20_000);
    let mut stream = (answer.len() as u16).to_be_bytes().to_vec();
    stream.extend_from_slice(&answer);
    let ip = "203.0.113.8".parse().unwrap();
    let mut most = 0;
    h.send(&tcp(PC, 40003, RESOLVER, 53, b"", true), Direction::Upload);
    for (i, chunk) in stream.chunks(1400).enumerate() {
        let seg = tcp(RESOLVER, 53, PC, 40003, chunk, false);
        h.send(&seg, Direction::Download);
        most = most.max(h.dns_bytes(&seg));
        // Learned once the first DNS_TCP_KEEP bytes are in (3 segments).
        assert_eq!(names.lookup(ip, h.now).is_some(), i >= 2, "segment {i}");
    }
    assert_eq!(most, size_of::<DnsTcp>() + 1398 + 1400);
    let done = tcp(RESOLVER, 53, PC, 40003, b"", false);
    assert_eq!(h.dns_bytes(&done), 0);

    // A message that declares 64 KiB and never ends.
    let mut flood = vec![0xff, 0xff];
    flood.extend_from_slice(&[0x11; 1398]);
    h.send(&tcp(PC, 40004, RESOLVER, 53, b"", true), Direction::Upload);
    let seg = tcp(RESOLVER, 53, PC, 40004, &flood, false);
    for i in 0..40 {
        h.send(&seg, Direction::Download);
        let held = h.dns_bytes(&seg);
        // The kept start fills, is learned from (nothing to learn) and
        // goes; then only the position is held while the rest goes by.
        if i < 2 {
            // What arrived, not what the length promises.
            assert_eq!(held, size_of::<DnsTcp>() + 1398 + 1400 * i, "segment {i}");
        } else {
            assert_eq!(held, size_of::<DnsTcp>(), "segment {i}");
        }
    }
}

/// Packets without payload (a SYN flood) hold no inspection state; the
/// ClientHello that follows a handshake is still read, its split start
/// kept until the rest comes.
#[test]
fn packets_without_payload_hold_no_inspection_state() {
    let mut h = Harness::new(config(""));
    for port in 30_000..30_500 {
        h.send(&tcp(PC, port, SRV, 443, b"", true), Direction::Upload);
        h.send(&tcp(SRV, 443, PC, port, b"", false), Direction::Download);
    }
    assert_eq!(h.used(), 0, "a handshake kept state");
    let split = tls_record(&hello_message(b"contoso.sharepoint.com", 2000));
    let first = tcp(PC, 30_007, SRV, 443, &split[..1400], false);
    h.send(&first, Direction::Upload);
    assert!(h.dpi_bytes(&first) >= 1400);
    let rest = tcp(PC, 30_007, SRV, 443, &split[1400..], false);
    let (cat, by, _) = h.send(&rest, Direction::Upload);
    assert_eq!((cat.as_str(), by.as_str()), ("business", "sni"));
    assert_eq!(h.used(), 0);
}

/// With no budget at all, nothing is kept: a ClientHello in one segment
/// is still read (by state that lives for the packet), a split one is
/// not, and each refusal is reported with what it was for.
#[test]
fn an_empty_budget_keeps_nothing_and_says_so() {
    let mut h = Harness::new(config("[classify]\ndpi_memory = \"0\"\n"));
    let whole = tls_record(&hello_message(b"contoso.sharepoint.com", 600));
    let seg = tcp(PC, 40010, SRV, 443, &whole, false);
    assert_eq!(h.send(&seg, Direction::Upload).1, "sni");
    assert_eq!(h.used(), 0);

    let split = tls_record(&hello_message(b"contoso.sharepoint.com", 2000));
    let (seg1, seg2) = (
        tcp(PC, 40011, SRV, 443, &split[..1400], false),
        tcp(PC, 40011, SRV, 443, &split[1400..], false),
    );
    let refusals = |h: &mut Harness, frame: &[u8]| {
        let pkt = PacketMeta::parse(frame);
        let ctx = PacketCtx::new(&pkt, Direction::Upload, h.now);
        h.classifier
            .observe(&h.table, &mut h.cache, &ctx, &*h.names)
            .0
            .refused
    };
    // The flow's state, then (by the state that lives for the packet)
    // the hello's start, then the second half kept in case it is the
    // first half's that came late.
    let both = |kinds: &[Holder]| {
        let mut r = budget::Refusals::default();
        kinds.iter().for_each(|k| r.add(*k));
        r
    };
    assert_eq!(refusals(&mut h, &seg1), both(&[Holder::Flow, Holder::Tls]));
    assert_eq!(refusals(&mut h, &seg2), both(&[Holder::Flow, Holder::Tls]));
    assert_eq!(h.send(&seg2, Direction::Upload).1, "default");
    h.send(&tcp(PC, 40012, RESOLVER, 53, b"", true), Direction::Upload);
    let dns = tcp(RESOLVER, 53, PC, 40012, &[0x10, 0x00, 1, 2, 3], false);
    assert_eq!(refusals(&mut h, &dns), both(&[Holder::Flow, Holder::Dns]));
    assert_eq!(h.used(), 0);
}

/// What both data-path threads read on every packet (the verdict, then the
/// entry's id and flags) lies at least a cache line from either
/// direction's counters, which one thread writes on every packet: no line
/// holds both, whatever the entry's alignment.
#[test]
fn shared_fields_sit_a_line_away_from_each_directions_counters() {
    let pkt_frame = udp(PC, 40000, SRV, 9999, b"x", 0);
    let pkt = PacketMeta::parse(&pkt_frame);
    let (key, side) = FlowKey::of(&pkt);
    let table = ClassTable::new(&config("").flows);
    let mut cache = ClassCache::new();
    let (flow, _) = table.track(
        &mut cache,
        &key,
        side,
        &pkt,
        Direction::Upload,
        Instant::from_nanos(1),
    );
    let addr = |p: *const u8| p as usize;
    let ((up_start, up_end), (down_start, down_end)) = flow.counter_addrs();
    let (_, shared_end) = flow.shared_addrs();
    let shared_start = flow.value.verdict_addr();
    assert!(addr(up_start) < addr(shared_start) && addr(shared_end) < addr(down_start));
    assert!(
        addr(shared_start) - addr(up_end) > 64,
        "upload counters too close"
    );
    assert!(
        addr(down_start) - addr(shared_end) > 64,
        "download counters too close"
    );
    let _ = down_end;
    eprintln!("entry: {} bytes", size_of_val(flow));
}

/// Signatures that fired too eagerly (issue 16): a payload prefix whose
/// protocol has fixed message sizes claims those sizes only, and RIP's
/// ports only its multicast and broadcast addresses.
#[test]
fn eager_signatures_need_their_sizes_and_addresses() {
    let mut h = Harness::new(config(""));
    let mut app = |f: Vec<u8>| h.send(&f, Direction::Upload).2;
    // WireGuard's Handshake Initiation: type 1, three zero bytes, 148 bytes.
    let mut wg = vec![0u8; 148];
    wg[0] = 1;
    assert_eq!(
        app(udp(PC, 40000, SRV, 40001, &wg, 0)).as_deref(),
        Some("wireguard")
    );
    // The same four bytes starting a 200-byte media packet.
    let mut media = vec![0u8; 200];
    media[0] = 1;
    assert_ne!(
        app(udp(PC, 40002, SRV, 40003, &media, 0)).as_deref(),
        Some("wireguard")
    );
    // TFTP's acknowledgement of block 0 is 4 bytes; an mDNS query with id 4
    // starts with the same ones.
    assert_eq!(
        app(udp(PC, 40004, SRV, 40005, b"\0\x04\0\0", 0)).as_deref(),
        Some("tftp")
    );
    let mdns = b"\0\x04\0\0\0\x01\0\0\0\0\0\0\x05_http\x04_tcp\x05local\0\0\x0c\0\x01";
    assert_eq!(
        app(udp(PC, 5353, [224, 0, 0, 251], 5353, mdns, 0)).as_deref(),
        Some("mdns")
    );
    // RIP to its group; UDP to port 520 of a server elsewhere is not RIP.
    assert_eq!(
        app(udp(PC, 520, [224, 0, 0, 9], 520, b"\x02\x02\0\0", 0)).as_deref(),
        Some("routing")
    );
    assert_ne!(
        app(udp(PC, 40006, SRV, 520, b"hello", 0)).as_deref(),
        Some("routing")
    );
}

/// UDP no app claimed, or one known by its port alone, sent to every host
/// or to a group, is the LAN's discovery: control (issue 16). Apps keep
/// their names, and the same unknown UDP to one server stays in the
/// default category.
#[test]
fn unknown_broadcast_and_multicast_udp_is_discovery() {
    let mut h = Harness::new(config(""));
    let mut send = |f: Vec<u8>| {
        let (cat, by, app) = h.send(&f, Direction::Upload);
        (cat, by, app.unwrap_or_default())
    };
    let probe = b"{\"host_int\": 1234, \"version\": [2, 0], \"port\": 17500}";
    let got = |c: &str, b: &str, a: &str| (c.to_owned(), b.to_owned(), a.to_owned());
    // Dropbox's LAN-sync announcement to the limited broadcast address:
    // the app by its port, but control, not the app's bulk.
    assert_eq!(
        send(udp(PC, 17500, [255, 255, 255, 255], 17500, probe, 0)),
        got("control", "discovery", "dropbox")
    );
    // Unknown UDP to the same address.
    assert_eq!(
        send(udp(PC, 41002, [255, 255, 255, 255], 6667, probe, 0)),
        got("control", "discovery", "")
    );
    // A discovery probe to an administratively scoped group.
    assert_eq!(
        send(udp(PC, 41000, [239, 255, 12, 34], 9131, probe, 0)),
        got("control", "discovery", "")
    );
    // mDNS keeps its app.
    let mdns = b"\0\0\0\0\0\x01\0\0\0\0\0\0\x05_http\x04_tcp\x05local\0\0\x0c\0\x01";
    assert_eq!(
        send(udp(PC, 5353, [224, 0, 0, 251], 5353, mdns, 0)),
        got("control", "port", "mdns")
    );
    // The same bytes to a server: nothing says what it is.
    assert_eq!(send(udp(PC, 41001, SRV, 9131, probe, 0)).1, "default");
    // To the subnet's broadcast address, which only the frame's
    // broadcast MAC tells from a host's.
    let mut subnet = udp(PC, 17500, [192, 168, 1, 255], 17500, probe, 0);
    subnet[..6].copy_from_slice(&[0xff; 6]);
    assert_eq!(send(subnet), got("control", "discovery", "dropbox"));
    let unicast = udp(PC, 17501, [192, 168, 1, 255], 17500, probe, 0);
    assert_eq!(send(unicast).1, "port");
}

#[test]
fn group_addresses_are_told_from_unicast() {
    use super::verdict::is_group as g;
    let v4 = |a: [u8; 4]| u128::from(std::net::Ipv4Addr::from(a).to_ipv6_mapped());
    let v6 = |s: &str| u128::from(s.parse::<std::net::Ipv6Addr>().unwrap());
    assert!(g(v4([255, 255, 255, 255])));
    assert!(g(v4([224, 0, 0, 251])));
    assert!(g(v4([239, 255, 255, 250])));
    assert!(!g(v4([192, 168, 1, 255])));
    assert!(!g(v4([198, 18, 0, 1])));
    assert!(!g(v4([240, 0, 0, 1])));
    assert!(g(v6("ff02::c")));
    assert!(!g(v6("fe80::1")));
    assert!(!g(v6("2001:db8::1")));
    // An IPv6 address whose low bits look like an IPv4 group is not one.
    assert!(!g(v6("2001:db8::e000:1")));
}

/// A plain-HTTP exchange on port 80 to a server the catalog does not
/// name: the client's SYN, `request`, then the server's `response` (if
/// any). Returns (category, decided_by, app) after each packet with a
/// payload, and whether the flow was settled after the request.
fn http_exchange(
    h: &mut Harness,
    port: u16,
    request: &[u8],
    response: Option<&[u8]>,
) -> (Vec<(String, String, Option<String>)>, bool) {
    let syn = tcp(PC, port, SRV, 80, b"", true);
    h.send(&syn, Direction::Upload);
    let mut out = vec![h.send(&tcp(PC, port, SRV, 80, request, false), Direction::Upload)];
    let (key, _) = FlowKey::of(&PacketMeta::parse(&syn));
    let settled = h.table.get(&key, |f| f.value.lock().settled).unwrap();
    if let Some(r) = response {
        out.push(h.send(&tcp(SRV, 80, PC, port, r, false), Direction::Download));
    }
    (out, settled)
}

fn want(cat: &str, by: &str, app: &str) -> (String, String, Option<String>) {
    (cat.into(), by.into(), Some(app.into()))
}

/// The catalog's HTTP signatures: a playlist's path, a WebDAV method and
/// an update agent's User-Agent name the app from the request alone; the
/// response's Content-Type names it when the request did not.
#[test]
fn http_requests_and_responses_name_apps_on_unknown_hosts() {
    let mut h = Harness::new(config(""));
    let (got, settled) = http_exchange(
        &mut h,
        41000,
        b"GET /live/index.m3u8?t=1 HTTP/1.1\r\nHost: media.example.net\r\nUser-Agent: AppleCoreMedia/1.0\r\n\r\n",
        None,
    );
    assert_eq!(got[0], want("streaming", "http", "http-streaming"));
    assert!(settled, "a request that names its app settles the flow");

    let (got, _) = http_exchange(
        &mut h,
        41001,
        b"PROPFIND /remote.php/dav/files/anna/ HTTP/1.1\r\nHost: cloud.example.org\r\nDepth: 1\r\n\r\n",
        None,
    );
    assert_eq!(got[0], want("business", "http", "webdav"));

    let (got, _) = http_exchange(
        &mut h,
        41002,
        b"GET /filestreamingservice/files/abc?P1=1 HTTP/1.1\r\nHost: 203.0.113.9\r\nUser-Agent: Microsoft-Delivery-Optimization/10.0\r\n\r\n",
        None,
    );
    assert_eq!(got[0], want("bulk", "http", "windows-update"));

    let (got, _) = http_exchange(
        &mut h,
        41003,
        b"GET /debian/pool/main/x/x_1.0_amd64.DEB HTTP/1.1\r\nHost: mirror.example.edu\r\nUser-Agent: Wget/1.21\r\n\r\n",
        None,
    );
    assert_eq!(got[0], want("bulk", "http", "package-downloads"));

    // Nothing in the request: the response says what the flow carries.
    let (got, settled) = http_exchange(
        &mut h,
        41004,
        b"GET /watch/v?id=7 HTTP/1.1\r\nHost: videos.example.com\r\n\r\n",
        Some(b"HTTP/1.1 200 OK\r\nContent-Type: video/mp4\r\nContent-Length: 9000000\r\n\r\n\0\0\0\x20ftypisom"),
    );
    assert!(!settled, "the flow waits for the response's headers");
    assert_eq!(got[0].0, "browsing");
    assert_eq!(got[1], want("streaming", "http", "http-streaming"));

    // A page: browsing, by default, once the response is read.
    let (got, _) = http_exchange(
        &mut h,
        41005,
        b"GET /index.html HTTP/1.1\r\nHost: www.example.com\r\n\r\n",
        Some(b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<html>"),
    );
    assert_eq!(got[1], ("browsing".into(), "default".into(), None));
    assert_eq!(h.used(), 0, "every flow settled and gave its state back");
}

/// A host the catalog names keeps its app whatever the request fetches
/// (a host match beats every signature), and its flow settles on the
/// request as it always did: no wait for a response.
#[test]
fn a_named_host_beats_http_signatures() {
    let mut h = Harness::new(config(""));
    let (got, settled) = http_exchange(
        &mut h,
        42000,
        b"GET /sites/team/video/index.m3u8 HTTP/1.1\r\nHost: contoso.sharepoint.com\r\nUser-Agent: Microsoft BITS/7.8\r\n\r\n",
        None,
    );
    assert_eq!(got[0], want("business", "http-host", "sharepoint"));
    assert!(settled);
    // The Host line in the first segment: settled at once, the rest of the
    // headers not waited for.
    let (got, settled) = http_exchange(
        &mut h,
        42001,
        b"GET /a.m3u8 HTTP/1.1\r\nHost: contoso.sharepoint.com\r\nAccept: */*\r\n",
        None,
    );
    assert_eq!(got[0], want("business", "http-host", "sharepoint"));
    assert!(settled);
}

/// A request whose headers span segments, then a response whose headers
/// do: each is buffered within the DPI budget, then freed.
#[test]
fn split_http_headers_are_read_within_the_budget() {
    let mut h = Harness::new(config(""));
    let syn = tcp(PC, 43000, SRV, 80, b"", true);
    h.send(&syn, Direction::Upload);
    let req: &[u8] = b"GET /v/seg-0001.bin HTTP/1.1\r\nHost: edge.example.net\r\nUser-Agent: Debian APT-HTTP/1.3 (2.6.1)\r\n\r\n";
    let (a, b) = req.split_at(40);
    h.send(&tcp(PC, 43000, SRV, 80, a, false), Direction::Upload);
    assert!(h.dpi_bytes(&syn) >= size_of::<DpiState>() + 40);
    assert_eq!(h.used(), h.dpi_bytes(&syn));
    let got = h.send(&tcp(PC, 43000, SRV, 80, b, false), Direction::Upload);
    assert_eq!(got, want("bulk", "http", "linux-updates"));
    assert_eq!(h.used(), 0);

    let syn = tcp(PC, 43001, SRV, 80, b"", true);
    h.send(&syn, Direction::Upload);
    h.send(
        &tcp(
            PC,
            43001,
            SRV,
            80,
            b"GET /x HTTP/1.1\r\nHost: edge.example.net\r\n\r\n",
            false,
        ),
        Direction::Upload,
    );
    let resp: &[u8] =
        b"HTTP/1.1 200 OK\r\nServer: edge\r\nContent-Type: application/dash+xml\r\n\r\n<MPD>";
    let (a, b) = resp.split_at(30);
    let got = h.send(&tcp(SRV, 80, PC, 43001, a, false), Direction::Download);
    assert_eq!(got.0, "browsing");
    assert!(h.dpi_bytes(&syn) >= size_of::<DpiState>() + 30);
    assert_eq!(h.used(), h.dpi_bytes(&syn));
    let got = h.send(&tcp(SRV, 80, PC, 43001, b, false), Direction::Download);
    assert_eq!(got, want("streaming", "http", "http-streaming"));
    assert_eq!(h.used(), 0);
}

/// Without HTTP signatures in the catalog, a plain-HTTP flow settles on
/// its Host line as it always did: nothing waits for its response.
#[test]
fn without_http_signatures_nothing_waits() {
    let mut cfg = config("");
    Arc::make_mut(&mut cfg.catalog)
        .apps
        .retain(|a| !a.signatures.iter().any(|s| s.has_http()));
    let mut h = Harness::new(cfg);
    let (got, settled) = http_exchange(
        &mut h,
        44000,
        b"GET /live/index.m3u8 HTTP/1.1\r\nHost: media.example.net\r\n\r\n",
        None,
    );
    assert_eq!(got[0], ("browsing".into(), "default".into(), None));
    assert!(settled);
}
