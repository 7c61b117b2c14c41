//! Cost of one packet through the shaper: one `dequeue` plus one
//! `enqueue`, with 1, 100 and 10 000 flows holding packets, in steady state,
//! all of one host; and 10 000 flows over 500 LAN hosts (host fairness:
//! DRR between hosts, then between each host's flows).
//!
//! Closed loop: virtual time advances by exactly one packet's transmission
//! time per iteration, so the link is always ready and every `dequeue`
//! sends one packet, which goes straight back in (same frame, same flow),
//! as a greedy sender would refill. Every flow always holds one packet, so
//! the number of active flows is exactly the parameter, however the
//! scheduler orders them. CoDel runs on every packet (target raised to
//! 50 ms so that it never drops: drops would shrink the backlog the
//! benchmark claims to hold). The link runs at 100 Gbit/s; the scheduler's
//! work per packet does not depend on the rate.
//!
//! Run: `cargo bench --bench shaper`

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use qosd::config::{CategoryId, Rate};
use qosd::shaper::{CategoryParams, Fifo, LinkQueue, ShapedPacket, Shaper, ShaperConfig};
use qosd::time::Instant;

/// A frame handle as the daemon would pass it: no allocation per packet.
struct Frame {
    len: u32,
    category: CategoryId,
    flow: u32,
    host: u32,
}

impl ShapedPacket for Frame {
    fn len(&self) -> usize {
        self.len as usize
    }
    fn ecn_capable(&self) -> bool {
        false
    }
    fn mark_ce(&mut self) -> bool {
        false
    }
    fn host(&self) -> u32 {
        self.host
    }
}

const RATE_BPS: u64 = 100_000_000_000;
const LEN: u32 = 1000;
/// Transmission time of one packet at the link rate.
const TX_NS: u64 = LEN as u64 * 8 * 1_000_000_000 / RATE_BPS;

/// The default office's seven categories (priorities, weights, mins), with
/// no ceilings so that round-robin arrivals never pile up in one category.
fn config() -> ShaperConfig {
    let link = RATE_BPS;
    let cat = |prio, weight, min_pct: u64| {
        let mut c = CategoryParams::new(
            prio,
            weight,
            Rate::from_bps(link / 100 * min_pct),
            Rate::from_bps(link),
        );
        // With 10 000 flows, bulk's 1 429 flows share 2% of the link: a
        // packet waits ~6 ms for its turn, and flows that share a hash
        // bucket hold two packets, so at the default 5 ms CoDel would start
        // dropping and the flow count would no longer be the parameter.
        c.codel_target = Duration::from_millis(50);
        c
    };
    ShaperConfig::new(
        Rate::from_bps(link),
        vec![
            cat(0, 10, 2),
            cat(1, 10, 15),
            cat(2, 10, 20),
            cat(3, 50, 25),
            cat(3, 30, 10),
            cat(3, 15, 3),
            cat(3, 5, 2),
        ],
    )
}

/// Flow `i`'s category and hash.
fn flow(i: u32) -> (CategoryId, u32) {
    (
        CategoryId((i % 7) as u8),
        i.wrapping_mul(0x2545_F491) ^ 0x5bd1_e995,
    )
}

fn bench_shaper(c: &mut Criterion) {
    let mut g = c.benchmark_group("shaper_enqueue_dequeue");
    g.throughput(Throughput::Elements(1));
    g.measurement_time(Duration::from_secs(5));
    for (name, flows, hosts) in [
        ("1", 1u32, 1u32),
        ("100", 100, 1),
        ("10000", 10_000, 1),
        ("10000_flows_500_hosts", 10_000, 500),
    ] {
        g.bench_with_input(BenchmarkId::from_parameter(name), &flows, |b, &flows| {
            let mut s: Shaper<Frame> = Shaper::new(&config());
            let mut now = 0u64;
            for i in 0..flows {
                let (category, flow) = flow(i);
                let f = Frame {
                    len: LEN,
                    category,
                    flow,
                    host: (i % hosts).wrapping_mul(0x9E37_79B9),
                };
                s.enqueue(f, category, flow, Instant::ZERO);
            }
            b.iter(|| {
                now += TX_NS;
                let t = Instant::from_nanos(now);
                if let Some(f) = s.dequeue(black_box(t)) {
                    let (category, flow) = (f.category, f.flow);
                    s.enqueue(black_box(f), category, flow, t);
                }
            });
            let mut dropped = 0;
            s.drain_dropped(|_, _| dropped += 1);
            // The bench must measure the steady state it claims to.
            assert_eq!(dropped, 0, "drops in the benchmark");
            assert_eq!(s.backlog().packets, u64::from(flows));
        });
    }
    g.finish();

    let mut g = c.benchmark_group("fifo_enqueue_dequeue");
    g.throughput(Throughput::Elements(1));
    g.bench_function("baseline", |b| {
        let mut f: Fifo<Frame> = Fifo::new(&config(), 1 << 30);
        let mut now = 0u64;
        for i in 0..100 {
            let (category, flow) = flow(i);
            let fr = Frame {
                len: LEN,
                category,
                flow,
                host: 0,
            };
            f.enqueue(fr, category, flow, Instant::ZERO);
        }
        b.iter(|| {
            now += TX_NS;
            let t = Instant::from_nanos(now);
            if let Some(fr) = f.dequeue(black_box(t)) {
                let (category, flow) = (fr.category, fr.flow);
                f.enqueue(black_box(fr), category, flow, t);
            }
        });
    });
    g.finish();
}

/// Sparse flows, as the engine bench and a real office see them: batches
/// of 32 packets, each of a different flow (1 000 flows in turn, one LAN
/// host), queued and then all sent, so every packet wakes its flow queue
/// and every flow goes quiet again.
fn bench_sparse(c: &mut Criterion) {
    let mut g = c.benchmark_group("shaper_sparse");
    g.throughput(Throughput::Elements(32));
    g.bench_function("batches_of_32_over_1000_flows", |b| {
        let mut s: Shaper<Frame> = Shaper::new(&config());
        let mut now = 0u64;
        let mut next = 0u32;
        let mut spare: Vec<Frame> = (0..32)
            .map(|_| Frame {
                len: LEN,
                category: CategoryId(0),
                flow: 0,
                host: 7,
            })
            .collect();
        b.iter(|| {
            for mut f in spare.drain(..) {
                let (category, flow) = flow(next % 1000);
                next = next.wrapping_add(1);
                (f.category, f.flow) = (category, flow);
                s.enqueue(f, category, flow, Instant::from_nanos(now));
            }
            while spare.len() < 32 {
                now += TX_NS;
                if let Some(f) = s.dequeue(black_box(Instant::from_nanos(now))) {
                    spare.push(f);
                }
            }
        });
    });
    g.finish();
}

criterion_group!(benches, bench_shaper, bench_sparse);
criterion_main!(benches);
