//! The whole engine on a realistic mix (criterion): every packet is
//! parsed, looked up in the flow table, classified, marked, queued and
//! dequeued, on one core. The link is fast enough that the shaper always
//! sends, so the figure is the engine's cost, not the link's rate.
//!
//! The mix, over 1 000 established flows: 45% full-size TCP data, 35% pure
//! TCP ACKs, 15% RTP voice (200-byte frames), 5% DNS and small UDP.

use std::hint::black_box;
use std::sync::Arc;

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

fn engine_mix(c: &mut Criterion) {
    let mut cfg = load_str("bench", qosd::config::DEFAULT_CONFIG_TOML, &Env::None).unwrap();
    // A link fast enough never to hold a packet back.
    cfg.link.upload = qosd::config::Rate::from_bps(400_000_000_000);
    let shared = Arc::new(Shared::new(&cfg));
    let mut engine = DirectionEngine::new(
        Direction::Upload,
        shared,
        Shaper::new(&ShaperConfig::from_config(&cfg, Direction::Upload)),
    );
    let bytes = frames();
    let n = bytes.len();
    // The frames circulate: each leaves the shaper and goes round again,
    // as buffers do in the daemon (which receives straight into them, so
    // no copy belongs in the measured path).
    let mut pool = FramePool::new(2048, 0);
    let mut ready: Vec<Frame> = bytes.iter().map(|f| Frame::new(pool.get(), f)).collect();
    let mut now = Instant::from_nanos(1_000_000_000);
    let round =
        |engine: &mut DirectionEngine<Shaper<Frame>>, ready: &mut Vec<Frame>, now: &mut Instant| {
            let mut next = Vec::with_capacity(n);
            // Batches of 32 in, then everything due out: the daemon's loop.
            let mut batch = Vec::with_capacity(32);
            for f in ready.drain(..) {
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
            *ready = next;
        };
    // Warm up: every flow created and settled (24 packets each at most).
    for _ in 0..30 {
        round(&mut engine, &mut ready, &mut now);
    }
    assert_eq!(ready.len(), n, "the engine lost frames");
    let mut g = c.benchmark_group("engine");
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function("office_mix_1000_flows", |b| {
        b.iter(|| round(&mut engine, &mut ready, &mut now))
    });
    g.finish();
}

criterion_group!(benches, engine_mix);
criterion_main!(benches);
