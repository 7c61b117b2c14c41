//! The discrete-event loop: the office's sources and TCP ends hand frames
//! to the real engines, the queues release them at the instants they
//! choose, and frames travel a one-way delay to the far end, which answers.
//!
//! The path of a frame, with an ISP line ([`Sim::with_line`]):
//!
//! ```text
//! upload:   LAN host -> qosd upload queue -> line (buffer, capacity) -> one way -> server
//! download: server -> one way -> line (buffer, capacity) -> qosd download queue -> LAN host
//! ```
//!
//! Without a line, qosd's queue is the bottleneck and the frame goes
//! straight from it (or to it) over the one-way delay.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use super::frames::{self, Seg, TcpKind};
use super::line::Line;
use super::scenario::{Kind, ONE_WAY, SimFlow};
use super::tally::{Delivered, Tally};
use super::tcp::{AckPolicy, Conn, DELAYED_ACK, End, MSS, mix, ts_clock};
use super::trace::LinkTrace;
use crate::autorate::{Autorate, Published};
use crate::config::{CategoryId, Config, Direction};
use crate::engine::frame::{Frame, FramePool};
use crate::engine::step_autorate;
use crate::engine::{DirectionEngine, Shared};
use crate::shaper::{DropReason, LinkQueue, ShapedPacket, ShaperConfig};
use crate::time::Instant;

/// How often the autorate run lets its controllers look at the engines.
const AUTORATE_STEP: Duration = Duration::from_millis(10);

/// A dropped handshake segment is sent again after this long.
const HANDSHAKE_RTO: Duration = Duration::from_secs(1);

/// The address the DNS answers give (used by no flow of the office).
const DNS_ANSWER_ADDR: [u8; 4] = [40, 99, 10, 34];

/// The name the office's DNS flow asks for.
const DNS_NAME: &str = "outlook.office365.com";

/// A handshake segment, to send again when it was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Hs {
    /// The client's SYN.
    Syn,
    /// The server's SYN-ACK.
    SynAck,
    /// The client's ClientHello.
    Hello,
    /// The server's ACK of it (upload flows).
    HelloAck,
}

/// What happens at an instant of the simulation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Ev {
    /// Start a flow.
    Start(usize),
    /// A periodic source sends.
    Source(usize),
    /// A direction's queue may release frames.
    Wake(usize),
    /// A direction of the line finished sending its head frame.
    LineDone(usize),
    /// The oldest frame travelling in a direction reaches its far end.
    Arrive(usize),
    /// A flow's delayed-ACK timer (with the receiver's ACK count when set).
    DelayedAck(usize, u32),
    /// A flow's retransmission timer for a segment and its transmission.
    Rto(usize, u32, u32),
    /// A dropped handshake segment of a flow goes again.
    Resend(usize, Hs),
    /// A lost ACK's count reaches its sender (the next cumulative ACK
    /// would have carried it).
    AckCredit(usize, u32),
    /// The autorate run's controllers decide.
    Autorate,
}

/// What a frame is to the model's ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum What {
    /// Nothing the model waits for (media, replayed frames).
    Other,
    /// A handshake segment.
    Handshake(Hs),
    /// The client's ACK of the SYN-ACK.
    HsAck,
    /// Data segment `k`, transmission `tx`.
    Data { k: u32, tx: u32 },
    /// A pure ACK for `n` transmissions, the latest `high_tx`.
    Ack { n: u32, high_tx: u32 },
    /// A DNS query and its id.
    DnsQuery(u16),
    /// A DNS answer.
    DnsAnswer,
}

/// No flow (a replayed frame).
const NO_FLOW: usize = usize::MAX;

/// What the model knows of a frame in flight.
#[derive(Debug, Clone, Copy)]
struct Meta {
    flow: usize,
    what: What,
    dir: Direction,
    /// TCP: sequence number, TSval and TSecr.
    seq: u32,
    tsval: u32,
    tsecr: u32,
    /// When its sender sent it.
    created: Instant,
    /// When it entered its first queue.
    entered: Option<Instant>,
    /// When it entered qosd's queue.
    ingress: Instant,
    /// Time in queues so far.
    waited: Duration,
    /// The part of `waited` in the line's buffer (outside qosd).
    outside: Duration,
    /// What qosd classified it as.
    category: Option<CategoryId>,
}

impl Meta {
    fn new(flow: usize, what: What, dir: Direction, now: Instant) -> Self {
        Meta {
            flow,
            what,
            dir,
            seq: 0,
            tsval: 0,
            tsecr: 0,
            created: now,
            entered: None,
            ingress: now,
            waited: Duration::ZERO,
            outside: Duration::ZERO,
            category: None,
        }
    }
}

/// The ISP line: both directions and the capacity they follow.
struct LineModel {
    trace: LinkTrace,
    lines: [Line; 2],
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
    /// What each frame in flight is, by the address of its buffer: the
    /// engine's frame carries no owner's data (the data path has none), and
    /// a buffer's address is unique while its frame is in flight. Entries
    /// leave when the frame does (delivered or dropped).
    meta: HashMap<usize, Meta>,
    one_way: Duration,
    line: Option<Box<LineModel>>,
    /// Frames travelling the one-way delay, per direction, oldest first.
    pipes: [VecDeque<Frame>; 2],
    /// What the run measured.
    pub(super) tally: Tally,
    default_category: CategoryId,
    categories: usize,
    autorate: Option<Autorate>,
    /// Whether the TCP receivers send stretch ACKs.
    stretch_acks: bool,
}

/// The key of `frame` in [`Sim::meta`].
fn buffer_key(frame: &Frame) -> usize {
    frame.bytes().as_ptr().addr()
}

impl<Q: LinkQueue<Frame>> Sim<Q> {
    /// Engines with queues made by `make_queue`, sharing one flow table,
    /// for `flows` (not started yet: see [`Sim::run`]), with no line.
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
            meta: HashMap::new(),
            one_way: ONE_WAY,
            line: None,
            pipes: [VecDeque::new(), VecDeque::new()],
            tally: Tally::new(cfg.category.len(), &[]),
            default_category: cfg.default_category_id(),
            categories: cfg.category.len(),
            autorate: None,
            stretch_acks: true,
        }
    }

    /// The TCP receivers send an ACK per two segments, never a stretch
    /// (the model before issue 20, for comparisons).
    #[cfg(test)]
    pub(super) fn without_stretch_acks(mut self) -> Self {
        self.stretch_acks = false;
        self
    }

    /// The servers' one-way delay is `one_way`.
    pub(super) fn with_one_way(mut self, one_way: Duration) -> Self {
        self.one_way = one_way;
        self
    }

    /// An ISP line following `trace` between the gateway and the Internet
    /// (its one-way delay half the trace's round trip), the run's phases
    /// those of a run of `duration`; the line's framing adds `overhead`
    /// bytes per frame.
    pub(super) fn with_line(
        mut self,
        trace: &LinkTrace,
        duration: Duration,
        overhead: [i32; 2],
    ) -> Self {
        self.tally = Tally::new(self.categories, &trace.phases(duration));
        self.one_way = trace.rtt / 2;
        self.line = Some(Box::new(LineModel {
            trace: trace.clone(),
            lines: [
                Line::new(Direction::Upload, trace, overhead[0]),
                Line::new(Direction::Download, trace, overhead[1]),
            ],
        }));
        self
    }

    /// The engines' rates follow autorate's controllers, made for `cfg`.
    pub(super) fn with_autorate(mut self, cfg: &Config) -> Self {
        self.autorate = Some(Autorate::new(cfg));
        self
    }

    /// What autorate publishes for metrics, in the autorate run.
    pub(super) fn published(&self) -> Option<Published> {
        self.autorate.as_ref().map(|a| Published {
            status: Direction::BOTH.map(|d| a.status(d)),
            samples: a.samples_by_source(),
        })
    }

    /// The autorate run's controllers.
    #[cfg(test)]
    pub(super) fn autorate(&self) -> Option<&Autorate> {
        self.autorate.as_ref()
    }

    fn at(&mut self, t: Instant, ev: Ev) {
        self.seq += 1;
        self.events.push(Reverse((t, self.seq, ev)));
    }

    /// The frame in `scratch`, described by `meta`.
    fn frame(&mut self, meta: Meta) -> Frame {
        let frame = Frame::new(self.pool.get(), &self.scratch);
        self.meta.insert(buffer_key(&frame), meta);
        frame
    }

    /// Hands the frame in `scratch` to direction `d`'s engine (a replayed
    /// frame, which nobody answers).
    pub(super) fn send(&mut self, d: Direction, now: Instant) {
        let frame = self.frame(Meta::new(NO_FLOW, What::Other, d, now));
        self.enter_engine(d.index(), frame, now);
    }

    /// The frame in `scratch`, from the office's side of flow `f`.
    fn client_send(&mut self, f: usize, what: What, now: Instant) {
        let frame = self.frame(Meta::new(f, what, Direction::Upload, now));
        self.enter_engine(0, frame, now);
    }

    /// The frame in `scratch`, from the Internet's side of flow `f`.
    fn server_send(&mut self, f: usize, what: What, now: Instant) {
        let frame = self.frame(Meta::new(f, what, Direction::Download, now));
        self.travel(1, frame, now);
    }

    /// `frame` sets off over the one-way delay in direction `i`.
    fn travel(&mut self, i: usize, frame: Frame, now: Instant) {
        if let Some(p) = self.pipes.get_mut(i) {
            p.push_back(frame);
            self.at(now + self.one_way, Ev::Arrive(i));
        }
    }

    /// `frame` enters qosd's queue of direction `i`.
    fn enter_engine(&mut self, i: usize, frame: Frame, now: Instant) {
        let key = buffer_key(&frame);
        let len = frame.len() as u64;
        let Some(engine) = self.engines.get_mut(i) else {
            return self.recycle(frame);
        };
        let dir = engine.direction();
        let cat = engine.ingress(frame, now);
        if let Some(m) = self.meta.get_mut(&key) {
            m.ingress = now;
            m.entered.get_or_insert(now);
            m.category = Some(cat);
            if let Some(fl) = self.flows.get_mut(m.flow) {
                *dir.pick_mut(&mut fl.category) = Some(cat);
            }
        }
        self.tally.arrived(dir, cat, len);
        self.after_queue_change(i, now);
    }

    /// `frame` reaches direction `i` of the line (or, without one, goes on).
    fn onto_line(&mut self, i: usize, frame: Frame, now: Instant) {
        let Some(model) = self.line.as_deref_mut() else {
            return match i {
                0 => {
                    self.delivered(&frame);
                    self.travel(0, frame, now)
                }
                _ => self.enter_engine(1, frame, now),
            };
        };
        if let Some(m) = self.meta.get_mut(&buffer_key(&frame)) {
            m.entered.get_or_insert(now);
        }
        let Some(line) = model.lines.get_mut(i) else {
            return self.recycle(frame);
        };
        match line.push(frame, now, &model.trace) {
            Err(frame) => self.dropped(frame, now),
            Ok(Some(t)) => self.at(t, Ev::LineDone(i)),
            Ok(None) => {}
        }
    }

    /// A frame leaves the last queue of its direction: counted delivered.
    fn delivered(&mut self, frame: &Frame) {
        let Some(m) = self.meta.get(&buffer_key(frame)).copied() else {
            return;
        };
        let cat = m.category.unwrap_or(self.default_category);
        let voice = self
            .flows
            .get(m.flow)
            .is_some_and(|fl| matches!(fl.kind, Kind::Call { .. }));
        self.tally.sent(
            m.dir,
            Delivered {
                cat,
                bytes: frame.len() as u64,
                entered: m.entered.unwrap_or(m.created),
                waited: m.waited,
                outside: m.outside,
                voice,
            },
        );
    }

    /// Gives `frame`'s buffer back, forgetting the frame.
    fn recycle(&mut self, frame: Frame) {
        self.meta.remove(&buffer_key(&frame));
        self.pool.put(frame.into_buffer());
    }

    /// Reschedules a direction's wakeup and handles drops.
    fn after_queue_change(&mut self, i: usize, now: Instant) {
        let mut dropped = Vec::new();
        if let Some(engine) = self.engines.get_mut(i) {
            engine.drain_dropped(|f, _reason: DropReason| dropped.push(f));
        }
        for f in dropped {
            self.dropped(f, now);
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

    /// `frame` was dropped at `now` (in qosd's queue or the line's
    /// buffer): counted, and its sender reacts as it would.
    fn dropped(&mut self, frame: Frame, now: Instant) {
        let m = self.meta.remove(&buffer_key(&frame));
        let len = frame.len() as u64;
        self.pool.put(frame.into_buffer());
        let Some(m) = m else {
            return;
        };
        let flow = self.flows.get(m.flow);
        let cat = m
            .category
            .or_else(|| flow.and_then(|fl| *m.dir.pick_ref(&fl.category)))
            .unwrap_or(self.default_category);
        if m.category.is_none() {
            // The line dropped it before qosd saw it: offered all the same.
            self.tally.arrived(m.dir, cat, len);
        }
        self.tally.dropped(m.dir, cat);
        let f = m.flow;
        match m.what {
            What::Data { k, tx } => {
                let Some(conn) = self.conn_mut(f) else {
                    return;
                };
                conn.sender.dropped(k, tx);
                // The timer runs from when the segment was sent.
                let t = (m.created + conn.sender.rto()).max(now);
                self.at(t, Ev::Rto(f, k, tx));
            }
            What::Ack { n, .. } => self.at(now + self.one_way * 3, Ev::AckCredit(f, n)),
            What::Handshake(hs) => self.at(now + HANDSHAKE_RTO, Ev::Resend(f, hs)),
            What::HsAck | What::DnsQuery(_) | What::DnsAnswer | What::Other => {}
        }
    }

    fn conn_mut(&mut self, f: usize) -> Option<&mut Conn> {
        self.flows.get_mut(f).and_then(|fl| fl.conn.as_deref_mut())
    }

    /// Which end of bulk flow `f` sends its data.
    fn data_sender(&self, f: usize) -> Option<End> {
        match self.flows.get(f).map(|fl| &fl.kind) {
            Some(Kind::Bulk {
                dir: Direction::Upload,
                ..
            }) => Some(End::Client),
            Some(Kind::Bulk { .. }) => Some(End::Server),
            _ => None,
        }
    }

    /// Sends a TCP segment of flow `f` from end `from`; an ACK-bearing
    /// one records its acknowledgement as the last sent.
    fn tcp_send(&mut self, f: usize, from: End, out: Out, now: Instant) {
        let Out {
            kind,
            seq,
            ack,
            what,
            payload,
        } = out;
        let Some(flow) = self.flows.get_mut(f) else {
            return;
        };
        let (src, dst) = match from {
            End::Client => (flow.client, flow.server),
            End::Server => (flow.server, flow.client),
        };
        let Some(conn) = flow.conn.as_deref_mut() else {
            return;
        };
        let tsval = ts_clock(src.0, now);
        let end = conn.end_mut(from);
        let tsecr = if kind == TcpKind::Syn {
            0
        } else {
            end.ts_recent
        };
        if kind != TcpKind::Syn {
            end.last_ack_sent = ack;
        }
        let seg = Seg {
            kind,
            seq,
            ack,
            tsval,
            tsecr,
        };
        let sni = match &flow.kind {
            Kind::Bulk { sni, .. } => *sni,
            _ => "",
        };
        match payload {
            Payload::None => frames::tcp(&mut self.scratch, src, dst, seg, &[]),
            Payload::Hello => {
                let hello = frames::client_hello(sni);
                frames::tcp(&mut self.scratch, src, dst, seg, &hello);
            }
            Payload::Mss => frames::tcp(
                &mut self.scratch,
                src,
                dst,
                seg,
                self.payload.get(..MSS).unwrap_or_default(),
            ),
        }
        let mut meta = Meta::new(f, what, Direction::Upload, now);
        meta.seq = seq;
        meta.tsval = tsval;
        meta.tsecr = tsecr;
        match from {
            End::Client => {
                let frame = self.frame(meta);
                self.enter_engine(0, frame, now);
            }
            End::Server => {
                meta.dir = Direction::Download;
                let frame = self.frame(meta);
                self.travel(1, frame, now);
            }
        }
    }

    /// Sends handshake segment `hs` of flow `f`.
    fn handshake(&mut self, f: usize, hs: Hs, now: Instant) {
        let Some(conn) = self.conn_mut(f) else {
            return;
        };
        let (c, s) = (conn.end(End::Client).isn, conn.end(End::Server).isn);
        let hello = conn.hello_len;
        let what = What::Handshake(hs);
        let one = |x: u32| x.wrapping_add(1);
        match hs {
            Hs::Syn => self.tcp_send(
                f,
                End::Client,
                Out {
                    kind: TcpKind::Syn,
                    seq: c,
                    ack: 0,
                    what,
                    payload: Payload::None,
                },
                now,
            ),
            Hs::SynAck => self.tcp_send(
                f,
                End::Server,
                Out {
                    kind: TcpKind::SynAck,
                    seq: s,
                    ack: one(c),
                    what,
                    payload: Payload::None,
                },
                now,
            ),
            Hs::Hello => self.tcp_send(
                f,
                End::Client,
                Out {
                    kind: TcpKind::Ack,
                    seq: one(c),
                    ack: one(s),
                    what,
                    payload: Payload::Hello,
                },
                now,
            ),
            Hs::HelloAck => {
                let ack = one(c).wrapping_add(hello);
                self.tcp_send(
                    f,
                    End::Server,
                    Out {
                        kind: TcpKind::Ack,
                        seq: one(s),
                        ack,
                        what,
                        payload: Payload::None,
                    },
                    now,
                )
            }
        }
    }

    /// Sends what the window of bulk flow `f` allows.
    fn pump(&mut self, f: usize, now: Instant) {
        let Some(from) = self.data_sender(f) else {
            return;
        };
        loop {
            let Some(conn) = self.conn_mut(f) else {
                return;
            };
            if !conn.handshake.established {
                return;
            }
            let Some((k, tx)) = conn.sender.send() else {
                return;
            };
            let seq = conn.data_seq(from, k);
            let ack = conn.end(from).last_ack_sent;
            self.tcp_send(
                f,
                from,
                Out {
                    kind: TcpKind::Ack,
                    seq,
                    ack,
                    what: What::Data { k, tx },
                    payload: Payload::Mss,
                },
                now,
            );
        }
    }

    /// The data receiver of flow `f` acknowledges what it has.
    fn send_ack(&mut self, f: usize, now: Instant) {
        let Some(sender) = self.data_sender(f) else {
            return;
        };
        let receiver = sender.peer();
        let Some(conn) = self.conn_mut(f) else {
            return;
        };
        let info = conn.receiver.ack();
        let ack = conn.data_seq(sender, info.next);
        // The receiver's own next sequence number: after its ClientHello
        // for the client, after its SYN for the server.
        let seq = match receiver {
            End::Client => conn.data_seq(End::Client, 0),
            End::Server => conn.end(End::Server).isn.wrapping_add(1),
        };
        let what = What::Ack {
            n: info.n,
            high_tx: info.high_tx,
        };
        self.tcp_send(
            f,
            receiver,
            Out {
                kind: TcpKind::Ack,
                seq,
                ack,
                what,
                payload: Payload::None,
            },
            now,
        );
    }

    /// A TCP segment of flow `f` (described by `m`) reached end `at`.
    /// `window`: the window field of the segment as it arrived (after
    /// qosd, which may have lowered it).
    fn tcp_receive(&mut self, f: usize, at: End, m: &Meta, window: Option<u16>, now: Instant) {
        let sender = self.data_sender(f);
        let addr = self
            .flows
            .get(f)
            .map(|fl| match at {
                End::Client => fl.client.0,
                End::Server => fl.server.0,
            })
            .unwrap_or_default();
        let Some(conn) = self.conn_mut(f) else {
            return;
        };
        match m.what {
            What::Handshake(Hs::Syn) => {
                let end = conn.end_mut(End::Server);
                end.ts_recent = m.tsval;
                end.last_ack_sent = m.seq.wrapping_add(1);
                self.handshake(f, Hs::SynAck, now);
            }
            What::Handshake(Hs::SynAck) => {
                let end = conn.end_mut(End::Client);
                end.ts_recent = m.tsval;
                end.last_ack_sent = m.seq.wrapping_add(1);
                let first = !conn.handshake.syn_acked;
                conn.handshake.syn_acked = true;
                let (c, s) = (conn.end(End::Client).isn, conn.end(End::Server).isn);
                self.tcp_send(
                    f,
                    End::Client,
                    Out {
                        kind: TcpKind::Ack,
                        seq: c.wrapping_add(1),
                        ack: s.wrapping_add(1),
                        what: What::HsAck,
                        payload: Payload::None,
                    },
                    now,
                );
                if first {
                    self.handshake(f, Hs::Hello, now);
                }
            }
            What::HsAck => conn.end_mut(at).received(m.seq, m.tsval),
            What::Handshake(Hs::Hello) => {
                let end_ack = conn.data_seq(End::Client, 0);
                let end = conn.end_mut(End::Server);
                end.received(m.seq, m.tsval);
                end.last_ack_sent = end_ack;
                match sender {
                    Some(End::Server) => {
                        if !conn.handshake.established {
                            conn.handshake.established = true;
                            self.pump(f, now);
                        }
                    }
                    _ => self.handshake(f, Hs::HelloAck, now),
                }
            }
            What::Handshake(Hs::HelloAck) => {
                conn.end_mut(End::Client).received(m.seq, m.tsval);
                if !conn.handshake.established {
                    conn.handshake.established = true;
                    self.pump(f, now);
                }
            }
            What::Data { k, tx } => {
                conn.end_mut(at).received(m.seq, m.tsval);
                if conn.receiver.segment(k, tx) {
                    self.send_ack(f, now);
                } else {
                    let acks = conn.receiver.acks();
                    self.at(now + DELAYED_ACK, Ev::DelayedAck(f, acks));
                }
            }
            What::Ack { n, high_tx } => {
                conn.end_mut(at).received(m.seq, m.tsval);
                if m.tsecr != 0 {
                    let rtt = ts_clock(addr, now).wrapping_sub(m.tsecr);
                    if rtt < 60_000 {
                        conn.sender
                            .rtt_sample(Duration::from_millis(u64::from(rtt)));
                    }
                }
                if let Some(w) = window {
                    // Both ends' SYNs carry window scale 7 (frames::tcp).
                    conn.sender.set_window((u32::from(w) << 7) / MSS as u32);
                }
                conn.sender.acked(n, high_tx, now);
                self.pump(f, now);
            }
            What::DnsQuery(_) | What::DnsAnswer | What::Other => {}
        }
    }

    /// `frame` reached the end of its journey: the server (upload) or the
    /// LAN host (download), which answers as it would.
    fn receive(&mut self, frame: Frame, now: Instant) {
        let m = self.meta.remove(&buffer_key(&frame));
        // What a receiver's acknowledgement announces, as qosd left it.
        let window = m
            .as_ref()
            .filter(|m| matches!(m.what, What::Ack { .. }))
            .and_then(|_| {
                crate::wan::tcp::window_field(crate::packet::PacketMeta::parse(frame.bytes()).tcp)
            });
        self.pool.put(frame.into_buffer());
        let Some(m) = m else {
            return;
        };
        let at = match m.dir {
            Direction::Upload => End::Server,
            Direction::Download => End::Client,
        };
        match m.what {
            What::DnsQuery(id) => {
                if let Some(fl) = self.flows.get(m.flow) {
                    let a = frames::dns_answer(id, DNS_NAME, DNS_ANSWER_ADDR);
                    frames::udp(&mut self.scratch, fl.server, fl.client, &a);
                    self.server_send(m.flow, What::DnsAnswer, now);
                }
            }
            What::Other | What::DnsAnswer => {}
            _ => self.tcp_receive(m.flow, at, &m, window, now),
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
                    if let Some(m) = self.meta.get_mut(&buffer_key(&frame)) {
                        m.waited += now.saturating_since(m.ingress);
                    }
                    match i {
                        0 => self.onto_line(0, frame, now),
                        _ => {
                            self.delivered(&frame);
                            self.receive(frame, now);
                        }
                    }
                }
                self.after_queue_change(i, now);
            }
            Ev::LineDone(i) => {
                let Some(model) = self.line.as_deref_mut() else {
                    return;
                };
                let Some(line) = model.lines.get_mut(i) else {
                    return;
                };
                let (sent, next) = line.done(now, &model.trace);
                if let Some(t) = next {
                    self.at(t, Ev::LineDone(i));
                }
                let Some(sent) = sent else {
                    return;
                };
                let dir = if i == 0 {
                    Direction::Upload
                } else {
                    Direction::Download
                };
                self.tally.line(dir, sent.wire_bytes, now);
                if let Some(m) = self.meta.get_mut(&buffer_key(&sent.frame)) {
                    m.waited += sent.waited;
                    m.outside += sent.waited;
                }
                match dir {
                    Direction::Upload => {
                        self.delivered(&sent.frame);
                        self.travel(0, sent.frame, now);
                    }
                    Direction::Download => self.enter_engine(1, sent.frame, now),
                }
            }
            Ev::Arrive(i) => {
                let Some(frame) = self.pipes.get_mut(i).and_then(VecDeque::pop_front) else {
                    return;
                };
                match i {
                    0 => self.receive(frame, now),
                    _ => self.onto_line(1, frame, now),
                }
            }
            Ev::DelayedAck(f, acks) => {
                if let Some(conn) = self.conn_mut(f)
                    && conn.receiver.acks() == acks
                    && conn.receiver.owes()
                {
                    self.send_ack(f, now);
                }
            }
            Ev::Rto(f, k, tx) => {
                if let Some(conn) = self.conn_mut(f)
                    && conn.sender.timeout(k, tx, now)
                {
                    self.pump(f, now);
                }
            }
            Ev::Resend(f, hs) => {
                let Some(conn) = self.conn_mut(f) else {
                    return;
                };
                let again = match hs {
                    Hs::Syn => !conn.handshake.syn_acked,
                    Hs::SynAck | Hs::HelloAck | Hs::Hello => !conn.handshake.established,
                };
                if again {
                    self.handshake(f, hs, now);
                }
            }
            Ev::AckCredit(f, n) => {
                if let Some(conn) = self.conn_mut(f) {
                    conn.sender.acked(n, 0, now);
                }
                self.pump(f, now);
            }
            Ev::Autorate => {
                let Some(mut ar) = self.autorate.take() else {
                    return;
                };
                step_autorate(&mut ar, now, &mut self.engines, ShaperConfig::from_config);
                let rates = Direction::BOTH.map(|d| ar.rate(d));
                self.autorate = Some(ar);
                self.tally.rate(now, AUTORATE_STEP, rates);
                self.after_queue_change(0, now);
                self.after_queue_change(1, now);
                self.at(now + AUTORATE_STEP, Ev::Autorate);
            }
        }
    }

    fn start(&mut self, f: usize, now: Instant) {
        let rtt = self.one_way * 2;
        let Some(flow) = self.flows.get_mut(f) else {
            return;
        };
        match flow.kind {
            Kind::Bulk { sni, .. } => {
                let hello = frames::client_hello(sni).len();
                let acks = if self.stretch_acks {
                    AckPolicy::Stretch {
                        seed: mix(f as u64 ^ 0x7374_7265_7463_6800),
                    }
                } else {
                    AckPolicy::EverySecond
                };
                flow.conn = Some(Box::new(Conn::new(f, hello, rtt, acks)));
                self.handshake(f, Hs::Syn, now);
            }
            Kind::Dns { .. } => {
                flow.dns_id = mix(f as u64 ^ 0x0064_6e73) as u16;
                self.source(f, now);
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
                    match d {
                        Direction::Upload => self.client_send(f, What::Other, now),
                        Direction::Download => self.server_send(f, What::Other, now),
                    }
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
                        match d {
                            Direction::Upload => self.client_send(f, What::Other, now),
                            Direction::Download => self.server_send(f, What::Other, now),
                        }
                    }
                }
                self.at(now + Duration::from_secs(1) / fps, Ev::Source(f));
            }
            Kind::Dns { interval } => {
                flow.dns_id = flow.dns_id.wrapping_add(1);
                let id = flow.dns_id;
                let q = frames::dns_query(id, DNS_NAME);
                frames::udp(&mut self.scratch, c, s, &q);
                self.client_send(f, What::DnsQuery(id), now);
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
        if self.autorate.is_some() {
            self.at(Instant::ZERO, Ev::Autorate);
        }
        while let Some(Reverse((t, _, ev))) = self.events.pop() {
            if t > end {
                break;
            }
            self.handle(t, ev);
        }
    }
}

/// A TCP segment for [`Sim::tcp_send`] to build and send.
#[derive(Debug, Clone, Copy)]
struct Out {
    kind: TcpKind,
    seq: u32,
    ack: u32,
    what: What,
    payload: Payload,
}

/// The payload of a TCP segment [`Sim::tcp_send`] builds.
#[derive(Debug, Clone, Copy)]
enum Payload {
    None,
    Hello,
    Mss,
}
