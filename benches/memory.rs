//! Memory per flow and per queued packet, counted by a global allocator
//! (not criterion: it prints bytes, not times).
//!
//! `cargo bench --bench memory`

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Arc;
use std::sync::atomic::{AtomicIsize, Ordering};

use etherparse::PacketBuilder;

use qosd::config::{Direction, Env, load_str};
use qosd::engine::frame::{Frame, FramePool};
use qosd::engine::{DirectionEngine, Shared};
use qosd::shaper::{Shaper, ShaperConfig};
use qosd::time::Instant;

struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator, only counting.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new as isize - l.size() as isize, Ordering::Relaxed);
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static A: Counting = Counting;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

fn udp(i: u32, len: usize) -> Vec<u8> {
    let mut f = Vec::new();
    PacketBuilder::ethernet2([2; 6], [4; 6])
        .ipv4(
            [10, (i >> 16) as u8, (i >> 8) as u8, i as u8],
            [198, 18, 0, 20],
            64,
        )
        .udp(10000 + (i % 50000) as u16, 443)
        .write(&mut f, &vec![0u8; len])
        .unwrap();
    f
}

fn main() {
    let text = qosd::config::DEFAULT_CONFIG_TOML.replace("max_flows = 65536", "max_flows = 262144");
    let mut cfg = load_str("bench", &text, &Env::None).unwrap();
    cfg.link.upload = qosd::config::Rate::from_bps(400_000_000_000);
    let shared = Arc::new(Shared::new(&cfg));
    let mut engine = DirectionEngine::new(
        Direction::Upload,
        Arc::clone(&shared),
        Shaper::new(&ShaperConfig::from_config(&cfg, Direction::Upload)),
    );
    let mut pool = FramePool::new(2048, 0);
    let mut now = Instant::from_nanos(1);

    // Flows: 100 000 new UDP flows, each one packet, sent straight through.
    let n = 100_000u32;
    let frames: Vec<Vec<u8>> = (0..n).map(|i| udp(i, 64)).collect();
    let before = live();
    for f in &frames {
        now = now.add_nanos(1_000);
        engine.ingress(Frame::new(pool.get(), f), now);
        while let Some(out) = engine.dequeue(now) {
            pool.put(out.into_buffer());
        }
    }
    let per_flow = (live() - before) as f64 / f64::from(n);
    println!(
        "flows: {} tracked, {per_flow:.0} bytes per flow (flow table entry, classifier state, CLOCK queue; {} frame buffer(s) reused)",
        shared.table.len(),
        pool.allocated
    );

    // Queued packets: a second engine on a link too slow to send, 20 000
    // packets of 2 000 flows queued in it.
    let mut slow = cfg.clone();
    slow.link.upload = qosd::config::Rate::from_bps(8_000);
    let shared = Arc::new(Shared::new(&slow));
    let mut sc = ShaperConfig::from_config(&slow, Direction::Upload);
    // Room for everything: this measures the cost of holding packets.
    sc.memory_limit = 1 << 34;
    sc.packet_limit = 1 << 24;
    for c in &mut sc.categories {
        c.backlog_limit = Some(1 << 34);
    }
    let mut engine = DirectionEngine::new(Direction::Upload, shared, Shaper::new(&sc));
    let warm: Vec<Vec<u8>> = (0..2_000).map(|i| udp(i, 64)).collect();
    for f in &warm {
        engine.ingress(Frame::new(pool.get(), f), now);
    }
    let q = 20_000usize;
    let before = live();
    for i in 0..q {
        engine.ingress(
            Frame::new(vec![0u8; 2048].into_boxed_slice(), &warm[i % warm.len()]),
            now,
        );
    }
    let per_packet = (live() - before) as f64 / q as f64;
    let queued: u64 = engine
        .category_counters()
        .iter()
        .map(|c| c.backlog.packets)
        .sum();
    println!(
        "queued packets: {} queued, {:.0} bytes each in the shaper besides the frame buffer (2048 B here; the daemon's is MTU + 26 B)",
        queued,
        per_packet - 2048.0
    );
}
