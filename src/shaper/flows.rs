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
    /// The packet's host tag (see [`FlowSet::enqueue`]), kept so a resize or
    /// reconfiguration can put it back under its host.
    host: u32,
    enqueued: u64,
}

/// A packet taken out of the slab.
pub(crate) struct Popped<P> {
    pub pkt: P,
    pub len: u32,
    pub enqueued: u64,
    /// Its host's tag.
    pub host: u32,
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
    fn insert(&mut self, pkt: P, len: u32, flow: u32, host: u32, enqueued: u64) -> u32 {
        let idx = self.free;
        if let Some(slot) = self.slots.get_mut(idx as usize) {
            self.free = slot.next;
            *slot = Slot {
                pkt: Some(pkt),
                next: NIL,
                len,
                flow,
                host,
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
                host,
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
                host: slot.host,
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

    fn meta(&self, idx: u32) -> Option<SlotMeta> {
        self.slots.get(idx as usize).map(|s| SlotMeta {
            len: s.len,
            flow: s.flow,
            host: s.host,
            enqueued: s.enqueued,
        })
    }
}

/// What a slot holds besides its packet.
#[derive(Debug, Clone, Copy)]
struct SlotMeta {
    len: u32,
    flow: u32,
    host: u32,
    enqueued: u64,
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
    /// The next old flow of the same host (an intrusive list).
    next: u32,
    /// The host entry it belongs to while active.
    host: u32,
    codel: Codel,
}

impl FlowQueue {
    const EMPTY: FlowQueue = FlowQueue {
        head: NIL,
        tail: NIL,
        bytes: 0,
        deficit: 0,
        list: List::None,
        next: NIL,
        host: 0,
        codel: Codel::ZERO,
    };
}

/// One LAN host's share of a category: a DRR turn between hosts, and the
/// round robin of its own old (backlogged) flows.
#[derive(Clone)]
struct HostQueue {
    /// The host's tag (a hash of its MAC address and VLAN).
    tag: u32,
    deficit: i64,
    /// Flow queues attached to it (new or old).
    flows: u32,
    /// In the host round robin.
    in_rr: bool,
    old_head: u32,
    old_tail: u32,
}

impl HostQueue {
    const EMPTY: HostQueue = HostQueue {
        tag: 0,
        deficit: 0,
        flows: 0,
        in_rr: false,
        old_head: NIL,
        old_tail: NIL,
    };

    fn is_free(&self) -> bool {
        self.flows == 0 && !self.in_rr
    }
}

/// Ways of the set-associative host table: a host finds its own entry
/// unless more than this many hosts of one set are active at once, and
/// only then shares one.
const HOST_WAYS: usize = 8;

/// The flow queues of one category: fq_codel's scheduler (new/sparse flows
/// first, CoDel on each flow) with its bulk round robin made two-level, as
/// CAKE's host isolation intends but with exact DRR at both levels: old
/// flows take turns within their host, hosts take turns by bytes. A new
/// flow is still served ahead of every bulk flow, whoever's it is (a DNS
/// query or a handshake must not wait for its host's turn); its bytes count
/// against its host's deficit, so sparse flows buy no extra share. With a
/// single host tag (`fairness = "flow"`), this is fq_codel exactly.
pub(crate) struct FlowSet {
    flows: Vec<FlowQueue>,
    hosts: Vec<HostQueue>,
    new_flows: VecDeque<u32>,
    /// Hosts with old flows, in round-robin order.
    active_hosts: VecDeque<u32>,
    /// The host entry [`FlowSet::host_entry`] gave last.
    last_host: u32,
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

/// Host entries for `flows` flow queues: as many, in whole sets.
fn host_entries(flows: usize) -> usize {
    flows.div_ceil(HOST_WAYS).max(1) * HOST_WAYS
}

impl FlowSet {
    pub(crate) fn new(n: usize, quantum: u32, codel: CodelParams) -> Self {
        let h = host_entries(n);
        FlowSet {
            flows: vec![FlowQueue::EMPTY; n],
            hosts: vec![HostQueue::EMPTY; h],
            new_flows: VecDeque::with_capacity(n),
            active_hosts: VecDeque::with_capacity(h),
            last_host: 0,
            quantum: i64::from(quantum),
            codel,
        }
    }

    pub(crate) fn set_quantum(&mut self, quantum: u32) {
        self.quantum = i64::from(quantum);
    }

    /// Stores a packet of flow hash `flow` from the host tagged `host`; the
    /// caller counts it.
    #[inline]
    pub(crate) fn enqueue<P>(
        &mut self,
        slab: &mut Slab<P>,
        pkt: P,
        len: u32,
        flow: u32,
        host: u32,
        now: u64,
    ) {
        let slot = slab.insert(pkt, len, flow, host, now);
        self.link(slab, slot, len, flow, host);
    }

    /// The entry of the host tagged `tag`: its own if it has one, else a
    /// free way of its set, else (a full set) the set's first way, shared.
    fn host_entry(&mut self, tag: u32) -> u32 {
        // Most activations are of the host seen last, still busy.
        if let Some(h) = self.hosts.get(self.last_host as usize)
            && h.tag == tag
            && !h.is_free()
        {
            return self.last_host;
        }
        let sets = self.hosts.len() / HOST_WAYS;
        let first = bucket(tag, sets) * HOST_WAYS;
        let ways = self.hosts.get(first..first + HOST_WAYS).unwrap_or_default();
        let own = ways.iter().position(|h| h.tag == tag && !h.is_free());
        let idx = own
            .or_else(|| ways.iter().position(HostQueue::is_free))
            .unwrap_or(0);
        let idx = first + idx;
        if let Some(h) = self.hosts.get_mut(idx)
            && h.is_free()
        {
            h.tag = tag;
            h.deficit = 0;
        }
        self.last_host = idx as u32;
        idx as u32
    }

    /// Appends an already stored slot to its flow's queue.
    #[inline]
    fn link<P>(&mut self, slab: &mut Slab<P>, slot: u32, len: u32, flow: u32, host: u32) {
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
            let hi = self.host_entry(host);
            if let Some(q) = self.flows.get_mut(fi) {
                q.host = hi;
            }
            if let Some(h) = self.hosts.get_mut(hi as usize) {
                h.flows += 1;
            }
            self.new_flows.push_back(fi as u32);
        }
    }

    /// Makes flow `fi` an old flow of its host, the host joining the round
    /// robin if it was not in it.
    fn make_old(&mut self, fi: u32) {
        let Some(flow) = self.flows.get_mut(fi as usize) else {
            return;
        };
        flow.list = List::Old;
        flow.next = NIL;
        let hi = flow.host;
        let Some(host) = self.hosts.get_mut(hi as usize) else {
            return;
        };
        let tail = host.old_tail;
        host.old_tail = fi;
        if tail == NIL {
            host.old_head = fi;
        }
        if !host.in_rr {
            host.in_rr = true;
            // A host pays for what its new flows sent while it had no bulk
            // turn, but saves up nothing.
            host.deficit = host.deficit.min(0).saturating_add(self.quantum);
            self.active_hosts.push_back(hi);
        }
        if tail != NIL
            && let Some(t) = self.flows.get_mut(tail as usize)
        {
            t.next = fi;
        }
    }

    /// Flow `fi` is empty and in no list any more.
    fn detach(&mut self, fi: u32) {
        let Some(flow) = self.flows.get_mut(fi as usize) else {
            return;
        };
        flow.list = List::None;
        if let Some(h) = self.hosts.get_mut(flow.host as usize) {
            h.flows = h.flows.saturating_sub(1);
        }
    }

    /// The next packet of this category, CoDel applied: new flows first,
    /// then DRR between hosts and, within the host, between its flows;
    /// `None` once every flow is empty, or every host with packets is held
    /// back by `may_send` (given a host's tag: may it send now? the
    /// `shaper.host_max` ceiling).
    #[inline]
    pub(crate) fn dequeue<P: ShapedPacket>(
        &mut self,
        slab: &mut Slab<P>,
        now: u64,
        ctr: &mut CategoryCounters,
        dropped: &mut Dropped<P>,
        may_send: &mut impl FnMut(u32) -> bool,
    ) -> Option<Popped<P>> {
        // Hosts passed over in a row because they may not send.
        let mut held = 0usize;
        loop {
            if let Some(&fi) = self.new_flows.front() {
                let tag = self
                    .flows
                    .get(fi as usize)
                    .and_then(|f| self.hosts.get(f.host as usize))
                    .map_or(0, |h| h.tag);
                if !may_send(tag) {
                    // Its host is at its ceiling: no head start.
                    self.new_flows.pop_front();
                    self.make_old(fi);
                    continue;
                }
                if let Some(p) = self.serve_new(fi, slab, now, ctr, dropped) {
                    return Some(p);
                }
                continue;
            }
            let &hi = self.active_hosts.front()?;
            let quantum = self.quantum;
            let host = self.hosts.get_mut(hi as usize)?;
            let fi = host.old_head;
            if fi == NIL {
                host.in_rr = false;
                self.active_hosts.pop_front();
                held = 0;
                continue;
            }
            if !may_send(host.tag) {
                held += 1;
                if held >= self.active_hosts.len() {
                    return None;
                }
                self.active_hosts.pop_front();
                self.active_hosts.push_back(hi);
                continue;
            }
            if host.deficit <= 0 {
                host.deficit = host.deficit.saturating_add(quantum);
                // Alone in the round robin it would come straight back.
                if self.active_hosts.len() > 1 {
                    self.active_hosts.pop_front();
                    self.active_hosts.push_back(hi);
                    held = 0;
                    continue;
                }
            }
            let flow = self.flows.get_mut(fi as usize)?;
            let next = flow.next;
            if flow.deficit <= 0 {
                flow.deficit = flow.deficit.saturating_add(quantum);
                if next != NIL {
                    // To the back of its host's round robin.
                    let host = self.hosts.get_mut(hi as usize)?;
                    host.old_head = next;
                    let tail = host.old_tail;
                    host.old_tail = fi;
                    flow.next = NIL;
                    if let Some(t) = self.flows.get_mut(tail as usize) {
                        t.next = fi;
                    }
                }
                continue;
            }
            match self.codel_dequeue(fi, slab, now, ctr, dropped) {
                Some(p) => {
                    if let Some(host) = self.hosts.get_mut(hi as usize) {
                        host.deficit = host.deficit.saturating_sub(i64::from(p.len));
                    }
                    return Some(p);
                }
                None => {
                    let host = self.hosts.get_mut(hi as usize)?;
                    host.old_head = next;
                    if next == NIL {
                        host.old_tail = NIL;
                    }
                    self.detach(fi);
                }
            }
        }
    }

    /// One step for the new flow `fi` at the head of the new list: its
    /// packet, or `None` when it moved on (deficit spent or empty).
    #[inline]
    fn serve_new<P: ShapedPacket>(
        &mut self,
        fi: u32,
        slab: &mut Slab<P>,
        now: u64,
        ctr: &mut CategoryCounters,
        dropped: &mut Dropped<P>,
    ) -> Option<Popped<P>> {
        let quantum = self.quantum;
        let flow = self.flows.get_mut(fi as usize)?;
        if flow.deficit <= 0 {
            flow.deficit = flow.deficit.saturating_add(quantum);
            self.new_flows.pop_front();
            self.make_old(fi);
            return None;
        }
        let host = flow.host;
        match self.codel_dequeue(fi, slab, now, ctr, dropped) {
            Some(p) => {
                if let Some(h) = self.hosts.get_mut(host as usize) {
                    h.deficit = h.deficit.saturating_sub(i64::from(p.len));
                }
                Some(p)
            }
            None => {
                self.new_flows.pop_front();
                // An emptied new flow goes behind the old ones once, so a
                // flow cannot stay "new" by emptying every round.
                if self.active_hosts.is_empty() {
                    self.detach(fi);
                } else {
                    self.make_old(fi);
                }
                None
            }
        }
    }

    /// CoDel's dequeue on flow `fi`, its deficit charged.
    #[inline]
    fn codel_dequeue<P: ShapedPacket>(
        &mut self,
        fi: u32,
        slab: &mut Slab<P>,
        now: u64,
        ctr: &mut CategoryCounters,
        dropped: &mut Dropped<P>,
    ) -> Option<Popped<P>> {
        let flow = self.flows.get_mut(fi as usize)?;
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
        out
    }

    /// Calls `f` with every active flow queue (new, then each host's old
    /// ones): walks the lists, not the table.
    fn for_each_active(&self, mut f: impl FnMut(usize)) {
        for &fi in &self.new_flows {
            f(fi as usize);
        }
        for &hi in &self.active_hosts {
            let mut fi = self.hosts.get(hi as usize).map_or(NIL, |h| h.old_head);
            while let Some(flow) = self.flows.get(fi as usize) {
                f(fi as usize);
                fi = flow.next;
            }
        }
    }

    /// The flow holding the most bytes, with that number.
    pub(crate) fn fattest(&self) -> Option<(usize, u64)> {
        let mut best: Option<(usize, u64)> = None;
        self.for_each_active(|fi| {
            let bytes = self.flows.get(fi).map_or(0, |f| f.bytes);
            if bytes > best.map_or(0, |b| b.1) {
                best = Some((fi, bytes));
            }
        });
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
        let mut told = |flow: &mut FlowQueue| {
            if flow.bytes <= floor {
                return;
            }
            let told = gone.get_or_insert_with(PacketBytes::default);
            if ecn
                && let Some(head) = slab.pkt_mut(flow.head)
                && head.ecn_capable()
                && head.mark_ce()
            {
                ctr.ecn_marked = ctr.ecn_marked.wrapping_add(1);
                return;
            }
            if let Some(p) = pop_head(flow, slab, ctr) {
                ctr.count_drop(reason, u64::from(p.len));
                told.add(u64::from(p.len));
                dropped.push(p.pkt, reason);
            }
        };
        // Only the lists change the set of active flows, and this does not
        // touch them: walk them by index.
        for i in 0..self.new_flows.len() {
            if let Some(flow) = self
                .new_flows
                .get(i)
                .and_then(|&fi| self.flows.get_mut(fi as usize))
            {
                told(flow);
            }
        }
        for i in 0..self.active_hosts.len() {
            let mut fi = self
                .active_hosts
                .get(i)
                .and_then(|&hi| self.hosts.get(hi as usize))
                .map_or(NIL, |h| h.old_head);
            while let Some(flow) = self.flows.get_mut(fi as usize) {
                told(flow);
                fi = flow.next;
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
    /// `out`; packets stay in the slab. Flow and host state is reset.
    pub(crate) fn unlink_all<P>(&mut self, slab: &Slab<P>, out: &mut Vec<u32>) {
        for flow in &mut self.flows {
            let mut idx = flow.head;
            while idx != NIL {
                out.push(idx);
                idx = slab.next_of(idx);
            }
            *flow = FlowQueue::EMPTY;
        }
        self.hosts.fill(HostQueue::EMPTY);
        self.new_flows.clear();
        self.active_hosts.clear();
    }

    /// Puts slots (from [`FlowSet::unlink_all`], possibly of several
    /// categories) back into this set's queues, oldest first so each queue
    /// stays in arrival order.
    pub(crate) fn relink<P>(&mut self, slab: &mut Slab<P>, slots: &mut [u32]) {
        slots.sort_by_key(|&s| slab.meta(s).map_or(0, |m| m.enqueued));
        for &s in slots.iter() {
            if let Some(m) = slab.meta(s) {
                slab.set_next(s, NIL);
                self.link(slab, s, m.len, m.flow, m.host);
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
        self.hosts = vec![HostQueue::EMPTY; host_entries(n)];
        self.new_flows = VecDeque::with_capacity(n);
        self.active_hosts = VecDeque::with_capacity(self.hosts.len());
        self.relink(slab, &mut slots);
    }

    /// Bytes of the packets in `slots`.
    pub(crate) fn bytes_of<P>(slab: &Slab<P>, slots: &[u32]) -> u64 {
        slots
            .iter()
            .filter_map(|&s| slab.meta(s))
            .map(|m| u64::from(m.len))
            .sum()
    }
}
