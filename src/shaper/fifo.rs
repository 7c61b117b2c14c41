//! The "without qosd" baseline: one tail-drop FIFO at the link rate with a
//! deep byte limit, the way a modem's buffer behaves. `qosd simulate` runs
//! the same traffic through it and through [`super::Shaper`].

use std::collections::VecDeque;

use crate::config::CategoryId;
use crate::time::Instant;

use super::bucket::TokenBucket;
use super::stats::{CategoryCounters, PacketBytes};
use super::{DropReason, LinkQueue, ShapedPacket, ShaperConfig, nanos, wire_len};

struct Entry<P> {
    pkt: P,
    len: u32,
    category: u8,
    enqueued: u64,
}

/// A tail-drop FIFO at a fixed rate. Categories only select the counters.
pub struct Fifo<P> {
    queue: VecDeque<Entry<P>>,
    limit: u64,
    queued: PacketBytes,
    link: TokenBucket,
    overhead: i32,
    counters: Vec<CategoryCounters>,
    fallback: usize,
    dropped: Vec<(P, DropReason)>,
}

impl<P: ShapedPacket> Fifo<P> {
    /// A FIFO at `cfg`'s link rate, overhead and burst, holding at most
    /// `limit_bytes`, with counters for `cfg`'s categories and its fallback
    /// (everything else in `cfg` is ignored).
    pub fn new(cfg: &ShaperConfig, limit_bytes: u64) -> Self {
        let cfg = cfg.normalized();
        Fifo {
            queue: VecDeque::with_capacity(1024),
            limit: limit_bytes,
            queued: PacketBytes::default(),
            link: TokenBucket::new(cfg.rate, nanos(cfg.burst)),
            overhead: cfg.overhead,
            counters: vec![CategoryCounters::default(); cfg.categories.len()],
            fallback: cfg.fallback.index(),
            dropped: Vec::with_capacity(256),
        }
    }

    /// The counters a packet of `category` goes to (the fallback category
    /// if it does not exist, as in the shaper).
    fn slot(&self, category: CategoryId) -> usize {
        if category.index() < self.counters.len() {
            category.index()
        } else {
            self.fallback
        }
    }

    /// Queues `pkt`, or drops it (reason `overflow`) if it does not fit.
    /// `flow` is ignored: a FIFO does not know flows.
    pub fn enqueue(&mut self, pkt: P, category: CategoryId, _flow: u32, now: Instant) {
        let ci = self.slot(category);
        let len = u32::try_from(pkt.len()).unwrap_or(u32::MAX);
        let Some(ctr) = self.counters.get_mut(ci) else {
            return;
        };
        ctr.arrived.add(u64::from(len));
        if self.queued.bytes.saturating_add(u64::from(len)) > self.limit {
            ctr.count_drop(DropReason::Overflow, u64::from(len));
            self.dropped.push((pkt, DropReason::Overflow));
            return;
        }
        ctr.backlog.add(u64::from(len));
        self.queued.add(u64::from(len));
        self.queue.push_back(Entry {
            pkt,
            len,
            category: u8::try_from(ci).unwrap_or(0),
            enqueued: now.as_nanos(),
        });
    }

    /// The head packet if the link allows it to leave at `now`.
    pub fn dequeue(&mut self, now: Instant) -> Option<P> {
        if self.queue.is_empty() || !self.link.is_ready(now) {
            return None;
        }
        let e = self.queue.pop_front()?;
        let len = u64::from(e.len);
        self.queued.sub(len);
        self.link.charge(wire_len(e.len, self.overhead), now);
        if let Some(ctr) = self.counters.get_mut(usize::from(e.category)) {
            ctr.backlog.sub(len);
            ctr.count_sent(len, now.as_nanos().saturating_sub(e.enqueued));
        }
        Some(e.pkt)
    }

    /// When the head packet may leave; `None` when empty.
    pub fn next_wakeup(&self) -> Option<Instant> {
        (!self.queue.is_empty()).then(|| self.link.ready_at())
    }

    /// Hands every dropped packet back to `f`.
    pub fn drain_dropped(&mut self, mut f: impl FnMut(P, DropReason)) {
        for (p, r) in self.dropped.drain(..) {
            f(p, r);
        }
    }

    /// Counters, indexed by [`CategoryId`].
    pub fn counters(&self) -> &[CategoryCounters] {
        &self.counters
    }

    /// Everything queued.
    pub fn backlog(&self) -> PacketBytes {
        self.queued
    }
}

impl<P: ShapedPacket> LinkQueue<P> for Fifo<P> {
    fn enqueue(&mut self, pkt: P, category: CategoryId, flow: u32, now: Instant) {
        Fifo::enqueue(self, pkt, category, flow, now);
    }
    fn dequeue(&mut self, now: Instant) -> Option<P> {
        Fifo::dequeue(self, now)
    }
    fn next_wakeup(&self) -> Option<Instant> {
        Fifo::next_wakeup(self)
    }
    fn drain_dropped(&mut self, f: &mut dyn FnMut(P, DropReason)) {
        Fifo::drain_dropped(self, f);
    }
    fn counters(&self) -> &[CategoryCounters] {
        Fifo::counters(self)
    }
}
