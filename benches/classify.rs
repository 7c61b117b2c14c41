//! Per-packet cost of classification, on the daemon's path: what
//! `DirectionEngine::ingress` does before the shaper (src/engine/mod.rs,
//! the same chain as src/offline.rs):
//! `PacketMeta::parse` -> `FlowKey::of` -> `FlowTable::with_flow` ->
//! `Classifier::classify`, with the embedded default configuration and
//! catalog and a DNS snooping cache.
//!
//! - `parse`: `PacketMeta::parse` alone (a 1500-byte TCP segment, a
//!   214-byte RTP datagram).
//! - `established`: one flow whose verdict is settled (a SharePoint
//!   download segment; a Teams audio packet), the same frame again and
//!   again: the fast path.
//! - `new_flow`: every iteration a new 5-tuple (the source address and
//!   port of the frame are rewritten in place, a few ns included in the
//!   figure): a TCP SYN; a TLS ClientHello segment (the packet that
//!   carries the name: catalog signatures, DPI, host lookup). The table
//!   holds the default 65 536 flows, so in steady state each insertion also
//!   evicts one (CLOCK), as under a churn of new connections.
//! - `office_mix`: 1000 established flows of a branch office (SharePoint,
//!   Outlook, Teams audio and video, YouTube over QUIC, Windows Update over
//!   HTTP, plain web), 8192 frames in both directions drawn with an office's
//!   proportions, processed round-robin: cache misses across flows count.
//!
//! Run: `cargo bench --bench classify`

use std::hint::black_box;
use std::net::SocketAddrV4;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use qosd::classify::dpi::dns::DnsCache;
use qosd::classify::{ClassCache, ClassTable, Classifier, PacketCtx};
use qosd::config::{CategoryId, Config, Direction};

use qosd::packet::{FrameKind, PacketMeta};
use qosd::time::Instant;

#[path = "../tests/built/mod.rs"]
mod built;

use built::*;

/// What the daemon holds for classification.
struct Path {
    cfg: Config,
    table: ClassTable,
    cache: ClassCache,
    classifier: Classifier,
    names: DnsCache,
}

impl Path {
    fn new() -> Self {
        let cfg = qosd::config::load_embedded().expect("embedded config");
        Path {
            table: ClassTable::new(&cfg.flows),
            cache: ClassCache::new(),
            classifier: Classifier::new(&cfg, 1),
            names: DnsCache::new(qosd::engine::DNS_CACHE_ENTRIES),
            cfg,
        }
    }

    /// One frame through parse, flow lookup and classification, as
    /// `DirectionEngine::ingress` does it (minus the shaper).
    #[inline]
    fn packet(&mut self, frame: &[u8], dir: Direction, now: Instant) -> CategoryId {
        let pkt = PacketMeta::parse(frame);
        match pkt.kind {
            FrameKind::Ip => {
                let ctx = PacketCtx::new(&pkt, dir, now);
                let (v, _) =
                    self.classifier
                        .observe(&self.table, &mut self.cache, &ctx, &self.names);
                self.classifier.ack_category(&pkt).unwrap_or(v.category)
            }
            FrameKind::NonIp { .. } => self.classifier.non_ip_category(),
            FrameKind::Malformed => self.classifier.malformed_category(),
        }
    }

    /// Feeds a capture's frames (office hosts, 198.18.0.0/16, upload).
    fn feed(&mut self, cap: &Capture) {
        for f in cap.frames() {
            let o = f.src.ip().octets();
            let dir = if o[0] == 198 && o[1] == 18 {
                Direction::Upload
            } else {
                Direction::Download
            };
            self.packet(&f.bytes, dir, now_of(f.at));
        }
    }

    fn category(&self, name: &str) -> CategoryId {
        self.cfg.category_id(name).expect("category")
    }

    /// Asserts that every flow's verdict is settled.
    fn assert_all_settled(&self) {
        let mut pending = Vec::new();
        self.table.for_each(|k, f| {
            if !f.value.lock().settled {
                pending.push(*k);
            }
        });
        assert!(pending.is_empty(), "flows still pending: {pending:?}");
    }
}

fn now_of(d: Duration) -> Instant {
    Instant::from_nanos(d.as_nanos() as u64)
}

// ---------------------------------------------------------------------------
// Flows for warming up the table

/// A TLS connection up to and including the server's first flight.
fn tls_open(
    cap: &mut Capture,
    rng: &mut Rng,
    at: Duration,
    c: SocketAddrV4,
    s: SocketAddrV4,
    sni: &str,
) {
    let mut t = Tcp::open(cap, at, c, s, ms(15));
    t.client_sends(cap, &tls_client_hello(sni));
    t.server_sends(cap, &tls_server_flight(rng, 1200), us(100));
}

/// An HTTP request and the start of its answer.
fn http_open(cap: &mut Capture, at: Duration, c: SocketAddrV4, s: SocketAddrV4, host: &str) {
    let mut t = Tcp::open(cap, at, c, s, ms(15));
    let req = format!(
        "GET /filestreamingservice/files/6f1b HTTP/1.1\r\nHost: {host}\r\nUser-Agent: Microsoft-Delivery-Optimization/10.0\r\n\r\n"
    );
    t.client_sends(cap, req.as_bytes());
    t.server_sends(
        cap,
        b"HTTP/1.1 200 OK\r\nContent-Length: 100000000\r\n\r\n",
        us(10),
    );
}

/// 30 RTP packets each way, 20 ms apart (RTP confirmed, both sides seen).
fn rtp_open(
    cap: &mut Capture,
    rng: &mut Rng,
    at: Duration,
    c: SocketAddrV4,
    s: SocketAddrV4,
    len: usize,
) {
    let mut up = Rtp::new(104, rng.next() as u32, 1, 0);
    let mut down = Rtp::new(104, rng.next() as u32, 1, 0);
    for i in 0..30u64 {
        cap.udp_dscp(
            at + ms(20 * i),
            c,
            s,
            46,
            &up.packet(&rng.bytes(len), false),
        );
        up.tick(320);
        cap.udp_dscp(
            at + ms(20 * i + 9),
            s,
            c,
            46,
            &down.packet(&rng.bytes(len), false),
        );
        down.tick(320);
    }
}

/// A QUIC connection's first datagram and the server's answer.
fn quic_open(
    cap: &mut Capture,
    rng: &mut Rng,
    at: Duration,
    c: SocketAddrV4,
    s: SocketAddrV4,
    host: &str,
) {
    for d in quic_first_datagrams(host, s) {
        cap.udp(at, c, s, &d);
    }
    cap.udp(at + ms(20), s, c, &quic_server_long(rng, 1252));
}

/// A data frame `from` -> `to` of the flow (payload `len` random bytes;
/// TCP: PSH/ACK). Settled flows do not look at the payload.
fn data_frame(
    rng: &mut Rng,
    proto: Proto,
    from: SocketAddrV4,
    to: SocketAddrV4,
    len: usize,
) -> Vec<u8> {
    let payload = rng.bytes(len);
    match proto {
        Proto::Tcp => tcp_frame(from, to, 1_000_000, 2_000_000, PSH_ACK, 1026, &[], &payload),
        Proto::Udp => udp_frame(from, to, 0, &payload),
    }
}

/// 1000 flows of a branch office, warmed up in `path`. Returns each flow's
/// data frames (one per direction and size, so that the frame headers stay
/// in cache as a just-received frame's would) and the order in which to
/// send them: 8192 picks weighted as an office's traffic (downloads
/// dominate; uploads are mostly ACKs).
fn office(path: &mut Path) -> (Vec<(Direction, Vec<u8>)>, Vec<u32>) {
    let mut cap = Capture::new();
    let mut rng = Rng::new(42);
    // (direction, frame, weight in the mix)
    let mut frames: Vec<(Direction, Vec<u8>, u32)> = Vec::new();
    for i in 0..1000u32 {
        let host = [198, 18, (i / 200) as u8, (i % 200) as u8 + 10];
        let port = 50_100 + (i % 9000) as u16;
        let at = EPOCH + us(u64::from(i) * 700);
        let c = ep(host, port);
        let kind = i % 20;
        let f = match kind {
            // SharePoint / OneDrive downloads and uploads.
            0..=5 => {
                let s = ep([13, 107, 136, (i % 250) as u8], 443);
                tls_open(&mut cap, &mut rng, at, c, s, "contoso.sharepoint.com");
                vec![
                    (
                        Direction::Download,
                        data_frame(&mut rng, Proto::Tcp, s, c, 1460),
                        6,
                    ),
                    (
                        Direction::Upload,
                        data_frame(&mut rng, Proto::Tcp, c, s, 0),
                        3,
                    ),
                    (
                        Direction::Upload,
                        data_frame(&mut rng, Proto::Tcp, c, s, 600),
                        1,
                    ),
                ]
            }
            // Outlook.
            6..=7 => {
                let s = ep([52, 97, 1, (i % 250) as u8], 443);
                tls_open(&mut cap, &mut rng, at, c, s, "outlook.office365.com");
                vec![
                    (
                        Direction::Download,
                        data_frame(&mut rng, Proto::Tcp, s, c, 900),
                        2,
                    ),
                    (
                        Direction::Upload,
                        data_frame(&mut rng, Proto::Tcp, c, s, 0),
                        1,
                    ),
                ]
            }
            // Teams audio.
            8..=9 => {
                let c = ep(host, 50_000 + (i % 20) as u16);
                let s = ep([52, 113, 20, (i % 250) as u8], 3479);
                rtp_open(&mut cap, &mut rng, at, c, s, 100);
                vec![
                    (
                        Direction::Upload,
                        data_frame(&mut rng, Proto::Udp, c, s, 112),
                        2,
                    ),
                    (
                        Direction::Download,
                        data_frame(&mut rng, Proto::Udp, s, c, 112),
                        2,
                    ),
                ]
            }
            // Teams video.
            10 => {
                let c = ep(host, 50_020 + (i % 20) as u16);
                let s = ep([52, 113, 21, (i % 250) as u8], 3480);
                rtp_open(&mut cap, &mut rng, at, c, s, 1100);
                vec![
                    (
                        Direction::Upload,
                        data_frame(&mut rng, Proto::Udp, c, s, 1100),
                        3,
                    ),
                    (
                        Direction::Download,
                        data_frame(&mut rng, Proto::Udp, s, c, 1100),
                        4,
                    ),
                ]
            }
            // YouTube over QUIC.
            11..=12 => {
                let s = ep([142, 250, 185, (i % 250) as u8], 443);
                quic_open(&mut cap, &mut rng, at, c, s, "www.youtube.com");
                vec![
                    (
                        Direction::Download,
                        data_frame(&mut rng, Proto::Udp, s, c, 1252),
                        6,
                    ),
                    (
                        Direction::Upload,
                        data_frame(&mut rng, Proto::Udp, c, s, 45),
                        1,
                    ),
                ]
            }
            // Windows Update over HTTP.
            13 => {
                let s = ep([13, 107, 4, (i % 250) as u8], 80);
                http_open(&mut cap, at, c, s, "download.windowsupdate.com");
                vec![
                    (
                        Direction::Download,
                        data_frame(&mut rng, Proto::Tcp, s, c, 1460),
                        6,
                    ),
                    (
                        Direction::Upload,
                        data_frame(&mut rng, Proto::Tcp, c, s, 0),
                        3,
                    ),
                ]
            }
            // Everything else on the web.
            _ => {
                let s = ep([93, 184, (i % 200) as u8, 14], 443);
                tls_open(&mut cap, &mut rng, at, c, s, "www.example.org");
                vec![
                    (
                        Direction::Download,
                        data_frame(&mut rng, Proto::Tcp, s, c, 1460),
                        2,
                    ),
                    (
                        Direction::Upload,
                        data_frame(&mut rng, Proto::Tcp, c, s, 0),
                        1,
                    ),
                ]
            }
        };
        frames.extend(f);
    }
    path.feed(&cap);
    path.assert_all_settled();
    assert_eq!(path.table.len(), 1000);

    let total: u32 = frames.iter().map(|f| f.2).sum();
    let order = (0..8192)
        .map(|_| {
            let mut pick = rng.below(u64::from(total)) as u32;
            frames
                .iter()
                .position(|f| {
                    if pick < f.2 {
                        true
                    } else {
                        pick -= f.2;
                        false
                    }
                })
                .expect("weighted pick") as u32
        })
        .collect();
    (frames.into_iter().map(|(d, b, _)| (d, b)).collect(), order)
}

// ---------------------------------------------------------------------------

fn bench_classify(c: &mut Criterion) {
    let mut rng = Rng::new(7);
    let pc = ep([198, 18, 0, 11], 51_001);
    let sp = ep([13, 107, 136, 9], 443);
    let phone = ep([198, 18, 0, 12], 50_004);
    let relay = ep([52, 113, 20, 5], 3479);

    let tcp_data = data_frame(&mut rng, Proto::Tcp, sp, pc, 1460);
    assert_eq!(tcp_data.len(), 1514);
    let rtp = {
        let mut r = Rtp::new(104, 0x1234_5678, 100, 0);
        udp_frame(phone, relay, 46, &r.packet(&rng.bytes(160), false))
    };

    let mut g = c.benchmark_group("classify");
    g.throughput(Throughput::Elements(1));
    g.measurement_time(Duration::from_secs(5));

    g.bench_function("parse/tcp-1514", |b| {
        b.iter(|| black_box(PacketMeta::parse(black_box(&tcp_data))))
    });
    let ack = data_frame(&mut rng, Proto::Tcp, pc, sp, 0);
    assert_eq!(ack.len(), 54);
    g.bench_function("parse/tcp-ack-54", |b| {
        b.iter(|| black_box(PacketMeta::parse(black_box(&ack))))
    });
    g.bench_function("parse/rtp-214", |b| {
        b.iter(|| black_box(PacketMeta::parse(black_box(&rtp))))
    });

    // Established: warm the flows up until settled.
    let mut path = Path::new();
    let mut cap = Capture::new();
    tls_open(&mut cap, &mut rng, EPOCH, pc, sp, "contoso.sharepoint.com");
    rtp_open(&mut cap, &mut rng, EPOCH, phone, relay, 160);
    path.feed(&cap);
    path.assert_all_settled();
    let business = path.category("business");
    let voice = path.category("voice");
    let mut now = EPOCH + Duration::from_secs(2);
    assert_eq!(
        path.packet(&tcp_data, Direction::Download, now_of(now)),
        business
    );
    assert_eq!(path.packet(&rtp, Direction::Upload, now_of(now)), voice);
    g.bench_function("established/tcp-download", |b| {
        b.iter(|| {
            now += Duration::from_nanos(1000);
            black_box(path.packet(black_box(&tcp_data), Direction::Download, now_of(now)))
        })
    });
    g.bench_function("established/teams-audio", |b| {
        b.iter(|| {
            now += Duration::from_nanos(1000);
            black_box(path.packet(black_box(&rtp), Direction::Upload, now_of(now)))
        })
    });

    // New flows: rewrite the source address and port (the checksum is not
    // checked on this path) so every frame opens a flow of its own.
    let mut syn = tcp_frame(pc, sp, 1, 0, SYN, 64_240, &[], &[]);
    let hello_payload = tls_client_hello("contoso.sharepoint.com");
    assert!(hello_payload.len() <= MSS);
    let mut hello = tcp_frame(pc, sp, 1, 1, PSH_ACK, 1026, &[], &hello_payload);
    fn renumber(frame: &mut [u8], n: u32) {
        // Ethernet 14 + IPv4 source at 12..16; TCP source port right
        // after the 20-byte IP header.
        frame[28..30].copy_from_slice(&((n >> 16) as u16).to_be_bytes());
        frame[34..36].copy_from_slice(&((n as u16) | 1).to_be_bytes());
    }
    for (name, frame, want) in [
        ("new_flow/tcp-syn", &mut syn, path.category("browsing")),
        ("new_flow/tls-client-hello", &mut hello, business),
    ] {
        let mut path = Path::new();
        let mut n: u32 = 0;
        renumber(frame, n);
        assert_eq!(
            path.packet(frame, Direction::Upload, now_of(now)),
            want,
            "{name}"
        );
        g.bench_function(name, |b| {
            b.iter(|| {
                n = n.wrapping_add(1);
                now += Duration::from_nanos(1000);
                renumber(frame, n);
                black_box(path.packet(black_box(frame), Direction::Upload, now_of(now)))
            })
        });
        // (Skipped when a filter left the benchmark out.)
        if n > 65_536 {
            assert_eq!(path.table.len(), 65_536, "{name}: the table should be full");
        }
    }

    // The office.
    let mut path = Path::new();
    let (frames, order) = office(&mut path);
    let mut i = 0;
    g.bench_function("office_mix/1000-flows", |b| {
        b.iter(|| {
            i = (i + 1) % order.len();
            now += Duration::from_nanos(1000);
            let (dir, frame) = &frames[order[i] as usize];
            black_box(path.packet(black_box(frame), *dir, now_of(now)))
        })
    });
    assert_eq!(path.table.len(), 1000, "the mix must not open flows");
    path.assert_all_settled();
    g.finish();
}

criterion_group!(benches, bench_classify);
criterion_main!(benches);
