//! Virtual-time harness for the shaper tests: traffic sources (constant
//! rate, greedy, a Reno-like TCP), a loop that wakes the queue exactly when
//! it asks, and per-category / per-source measurements.

// Tests index per-category arrays by category number on purpose.
#![allow(clippy::needless_range_loop)]

mod hosts;
mod ingress;
mod props;
mod scenarios;

use std::collections::VecDeque;

use super::*;
use crate::config::Rate;

pub(super) const MS: u64 = 1_000_000;
pub(super) const SEC: u64 = 1_000_000_000;

/// A test packet: its identity, where it came from, and its ECN bits.
#[derive(Debug)]
pub(super) struct Pkt {
    pub id: u64,
    pub len: usize,
    pub src: usize,
    pub enq: u64,
    pub ect: bool,
    pub ce: bool,
    /// Its LAN host's tag ([`ShapedPacket::host`]).
    pub host: u32,
}

impl Pkt {
    /// A 1000-byte packet from source 0, not ECN-capable.
    pub fn plain(id: u64) -> Self {
        Pkt {
            id,
            len: 1000,
            src: 0,
            enq: 0,
            ect: false,
            ce: false,
            host: 0,
        }
    }
}

impl ShapedPacket for Pkt {
    fn len(&self) -> usize {
        self.len
    }
    fn ecn_capable(&self) -> bool {
        self.ect
    }
    fn mark_ce(&mut self) -> bool {
        if self.ect {
            self.ce = true;
        }
        self.ect
    }
    fn host(&self) -> u32 {
        self.host
    }
}

pub(super) fn mbit(n: u64) -> Rate {
    Rate::from_bps(n * 1_000_000)
}

pub(super) fn kbit(n: u64) -> Rate {
    Rate::from_bps(n * 1_000)
}

/// A minimal Reno: slow start, then +1 packet per window; halves at most
/// once per round trip on a drop or a CE mark.
#[derive(Debug, Clone)]
pub(super) struct Tcp {
    pub rtt: u64,
    pub cwnd: f64,
    pub ssthresh: f64,
    pub inflight: u32,
    pub acks: VecDeque<u64>,
    pub last_cut: u64,
}

impl Tcp {
    pub fn new(rtt: u64) -> Self {
        Tcp {
            rtt,
            cwnd: 10.0,
            ssthresh: f64::INFINITY,
            inflight: 0,
            acks: VecDeque::new(),
            last_cut: 0,
        }
    }
    fn congestion(&mut self, now: u64) {
        if now >= self.last_cut + self.rtt || self.last_cut == 0 {
            self.cwnd = (self.cwnd / 2.0).max(2.0);
            self.ssthresh = self.cwnd;
            self.last_cut = now.max(1);
        }
    }
}

#[derive(Debug, Clone)]
pub(super) enum Kind {
    /// One packet every `interval` from `next`.
    Cbr { interval: u64, next: u64 },
    /// `count` packets at once every `every` from `next`.
    Burst { every: u64, count: u32, next: u64 },
    /// Keeps `depth` packets queued at all times.
    Greedy { depth: usize },
    /// Congestion-controlled.
    Tcp(Tcp),
}

#[derive(Debug, Clone)]
pub(super) struct Source {
    pub cat: CategoryId,
    pub flow: u32,
    /// The LAN host it runs on.
    pub host: u32,
    pub len: usize,
    pub ect: bool,
    pub kind: Kind,
    pub stop: u64,
    /// Packets of this source in the queue now.
    pub queued: usize,
    pub sent: u64,
    pub dropped: u64,
    pub marked: u64,
    pub delay: LogHistogram,
}

impl Source {
    pub fn new(cat: u8, flow: u32, len: usize, kind: Kind) -> Self {
        Source {
            cat: CategoryId(cat),
            flow,
            host: 0,
            len,
            ect: false,
            kind,
            stop: u64::MAX,
            queued: 0,
            sent: 0,
            dropped: 0,
            marked: 0,
            delay: LogHistogram::default(),
        }
    }
    pub fn cbr(cat: u8, flow: u32, len: usize, pps: u64) -> Self {
        Self::new(
            cat,
            flow,
            len,
            Kind::Cbr {
                interval: SEC / pps,
                next: 0,
            },
        )
    }
    pub fn greedy(cat: u8, flow: u32, len: usize) -> Self {
        Self::new(cat, flow, len, Kind::Greedy { depth: 2 })
    }
    pub fn tcp(cat: u8, flow: u32, rtt: u64) -> Self {
        Self::new(cat, flow, 1500, Kind::Tcp(Tcp::new(rtt)))
    }
    /// The same source on LAN host `host`.
    pub fn on_host(mut self, host: u32) -> Self {
        self.host = host;
        self
    }
    pub fn with_ect(mut self) -> Self {
        self.ect = true;
        self
    }
    fn next_event(&self) -> u64 {
        match &self.kind {
            Kind::Cbr { next, .. } | Kind::Burst { next, .. } => *next,
            Kind::Tcp(t) => t.acks.front().copied().unwrap_or(u64::MAX),
            Kind::Greedy { .. } => u64::MAX,
        }
    }
}

/// Runs sources through a queue in virtual time.
pub(super) struct Harness<Q> {
    pub q: Q,
    pub now: u64,
    pub next_id: u64,
    pub sources: Vec<Source>,
    pub overhead: i32,
    /// Window in which delivered wire bytes are summed per category.
    pub window: (u64, u64),
    pub window_bytes: Vec<u64>,
    pub enqueued: u64,
    pub delivered: u64,
    pub dropped: u64,
    pub drops_by_reason: [u64; DropReason::ALL.len()],
    /// Delivery times, when recording (`record_deliveries`).
    pub deliveries: Vec<(u64, usize, usize)>,
    pub record_deliveries: bool,
    pub check_conservation: bool,
}

impl<Q: LinkQueue<Pkt>> Harness<Q> {
    pub fn new(q: Q, sources: Vec<Source>) -> Self {
        let n = q.counters().len();
        Harness {
            q,
            now: 0,
            next_id: 0,
            sources,
            overhead: 0,
            window: (0, 0),
            window_bytes: vec![0; n.max(32)],
            enqueued: 0,
            delivered: 0,
            dropped: 0,
            drops_by_reason: [0; DropReason::ALL.len()],
            deliveries: Vec::new(),
            record_deliveries: false,
            check_conservation: false,
        }
    }

    pub fn send(&mut self, src: usize) {
        let Some(s) = self.sources.get_mut(src) else {
            return;
        };
        if self.now >= s.stop {
            return;
        }
        let p = Pkt {
            id: self.next_id,
            len: s.len,
            src,
            enq: self.now,
            ect: s.ect,
            ce: false,
            host: s.host,
        };
        self.next_id += 1;
        s.queued += 1;
        if let Kind::Tcp(t) = &mut s.kind {
            t.inflight += 1;
        }
        self.enqueued += 1;
        let (cat, flow) = (s.cat, s.flow);
        self.q.enqueue(p, cat, flow, Instant::from_nanos(self.now));
    }

    fn top_up(&mut self, src: usize) {
        let Some(s) = self.sources.get(src) else {
            return;
        };
        match &s.kind {
            Kind::Greedy { depth } => {
                for _ in s.queued..*depth {
                    self.send(src);
                }
            }
            Kind::Tcp(t) => {
                let room = (t.cwnd.floor() as u32).saturating_sub(t.inflight);
                for _ in 0..room {
                    self.send(src);
                }
            }
            Kind::Cbr { .. } | Kind::Burst { .. } => {}
        }
    }

    fn arrivals(&mut self) {
        for i in 0..self.sources.len() {
            loop {
                let now = self.now;
                let s = &mut self.sources[i];
                match &mut s.kind {
                    Kind::Cbr { interval, next } if *next <= now => {
                        *next += *interval;
                        self.send(i);
                    }
                    Kind::Burst { every, count, next } if *next <= now => {
                        *next += *every;
                        for _ in 0..*count {
                            self.send(i);
                        }
                    }
                    Kind::Tcp(t) if t.acks.front().is_some_and(|&a| a <= now) => {
                        t.acks.pop_front();
                        t.inflight -= 1;
                        if t.cwnd < t.ssthresh {
                            t.cwnd += 1.0;
                        } else {
                            t.cwnd += 1.0 / t.cwnd;
                        }
                        self.top_up(i);
                    }
                    _ => break,
                }
            }
            self.top_up(i);
        }
    }

    fn deliver(&mut self, p: Pkt) {
        let now = self.now;
        self.delivered += 1;
        let s = &mut self.sources[p.src];
        s.queued -= 1;
        s.sent += 1;
        s.delay.record(now - p.enq);
        if p.ce {
            s.marked += 1;
        }
        let cat = s.cat.index();
        if let Kind::Tcp(t) = &mut s.kind {
            t.acks.push_back(now + t.rtt);
            if p.ce {
                t.congestion(now);
            }
        }
        if (self.window.0..self.window.1).contains(&now) {
            // Computed here, not with the shaper's own helper, so a shaper
            // that forgets the overhead is caught.
            self.window_bytes[cat] += (p.len as i64 + i64::from(self.overhead)).max(1) as u64;
        }
        if self.record_deliveries {
            self.deliveries.push((now, p.src, p.len));
        }
        if matches!(s.kind, Kind::Greedy { .. }) {
            self.top_up(p.src);
        }
    }

    fn collect_drops(&mut self) {
        let mut got = Vec::new();
        self.q.drain_dropped(|p, r| got.push((p, r)));
        for (p, r) in got {
            self.dropped += 1;
            self.drops_by_reason[DropReason::ALL.iter().position(|&x| x == r).unwrap()] += 1;
            let s = &mut self.sources[p.src];
            s.queued -= 1;
            s.dropped += 1;
            if let Kind::Tcp(t) = &mut s.kind {
                t.inflight -= 1;
                t.congestion(self.now);
            }
        }
    }

    /// One instant: arrivals, then everything allowed to leave.
    pub fn step(&mut self) {
        self.arrivals();
        self.collect_drops();
        while let Some(p) = self.q.dequeue(Instant::from_nanos(self.now)) {
            self.deliver(p);
            self.collect_drops();
        }
        self.collect_drops();
        for i in 0..self.sources.len() {
            self.top_up(i);
        }
        self.collect_drops();
        if self.check_conservation {
            self.assert_conserved();
        }
    }

    pub fn assert_conserved(&self) {
        let c = self.q.counters();
        for (i, ctr) in c.iter().enumerate() {
            assert!(ctr.is_conserved(), "category {i} at {}: {ctr:?}", self.now);
        }
        let queued: u64 = self.sources.iter().map(|s| s.queued as u64).sum();
        assert_eq!(self.enqueued, self.delivered + self.dropped + queued);
        let backlog: u64 = c.iter().map(|x| x.backlog.packets).sum();
        assert_eq!(backlog, queued, "backlog counters vs packets really queued");
    }

    /// Runs until `end` (inclusive), waking exactly when the queue or a
    /// source needs it.
    pub fn run_until(&mut self, end: u64) {
        // Sources with nothing scheduled (greedy ones) start now.
        self.step();
        let mut same = 0;
        loop {
            let mut next = self
                .sources
                .iter()
                .map(Source::next_event)
                .min()
                .unwrap_or(u64::MAX);
            if let Some(w) = self.q.next_wakeup() {
                next = next.min(w.as_nanos().max(self.now));
            }
            if next > end {
                self.now = end;
                self.step();
                return;
            }
            if next == self.now {
                same += 1;
                assert!(same < 100_000, "no progress at {}", self.now);
            } else {
                same = 0;
            }
            self.now = next;
            self.step();
        }
    }

    /// Delivered wire bits per second of each category in the window.
    pub fn window_rate(&self, cat: usize) -> f64 {
        let secs = (self.window.1 - self.window.0) as f64 / SEC as f64;
        self.window_bytes[cat] as f64 * 8.0 / secs
    }
}

/// Shares of the link HTB semantics promise backlogged categories:
/// every `min`, then spare capacity level by level (priority order),
/// split by weight among the level, each capped at its `max`
/// (water-filling). `active[i]` says whether category i is saturated.
pub(super) fn expected_rates(cfg: &ShaperConfig, active: &[bool]) -> Vec<f64> {
    let link = cfg.rate.bps() as f64;
    let cats = &cfg.categories;
    let mut alloc: Vec<f64> = cats
        .iter()
        .zip(active)
        .map(|(c, &a)| if a { c.min.bps() as f64 } else { 0.0 })
        .collect();
    let mut spare = link - alloc.iter().sum::<f64>();
    for level in 0..8u8 {
        let mut open: Vec<usize> = (0..cats.len())
            .filter(|&i| active[i] && cats[i].priority == level)
            .filter(|&i| alloc[i] < cats[i].max.bps() as f64)
            .collect();
        while spare > 1e-6 && !open.is_empty() {
            let wsum: f64 = open.iter().map(|&i| cats[i].weight as f64).sum();
            let mut capped = Vec::new();
            let mut given = 0.0;
            for &i in &open {
                let share = spare * cats[i].weight as f64 / wsum;
                let room = cats[i].max.bps() as f64 - alloc[i];
                if share >= room {
                    capped.push(i);
                }
            }
            if capped.is_empty() {
                for &i in &open {
                    let share = spare * cats[i].weight as f64 / wsum;
                    alloc[i] += share;
                    given += share;
                }
                spare -= given;
                break;
            }
            for &i in &capped {
                let room = cats[i].max.bps() as f64 - alloc[i];
                alloc[i] += room;
                spare -= room;
            }
            open.retain(|i| !capped.contains(i));
        }
    }
    alloc
}
