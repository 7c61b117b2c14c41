//! The discrete-event loop: the office's sources and TCP senders hand
//! frames to the real engines, the queues release them at the instants
//! they choose, and deliveries and losses come back to the senders a
//! one-way delay later.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use super::frames::{self, TcpKind};
use super::scenario::{Kind, ONE_WAY, SimFlow};
use super::tcp::{MSS, Tcp};
use crate::config::{Config, Direction};
use crate::engine::frame::{Frame, FramePool};
use crate::engine::{DirectionEngine, Shared};
use crate::shaper::{DropReason, LinkQueue};
use crate::time::Instant;

/// What happens at an instant of the simulation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Ev {
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

/// Both directions' engines, the flows, and the events still to come.
pub(super) struct Sim<Q> {
    pub(super) engines: [DirectionEngine<Q>; 2],
    pool: FramePool,
    flows: Vec<SimFlow>,
    /// By time, then in the order they were scheduled.
    pub(super) events: BinaryHeap<Reverse<(Instant, u64, Ev)>>,
    seq: u64,
    wake: [Option<Instant>; 2],
    /// The frame being built, handed to [`Sim::send`].
    pub(super) scratch: Vec<u8>,
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

impl<Q: LinkQueue<Frame>> Sim<Q> {
    /// Engines with queues made by `make_queue`, sharing one flow table,
    /// for `flows` (not started yet: see [`Sim::run`]).
    pub(super) fn new(
        cfg: &Config,
        make_queue: impl Fn(Direction) -> Q,
        flows: Vec<SimFlow>,
    ) -> Self {
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

    /// Hands the frame in `scratch`, tagged `t`, to direction `d`.
    pub(super) fn send(&mut self, d: Direction, t: u64, now: Instant) {
        let frame = Frame::new(self.pool.get(), &self.scratch);
        if t != 0 {
            self.tags.insert(buffer_key(&frame), t);
        }
        let i = d.index();
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

    /// Sends what the window of bulk flow `f` allows.
    fn pump(&mut self, f: usize, now: Instant) {
        loop {
            let Some(flow) = self.flows.get_mut(f) else {
                return;
            };
            let Kind::Bulk { dir, .. } = flow.kind else {
                return;
            };
            let Some(seq) = flow.tcp.send() else {
                return;
            };
            let (src, dst) = match dir {
                Direction::Upload => (flow.client, flow.server),
                Direction::Download => (flow.server, flow.client),
            };
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

    /// Lets `ev`, due at `now`, happen.
    pub(super) fn handle(&mut self, now: Instant, ev: Ev) {
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
                if let Some(n) = flow.tcp.delivered() {
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
                    flow.tcp.acked(n);
                }
                self.pump(f, now);
            }
            Ev::Pump(f) => self.pump(f, now),
            Ev::LossDetected(f) => {
                if let Some(flow) = self.flows.get_mut(f) {
                    flow.tcp.lost(now);
                }
                self.pump(f, now);
            }
        }
    }

    fn start(&mut self, f: usize, now: Instant) {
        let Some(flow) = self.flows.get_mut(f) else {
            return;
        };
        match flow.kind.clone() {
            Kind::Bulk { sni, .. } => {
                flow.tcp = Tcp::opened();
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
                        frames::video(&mut self.scratch, src, dst, n);
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

    /// Starts every flow and runs until `duration` (from zero).
    pub(super) fn run(&mut self, duration: Duration) {
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
