//! The whole engine on a realistic mix (criterion): every packet is
//! parsed, looked up in the flow table, classified, marked, queued and
//! dequeued, on one core. The link is fast enough that the shaper always
//! sends, so the figure is the engine's cost, not the link's rate.
//!
//! The mix, over 1 000 established flows: 45% full-size TCP data, 35% pure
//! TCP ACKs, 15% RTP voice (200-byte frames), 5% DNS and small UDP.
//!
//! `engine_threads/*`: the daemon's two directions on threads of their own
//! (`datapath.threads = 2`), on one flow table and the same 1 000 flows (the download
//! thread gets the mix mirrored). `one_direction_alone` runs the upload
//! thread only, `both_directions_at_once` both, started together; each
//! reports the upload thread's packets/s. The target: both at once within
//! 15 % of alone (no lock or cache line the two threads fight over).
//! `two_threads_sharing_nothing` is the control: the download thread on a
//! flow table of its own, so what two busy cores cost each other anyway.

use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant as WallClock};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use etherparse::PacketBuilder;

use qosd::config::{Direction, Env, load_str};
use qosd::engine::frame::{Frame, FramePool};
use qosd::engine::{DirectionEngine, Shared};
use qosd::shaper::{Shaper, ShaperConfig};
use qosd::time::Instant;

fn frames() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut rtp = vec![0x80u8, 0x00];
    rtp.extend_from_slice(&[0; 170]);
    for i in 0..1000u32 {
        let host = [192, 168, (i >> 8) as u8, i as u8];
        let server = [93, 184, (i >> 8) as u8, (i % 250) as u8 + 1];
        let sport = 40000 + (i % 20000) as u16;
        let mut f = Vec::new();
        match i % 20 {
            0..=8 => {
                PacketBuilder::ethernet2([2; 6], [4; 6])
                    .ipv4(host, server, 64)
                    .tcp(sport, 443, i, 65535)
                    .ack(1)
                    .write(&mut f, &[0u8; 1448])
                    .unwrap();
            }
            9..=15 => {
                PacketBuilder::ethernet2([2; 6], [4; 6])
                    .ipv4(host, server, 64)
                    .tcp(sport, 443, i, 65535)
                    .ack(1)
                    .write(&mut f, &[])
                    .unwrap();
            }
            16..=18 => {
                PacketBuilder::ethernet2([2; 6], [4; 6])
                    .ipv4(host, server, 64)
                    .udp(sport, 20000)
                    .write(&mut f, &rtp)
                    .unwrap();
            }
            _ => {
                PacketBuilder::ethernet2([2; 6], [4; 6])
                    .ipv4(host, [9, 9, 9, 9], 64)
                    .udp(sport, 53)
                    .write(&mut f, &[0x12; 40])
                    .unwrap();
            }
        }
        out.push(f);
    }
    out
}

type Engine = DirectionEngine<Shaper<Frame>>;

/// The default configuration with links fast enough never to hold a
/// packet back, and an engine per direction on one shared state.
fn engines() -> (Engine, Engine) {
    // QOSD_* overrides apply (QOSD_LINK__ISP_QUEUE_GUARD=false: the
    // download without the ISP-queue guard).
    let mut cfg = load_str("bench", qosd::config::DEFAULT_CONFIG_TOML, &Env::Process).unwrap();
    cfg.link.upload = qosd::config::Rate::from_bps(400_000_000_000);
    cfg.link.download = qosd::config::Rate::from_bps(400_000_000_000);
    let shared = Arc::new(Shared::new(&cfg));
    let engine = |dir| {
        DirectionEngine::new(
            dir,
            Arc::clone(&shared),
            Shaper::new(&ShaperConfig::from_config(&cfg, dir)),
        )
    };
    (engine(Direction::Upload), engine(Direction::Download))
}

/// `frame` (IPv4, TCP or UDP) as the other end sends it: addresses and
/// ports swapped (the checksums, being sums, stay right).
fn mirror(frame: &[u8]) -> Vec<u8> {
    let mut m = frame.to_vec();
    let (ip, ports) = (14 + 12, 14 + 20);
    for i in 0..4 {
        m.swap(ip + i, ip + 4 + i);
    }
    for i in 0..2 {
        m.swap(ports + i, ports + 2 + i);
    }
    m
}

/// One direction's frames circulating through its engine: each leaves
/// the shaper and goes round again, as buffers do in the daemon (which
/// receives straight into them, so no copy belongs in the measured path).
struct Lane {
    engine: Engine,
    ready: Vec<Frame>,
    now: Instant,
    _pool: FramePool,
}

impl Lane {
    fn new(engine: Engine, bytes: &[Vec<u8>]) -> Self {
        let mut pool = FramePool::new(2048, 0);
        let ready = bytes.iter().map(|f| Frame::new(pool.get(), f)).collect();
        let mut lane = Lane {
            engine,
            ready,
            now: Instant::from_nanos(1_000_000_000),
            _pool: pool,
        };
        // Warm up: every flow created and settled (24 packets each at most).
        for _ in 0..30 {
            lane.round();
        }
        assert_eq!(lane.ready.len(), bytes.len(), "the engine lost frames");
        lane
    }

    /// Every frame once through the engine, in batches of 32 with
    /// everything due dequeued after each: the daemon's loop.
    fn round(&mut self) {
        let n = self.ready.len();
        let mut next = Vec::with_capacity(n);
        let mut batch = Vec::with_capacity(32);
        let engine = &mut self.engine;
        let now = &mut self.now;
        for f in self.ready.drain(..) {
            batch.push(f);
            if batch.len() == 32 {
                for f in batch.drain(..) {
                    *now = now.add_nanos(100);
                    engine.ingress(black_box(f), *now);
                }
                while let Some(out) = engine.dequeue(*now) {
                    next.push(out);
                }
            }
        }
        for f in batch.drain(..) {
            engine.ingress(f, *now);
        }
        while let Some(out) = engine.dequeue(*now) {
            next.push(out);
        }
        engine.drain_dropped(|f, _| next.push(f));
        self.ready = next;
    }
}

fn engine_mix(c: &mut Criterion) {
    let (up, _) = engines();
    let bytes = frames();
    let mut lane = Lane::new(up, &bytes);
    let mut g = c.benchmark_group("engine");
    g.throughput(Throughput::Elements(bytes.len() as u64));
    g.bench_function("office_mix_1000_flows", |b| b.iter(|| lane.round()));
    // The same flows' answers through the download engine (which also
    // reads the WAN-delay answers and one-way delays).
    let (_, down) = engines();
    let mirrored: Vec<Vec<u8>> = bytes.iter().map(|f| mirror(f)).collect();
    let mut lane = Lane::new(down, &mirrored);
    g.bench_function("office_mix_1000_flows_download", |b| {
        b.iter(|| lane.round())
    });
    g.finish();
}

/// Runs `iters` rounds of `up` (timed) while, if given, `down` runs the
/// same number on another thread, both released at once.
fn timed(up: &mut Lane, down: Option<&mut Lane>, iters: u64) -> Duration {
    let start = Barrier::new(if down.is_some() { 2 } else { 1 });
    std::thread::scope(|s| {
        if let Some(down) = down {
            let start = &start;
            s.spawn(move || {
                start.wait();
                for _ in 0..iters {
                    down.round();
                }
            });
        }
        start.wait();
        let t = WallClock::now();
        for _ in 0..iters {
            up.round();
        }
        t.elapsed()
    })
}

fn engine_threads(c: &mut Criterion) {
    let (up, down) = engines();
    let bytes = frames();
    let mirrored: Vec<Vec<u8>> = bytes.iter().map(|f| mirror(f)).collect();
    let mut up = Lane::new(up, &bytes);
    let mut down = Lane::new(down, &mirrored);
    assert_eq!(
        up.engine.shared().table.len(),
        bytes.len().min(1000),
        "the mirrored frames must find the same flows"
    );
    let mut g = c.benchmark_group("engine_threads");
    g.throughput(Throughput::Elements(bytes.len() as u64));
    g.bench_function("one_direction_alone", |b| {
        b.iter_custom(|iters| timed(&mut up, None, iters))
    });
    g.bench_function("both_directions_at_once", |b| {
        b.iter_custom(|iters| timed(&mut up, Some(&mut down), iters))
    });
    // The control: the same two threads on tables of their own, nothing
    // shared. What both_directions_at_once loses beyond this is the cost
    // of sharing; the rest is the machine (caches, memory bandwidth and
    // turbo shared by both cores).
    let (_, alone) = engines();
    let mut apart = Lane::new(alone, &mirrored);
    g.bench_function("two_threads_sharing_nothing", |b| {
        b.iter_custom(|iters| timed(&mut up, Some(&mut apart), iters))
    });
    g.finish();
}

criterion_group!(benches, engine_mix, engine_threads);
criterion_main!(benches);
