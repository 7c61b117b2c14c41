//! One connection's entry in the flow table: what the table itself keeps
//! (identity, counters, timestamps, CLOCK and liveness bits) around the
//! owner's per-flow value `V`.
//!
//! Both data-path threads hold the same entry (through their
//! [`FlowCache`](super::FlowCache)s) and touch it on every packet without a
//! lock: each direction's counters are written only by that direction's
//! thread, with plain loads and stores, and sit on cache lines of their
//! own, so the upload and download threads of one busy connection do not
//! steal a line from each other on every packet. What both threads read
//! per packet (liveness, the CLOCK bit, the owner's verdict) is written
//! rarely.

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};

use super::key::{FlowKey, Side};
use crate::config::Direction;
use crate::packet::{PacketMeta, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN};
use crate::time::Instant;

/// What the table keeps per flow besides its own bookkeeping: the
/// classification state, in qosd. Shared by both data-path threads, so it
/// synchronises itself (atomics, or a lock off the settled path).
pub trait FlowValue: Default + Send + Sync {
    /// Gives back what the value holds beyond itself (inspection memory),
    /// and starts afresh. Called when the flow leaves the table and when a
    /// new connection reuses its 5-tuple: a data-path thread may still hold
    /// the entry for a while after it left.
    fn reset(&self);
}

impl FlowValue for () {
    fn reset(&self) {}
}

/// One direction's counters. Written only by that direction's thread.
#[derive(Debug, Default)]
struct DirCounters {
    packets: AtomicU64,
    bytes: AtomicU64,
    /// Nanoseconds of the latest packet (0: none yet).
    last_seen: AtomicU64,
    /// The flow's `restarts` these counts belong to: a restart by the other
    /// direction's thread is applied here by this direction's own thread
    /// (clearing them from the other would race with its stores).
    epoch: AtomicU32,
}

impl DirCounters {
    /// Counts one packet. One writer per direction (its data-path thread):
    /// a load and a store, not a locked read-modify-write, which costs as
    /// much as the rest of a settled packet's lookup. Two writers of one
    /// direction (never the case in qosd) could lose a count, not corrupt it.
    #[inline]
    fn record(&self, len: u64, now: Instant) {
        self.packets
            .store(self.packets.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        self.bytes
            .store(self.bytes.load(Ordering::Relaxed) + len, Ordering::Relaxed);
        self.last_seen.store(now.as_nanos(), Ordering::Relaxed);
    }

    /// Starts afresh for the flow's restart `epoch` (by the writer only).
    fn renew(&self, epoch: u32) {
        self.packets.store(0, Ordering::Relaxed);
        self.bytes.store(0, Ordering::Relaxed);
        self.last_seen.store(0, Ordering::Relaxed);
        self.epoch.store(epoch, Ordering::Relaxed);
    }
}

/// One connection, as both directions and the API see it.
///
/// Laid out (`repr(C)`, in this order) so that what both threads read on
/// every packet (the owner's verdict, which a value keeps at its end, then
/// `id`, `alive`, `referenced`, `key`) is at least 64 bytes from each direction's
/// counters: whatever the allocation's alignment, no cache line holds
/// both. The gaps hold what is rarely touched: the value's own state
/// before, timestamps, flags and padding after. (Aligning the entry to a
/// line instead made every new flow an aligned allocation, which costs
/// glibc a split and later a consolidation of the leftovers: a third more
/// per new flow.)
#[repr(C)]
pub struct Flow<V> {
    up: DirCounters,
    /// The owner's per-flow state.
    pub value: V,
    id: u64,
    /// False once the flow left the table: holders look it up again.
    pub(super) alive: AtomicBool,
    /// CLOCK bit: set by traffic, cleared by the eviction hand.
    pub(super) referenced: AtomicBool,
    /// New connections that reused this entry's 5-tuple (see
    /// `DirCounters::epoch`).
    restarts: AtomicU32,
    /// Read on every packet too (a thread's cache confirms a hit by it).
    key: FlowKey,
    first_seen: AtomicU64,
    /// [`Side`] as 0 (Lo) or 1 (Hi).
    initiator: AtomicU8,
    /// [`Direction::index`] of the initiator's packets.
    first_direction: AtomicU8,
    closed: AtomicBool,
    /// With the fields above, 64 bytes between the shared fields and
    /// `down`.
    _gap: [u64; 6],
    down: DirCounters,
}

fn side_code(s: Side) -> u8 {
    match s {
        Side::Lo => 0,
        Side::Hi => 1,
    }
}

impl<V: FlowValue> Flow<V> {
    pub(super) fn new(
        key: FlowKey,
        id: u64,
        initiator: Side,
        dir: Direction,
        now: Instant,
    ) -> Self {
        Flow {
            up: DirCounters::default(),
            key,
            id,
            first_seen: AtomicU64::new(now.as_nanos()),
            initiator: AtomicU8::new(side_code(initiator)),
            first_direction: AtomicU8::new(dir.index() as u8),
            closed: AtomicBool::new(false),
            referenced: AtomicBool::new(false),
            restarts: AtomicU32::new(0),
            alive: AtomicBool::new(true),
            value: V::default(),
            _gap: [0; 6],
            down: DirCounters::default(),
        }
    }

    /// Counts `pkt` (travelling `dir`, from `side`) and follows its TCP
    /// state. `seen_before`: the flow existed before this packet (sets the
    /// CLOCK bit; a new flow earns its second chance with its next packet).
    #[inline]
    pub(super) fn record(
        &self,
        side: Side,
        pkt: &PacketMeta<'_>,
        dir: Direction,
        now: Instant,
        seen_before: bool,
    ) {
        if pkt.tcp_flags & (TCP_SYN | TCP_ACK) == TCP_SYN && self.closed.load(Ordering::Relaxed) {
            self.restart(side, dir, now);
        }
        if seen_before && !self.referenced.load(Ordering::Relaxed) {
            // Checked first: a store on every packet would make the line
            // bounce between the two directions' threads.
            self.referenced.store(true, Ordering::Relaxed);
        }
        let counters = self.counters(dir);
        let epoch = self.restarts.load(Ordering::Relaxed);
        if counters.epoch.load(Ordering::Relaxed) != epoch {
            counters.renew(epoch);
        }
        counters.record(pkt.frame_len as u64, now);
        if pkt.tcp_flags & (TCP_FIN | TCP_RST) != 0 {
            self.closed.store(true, Ordering::Relaxed);
        }
    }

    /// A new connection reusing the 5-tuple of a closed one: start afresh,
    /// keeping the id and the place in the table.
    #[cold]
    fn restart(&self, side: Side, dir: Direction, now: Instant) {
        // Each direction's thread clears its own counters on its next packet.
        self.restarts.fetch_add(1, Ordering::Relaxed);
        self.first_seen.store(now.as_nanos(), Ordering::Relaxed);
        self.initiator.store(side_code(side), Ordering::Relaxed);
        self.first_direction
            .store(dir.index() as u8, Ordering::Relaxed);
        self.closed.store(false, Ordering::Relaxed);
        self.referenced.store(false, Ordering::Relaxed);
        self.value.reset();
    }

    /// Marks the flow gone from the table and releases what its value holds.
    pub(super) fn retire(&self) {
        self.alive.store(false, Ordering::Release);
        self.value.reset();
    }

    /// First and last byte of what both threads read on every packet
    /// besides the value (layout tests).
    #[cfg(test)]
    pub(crate) fn shared_addrs(&self) -> (*const u8, *const u8) {
        let start = &self.id as *const u64 as *const u8;
        let end = (&self.key as *const FlowKey as *const u8).wrapping_add(size_of::<FlowKey>() - 1);
        (start, end)
    }

    /// Idle past its timeout at `now` (TCP, closed TCP or UDP, in ns).
    pub(super) fn idle_at(
        &self,
        now: Instant,
        tcp_idle: u64,
        udp_idle: u64,
        tcp_closed: u64,
    ) -> bool {
        let timeout = if self.key.protocol == 6 {
            if self.closed.load(Ordering::Relaxed) {
                tcp_closed
            } else {
                tcp_idle
            }
        } else {
            udp_idle
        };
        now.nanos_since(self.last_seen()) >= timeout
    }
}

impl<V> Flow<V> {
    /// First and last byte of each direction's counters (layout tests).
    #[cfg(test)]
    pub(crate) fn counter_addrs(&self) -> ((*const u8, *const u8), (*const u8, *const u8)) {
        let span = |c: &DirCounters| {
            let start = c as *const DirCounters as *const u8;
            (start, start.wrapping_add(size_of::<DirCounters>() - 1))
        };
        (span(&self.up), span(&self.down))
    }

    #[inline]
    fn counters(&self, dir: Direction) -> &DirCounters {
        match dir {
            Direction::Upload => &self.up,
            Direction::Download => &self.down,
        }
    }

    /// `dir`'s counters, unless they still count the connection before a
    /// restart (their thread has not seen a packet since).
    #[inline]
    fn current(&self, dir: Direction) -> Option<&DirCounters> {
        let c = self.counters(dir);
        (c.epoch.load(Ordering::Relaxed) == self.restarts.load(Ordering::Relaxed)).then_some(c)
    }

    /// The flow's canonical key.
    pub fn key(&self) -> &FlowKey {
        &self.key
    }

    /// Unique id (order of creation), for reports, the API and the
    /// shaper's flow queues.
    #[inline]
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The side that opened the connection: a SYN's sender, or inferred
    /// from the first packet seen (see `roles`).
    #[inline]
    pub fn initiator(&self) -> Side {
        if self.initiator.load(Ordering::Relaxed) == 0 {
            Side::Lo
        } else {
            Side::Hi
        }
    }

    /// The direction the initiator's packets travel.
    #[inline]
    pub fn first_direction(&self) -> Direction {
        if self.first_direction.load(Ordering::Relaxed) == 0 {
            Direction::Upload
        } else {
            Direction::Download
        }
    }

    /// When the first packet was seen.
    pub fn first_seen(&self) -> Instant {
        Instant::from_nanos(self.first_seen.load(Ordering::Relaxed))
    }

    /// When the latest packet, either way, was seen.
    pub fn last_seen(&self) -> Instant {
        let seen = |d| {
            self.current(d)
                .map_or(0, |c| c.last_seen.load(Ordering::Relaxed))
        };
        let (up, down) = (seen(Direction::Upload), seen(Direction::Download));
        Instant::from_nanos(up.max(down).max(self.first_seen.load(Ordering::Relaxed)))
    }

    /// Packets seen travelling `dir`.
    #[inline]
    pub fn packets(&self, dir: Direction) -> u64 {
        self.current(dir)
            .map_or(0, |c| c.packets.load(Ordering::Relaxed))
    }

    /// Bytes (frame lengths) seen travelling `dir`.
    #[inline]
    pub fn bytes(&self, dir: Direction) -> u64 {
        self.current(dir)
            .map_or(0, |c| c.bytes.load(Ordering::Relaxed))
    }

    /// Total packets both ways.
    pub fn total_packets(&self) -> u64 {
        self.packets(Direction::Upload) + self.packets(Direction::Download)
    }

    /// Total bytes both ways. Reads the other direction's line: not for
    /// every packet.
    pub fn total_bytes(&self) -> u64 {
        self.bytes(Direction::Upload) + self.bytes(Direction::Download)
    }

    /// A TCP FIN or RST was seen: expires soon.
    pub fn closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }

    /// Where the CLOCK bit is (for a prefetch before the hand reads it).
    #[inline]
    pub(super) fn referenced_ptr(&self) -> *const AtomicBool {
        &self.referenced
    }

    /// Still in the table.
    #[inline]
    pub fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Acquire)
    }
}

impl<V: std::fmt::Debug> std::fmt::Debug for Flow<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flow")
            .field("key", &self.key)
            .field("id", &self.id)
            .field("initiator", &self.initiator())
            .field(
                "packets",
                &[
                    self.up.packets.load(Ordering::Relaxed),
                    self.down.packets.load(Ordering::Relaxed),
                ],
            )
            .field("closed", &self.closed())
            .field("value", &self.value)
            .finish()
    }
}
