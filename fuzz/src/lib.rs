//! The fuzz harnesses of qosd: one function per cargo-fuzz target (each
//! `fuzz_targets/NAME.rs` calls `NAME`). Besides "no panic, no hang", each
//! checks what must hold for any input (see the doc of each function).
//!
//! This file is also compiled into `tests/fuzz_regressions.rs` (with
//! `#[path]`), so every finding is replayed by plain `cargo test` through
//! exactly these checks. It may therefore use only what the qosd package
//! itself depends on (its dependencies and dev-dependencies).

#![allow(clippy::missing_panics_doc)]

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, LazyLock};

use qosd::classify::dpi::{Parse, dns, dtls, http, quic, rpc, rtp, stun, tls, tls_server};
use qosd::classify::{ClassCache, ClassTable, PacketCtx};
use qosd::classify::{Classifier, NoNames};
use qosd::config::{Config, DEFAULT_CONFIG_TOML, Direction, Env, load_catalog_str, load_str};
use qosd::engine::frame::{Frame, FramePool};
use qosd::engine::{DirectionEngine, Shared};
use qosd::flow::FlowKey;
use qosd::packet::{FrameKind, IpVersion, PacketMeta, rewrite};
use qosd::shaper::{LinkQueue, Shaper, ShaperConfig};
use qosd::time::Instant;

// ---------------------------------------------------------------- input

/// Reads length-prefixed records: `[tag][len lo][len hi][len bytes]`; a
/// record longer than what is left takes the rest.
struct Records<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Records<'a> {
    type Item = (u8, &'a [u8]);

    fn next(&mut self) -> Option<(u8, &'a [u8])> {
        let (&tag, rest) = self.rest.split_first()?;
        let (len, rest) = match rest {
            [a, b, rest @ ..] => (usize::from(u16::from_le_bytes([*a, *b])), rest),
            _ => (rest.len(), &[][..]),
        };
        let (body, rest) = rest.split_at(len.min(rest.len()));
        self.rest = rest;
        Some((tag, body))
    }
}

fn records(data: &[u8]) -> Records<'_> {
    Records { rest: data }
}

/// True when `part` lies inside `whole` (a borrowed sub-slice).
fn within(part: &[u8], whole: &[u8]) -> bool {
    let (p, w) = (part.as_ptr() as usize, whole.as_ptr() as usize);
    part.is_empty() || (p >= w && p + part.len() <= w + whole.len())
}

// ---------------------------------------------------------------- configurations

/// The embedded default configuration, without environment overrides.
pub static DEFAULT: LazyLock<Config> = LazyLock::new(|| {
    load_str("fuzz-default.toml", DEFAULT_CONFIG_TOML, &Env::None).expect("default config")
});

/// Configurations the engine targets run with (chosen by the input): the
/// default, a tiny flow table (eviction), ECN and a slow link, rules.
static CONFIGS: LazyLock<Vec<Config>> = LazyLock::new(|| {
    let tiny = DEFAULT_CONFIG_TOML.replace("max_flows = 65536", "max_flows = 16");
    assert_ne!(
        tiny, DEFAULT_CONFIG_TOML,
        "max_flows not found in the default"
    );
    let slow = format!(
        "{}\n{}",
        DEFAULT_CONFIG_TOML
            .replace("upload = \"18 Mbit\"", "upload = \"64 kbit\"")
            .replace("download = \"46 Mbit\"", "download = \"96 kbit\"")
            .replace("max_flows = 65536", "max_flows = 64")
            .replace("trust_dscp = false", "trust_dscp = true")
            .replace("name = \"browsing\"", "name = \"browsing\"\necn = true"),
        RULES
    );
    // The default, but a flow table preallocated for 1024 flows rather than
    // 65536 (an input holds a few hundred frames: nothing is evicted either
    // way), which makes each run several times cheaper.
    let default = DEFAULT_CONFIG_TOML.replace("max_flows = 65536", "max_flows = 1024");
    let default = load_str("fuzz-default.toml", &default, &Env::None).expect("default config");
    // The default with its categories in reverse order: a reload to or
    // from it moves every category's queue and counters to another index.
    let mut doc: toml::Table = toml::from_str(&default.to_toml()).expect("printed config");
    if let Some(cats) = doc.get_mut("category").and_then(|c| c.as_array_mut()) {
        cats.reverse();
    }
    let reversed = toml::to_string(&doc).expect("reversed config");
    vec![
        default,
        load_str("fuzz-tiny.toml", &tiny, &Env::None).expect("tiny config"),
        load_str("fuzz-slow.toml", &slow, &Env::None).expect("slow config"),
        load_str("fuzz-reversed.toml", &reversed, &Env::None).expect("reversed config"),
    ]
});

/// Admin rules of every kind, appended to the slow configuration.
const RULES: &str = r#"
[[rule]]
name = "erp"
category = "business"
hosts = ["*.erp.example.com", "erp.example.net"]

[[rule]]
name = "voip-ports"
category = "voice"
protocol = "udp"
ports = ["10000-20000"]

[[rule]]
name = "backup"
category = "bulk"
dst_cidrs = ["203.0.113.0/24", "2001:db8::/32"]
direction = "upload"

[[rule]]
name = "phones"
vlan = 20
dscp = "EF"
category = "voice"

[[rule]]
name = "teams"
apps = ["teams-audio"]
category = "voice"
"#;

// ---------------------------------------------------------------- packet

fn ipv4_header_sum_ok(frame: &[u8], off: usize) -> Option<bool> {
    let ihl = usize::from(frame.get(off)? & 0x0f) * 4;
    let hdr = frame.get(off..off + ihl.max(20))?;
    let mut sum = 0u32;
    for w in hdr.chunks(2) {
        sum += u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    Some(sum == 0xffff)
}

/// Ones-complement sum of the TCP/UDP pseudo header and segment of an
/// untunnelled frame: 0xffff when the L4 checksum is right.
fn l4_sum(frame: &[u8]) -> Option<u16> {
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};
    let s = SlicedPacket::from_ethernet(frame).ok()?;
    let (proto, l4) = match &s.transport {
        Some(TransportSlice::Tcp(t)) => (6u8, t.slice()),
        Some(TransportSlice::Udp(u)) => (17u8, u.slice()),
        _ => return None,
    };
    let mut bytes = Vec::new();
    match &s.net {
        Some(NetSlice::Ipv4(ip)) => {
            bytes.extend(ip.header().source());
            bytes.extend(ip.header().destination());
        }
        Some(NetSlice::Ipv6(ip)) => {
            bytes.extend(ip.header().source());
            bytes.extend(ip.header().destination());
        }
        _ => return None,
    }
    bytes.extend([0, proto]);
    bytes.extend(u16::try_from(l4.len()).ok()?.to_be_bytes());
    bytes.extend(l4);
    let mut sum = 0u64;
    for w in bytes.chunks(2) {
        sum += u64::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    Some(sum as u16)
}

/// `PacketMeta::parse` on one frame, then the egress rewrites.
///
/// Checks: the view points into the frame; after `set_dscp`/`mark_ce`
/// report success the frame reads back with the new DSCP/CE and an IPv4
/// header checksum that was right stays right; `complete_l4_checksum`
/// leaves a correct, idempotent checksum; the rewrites at arbitrary
/// offsets (as far as a `Frame` can hold one: `u16`) never panic.
pub fn packet(data: &[u8]) {
    let (knobs, frame) = match data.split_first() {
        Some((&k, f)) => (k, f),
        None => (0, data),
    };
    let meta = PacketMeta::parse(frame);
    // The hand-written fast path must agree with etherparse's general path
    // on every frame, or it would classify some frames differently.
    assert_eq!(
        meta,
        PacketMeta::parse_general(frame),
        "fast and general parse differ"
    );
    assert_eq!(meta.frame_len, frame.len());
    assert!(within(meta.payload, frame), "payload outside the frame");
    let _ = (meta.src_ip(), meta.dst_ip(), meta.has_ports());
    let (key, side) = FlowKey::of(&meta);
    let _ = key.endpoint(side);
    // The doorbell's key (what the XDP program builds from the same bytes;
    // `tests/lab_interfaces.rs` checks the two agree): UDP, its version, and
    // zeros wherever the version has no address bytes.
    if let Some(bell) = qosd::packet::bell::bell_key(frame) {
        assert_eq!((bell[5], bell[6], bell[7]), (17, 0, 0));
        match bell[4] {
            4 => assert!(bell[12..24].iter().chain(&bell[28..]).all(|b| *b == 0)),
            6 => {}
            v => panic!("doorbell key of IP version {v}"),
        }
    }
    if meta.kind == FrameKind::Ip {
        assert!(meta.ip_offset < frame.len());
        let dscp = knobs & 0x3f;
        let mut copy = frame.to_vec();
        let v4_ok = meta.ip_version == IpVersion::V4
            && ipv4_header_sum_ok(frame, meta.ip_offset) == Some(true);
        if rewrite::set_dscp(&mut copy, meta.ip_offset, meta.ip_version, dscp) {
            let again = PacketMeta::parse(&copy);
            assert_eq!(again.kind, FrameKind::Ip);
            assert_eq!(again.dscp, dscp, "DSCP not written");
            assert_eq!(again.ecn, meta.ecn, "ECN changed by set_dscp");
            if v4_ok {
                assert_eq!(ipv4_header_sum_ok(&copy, meta.ip_offset), Some(true));
            }
        }
        let was_ect = rewrite::ecn_capable(&copy, meta.ip_offset, meta.ip_version);
        let marked = rewrite::mark_ce(&mut copy, meta.ip_offset, meta.ip_version);
        assert_eq!(was_ect, marked, "mark_ce disagrees with ecn_capable");
        if marked {
            assert_eq!(PacketMeta::parse(&copy).ecn, 3, "CE not written");
            if v4_ok {
                assert_eq!(ipv4_header_sum_ok(&copy, meta.ip_offset), Some(true));
            }
        }
    }
    // Partial checksum completion (a local sender's offloaded frame).
    let mut copy = frame.to_vec();
    if rewrite::complete_l4_checksum(&mut copy) {
        let once = copy.clone();
        assert!(rewrite::complete_l4_checksum(&mut copy));
        assert_eq!(once, copy, "complete_l4_checksum is not idempotent");
        if let Some(sum) = l4_sum(&copy) {
            assert_eq!(sum, 0xffff, "wrong L4 checksum");
        }
    }
    // Arbitrary offsets and versions.
    let off = usize::from(u16::from_le_bytes([knobs, *frame.first().unwrap_or(&0)]));
    for v in [IpVersion::V4, IpVersion::V6] {
        let mut copy = frame.to_vec();
        let _ = rewrite::set_dscp(&mut copy, off % (frame.len() + 64), v, knobs);
        let _ = rewrite::mark_ce(&mut copy, off, v);
        let _ = rewrite::ecn_capable(&copy, off, v);
    }
}

// ---------------------------------------------------------------- engine

/// Packets a shaper counted as arrived, removed categories included.
fn counted_arrivals(s: &Shaper<Frame>) -> u64 {
    s.counters().iter().map(|c| c.arrived.packets).sum::<u64>() + s.retired().arrived.packets
}

const STEPS_NS: [u64; 8] = [
    0,
    1_000,
    100_000,
    1_000_000,
    10_000_000,
    100_000_000,
    1_000_000_000,
    600_000_000_000,
];

/// Both directions of the whole engine (parse, flow table, classifier, DSCP
/// marking, shaper) on a sequence of frames. Input: one byte choosing the
/// configuration, then records `[flags][len u16 LE][frame]`; flags bit 0
/// is the direction, bits 1-3 the time step before the frame, bits 4-5 an
/// action after it (1: expire idle flows, 2: reload the next
/// configuration, 3: let the queues drain).
///
/// Checks: every frame that goes in comes out, sent or dropped, once the
/// queues are drained (and draining ends); the shaper never sends a frame
/// before its wake-up time.
pub fn engine(data: &[u8]) {
    let Some((&pick, data)) = data.split_first() else {
        return;
    };
    let configs = &*CONFIGS;
    let mut current = usize::from(pick) % configs.len();
    let cfg = &configs[current];
    let shared = Arc::new(Shared::new(cfg));
    let mut engines = [Direction::Upload, Direction::Download].map(|d| {
        DirectionEngine::new(
            d,
            Arc::clone(&shared),
            Shaper::<Frame>::new(&ShaperConfig::from_config(cfg, d)),
        )
    });
    let mut pool = FramePool::new(9216, 0);
    let mut now = Instant::from_nanos(1_000_000_000);
    let (mut arrived, mut sent, mut dropped) = (0u64, 0u64, 0u64);
    let drain = |e: &mut DirectionEngine<Shaper<Frame>>,
                 now: Instant,
                 pool: &mut FramePool,
                 sent: &mut u64,
                 dropped: &mut u64| {
        while let Some(f) = e.dequeue(now) {
            *sent += 1;
            pool.put(f.into_buffer());
        }
        e.drain_dropped(|f, _| {
            *dropped += 1;
            pool.put(f.into_buffer());
        });
    };
    for (flags, frame) in records(data) {
        now = now.add_nanos(STEPS_NS[usize::from(flags >> 1) & 7]);
        let e = &mut engines[usize::from(flags & 1)];
        e.ingress(Frame::new(pool.get(), frame), now);
        arrived += 1;
        match (flags >> 4) & 3 {
            1 => {
                shared.table.expire(now);
                shared.table.trim();
            }
            2 => {
                current = (current + 1) % configs.len();
                shared.reload(&configs[current]);
                for e in &mut engines {
                    let before = counted_arrivals(e.queue());
                    if e.refresh(ShaperConfig::from_config).is_some() {
                        // Moving or removing categories neither loses nor
                        // double-counts an arrival (metrics never go back).
                        assert_eq!(counted_arrivals(e.queue()), before);
                    }
                }
            }
            3 => {
                for e in &mut engines {
                    if let Some(t) = e.next_wakeup() {
                        now = now.max(t);
                    }
                }
            }
            _ => {}
        }
        for e in &mut engines {
            drain(e, now, &mut pool, &mut sent, &mut dropped);
        }
    }
    // Drain everything: time only moves forward, each wake-up must make
    // progress within a bounded number of rounds.
    for e in &mut engines {
        let mut rounds = 0u32;
        while let Some(t) = e.next_wakeup() {
            rounds += 1;
            assert!(rounds < 200_000, "the queue does not drain");
            now = now.max(t);
            drain(e, now, &mut pool, &mut sent, &mut dropped);
        }
        assert!(e.queue().is_empty(), "no wake-up but frames queued");
        assert_eq!(e.queue().backlog().packets, 0);
    }
    assert_eq!(
        sent + dropped,
        arrived,
        "frames lost: sent {sent} + dropped {dropped} != arrived {arrived}"
    );
    let _ = engines.map(|e| e.counters().clone());
}

/// The offline chain (`qosd classify`): parse, flow table with the capture
/// direction heuristic, classifier with DNS snooping, then the per-flow
/// report. Input: records `[time step][len][frame]`.
///
/// Checks: flows count no more packets than arrived; verdicts and reports
/// name a category of the configuration.
pub fn classify(data: &[u8]) {
    let cfg = &CONFIGS[2];
    // Immutable once built (flows hold the state): one for all runs.
    static CLASSIFIER: LazyLock<Classifier> = LazyLock::new(|| Classifier::new(&CONFIGS[2], 1));
    let classifier = &*CLASSIFIER;
    // As offline: nothing evicted (a few hundred frames at most here).
    let mut cache = ClassCache::new();
    let table = ClassTable::new(&qosd::config::Flows {
        max_flows: 65_536,
        ..cfg.flows.clone()
    });
    let names = dns::DnsCache::new(1024);
    let mut now = Instant::from_nanos(1);
    let mut ip_frames = 0u64;
    for (step, frame) in records(data) {
        now = now.add_nanos(STEPS_NS[usize::from(step) & 7]);
        let pkt = PacketMeta::parse(frame);
        if pkt.kind != FrameKind::Ip {
            continue;
        }
        ip_frames += 1;
        let (key, side) = FlowKey::of(&pkt);
        let initiator = table.get(&key, |f| f.initiator()).unwrap_or(side);
        let dir = qosd::offline::capture_direction(&pkt, side == initiator);
        let ctx = PacketCtx::new(&pkt, dir, now);
        let (v, _) = classifier.observe(&table, &mut cache, &ctx, &names);
        assert!(cfg.category(v.category).is_some(), "unknown category");
        let _ = classifier.ack_category(&pkt);
    }
    let mut counted = 0u64;
    table.for_each(|key, flow| {
        let r = qosd::offline::describe_flow(key, flow, classifier, cfg);
        assert!(cfg.category.iter().any(|c| c.name == r.category));
        assert!(r.packets >= 1, "a flow without packets");
        counted += r.packets;
    });
    // A SYN reusing a closed flow's 5-tuple starts it afresh (counters too).
    assert!(
        counted <= ip_frames,
        "flows count {counted} of {ip_frames} frames"
    );
    let _ = NoNames;
}

// ---------------------------------------------------------------- TLS

/// Every TLS ClientHello entry point; they must agree with each other.
pub fn tls(data: &[u8]) {
    let parsed = tls::client_hello(data);
    let len = tls::hello_len(data);
    if let Parse::Found(hello) = parsed {
        let n = len.expect("a found ClientHello has a length");
        assert!(n <= data.len());
        assert_eq!(
            tls::client_hello(&data[..n]),
            parsed,
            "trailing bytes matter"
        );
        if let Some(sni) = hello.sni {
            assert_eq!(tls::plausible_host(sni.as_bytes()), Some(sni));
            assert!(within(sni.as_bytes(), data) || !sni.is_empty());
        }
    }
    if let Some(n) = len {
        assert!(n >= 9);
    }
    if let Parse::Found(h) = tls::client_hello_message(data)
        && let Some(sni) = h.sni
    {
        assert_eq!(tls::plausible_host(sni.as_bytes()), Some(sni));
    }
    let _ = tls::parse_client_hello_body(data);
    if let Some(h) = tls::plausible_host(data) {
        assert_eq!(h.as_bytes(), data);
    }
    if data.len() > 9 {
        let _ = tls::client_hello_message(&data[5..]);
        let _ = tls::parse_client_hello_body(&data[9..]);
    }
}

// ---------------------------------------------------------------- QUIC

/// Wire values of the versions the reassembler knows, with their Initial
/// packet type and HKDF label prefix and salt.
const QUIC_VERSIONS: [(u32, u8, &str, [u8; 20]); 5] = [
    (
        0x0000_0001,
        0,
        "quic",
        [
            0x38, 0x76, 0x2c, 0xf7, 0xf5, 0x59, 0x34, 0xb3, 0x4d, 0x17, 0x9a, 0xe6, 0xa4, 0xc8,
            0x0c, 0xad, 0xcc, 0xbb, 0x7f, 0x0a,
        ],
    ),
    (
        0x6b33_43cf,
        1,
        "quicv2",
        [
            0x0d, 0xed, 0xe3, 0xde, 0xf7, 0x00, 0xa6, 0xdb, 0x81, 0x93, 0x81, 0xbe, 0x6e, 0x26,
            0x9d, 0xcb, 0xf9, 0xbd, 0x2e, 0xd9,
        ],
    ),
    (
        0xff00_001d,
        0,
        "quic",
        [
            0xaf, 0xbf, 0xec, 0x28, 0x99, 0x93, 0xd2, 0x4c, 0x9e, 0x97, 0x86, 0xf1, 0x9c, 0x61,
            0x11, 0xe0, 0x43, 0x90, 0xa8, 0x99,
        ],
    ),
    (
        0xff00_001b,
        0,
        "quic",
        [
            0xc3, 0xee, 0xf7, 0x12, 0xc7, 0x2e, 0xbb, 0x5a, 0x11, 0xa7, 0xd2, 0x43, 0x2b, 0xb4,
            0x63, 0x65, 0xbe, 0xf9, 0xf5, 0x02,
        ],
    ),
    (
        0x5430_3531,
        0,
        "quic",
        [
            0x7a, 0x4e, 0xde, 0xf4, 0xe7, 0xcc, 0xee, 0x5f, 0xa4, 0x50, 0x6c, 0x19, 0x12, 0x4f,
            0xc8, 0xcc, 0xda, 0x6e, 0x03, 0x3d,
        ],
    ),
];

fn expand_label(prk: &ring::hkdf::Prk, label: &[u8], out: &mut [u8]) {
    struct Len(usize);
    impl ring::hkdf::KeyType for Len {
        fn len(&self) -> usize {
            self.0
        }
    }
    let out_len = (out.len() as u16).to_be_bytes();
    let label_len = [(label.len() + 6) as u8];
    let info: [&[u8]; 5] = [&out_len, &label_len, b"tls13 ", label, &[0]];
    prk.expand(&info, Len(out.len()))
        .expect("hkdf expand")
        .fill(out)
        .expect("hkdf fill");
}

/// A client Initial packet of version `v` (index into [`QUIC_VERSIONS`])
/// carrying `frames`, protected with the keys of `key_dcid` and sent to
/// `wire_dcid` (RFC 9001 section 5; the inverse of what qosd decrypts).
pub fn quic_protect(
    v: usize,
    key_dcid: &[u8],
    wire_dcid: &[u8],
    pn: u32,
    frames: &[u8],
) -> Vec<u8> {
    use ring::aead::quic::{AES_128, HeaderProtectionKey};
    use ring::aead::{AES_128_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
    use ring::hkdf;
    let (wire, initial_type, prefix, salt) = &QUIC_VERSIONS[v % QUIC_VERSIONS.len()];
    let initial = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(key_dcid);
    let mut secret = [0u8; 32];
    expand_label(&initial, b"client in", &mut secret);
    let client = hkdf::Prk::new_less_safe(hkdf::HKDF_SHA256, &secret);
    let (mut key, mut iv, mut hp) = ([0u8; 16], [0u8; 12], [0u8; 16]);
    expand_label(&client, format!("{prefix} key").as_bytes(), &mut key);
    expand_label(&client, format!("{prefix} iv").as_bytes(), &mut iv);
    expand_label(&client, format!("{prefix} hp").as_bytes(), &mut hp);

    let mut p = vec![0xc3 | initial_type << 4];
    p.extend(wire.to_be_bytes());
    p.push(wire_dcid.len() as u8);
    p.extend(wire_dcid);
    p.extend([0, 0]); // no SCID, no token
    let len = 4 + frames.len() + 16;
    p.extend((0x4000 | (len as u16 & 0x3fff)).to_be_bytes());
    let pn_offset = p.len();
    p.extend(pn.to_be_bytes());
    let mut payload = frames.to_vec();
    let aead = LessSafeKey::new(UnboundKey::new(&AES_128_GCM, &key).expect("aead key"));
    let mut nonce = iv;
    for (n, b) in nonce[4..].iter_mut().zip(u64::from(pn).to_be_bytes()) {
        *n ^= b;
    }
    let tag = aead
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(&p[..]),
            &mut payload,
        )
        .expect("seal");
    p.extend(payload);
    p.extend(tag.as_ref());
    let hp = HeaderProtectionKey::new(&AES_128, &hp).expect("hp key");
    let mask = hp
        .new_mask(&p[pn_offset + 4..pn_offset + 20])
        .expect("hp mask");
    p[0] ^= mask[0] & 0x0f;
    for i in 0..4 {
        p[pn_offset + i] ^= mask[1 + i];
    }
    p
}

/// The QUIC Initial reassembler and the gQUIC CHLO reader on a sequence of
/// datagrams of one flow.
///
/// Input: a mode byte. Even: records `[_][len][datagram]` taken as they
/// are. Odd: a version byte, a DCID (length byte, at most 20 bytes), then
/// records `[flags][len][frames]` that the harness encrypts into client
/// Initial packets (flags bit 0: coalesce with the previous packet in one
/// datagram; bit 1: send to another DCID with the same keys; bits 2-7: the
/// packet number), so the fuzzer explores the decrypted side: frame walk,
/// CRYPTO reassembly and the ClientHello inside.
///
/// Checks: `Found` is final (repeated on later datagrams with the same
/// SNI); a version is known once anything was decrypted.
pub fn quic(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let datagrams: Vec<Vec<u8>> = if mode & 1 == 0 {
        records(rest).map(|(_, d)| d.to_vec()).collect()
    } else {
        let [v, dcid_len, rest @ ..] = rest else {
            return;
        };
        let n = usize::from(*dcid_len % 21).min(rest.len());
        let (dcid, rest) = rest.split_at(n);
        let mut out: Vec<Vec<u8>> = Vec::new();
        for (flags, frames) in records(rest) {
            let wire: &[u8] = if flags & 2 != 0 { &[0x5a; 5] } else { dcid };
            let p = quic_protect(usize::from(*v), dcid, wire, u32::from(flags >> 2), frames);
            match out.last_mut() {
                Some(last) if flags & 1 != 0 => last.extend(p),
                _ => out.push(p),
            }
        }
        out
    };
    let mut r = quic::InitialReassembler::new();
    let mut found: Option<Option<String>> = None;
    for d in &datagrams {
        let _ = quic::is_initial(d);
        if let Some(sni) = quic::gquic_chlo_sni(d) {
            assert!(within(sni.as_bytes(), d));
        }
        let decrypted = match r.push_datagram(d) {
            Parse::Found(h) => {
                let sni = h.sni.map(str::to_owned);
                if let Some(s) = &sni {
                    assert_eq!(tls::plausible_host(s.as_bytes()), Some(s.as_str()));
                }
                if let Some(before) = &found {
                    assert_eq!(before, &sni, "the SNI changed after Found");
                }
                found = Some(sni);
                true
            }
            Parse::NeedMore => {
                assert!(found.is_none(), "NeedMore after Found");
                true
            }
            Parse::NotThis => {
                assert!(found.is_none(), "NotThis after Found");
                false
            }
        };
        if decrypted {
            assert!(r.version().is_some(), "decrypted but no version");
        }
        let _ = format!("{r:?}");
    }
}

// ---------------------------------------------------------------- DNS

/// DNS responses (UDP and TCP framing), query names, and the snooping
/// cache.
///
/// Checks: after a response is learned, every address it maps resolves
/// to the name its last record gave it; a tiny cache stays within its
/// capacity; addresses borrow from the message.
pub fn dns(data: &[u8]) {
    let _ = dns::query_name(data);
    let _ = dns::DnsHeader::parse(data)
        .map(|h| (h.is_response(), h.opcode(), h.truncated(), h.rcode()));
    let now = Instant::from_nanos(5_000_000_000);
    if let Some(resp) = dns::parse_response(data) {
        let _ = resp
            .question_name()
            .map(|n| (n.as_str().len(), n.len(), n.is_empty()));
        let mut expected: HashMap<IpAddr, String> = HashMap::new();
        for a in resp.addresses() {
            assert!(!a.name.is_empty() || resp.question_name().is_some());
            expected.insert(a.ip, a.name.to_owned());
        }
        let cache = dns::DnsCache::new(16 * 64 * 2);
        let n = cache.insert_response(&resp, now);
        assert_eq!(n, resp.addresses().count());
        for (ip, name) in &expected {
            assert_eq!(cache.lookup(*ip, now).as_deref(), Some(name.as_str()));
        }
        assert!(cache.len() <= cache.capacity());
        // A tiny cache under the same answers, repeated over time.
        let tiny = dns::DnsCache::with_ttl_bounds(
            3,
            std::time::Duration::from_secs(1),
            std::time::Duration::from_secs(5),
        );
        for i in 0..4u64 {
            let t = now.add_nanos(i * 2_000_000_000);
            tiny.insert_response(&resp, t);
            assert!(tiny.len() <= tiny.capacity());
            for ip in expected.keys() {
                let _ = tiny.lookup(*ip, t);
            }
        }
        let _ = (tiny.evictions(), tiny.expired_removed());
    }
    match dns::parse_response_tcp(data) {
        Parse::Found(resp) => {
            for a in resp.addresses() {
                let _ = a.ttl;
            }
        }
        Parse::NeedMore | Parse::NotThis => {}
    }
    use qosd::classify::NameLookup;
    let cache = dns::DnsCache::new(64);
    cache.learn(data, now);
}

// ---------------------------------------------------------------- HTTP

/// The HTTP request-start check and Host reader.
pub fn http(data: &[u8]) {
    let start = http::is_http_request_start(data);
    match http::request_host(data) {
        Parse::Found(host) => {
            assert!(start || !data.is_empty());
            assert!(!host.is_empty() || within(host.as_bytes(), data));
        }
        Parse::NeedMore | Parse::NotThis => {}
    }
}

// ---------------------------------------------------------------- RTP

/// RTP/RTCP demultiplexing and parsing, and the media tracker on a
/// sequence of packets. Input: records `[gap][len][payload]` (gap in
/// 0.5 ms units; 255 is 30 s; a length above 1000 counts as large).
pub fn rtp(data: &[u8]) {
    let mut tracker = rtp::MediaTracker::new();
    let mut now = Instant::from_nanos(1);
    for (gap, payload) in records(data) {
        now = now.add_nanos(if gap == 255 {
            30_000_000_000
        } else {
            u64::from(gap) * 500_000
        });
        let header = rtp::rtp_header(payload);
        match rtp::rtp_or_rtcp(payload) {
            Some(rtp::RtpOrRtcp::Rtcp(info)) => {
                let _ = (info.is_srtcp(), info.has(200));
            }
            Some(rtp::RtpOrRtcp::Rtp(h)) => {
                assert_eq!(Some(h), header, "demux and rtp_header disagree");
                let _ = rtp::static_payload_kind(h.payload_type);
            }
            None => {}
        }
        let _ = rtp::rtcp(payload);
        if let Some(&b) = payload.get(1) {
            let _ = rtp::is_rtcp_range(b);
        }
        let _ = tracker.observe(payload.len(), header.as_ref(), now);
        let _ = (tracker.kind(), tracker.verdict());
    }
}

// ---------------------------------------------------------------- STUN

/// STUN over UDP, STUN and TURN ChannelData over a TCP stream.
///
/// Checks: a stream frame takes at least a header and no more than the
/// stream; attributes tile the message.
pub fn stun(data: &[u8]) {
    if let Some(m) = stun::stun(data) {
        assert_eq!(m.len, data.len());
        let n = m.attributes().count();
        assert!(n >= usize::from(m.attribute_count) || m.classic || n <= 64);
        let _ = m.attribute(0x8022);
    }
    if let Some(c) = stun::channel_data(data) {
        assert!((0x4000..=0x4fff).contains(&c.channel));
        assert!(within(c.data, data));
    }
    let _ = stun::demux_first_byte(data.first().copied().unwrap_or(0));
    let _ = stun::classic_ok(u16::from_le_bytes([
        data.first().copied().unwrap_or(0),
        data.get(1).copied().unwrap_or(0),
    ]));
    // Walk the stream as the classifier does, message after message.
    let mut rest = data;
    for _ in 0..64 {
        match stun::stream_message(rest) {
            Parse::Found(f) => {
                assert!(f.consumed >= 20 && f.consumed <= rest.len(), "bad consumed");
                let _ = f.message.attributes().count();
                rest = &rest[f.consumed..];
            }
            _ => break,
        }
    }
    let mut rest = data;
    for _ in 0..64 {
        match stun::channel_data_stream(rest) {
            Parse::Found((c, n)) => {
                assert!(n >= 4 && n <= rest.len(), "bad ChannelData size");
                assert!(within(c.data, rest));
                rest = &rest[n..];
            }
            _ => break,
        }
    }
}

// ---------------------------------------------------------------- TLS server

/// The server-flight parser with and without scratch: scratch changes only
/// whether straddling names are read, never the verdict or the version;
/// names are plausible and borrow from the input (or the scratch); Found
/// on a prefix is final.
pub fn tls_server(data: &[u8]) {
    let plain = tls_server::server_flight(data);
    let mut scratch = vec![0u8; tls_server::SCRATCH_LEN];
    let with = tls_server::server_flight_with(data, &mut scratch);
    let names_of = |p: Parse<tls_server::ServerNames<'_>>, in_data: bool| match p {
        Parse::Found(n) => {
            let names = n.common_name.iter().chain(n.dns_names.as_slice());
            for name in names {
                let base = name.strip_prefix("*.").unwrap_or(name);
                assert_eq!(tls::plausible_host(base.as_bytes()), Some(base), "{name}");
                assert!(!in_data || within(name.as_bytes(), data), "{name}");
            }
            if let Some(best) = tls_server::best_name(&n) {
                assert!(n.common_name == Some(best) || n.dns_names.as_slice().contains(&best));
            }
            assert!(n.dns_names.as_slice().len() <= tls_server::MAX_DNS_NAMES);
            if let Some(alpn) = n.alpn {
                assert!(!in_data || within(alpn, data));
            }
            Some((n.version, n.certificate))
        }
        _ => None,
    };
    let (a, b) = (names_of(plain, true), names_of(with, false));
    match (plain, with) {
        (Parse::Found(_), Parse::Found(_)) => {
            assert_eq!(a.map(|v| v.0), b.map(|v| v.0), "version");
            // Scratch only adds a leaf that straddles records.
            assert!(!a.is_some_and(|v| v.1) || b.is_some_and(|v| v.1));
        }
        (x, y) => assert_eq!(x, y, "verdict with and without scratch"),
    }
    if let Parse::Found(half) =
        tls_server::server_flight(data.get(..data.len() / 2).unwrap_or(data))
    {
        assert_eq!(plain, Parse::Found(half), "Found is final");
    }
}

// ---------------------------------------------------------------- DTLS

/// DTLS records, handshake fragments and ClientHello.
pub fn dtls(data: &[u8]) {
    let first = dtls::dtls_record(data);
    let mut n = 0;
    for r in dtls::records(data) {
        n += 1;
        assert!(n <= data.len(), "more records than bytes");
        let _ = r.is_client_hello();
        for h in r.handshakes().take(1024) {
            let _ = (h.is_complete(), h.client_hello());
        }
    }
    if first.is_some() {
        assert!(n >= 1);
    }
    let _ = dtls::client_hello(data);
}

// ---------------------------------------------------------------- ONC RPC

/// ONC RPC call detection, datagram and record-marked stream.
pub fn rpc(data: &[u8]) {
    let _ = rpc::call_program(data, false);
    let _ = rpc::call_program(data, true);
}

// ---------------------------------------------------------------- configuration

/// A config file `[classify] apps_file` may name; the loader reads it, so
/// the harness must not let it read a device or a huge file.
fn apps_file_is_harmless(text: &str) -> bool {
    let Ok(doc) = toml::from_str::<toml::Table>(text) else {
        return !text.contains("apps");
    };
    match doc
        .get("classify")
        .and_then(|c| c.as_table())
        .and_then(|c| c.get("apps_file"))
    {
        None => true,
        Some(toml::Value::String(p)) => std::fs::metadata(p)
            .map(|m| !m.is_file() || m.len() < 1 << 20)
            .unwrap_or(true),
        Some(_) => true,
    }
}

/// What must hold for any configuration the loader accepts: it prints
/// to TOML that loads back to the same configuration (the API's live
/// changes rely on it), and the classifier and both shapers can be built
/// from it and pass packets.
pub fn check_valid_config(cfg: &Config) {
    let text = cfg.to_toml();
    let again = load_str(&cfg.source, &text, &Env::None)
        .unwrap_or_else(|e| panic!("an accepted configuration does not reload: {e}\n{text}"));
    assert!(
        again == *cfg,
        "the configuration changes when printed and loaded:\n{text}"
    );
    for c in &cfg.category {
        for d in [Direction::Upload, Direction::Download] {
            assert!(
                c.min_rate(d, &cfg.link) <= c.max_rate(d, &cfg.link),
                "min > max"
            );
        }
    }
    assert!(cfg.category.iter().any(|c| c.name == cfg.default_category));
    let _ = Classifier::new(cfg, 1);
    let mut pool = FramePool::new(2048, 0);
    for d in [Direction::Upload, Direction::Download] {
        let sc = ShaperConfig::from_config(cfg, d);
        let mut s = Shaper::<Frame>::new(&sc);
        let mut now = Instant::from_nanos(1);
        let n = cfg.category.len().min(8);
        for i in 0..n * 2 {
            let id = qosd::config::CategoryId(u8::try_from(i % n).unwrap_or(0));
            s.enqueue(Frame::new(pool.get(), &[0u8; 1500]), id, i as u32, now);
        }
        s.reconfigure(&DEFAULT_SHAPERS[d.index()].clone());
        s.reconfigure(&sc);
        let mut rounds = 0;
        while let Some(t) = s.next_wakeup() {
            rounds += 1;
            if rounds > 100 {
                break;
            }
            now = now.max(t);
            while s.dequeue(now).is_some() {}
            s.drain_dropped(|_, _| {});
        }
    }
}

static DEFAULT_SHAPERS: LazyLock<[ShaperConfig; 2]> = LazyLock::new(|| {
    [Direction::Upload, Direction::Download].map(|d| ShaperConfig::from_config(&DEFAULT, d))
});

/// The configuration loader on arbitrary TOML (no environment overrides).
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if !apps_file_is_harmless(text) {
        return;
    }
    match load_str("fuzz.toml", text, &Env::None) {
        Ok(cfg) => check_valid_config(&cfg),
        Err(errors) => {
            assert!(!errors.0.is_empty(), "refused without a reason");
            let _ = errors.to_string();
        }
    }
}

/// The app catalog loader; an accepted catalog is compiled into a
/// classifier.
pub fn catalog(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match load_catalog_str("fuzz-apps.toml", text) {
        Ok(catalog) => {
            let mut cfg = DEFAULT.clone();
            cfg.catalog = Arc::new(catalog);
            let c = Classifier::new(&cfg, 1);
            for app in &cfg.catalog.apps {
                assert!(cfg.catalog.app(&app.name).is_some());
            }
            let _ = c.catalog();
        }
        Err(errors) => assert!(!errors.0.is_empty(), "refused without a reason"),
    }
}

// ---------------------------------------------------------------- admin API

const TOKEN: &str = "fuzz-token-0123456789";

struct Api {
    handle: Arc<qosd::daemon::state::Handle>,
    app: axum::Router,
    rt: tokio::runtime::Runtime,
}

static API: LazyLock<std::sync::Mutex<Api>> = LazyLock::new(|| {
    use qosd::api::{ApiState, api_routes};
    let shared = Arc::new(Shared::new(&DEFAULT));
    let handle = Arc::new(qosd::daemon::state::Handle::new(
        shared,
        None,
        Some(TOKEN.to_owned()),
    ));
    let registry =
        qosd::metrics::registry(Arc::clone(&handle) as Arc<dyn qosd::metrics::MetricsSource>);
    let app = api_routes().with_state(ApiState {
        control: Arc::clone(&handle) as Arc<dyn qosd::api::Control>,
        registry,
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    std::sync::Mutex::new(Api { handle, app, rt })
});

/// `PUT /api/v1/categories/{name}` with arbitrary bodies, end to end
/// through the router, on the default configuration. Input: records
/// `[category][len][body]`: the category byte picks one of the
/// configuration's categories (or, above 200, an unknown one); several
/// requests apply one after the other.
///
/// Checks: no panic; a refused request leaves the configuration as it
/// was; an accepted one leaves a configuration that is valid (see
/// [`check_valid_config`]); every answer is JSON.
pub fn api(data: &[u8]) {
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt;

    let api = API.lock().unwrap_or_else(|e| e.into_inner());
    // Start from the default (building a classifier is the costly part of
    // a run: only when an earlier input changed the configuration).
    if *api.handle.shared.config() != *DEFAULT {
        api.handle.shared.reload(&DEFAULT);
    }
    for (pick, body) in records(data).take(8) {
        let before = api.handle.shared.config();
        let names: Vec<&str> = before.category.iter().map(|c| c.name.as_str()).collect();
        let name = if pick > 200 {
            "no-such-category"
        } else {
            names[usize::from(pick) % names.len()]
        };
        let req = Request::builder()
            .method("PUT")
            .uri(format!("/api/v1/categories/{name}"))
            .header("authorization", format!("Bearer {TOKEN}"))
            .header("content-type", "application/json")
            .body(Body::from(body.to_vec()))
            .expect("request");
        let (status, answer) = api.rt.block_on(async {
            let resp = api.app.clone().oneshot(req).await.expect("infallible");
            let status = resp.status();
            let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
                .await
                .expect("body");
            (status, bytes)
        });
        let answer: serde_json::Value =
            serde_json::from_slice(&answer).expect("the API answered with something not JSON");
        let after = api.handle.shared.config();
        if status == StatusCode::OK {
            assert!(answer.get("name").is_some(), "{answer}");
            check_valid_config(&after);
        } else {
            assert!(status.is_client_error(), "{status}: {answer}");
            assert!(answer.get("error").is_some(), "{answer}");
            assert!(
                *after == *before,
                "a refused change altered the configuration"
            );
        }
    }
}

/// The configuration the `api` harness's daemon runs now (for tests that
/// check the harness really applies changes).
pub fn api_config() -> Arc<Config> {
    let api = API.lock().unwrap_or_else(|e| e.into_inner());
    api.handle.shared.config()
}
