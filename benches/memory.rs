//! Memory per flow and per queued packet, counted by a global allocator
//! (not criterion: it prints bytes, not times).
//!
//! - `flows`: one-packet UDP flows, what a flow costs at the least.
//! - `office replay`: 60 000 flows of an office's mix through the engine
//!   with the default configuration (65 536 flows): TLS with rustls
//!   ClientHellos (one in ten split over two segments, only the first
//!   seen yet), QUIC with quinn-proto Initials (one in four needing two
//!   Initials, only the first seen yet), DNS over UDP, DNS over TCP (its
//!   answer's first segment only). Bytes per flow with everything: the
//!   table (allocated up front for its limit), the CLOCK queue, the
//!   verdicts and host names, and the partial state of the pending flows.
//! - `flood`: 100 000 flows that all hold partial TLS, QUIC or DNS state,
//!   with the default `classify.dpi_memory` (32 MiB): the state stays
//!   within it, the rest is refused.
//! - `queued packets`: the shaper's cost per packet held.
//!
//! `cargo bench --bench memory`; `QOSD_MEMORY_PCAP=FILE` also writes the
//! office replay as a capture, to measure `qosd classify --pcap FILE`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Arc;
use std::sync::atomic::{AtomicIsize, Ordering};

use std::net::SocketAddrV4;

use etherparse::PacketBuilder;

use qosd::config::{Direction, Env, load_str};
use qosd::engine::frame::{Frame, FramePool};
use qosd::engine::{DirectionEngine, Shared};
use qosd::shaper::{Shaper, ShaperConfig};
use qosd::time::Instant;

#[path = "../tests/built/mod.rs"]
mod built;

use built::{
    dns_answer, ep, many_protocols, quic_first_datagrams, quic_first_datagrams_alpn, rustls_config,
    rustls_first_flight, tls_client_hello,
};

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

/// An Ethernet/IPv4 TCP segment (ACK, or SYN) with `payload`.
fn tcp(src: SocketAddrV4, dst: SocketAddrV4, syn: bool, payload: &[u8]) -> Vec<u8> {
    let b = PacketBuilder::ethernet2([2; 6], [4; 6])
        .ipv4(src.ip().octets(), dst.ip().octets(), 64)
        .tcp(src.port(), dst.port(), 1, 65535);
    let b = if syn { b.syn() } else { b.ack(1) };
    let mut f = Vec::new();
    b.write(&mut f, payload).unwrap();
    f
}

/// An Ethernet/IPv4 UDP datagram with `payload`.
fn udp_to(src: SocketAddrV4, dst: SocketAddrV4, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    PacketBuilder::ethernet2([2; 6], [4; 6])
        .ipv4(src.ip().octets(), dst.ip().octets(), 64)
        .udp(src.port(), dst.port())
        .write(&mut f, payload)
        .unwrap();
    f
}

/// Payloads built once and sent on many 5-tuples.
struct Templates {
    hello: Vec<u8>,
    big_hello: Vec<u8>,
    quic: Vec<u8>,
    quic_first_of_two: Vec<u8>,
    dns_query: Vec<u8>,
    dns_answer: Vec<u8>,
    dns_tcp_start: Vec<u8>,
}

impl Templates {
    fn new() -> Self {
        let server = ep([52, 112, 0, 1], 443);
        let protocols = many_protocols();
        let refs: Vec<&[u8]> = protocols.iter().map(Vec::as_slice).collect();
        let big_hello = rustls_first_flight(rustls_config(&refs), "contoso.sharepoint.com");
        assert!(big_hello.len() > 1460);
        let two = quic_first_datagrams_alpn("www.youtube.com", server, &refs);
        assert!(two.len() >= 2, "a ClientHello over two Initials");
        // A long DNS answer over TCP (after a truncated UDP one): its first
        // segment only.
        let addrs: Vec<[u8; 4]> = (0..200).map(|i| [52, 96, 0, i as u8]).collect();
        let long = dns_answer(7, "outlook.office365.com", &[], &addrs, 300);
        let mut stream = (long.len() as u16).to_be_bytes().to_vec();
        stream.extend_from_slice(&long);
        stream.truncate(1400);
        Templates {
            hello: tls_client_hello("contoso.sharepoint.com"),
            big_hello: big_hello[..1460].to_vec(),
            quic: quic_first_datagrams("teams.microsoft.com", server)[0].clone(),
            quic_first_of_two: two[0].clone(),
            dns_query: built::dns_query(7, "outlook.office365.com", 1),
            dns_answer: dns_answer(7, "outlook.office365.com", &[], &[[52, 96, 0, 1]], 300),
            dns_tcp_start: stream,
        }
    }

    /// The frames of office flow `i` that the replay has seen: 20 flows
    /// in a round, 4 of them still pending with partial state.
    fn office_flow(&self, i: u32) -> Vec<Vec<u8>> {
        let client = ep([10, 20 + (i >> 16) as u8, (i >> 8) as u8, i as u8], 40_000);
        let web = ep([52, 112, (i >> 8) as u8, i as u8], 443);
        let resolver = ep([10, 0, 0, 53], 53);
        match i % 20 {
            // TLS: SYN and a whole ClientHello.
            0..=9 => vec![
                tcp(client, web, true, &[]),
                tcp(client, web, false, &self.hello),
            ],
            // TLS: a ClientHello split over two segments, the first seen.
            10 | 11 => vec![
                tcp(client, web, true, &[]),
                tcp(client, web, false, &self.big_hello),
            ],
            // QUIC: a whole Initial.
            12..=14 => vec![udp_to(client, web, &self.quic)],
            // QUIC: the first of two Initials.
            15 => vec![udp_to(client, web, &self.quic_first_of_two)],
            // DNS over UDP: query and answer.
            16..=18 => vec![
                udp_to(client, resolver, &self.dns_query),
                udp_to(resolver, client, &self.dns_answer),
            ],
            // DNS over TCP: the answer's first segment.
            _ => vec![
                tcp(client, resolver, true, &[]),
                tcp(resolver, client, false, &self.dns_tcp_start),
            ],
        }
    }

    /// Flow `i` of a flood: each holds partial TLS, QUIC or DNS state.
    fn flood_flow(&self, i: u32) -> Vec<Vec<u8>> {
        let client = ep([10, 100 + (i >> 16) as u8, (i >> 8) as u8, i as u8], 50_000);
        let server = ep([198, 51, 100, 1], 443);
        match i % 3 {
            0 => vec![tcp(client, server, false, &self.big_hello)],
            1 => vec![udp_to(client, server, &self.quic_first_of_two)],
            _ => vec![tcp(
                ep([198, 51, 100, 2], 53),
                client,
                false,
                &self.dns_tcp_start,
            )],
        }
    }
}

/// Runs `frames` through an upload engine on `shared`, 1 µs apart.
fn replay(
    shared: &Arc<Shared>,
    cfg: &qosd::config::Config,
    frames: &[Vec<u8>],
    pool: &mut FramePool,
) -> DirectionEngine<Shaper<Frame>> {
    let mut engine = DirectionEngine::new(
        Direction::Upload,
        Arc::clone(shared),
        Shaper::new(&ShaperConfig::from_config(cfg, Direction::Upload)),
    );
    let mut now = Instant::from_nanos(1);
    for f in frames {
        now = now.add_nanos(1_000);
        engine.ingress(Frame::new(pool.get(), f), now);
        while let Some(out) = engine.dequeue(now) {
            pool.put(out.into_buffer());
        }
        engine.drain_dropped(|f, _| pool.put(f.into_buffer()));
    }
    engine
}

/// Writes `frames` as a pcap (Ethernet), 1 µs apart.
fn write_pcap(path: &str, frames: &[Vec<u8>]) {
    use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
    let file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut w = PcapWriter::with_header(file, PcapHeader::default()).unwrap();
    for (i, f) in frames.iter().enumerate() {
        let at = built::EPOCH + std::time::Duration::from_micros(i as u64);
        w.write_packet(&PcapPacket::new(at, f.len() as u32, f))
            .unwrap();
    }
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

    let templates = Templates::new();
    let mut cfg = load_str("bench", qosd::config::DEFAULT_CONFIG_TOML, &Env::None).unwrap();
    cfg.link.upload = qosd::config::Rate::from_bps(400_000_000_000);

    // An office's flows, with the default configuration.
    let n = 60_000u32;
    let frames: Vec<Vec<u8>> = (0..n).flat_map(|i| templates.office_flow(i)).collect();
    if let Ok(path) = std::env::var("QOSD_MEMORY_PCAP") {
        write_pcap(&path, &frames);
        println!("office replay written to {path} ({} frames)", frames.len());
    }
    let start = live();
    let shared = Arc::new(Shared::new(&cfg));
    let empty = live();
    let engine = replay(&shared, &cfg, &frames, &mut pool);
    let total = live() - start;
    let mut pending = 0;
    shared
        .table
        .for_each(|_, f| pending += usize::from(!f.value.lock().settled));
    println!(
        "office replay: {} flows ({pending} pending), {:.0} bytes per flow in all ({:.0} MiB: the table allocated for {} flows {:.1} MiB, then {:.0} bytes per flow); DPI state {} KiB",
        shared.table.len(),
        total as f64 / f64::from(n),
        total as f64 / f64::from(1 << 20),
        cfg.flows.max_flows,
        (empty - start) as f64 / f64::from(1 << 20),
        (live() - empty) as f64 / f64::from(n),
        shared.dpi.used() / 1024,
    );
    drop(engine);
    drop(shared);
    drop(frames);

    // A flood of flows that all hold partial state, default budget.
    let mut flood_cfg = cfg.clone();
    flood_cfg.flows.max_flows = 131_072;
    let n = 100_000u32;
    let frames: Vec<Vec<u8>> = (0..n).flat_map(|i| templates.flood_flow(i)).collect();
    let start = live();
    let shared = Arc::new(Shared::new(&flood_cfg));
    let empty = live();
    let engine = replay(&shared, &flood_cfg, &frames, &mut pool);
    let refused: u64 = engine.counters().dpi_refusals.iter().sum();
    println!(
        "flood: {} flows holding partial TLS/QUIC/DNS state, {:.0} bytes per flow besides the table ({:.1} MiB in all); DPI state {:.1} MiB of a {:.0} MiB budget, {refused} refusals",
        shared.table.len(),
        (live() - empty) as f64 / f64::from(n),
        (live() - start) as f64 / f64::from(1 << 20),
        shared.dpi.used() as f64 / f64::from(1 << 20),
        shared.dpi.limit() as f64 / f64::from(1 << 20),
    );
    assert!(shared.dpi.used() <= shared.dpi.limit());
    drop(engine);
    drop(shared);

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
