//! `qosd simulate`: an office under load in virtual time, through the real
//! engine (parser, flow table, classifier, shaper), side by side with the
//! same traffic through a plain FIFO with a modem-sized buffer.
//!
//! The traffic is a discrete-event model: calls and video send at fixed
//! intervals; uploads and downloads are TCP-like senders (slow start, then
//! additive increase and halving on loss, one ACK per two segments that
//! itself crosses the other direction's queue), so a deep buffer fills the
//! way it does in an office, and CoDel's drops slow the senders down.

pub mod frames;
mod report;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use self::frames::{Endpoint, TcpKind};
pub use self::report::{CategoryReport, LinkReport, SimReport};
use crate::config::{Config, Direction};
use crate::engine::frame::{Frame, FramePool};
use crate::engine::{DirectionEngine, Shared};
use crate::io::pcap::{PcapError, for_each_frame};
use crate::metrics::MetricsView;
use crate::offline::capture_direction;
use crate::packet::PacketMeta;
use crate::shaper::{DropReason, Fifo, LinkQueue, Shaper, ShaperConfig};
use crate::telemetry::{FlowStats, IoCounters, Snapshot};
use crate::time::Instant;

/// The modem's buffer in the "without qosd" run, in time at the link rate.
pub const MODEM_BUFFER: Duration = Duration::from_millis(250);

/// One-way delay between the office and the Internet servers, outside the
/// queues (half the base round trip).
const ONE_WAY: Duration = Duration::from_millis(15);

/// TCP segment payload and frame size.
const MSS: usize = 1448;

/// Largest congestion window, in segments (a 4 MB receive window).
const MAX_CWND: f64 = 2900.0;

/// What a simulated flow does.
#[derive(Debug, Clone)]
enum Kind {
    /// A call: one RTP packet of `payload` bytes each way every `interval`.
    Call {
        interval: Duration,
        payload: usize,
        pt: u8,
    },
    /// A video call: `fps` frames per second of `up`/`down` bits per second,
    /// each frame split into packets of at most 1200 bytes.
    Video {
        fps: u32,
        up_bps: u64,
        down_bps: u64,
    },
    /// A greedy TCP transfer toward `dir`, opened with a ClientHello for `sni`.
    Bulk { dir: Direction, sni: &'static str },
    /// A DNS query and answer every `interval`.
    Dns { interval: Duration },
}

/// TCP-like sender state of a bulk flow.
#[derive(Debug, Clone, Default)]
struct Tcp {
    cwnd: f64,
    ssthresh: f64,
    inflight: u32,
    /// Segments delivered to the receiver not yet acknowledged.
    unacked: u32,
    last_loss: Instant,
    seq: u32,
}

#[derive(Debug, Clone)]
struct SimFlow {
    client: Endpoint,
    server: Endpoint,
    kind: Kind,
    tcp: Tcp,
    rtp_seq: u16,
    start: Duration,
}

/// The built-in office: three G.711 calls, a Teams video call (with its
/// audio), a SharePoint upload, four browsing downloads, a YouTube video, a
/// Windows Update download, a cloud backup upload, and DNS.
fn office() -> Vec<SimFlow> {
    let lan = |host: u8, port: u16| ([192, 168, 1, host], port);
    let net = |a: u8, b: u8, c: u8, d: u8, port: u16| ([a, b, c, d], port);
    let mut flows = Vec::new();
    let mut add = |client, server, kind, start_ms: u64| {
        flows.push(SimFlow {
            client,
            server,
            kind,
            tcp: Tcp::default(),
            rtp_seq: 0,
            start: Duration::from_millis(start_ms),
        })
    };
    for i in 0..3u8 {
        // Desk phones talking G.711 (PCMU) to the carrier's SBC.
        add(
            lan(50 + i, 16384 + 2 * u16::from(i)),
            net(203, 0, 113, 10, 20000 + 2 * u16::from(i)),
            Kind::Call {
                interval: Duration::from_millis(20),
                payload: 160,
                pt: 0,
            },
            5 + u64::from(i),
        );
    }
    // A Teams meeting: audio from client port 50000, video from 50020,
    // to Microsoft's media relays.
    add(
        lan(60, 50000),
        net(52, 113, 10, 5, 3478),
        Kind::Call {
            interval: Duration::from_millis(20),
            payload: 120,
            pt: 111,
        },
        10,
    );
    add(
        lan(60, 50020),
        net(52, 113, 10, 5, 3479),
        Kind::Video {
            fps: 30,
            up_bps: 1_500_000,
            down_bps: 2_500_000,
        },
        12,
    );
    add(
        lan(20, 51000),
        net(52, 104, 0, 10, 443),
        Kind::Bulk {
            dir: Direction::Upload,
            sni: "contoso.sharepoint.com",
        },
        100,
    );
    for i in 0..4u8 {
        add(
            lan(30 + i, 52000 + u16::from(i)),
            net(93, 184, 216, 10 + i, 443),
            Kind::Bulk {
                dir: Direction::Download,
                sni: "www.example.org",
            },
            200 + 50 * u64::from(i),
        );
    }
    add(
        lan(40, 53000),
        net(142, 250, 74, 10, 443),
        Kind::Bulk {
            dir: Direction::Download,
            sni: "rr3---sn-4g5e6nsz.googlevideo.com",
        },
        300,
    );
    add(
        lan(41, 54000),
        net(13, 107, 4, 50, 443),
        Kind::Bulk {
            dir: Direction::Download,
            sni: "7.tlu.dl.delivery.mp.microsoft.com",
        },
        400,
    );
    add(
        lan(42, 55000),
        net(45, 11, 36, 20, 443),
        Kind::Bulk {
            dir: Direction::Upload,
            sni: "pod-000-1126-02.backblaze.com",
        },
        500,
    );
    add(
        lan(2, 40053),
        net(9, 9, 9, 9, 53),
        Kind::Dns {
            interval: Duration::from_millis(500),
        },
        1,
    );
    flows
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Ev {
    /// Start a flow.
    Start(usize),
    /// A periodic source sends.
    Source(usize),
    /// A direction's queue may release frames.
    Wake(usize),
    /// A data segment of a flow reached its receiver.
    DataArrive(usize),
    /// An ACK for `n` segments reached a flow's sender.
    AckArrive(usize, u32),
    /// A flow's sender may send (after the handshake).
    Pump(usize),
    /// A flow's sender learns that a segment was lost.
    LossDetected(usize),
}

/// Frame tag: flow index and what the frame is (0: nothing the model
/// waits for).
const TAG_DATA: u64 = 1;
const TAG_ACK: u64 = 2;
fn tag(flow: usize, what: u64, n: u32) -> u64 {
    ((flow as u64) << 32) | (u64::from(n) << 8) | what
}
fn untag(t: u64) -> (usize, u64, u32) {
    ((t >> 32) as usize, t & 0xff, ((t >> 8) & 0xff_ffff) as u32)
}

struct Sim<Q> {
    engines: [DirectionEngine<Q>; 2],
    pool: FramePool,
    flows: Vec<SimFlow>,
    events: BinaryHeap<Reverse<(Instant, u64, Ev)>>,
    seq: u64,
    wake: [Option<Instant>; 2],
    scratch: Vec<u8>,
    payload: Vec<u8>,
    /// Tags of the frames in flight, by the address of their buffer: the
    /// engine's frame carries no owner's data (the data path has none), and
    /// a buffer's address is unique while its frame is queued. Entries
    /// leave when the frame does (sent or dropped).
    tags: HashMap<usize, u64>,
}

/// The key of `frame` in [`Sim::tags`].
fn buffer_key(frame: &Frame) -> usize {
    frame.bytes().as_ptr().addr()
}

fn dir_index(d: Direction) -> usize {
    d.index()
}

impl<Q: LinkQueue<Frame>> Sim<Q> {
    fn new(cfg: &Config, make_queue: impl Fn(Direction) -> Q, flows: Vec<SimFlow>) -> Self {
        let shared = Arc::new(Shared::new(cfg));
        Sim {
            engines: [
                DirectionEngine::new(
                    Direction::Upload,
                    Arc::clone(&shared),
                    make_queue(Direction::Upload),
                ),
                DirectionEngine::new(Direction::Download, shared, make_queue(Direction::Download)),
            ],
            pool: FramePool::new(2048, 0),
            flows,
            events: BinaryHeap::new(),
            seq: 0,
            wake: [None; 2],
            scratch: Vec::with_capacity(2048),
            payload: vec![0u8; 1500],
            tags: HashMap::new(),
        }
    }

    fn at(&mut self, t: Instant, ev: Ev) {
        self.seq += 1;
        self.events.push(Reverse((t, self.seq, ev)));
    }

    /// Hands the frame in `scratch` to direction `d`.
    fn send(&mut self, d: Direction, t: u64, now: Instant) {
        let frame = Frame::new(self.pool.get(), &self.scratch);
        if t != 0 {
            self.tags.insert(buffer_key(&frame), t);
        }
        let i = dir_index(d);
        if let Some(engine) = self.engines.get_mut(i) {
            engine.ingress(frame, now);
        }
        self.after_queue_change(i, now);
    }

    /// Reschedules a direction's wakeup and handles drops.
    fn after_queue_change(&mut self, i: usize, now: Instant) {
        let mut dropped = Vec::new();
        if let Some(engine) = self.engines.get_mut(i) {
            engine.drain_dropped(|f, _reason: DropReason| dropped.push(f));
        }
        for f in dropped {
            let t = self.tag_of(&f);
            self.lost(t, now);
            self.pool.put(f.into_buffer());
        }
        let next = self.engines.get(i).and_then(|e| e.next_wakeup());
        if let Some(t) = next {
            let t = t.max(now);
            if self.wake.get(i).copied().flatten().is_none_or(|w| t < w) {
                if let Some(w) = self.wake.get_mut(i) {
                    *w = Some(t);
                }
                self.at(t, Ev::Wake(i));
            }
        }
    }

    /// The tag `frame` was sent with, forgotten now that it left the queue.
    fn tag_of(&mut self, frame: &Frame) -> u64 {
        self.tags.remove(&buffer_key(frame)).unwrap_or(0)
    }

    fn lost(&mut self, t: u64, now: Instant) {
        let (f, what, n) = untag(t);
        match what {
            // The sender notices a loss about a round trip later (duplicate
            // ACKs), then slows down and sends again.
            TAG_DATA => self.at(now + ONE_WAY * 2, Ev::LossDetected(f)),
            // A lost ACK is covered by the next cumulative one.
            TAG_ACK => self.at(now + ONE_WAY * 3, Ev::AckArrive(f, n)),
            _ => {}
        }
    }

    fn loss_detected(&mut self, f: usize, now: Instant) {
        if let Some(flow) = self.flows.get_mut(f) {
            let tcp = &mut flow.tcp;
            tcp.inflight = tcp.inflight.saturating_sub(1);
            // Halve at most once per round trip.
            if now.nanos_since(tcp.last_loss) > 4 * ONE_WAY.as_nanos() as u64 {
                tcp.ssthresh = (tcp.cwnd / 2.0).max(2.0);
                tcp.cwnd = tcp.ssthresh;
                tcp.last_loss = now;
            }
        }
        self.pump(f, now);
    }

    fn pump(&mut self, f: usize, now: Instant) {
        loop {
            let Some(flow) = self.flows.get_mut(f) else {
                return;
            };
            let Kind::Bulk { dir, .. } = flow.kind else {
                return;
            };
            if f64::from(flow.tcp.inflight) >= flow.tcp.cwnd {
                return;
            }
            flow.tcp.inflight += 1;
            flow.tcp.seq = flow.tcp.seq.wrapping_add(MSS as u32);
            let (src, dst) = match dir {
                Direction::Upload => (flow.client, flow.server),
                Direction::Download => (flow.server, flow.client),
            };
            let seq = flow.tcp.seq;
            frames::tcp(
                &mut self.scratch,
                src,
                dst,
                TcpKind::Data,
                seq,
                self.payload.get(..MSS).unwrap_or_default(),
            );
            self.send(dir, tag(f, TAG_DATA, 1), now);
        }
    }

    fn handle(&mut self, now: Instant, ev: Ev) {
        match ev {
            Ev::Start(f) => self.start(f, now),
            Ev::Source(f) => self.source(f, now),
            Ev::Wake(i) => {
                if self.wake.get(i).copied().flatten() != Some(now) {
                    return; // superseded
                }
                if let Some(w) = self.wake.get_mut(i) {
                    *w = None;
                }
                while let Some(frame) = self.engines.get_mut(i).and_then(|e| e.dequeue(now)) {
                    let (f, what, n) = untag(self.tag_of(&frame));
                    match what {
                        TAG_DATA => self.at(now + ONE_WAY, Ev::DataArrive(f)),
                        TAG_ACK => self.at(now + ONE_WAY, Ev::AckArrive(f, n)),
                        _ => {}
                    }
                    self.pool.put(frame.into_buffer());
                }
                self.after_queue_change(i, now);
            }
            Ev::DataArrive(f) => {
                let Some(flow) = self.flows.get_mut(f) else {
                    return;
                };
                flow.tcp.unacked += 1;
                if flow.tcp.unacked >= 2 {
                    let n = flow.tcp.unacked;
                    flow.tcp.unacked = 0;
                    let Kind::Bulk { dir, .. } = flow.kind else {
                        return;
                    };
                    let (src, dst, back) = match dir {
                        Direction::Upload => (flow.server, flow.client, Direction::Download),
                        Direction::Download => (flow.client, flow.server, Direction::Upload),
                    };
                    frames::tcp(&mut self.scratch, src, dst, TcpKind::Ack, 1, &[]);
                    self.send(back, tag(f, TAG_ACK, n), now);
                }
            }
            Ev::AckArrive(f, n) => {
                if let Some(flow) = self.flows.get_mut(f) {
                    let tcp = &mut flow.tcp;
                    tcp.inflight = tcp.inflight.saturating_sub(n);
                    let n = f64::from(n);
                    tcp.cwnd = if tcp.cwnd < tcp.ssthresh {
                        tcp.cwnd + n
                    } else {
                        tcp.cwnd + n / tcp.cwnd
                    };
                    tcp.cwnd = tcp.cwnd.min(MAX_CWND);
                }
                self.pump(f, now);
            }
            Ev::Pump(f) => self.pump(f, now),
            Ev::LossDetected(f) => self.loss_detected(f, now),
        }
    }

    fn start(&mut self, f: usize, now: Instant) {
        let Some(flow) = self.flows.get_mut(f) else {
            return;
        };
        match flow.kind.clone() {
            Kind::Bulk { sni, .. } => {
                flow.tcp = Tcp {
                    cwnd: 10.0,
                    ssthresh: f64::INFINITY,
                    ..Tcp::default()
                };
                let (c, s) = (flow.client, flow.server);
                frames::tcp(&mut self.scratch, c, s, TcpKind::Syn, 0, &[]);
                self.send(Direction::Upload, 0, now);
                frames::tcp(&mut self.scratch, s, c, TcpKind::Syn, 0, &[]);
                self.send(Direction::Download, 0, now + ONE_WAY * 2);
                let hello = frames::client_hello(sni);
                frames::tcp(&mut self.scratch, c, s, TcpKind::Data, 1, &hello);
                self.send(Direction::Upload, 0, now);
                self.at(now + ONE_WAY * 2, Ev::Pump(f));
            }
            _ => self.source(f, now),
        }
    }

    fn source(&mut self, f: usize, now: Instant) {
        let Some(flow) = self.flows.get_mut(f) else {
            return;
        };
        let (c, s) = (flow.client, flow.server);
        match flow.kind.clone() {
            Kind::Call {
                interval,
                payload,
                pt,
            } => {
                flow.rtp_seq = flow.rtp_seq.wrapping_add(1);
                let seq = flow.rtp_seq;
                let ts = u32::from(seq).wrapping_mul(160);
                for (d, src, dst, ssrc) in [
                    (Direction::Upload, c, s, 0x1000 + f as u32),
                    (Direction::Download, s, c, 0x2000 + f as u32),
                ] {
                    frames::rtp(&mut self.payload, pt, seq, ts, ssrc, payload);
                    let p = std::mem::take(&mut self.payload);
                    frames::udp(&mut self.scratch, src, dst, &p);
                    self.payload = p;
                    self.send(d, 0, now);
                }
                self.payload.resize(1500, 0);
                self.at(now + interval, Ev::Source(f));
            }
            Kind::Video {
                fps,
                up_bps,
                down_bps,
            } => {
                for (d, src, dst, bps) in [
                    (Direction::Upload, c, s, up_bps),
                    (Direction::Download, s, c, down_bps),
                ] {
                    let mut left = (bps / 8 / u64::from(fps)) as usize;
                    while left > 0 {
                        let n = left.min(1200);
                        left -= n;
                        flow_video_packet(&mut self.scratch, src, dst, n);
                        self.send(d, 0, now);
                    }
                }
                self.at(now + Duration::from_secs(1) / fps, Ev::Source(f));
            }
            Kind::Dns { interval } => {
                let q = frames::dns_query(now.as_nanos() as u16, "outlook.office365.com");
                frames::udp(&mut self.scratch, c, s, &q);
                self.send(Direction::Upload, 0, now);
                frames::udp(&mut self.scratch, s, c, &q);
                self.send(Direction::Download, 0, now + ONE_WAY * 2);
                self.at(now + interval, Ev::Source(f));
            }
            Kind::Bulk { .. } => {}
        }
    }

    fn run(&mut self, duration: Duration) {
        let end = Instant::ZERO + duration;
        for f in 0..self.flows.len() {
            let start = self.flows.get(f).map(|fl| fl.start).unwrap_or_default();
            self.at(Instant::ZERO + start, Ev::Start(f));
        }
        while let Some(Reverse((t, _, ev))) = self.events.pop() {
            if t > end {
                break;
            }
            self.handle(t, ev);
        }
    }
}

/// A video packet: an RTP-like payload of `n` bytes with a dynamic type.
fn flow_video_packet(out: &mut Vec<u8>, src: Endpoint, dst: Endpoint, n: usize) {
    let mut payload = Vec::with_capacity(n);
    frames::rtp(&mut payload, 102, 0, 0, 0x5151, n.saturating_sub(12));
    frames::udp(out, src, dst, &payload);
}

/// What the daemon would expose after running `sim` for `duration`.
fn metrics_view<Q: LinkQueue<Frame>>(
    cfg: &Config,
    sim: &Sim<Q>,
    duration: Duration,
) -> MetricsView {
    let secs = duration.as_secs_f64().max(1e-9);
    let snapshot = |e: &DirectionEngine<Q>| {
        let cats = e.category_counters();
        let arrived = cats.iter().fold((0, 0), |(p, b), c| {
            (p + c.arrived.packets, b + c.arrived.bytes)
        });
        let sent = cats
            .iter()
            .fold((0, 0), |(p, b), c| (p + c.sent.packets, b + c.sent.bytes));
        Snapshot {
            io: IoCounters {
                rx_frames: arrived.0,
                rx_bytes: arrived.1,
                tx_frames: sent.0,
                tx_bytes: sent.1,
                shaper_dropped: cats.iter().map(|c| c.dropped_total().packets).sum(),
                ..IoCounters::default()
            },
            engine: e.counters().clone(),
            categories: cats.to_vec(),
            at: Instant::ZERO + duration,
            running: true,
            retired: Default::default(),
            config: Some(Arc::clone(e.config())),
            ports: Vec::new(),
        }
    };
    let [up, down] = &sim.engines;
    let rates = [up, down].map(|e| {
        e.category_counters()
            .iter()
            .map(|c| c.sent.bytes as f64 * 8.0 / secs)
            .collect()
    });
    MetricsView {
        config: Arc::new(cfg.clone()),
        ready: true,
        snapshots: [snapshot(up), snapshot(down)],
        rates,
        flows: FlowStats::of(up.shared()),
        reloads: [0, 0],
        uptime_seconds: secs,
    }
}

/// The metrics qosd would expose after the built-in office ran `duration`.
pub fn metrics_view_office(cfg: &Config, duration: Duration) -> MetricsView {
    let mut sim = Sim::new(
        cfg,
        |d| Shaper::new(&ShaperConfig::from_config(cfg, d)),
        office(),
    );
    sim.run(duration);
    metrics_view(cfg, &sim, duration)
}

/// The metrics qosd would expose after replaying the capture at `path`.
pub fn metrics_view_pcap(cfg: &Config, path: &Path) -> Result<MetricsView, PcapError> {
    let (sim, duration) = replay(cfg, path, |d| {
        Shaper::new(&ShaperConfig::from_config(cfg, d))
    })?;
    Ok(metrics_view(cfg, &sim, duration))
}

/// Runs the built-in office for `duration` through qosd's shaper and
/// through a plain FIFO, and reports both.
pub fn run_office(cfg: &Config, duration: Duration) -> SimReport {
    let qosd = {
        let mut sim = Sim::new(
            cfg,
            |d| Shaper::new(&ShaperConfig::from_config(cfg, d)),
            office(),
        );
        sim.run(duration);
        report::collect(cfg, &sim.engines, duration)
    };
    let fifo = {
        let mut sim = Sim::new(cfg, |d| fifo_for(cfg, d), office());
        sim.run(duration);
        report::collect(cfg, &sim.engines, duration)
    };
    SimReport::new(cfg, duration, qosd, fifo)
}

fn fifo_for(cfg: &Config, d: Direction) -> Fifo<Frame> {
    let sc = ShaperConfig::from_config(cfg, d);
    let limit =
        (cfg.link.rate(d).bytes_per_sec() as u128 * MODEM_BUFFER.as_nanos() / 1_000_000_000) as u64;
    Fifo::new(&sc, limit.max(16 * 1514))
}

/// Replays the capture at `path` at its timestamps through queues made by
/// `queue` (no feedback: what was sent is replayed), then lets them drain.
fn replay<Q: LinkQueue<Frame>>(
    cfg: &Config,
    path: &Path,
    queue: impl Fn(Direction) -> Q,
) -> Result<(Sim<Q>, Duration), PcapError> {
    let mut frames: Vec<(Duration, Vec<u8>)> = Vec::new();
    for_each_frame(path, |ts, f| frames.push((ts, f.to_vec())))?;
    let first = frames.first().map(|(t, _)| *t).unwrap_or_default();
    let duration = frames
        .last()
        .map(|(t, _)| t.saturating_sub(first))
        .unwrap_or_default()
        .max(Duration::from_millis(1));
    let mut sim = Sim::new(cfg, queue, Vec::new());
    // Initiators, to tell direction when both ends are local or remote.
    let mut seen = std::collections::HashMap::new();
    for (ts, bytes) in &frames {
        let now = Instant::ZERO + ts.saturating_sub(first);
        while let Some(Reverse((t, _, _))) = sim.events.peek() {
            if *t > now {
                break;
            }
            if let Some(Reverse((t, _, ev))) = sim.events.pop() {
                sim.handle(t, ev);
            }
        }
        let pkt = PacketMeta::parse(bytes);
        let (key, side) = crate::flow::FlowKey::of(&pkt);
        let initiator = *seen.entry(key).or_insert(side);
        let d = capture_direction(&pkt, side == initiator);
        sim.scratch.clear();
        sim.scratch.extend_from_slice(bytes);
        sim.send(d, 0, now);
    }
    let end = Instant::ZERO + duration + Duration::from_secs(10);
    while let Some(Reverse((t, _, ev))) = sim.events.pop() {
        if t > end {
            break;
        }
        sim.handle(t, ev);
    }
    Ok((sim, duration))
}

/// Replays the capture at `path` at its timestamps through qosd's shaper
/// and through a plain FIFO (no feedback: what was sent is replayed).
pub fn run_pcap(cfg: &Config, path: &Path) -> Result<SimReport, PcapError> {
    let (q, duration) = replay(cfg, path, |d| {
        Shaper::new(&ShaperConfig::from_config(cfg, d))
    })?;
    let (f, _) = replay(cfg, path, |d| fifo_for(cfg, d))?;
    let qosd = report::collect(cfg, &q.engines, duration);
    let fifo = report::collect(cfg, &f.engines, duration);
    Ok(SimReport::new(cfg, duration, qosd, fifo))
}

#[cfg(test)]
mod tests;
