//! Packet storage and the per-flow fair queues of one category.
//!
//! All queued packets live in one slab shared by every category; a flow
//! queue is a singly linked list of slab slots. Freed slots are reused, so
//! once the slab has grown to the peak backlog nothing is allocated per
//! packet, and memory follows the real backlog rather than the number of
//! flow queues.

use std::collections::VecDeque;

use super::codel::{Codel, CodelParams, CodelQueue};
use super::stats::{CategoryCounters, PacketBytes};
use super::{DropReason, ShapedPacket};

/// "No slot" in a link.
pub(crate) const NIL: u32 = u32::MAX;

/// Most packets dropped from one flow in one go when a budget overflows
/// (fq_codel's batch): amortises the search for the fattest flow.
const DROP_BATCH: u32 = 64;

struct Slot<P> {
    pkt: Option<P>,
    next: u32,
    len: u32,
    flow: u32,
    enqueued: u64,
}

/// A packet taken out of the slab.
pub(crate) struct Popped<P> {
    pub pkt: P,
    pub len: u32,
    pub enqueued: u64,
}

/// Storage for every queued packet of a shaper.
pub(crate) struct Slab<P> {
    slots: Vec<Slot<P>>,
    free: u32,
}

impl<P> Slab<P> {
    pub(crate) fn with_capacity(n: usize) -> Self {
        Slab {
            slots: Vec::with_capacity(n),
            free: NIL,
        }
    }

    #[inline]
    fn insert(&mut self, pkt: P, len: u32, flow: u32, enqueued: u64) -> u32 {
        let idx = self.free;
        if let Some(slot) = self.slots.get_mut(idx as usize) {
            self.free = slot.next;
            *slot = Slot {
                pkt: Some(pkt),
                next: NIL,
                len,
                flow,
                enqueued,
            };
            idx
        } else {
            // The packet limit keeps this far below u32::MAX.
            let idx = u32::try_from(self.slots.len()).unwrap_or(NIL);
            self.slots.push(Slot {
                pkt: Some(pkt),
                next: NIL,
                len,
                flow,
                enqueued,
            });
            idx
        }
    }

    /// Frees slot `idx`; gives its packet and the slot that followed it.
    #[inline]
    fn take(&mut self, idx: u32) -> Option<(Popped<P>, u32)> {
        let slot = self.slots.get_mut(idx as usize)?;
        let pkt = slot.pkt.take()?;
        let next = slot.next;
        slot.next = self.free;
        self.free = idx;
        Some((
            Popped {
                pkt,
                len: slot.len,
                enqueued: slot.enqueued,
            },
            next,
        ))
    }

    #[inline]
    fn set_next(&mut self, idx: u32, next: u32) {
        if let Some(slot) = self.slots.get_mut(idx as usize) {
            slot.next = next;
        }
    }

    fn pkt_mut(&mut self, idx: u32) -> Option<&mut P> {
        self.slots.get_mut(idx as usize)?.pkt.as_mut()
    }

    fn next_of(&self, idx: u32) -> u32 {
        self.slots.get(idx as usize).map_or(NIL, |s| s.next)
    }

    fn meta(&self, idx: u32) -> Option<(u32, u32, u64)> {
        self.slots
            .get(idx as usize)
            .map(|s| (s.len, s.flow, s.enqueued))
    }
}

/// Dropped packets waiting for the caller to take them back, so the daemon
/// can recycle their buffers. Bounded: past the cap, packets are freed here.
pub(crate) struct Dropped<P> {
    pub(crate) items: Vec<(P, DropReason)>,
}

/// Most dropped packets kept for the caller between two drains.
const DROPPED_CAP: usize = 4096;

impl<P> Dropped<P> {
    pub(crate) fn new() -> Self {
        Dropped {
            items: Vec::with_capacity(256),
        }
    }
    #[inline]
    pub(crate) fn push(&mut self, pkt: P, reason: DropReason) {
        if self.items.len() < DROPPED_CAP {
            self.items.push((pkt, reason));
        }
    }
    pub(crate) fn drain(&mut self, mut f: impl FnMut(P, DropReason)) {
        for (p, r) in self.items.drain(..) {
            f(p, r);
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum List {
    None,
    New,
    Old,
}

/// One hashed flow queue.
#[derive(Clone)]
struct FlowQueue {
    head: u32,
    tail: u32,
    bytes: u64,
    deficit: i64,
    list: List,
    codel: Codel,
}

impl FlowQueue {
    const EMPTY: FlowQueue = FlowQueue {
        head: NIL,
        tail: NIL,
        bytes: 0,
        deficit: 0,
        list: List::None,
        codel: Codel::ZERO,
    };
}

/// The flow queues of one category: fq_codel's scheduler (DRR between
/// flows, new/sparse flows first) with CoDel on each flow.
pub(crate) struct FlowSet {
    flows: Vec<FlowQueue>,
    new_flows: VecDeque<u32>,
    old_flows: VecDeque<u32>,
    quantum: i64,
    pub(crate) codel: CodelParams,
}

/// Maps a flow hash onto `n` queues: a multiplicative mix (so callers'
/// sequential ids spread) then a multiply-shift instead of a division.
#[inline]
fn bucket(flow: u32, n: usize) -> usize {
    let mixed = flow.wrapping_mul(0x9E37_79B9);
    ((u64::from(mixed) * n as u64) >> 32) as usize
}

/// CoDel's view of one flow queue.
struct FlowCtx<'a, P> {
    flow: &'a mut FlowQueue,
    slab: &'a mut Slab<P>,
    ctr: &'a mut CategoryCounters,
    dropped: &'a mut Dropped<P>,
    now: u64,
}

impl<P: ShapedPacket> CodelQueue for FlowCtx<'_, P> {
    type Item = Popped<P>;

    #[inline]
    fn pop(&mut self) -> Option<(Popped<P>, u64, u64)> {
        let p = pop_head(self.flow, self.slab, self.ctr)?;
        let sojourn = self.now.saturating_sub(p.enqueued);
        Some((p, sojourn, self.flow.bytes))
    }

    fn drop_item(&mut self, item: Popped<P>) {
        self.ctr.count_drop(DropReason::Codel, u64::from(item.len));
        self.dropped.push(item.pkt, DropReason::Codel);
    }

    fn mark_ce(&mut self, item: &mut Popped<P>) -> bool {
        if item.pkt.ecn_capable() && item.pkt.mark_ce() {
            self.ctr.ecn_marked = self.ctr.ecn_marked.wrapping_add(1);
            true
        } else {
            false
        }
    }
}

#[inline]
fn pop_head<P>(
    flow: &mut FlowQueue,
    slab: &mut Slab<P>,
    ctr: &mut CategoryCounters,
) -> Option<Popped<P>> {
    let (p, next) = slab.take(flow.head)?;
    flow.head = next;
    if next == NIL {
        flow.tail = NIL;
    }
    let len = u64::from(p.len);
    flow.bytes = flow.bytes.saturating_sub(len);
    ctr.backlog.sub(len);
    Some(p)
}

impl FlowSet {
    pub(crate) fn new(n: usize, quantum: u32, codel: CodelParams) -> Self {
        FlowSet {
            flows: vec![FlowQueue::EMPTY; n],
            new_flows: VecDeque::with_capacity(n),
            old_flows: VecDeque::with_capacity(n),
            quantum: i64::from(quantum),
            codel,
        }
    }

    pub(crate) fn set_quantum(&mut self, quantum: u32) {
        self.quantum = i64::from(quantum);
    }

    /// Stores a packet; the caller counts it.
    #[inline]
    pub(crate) fn enqueue<P>(&mut self, slab: &mut Slab<P>, pkt: P, len: u32, flow: u32, now: u64) {
        let slot = slab.insert(pkt, len, flow, now);
        self.link(slab, slot, len, flow);
    }

    /// Appends an already stored slot to its flow's queue.
    #[inline]
    fn link<P>(&mut self, slab: &mut Slab<P>, slot: u32, len: u32, flow: u32) {
        let fi = bucket(flow, self.flows.len());
        let Some(q) = self.flows.get_mut(fi) else {
            return;
        };
        if q.tail == NIL {
            q.head = slot;
        } else {
            slab.set_next(q.tail, slot);
        }
        q.tail = slot;
        q.bytes = q.bytes.saturating_add(u64::from(len));
        if q.list == List::None {
            // A flow that had gone quiet comes back as a new (sparse) flow:
            // it is served before the flows with a standing queue.
            q.list = List::New;
            q.deficit = self.quantum;
            self.new_flows.push_back(fi as u32);
        }
    }

    /// The next packet of this category by DRR between its flows, CoDel
    /// applied; `None` once every flow is empty.
    #[inline]
    pub(crate) fn dequeue<P: ShapedPacket>(
        &mut self,
        slab: &mut Slab<P>,
        now: u64,
        ctr: &mut CategoryCounters,
        dropped: &mut Dropped<P>,
    ) -> Option<Popped<P>> {
        loop {
            let (fi, from_new) = match self.new_flows.front() {
                Some(&f) => (f, true),
                None => (*self.old_flows.front()?, false),
            };
            let quantum = self.quantum;
            let flow = self.flows.get_mut(fi as usize)?;
            if flow.deficit <= 0 {
                flow.deficit = flow.deficit.saturating_add(quantum);
                flow.list = List::Old;
                if from_new {
                    self.new_flows.pop_front();
                } else {
                    self.old_flows.pop_front();
                }
                self.old_flows.push_back(fi);
                continue;
            }
            let mut codel = flow.codel;
            let mut ctx = FlowCtx {
                flow,
                slab,
                ctr,
                dropped,
                now,
            };
            let out = codel.dequeue(&mut ctx, now, &self.codel);
            ctx.flow.codel = codel;
            if let Some(p) = &out {
                ctx.flow.deficit = ctx.flow.deficit.saturating_sub(i64::from(p.len));
            }
            match out {
                Some(p) => return Some(p),
                None => {
                    if from_new {
                        self.new_flows.pop_front();
                    } else {
                        self.old_flows.pop_front();
                    }
                    // An emptied new flow goes behind the old ones once, so
                    // a flow cannot stay "new" by emptying every round.
                    let to_old = from_new && !self.old_flows.is_empty();
                    if let Some(f) = self.flows.get_mut(fi as usize) {
                        f.list = if to_old { List::Old } else { List::None };
                    }
                    if to_old {
                        self.old_flows.push_back(fi);
                    }
                }
            }
        }
    }

    /// The flow holding the most bytes, with that number.
    pub(crate) fn fattest(&self) -> Option<(usize, u64)> {
        let mut best: Option<(usize, u64)> = None;
        for &fi in self.new_flows.iter().chain(self.old_flows.iter()) {
            let bytes = self.flows.get(fi as usize).map_or(0, |f| f.bytes);
            if bytes > best.map_or(0, |b| b.1) {
                best = Some((fi as usize, bytes));
            }
        }
        best
    }

    /// Tells every flow holding more than `floor` bytes to slow down:
    /// marks its head packet CE when `ecn` allows and the packet is
    /// ECN-capable, else drops it (counted as `reason`). The head, not the
    /// tail: the sender learns of it a queue's worth sooner. Returns what
    /// was dropped (`None` when no flow was told).
    pub(crate) fn signal_standing<P: ShapedPacket>(
        &mut self,
        floor: u64,
        slab: &mut Slab<P>,
        ctr: &mut CategoryCounters,
        dropped: &mut Dropped<P>,
        ecn: bool,
        reason: DropReason,
    ) -> Option<PacketBytes> {
        let mut gone: Option<PacketBytes> = None;
        for &fi in self.new_flows.iter().chain(self.old_flows.iter()) {
            let Some(flow) = self.flows.get_mut(fi as usize) else {
                continue;
            };
            if flow.bytes <= floor {
                continue;
            }
            let told = gone.get_or_insert_with(PacketBytes::default);
            if ecn
                && let Some(head) = slab.pkt_mut(flow.head)
                && head.ecn_capable()
                && head.mark_ce()
            {
                ctr.ecn_marked = ctr.ecn_marked.wrapping_add(1);
                continue;
            }
            if let Some(p) = pop_head(flow, slab, ctr) {
                ctr.count_drop(reason, u64::from(p.len));
                told.add(u64::from(p.len));
                dropped.push(p.pkt, reason);
            }
        }
        gone
    }

    /// Drops from the head of flow `fi`: at least one packet, then on until
    /// half its bytes or [`DROP_BATCH`] packets are gone (as fq_codel does).
    pub(crate) fn drop_head<P>(
        &mut self,
        fi: usize,
        slab: &mut Slab<P>,
        ctr: &mut CategoryCounters,
        dropped: &mut Dropped<P>,
        reason: DropReason,
    ) {
        let Some(flow) = self.flows.get_mut(fi) else {
            return;
        };
        let threshold = flow.bytes / 2;
        let mut packets = 0u32;
        let mut bytes = 0u64;
        while let Some(p) = pop_head(flow, slab, ctr) {
            packets += 1;
            bytes += u64::from(p.len);
            ctr.count_drop(reason, u64::from(p.len));
            dropped.push(p.pkt, reason);
            if packets >= DROP_BATCH || bytes >= threshold {
                break;
            }
        }
    }

    /// Empties every flow queue, appending its slots (in queue order) to
    /// `out`; packets stay in the slab. Flow state is reset.
    pub(crate) fn unlink_all<P>(&mut self, slab: &Slab<P>, out: &mut Vec<u32>) {
        for flow in &mut self.flows {
            let mut idx = flow.head;
            while idx != NIL {
                out.push(idx);
                idx = slab.next_of(idx);
            }
            *flow = FlowQueue::EMPTY;
        }
        self.new_flows.clear();
        self.old_flows.clear();
    }

    /// Puts slots (from [`FlowSet::unlink_all`], possibly of several
    /// categories) back into this set's queues, oldest first so each queue
    /// stays in arrival order.
    pub(crate) fn relink<P>(&mut self, slab: &mut Slab<P>, slots: &mut [u32]) {
        slots.sort_by_key(|&s| slab.meta(s).map_or(0, |m| m.2));
        for &s in slots.iter() {
            if let Some((len, flow, _)) = slab.meta(s) {
                slab.set_next(s, NIL);
                self.link(slab, s, len, flow);
            }
        }
    }

    /// Resizes to `n` queues, rehashing what is queued.
    pub(crate) fn resize<P>(&mut self, n: usize, slab: &mut Slab<P>) {
        if n == self.flows.len() {
            return;
        }
        let mut slots = Vec::new();
        self.unlink_all(slab, &mut slots);
        self.flows = vec![FlowQueue::EMPTY; n];
        self.new_flows = VecDeque::with_capacity(n);
        self.old_flows = VecDeque::with_capacity(n);
        self.relink(slab, &mut slots);
    }

    /// Bytes of the packets in `slots`.
    pub(crate) fn bytes_of<P>(slab: &Slab<P>, slots: &[u32]) -> u64 {
        slots
            .iter()
            .filter_map(|&s| slab.meta(s))
            .map(|m| u64::from(m.0))
            .sum()
    }
}
