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
    /// What categories removed by reconfigurations counted.
    retired: CategoryCounters,
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
            retired: CategoryCounters::default(),
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

    /// What the categories that reconfigurations removed had counted.
    pub fn retired(&self) -> &CategoryCounters {
        &self.retired
    }

    /// Everything queued.
    pub fn backlog(&self) -> PacketBytes {
        self.queued
    }
}

impl<P: ShapedPacket> LinkQueue<P> for Fifo<P> {
    /// Queues `pkt`, or drops it (reason `overflow`) if it does not fit.
    /// `flow` is ignored: a FIFO does not know flows.
    fn enqueue(&mut self, pkt: P, category: CategoryId, _flow: u32, now: Instant) {
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
    fn dequeue(&mut self, now: Instant) -> Option<P> {
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
    fn next_wakeup(&self) -> Option<Instant> {
        (!self.queue.is_empty()).then(|| self.link.ready_at())
    }

    /// Hands every dropped packet back to `f`.
    fn drain_dropped<F: FnMut(P, DropReason)>(&mut self, mut f: F) {
        for (p, r) in self.dropped.drain(..) {
            f(p, r);
        }
    }

    fn backlog_bytes(&self) -> u64 {
        self.queued.bytes
    }

    /// Counters, indexed by [`CategoryId`].
    fn counters(&self) -> &[CategoryCounters] {
        &self.counters
    }

    /// Takes `cfg`'s rate, overhead, burst and categories; the byte limit
    /// stays (it is the modem's buffer, not part of `cfg`). Queued packets
    /// keep their place in line; those of removed categories are counted
    /// from now on under the fallback (as arrivals there, as in the
    /// shaper), and the removed categories' counters go to
    /// [`Fifo::retired`].
    fn reconfigure_mapped(&mut self, cfg: &ShaperConfig, origin: &[Option<usize>]) {
        let cfg = cfg.normalized();
        self.link.set_rate(cfg.rate, nanos(cfg.burst));
        self.overhead = cfg.overhead;
        self.fallback = cfg.fallback.index();
        let mut before: Vec<Option<CategoryCounters>> = std::mem::take(&mut self.counters)
            .into_iter()
            .map(Some)
            .collect();
        // Where each category before the change went (by old index).
        let mut moved_to: Vec<Option<u8>> = vec![None; before.len()];
        for i in 0..cfg.categories.len() {
            let old = origin.get(i).copied().flatten();
            let kept = old.and_then(|j| before.get_mut(j)).and_then(Option::take);
            if let (Some(j), Some(_)) = (old, &kept)
                && let Some(m) = moved_to.get_mut(j)
            {
                *m = u8::try_from(i).ok();
            }
            self.counters.push(kept.unwrap_or_default());
        }
        for ctr in before.into_iter().flatten() {
            self.retired.retire(&ctr);
        }
        let fallback = u8::try_from(self.fallback).unwrap_or(0);
        for e in &mut self.queue {
            match moved_to.get(usize::from(e.category)).copied().flatten() {
                Some(i) => e.category = i,
                None => {
                    e.category = fallback;
                    if let Some(ctr) = self.counters.get_mut(self.fallback) {
                        ctr.arrived.add(u64::from(e.len));
                        ctr.backlog.add(u64::from(e.len));
                    }
                }
            }
        }
    }
}
