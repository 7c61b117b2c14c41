//! The download window clamp (issue 20): while the download is full, each
//! download TCP flow's receive window, as the office's computer announces
//! it in its acknowledgements, is lowered to what the flow's share of the
//! line needs for its round trip plus a few milliseconds.
//!
//! Why: qosd shapes the download after the line, so the only queue it can
//! keep out of the ISP's buffer is one the senders never send. Drops and
//! ECN marks (CoDel, the ISP-queue guard) work on senders that answer
//! them, and only a round trip after the queue formed; BBRv1 does not
//! answer a drop at all, and each of several BBR flows keeps up to twice
//! its estimate of the line in flight, so together they hold a standing
//! queue, and while they probe they send faster than the line, so it forms
//! in the ISP's buffer. Every TCP sender, whatever its congestion control,
//! keeps within the receiver's window. With each flow's window at
//! `rate x (round trip + ALLOWANCE)`, the flows together hold at most
//! about `ALLOWANCE` of queue (qosd's and the ISP's), and they send as the
//! acknowledgements come back, at qosd's rate, below the line's: that
//! queue forms in qosd, where calls go first, not in the ISP's buffer.
//! (Packeteer's TCP rate control and some WAN optimisers did this; the
//! windows here follow what qosd's own scheduler gives each flow.)
//!
//! How: the download thread ([`DownloadWindows`]) measures each flow's
//! rate over intervals of at least two round trips and its least round
//! trip (the WAN-delay meter's samples, qosd's and the LAN's queues not in
//! them), and publishes `rate x (round trip + allowance)` on the shared
//! [`WindowBoard`]. A flow whose window is the limit gets, through a
//! round trip of `base + queue`, `rate x (base + allowance) / (base +
//! queue)`: it grows while the queue is under the allowance and shrinks
//! while it is over, so the windows settle where the queue is the
//! allowance, and they follow every change of share (weights, new flows,
//! autorate) within a few round trips. The allowance starts at 4 ms and
//! adapts to what the receivers need ([`DownloadWindows::allowance`]). A
//! flow that opens (or resumes after a pause) while the download is full
//! starts at an equal share of the line, so it is neither held back while
//! its rate is measured nor let to overshoot in slow start. After its
//! first interval a window is `max(min(share, max(growth, window it
//! had)), min(equal share, growth))`, `growth` being 5/4 of what the flow
//! carried plus four segments: a share never grows faster than that (but
//! keeps what it had), and the lift to an equal share is held to it, so
//! flows that slow down and speed up together (BBR's ProbeRTT) neither
//! hand the others their share at once nor take it back at once, and do
//! not refill the ISP's buffer together. The upload thread
//! ([`UploadWindows`]) writes the window into the acknowledgements that
//! announce more (a lower window is left alone), in the units the
//! handshake's window-scale options set; the TCP checksum is updated
//! incrementally.
//!
//! Only while the download is full (qosd's download queue held more than
//! a millisecond of the line within the last second): on an idle line a
//! flow that starts a burst (a web page, a video's next chunk) opens its
//! window at TCP's own pace. A flow whose handshake qosd did not see (it
//! started before qosd) is left alone, as the window's units are unknown.
//! Tables are fixed (no allocation per flow); a flow that loses its slot
//! to another is left alone too.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::tcp::{signed, window_field, window_scale};
use crate::packet::{PacketMeta, TCP_ACK, TCP_SYN};
use crate::time::Instant;

/// Slots of the board and of each thread's table (a power of two).
pub const SLOTS: usize = 1 << 14;
/// The queue the windows leave room for, over each flow's least round
/// trip, at first: under CoDel's 5 ms target, so a flow held by its
/// window loses nothing to CoDel. It then adapts (see
/// [`DownloadWindows::allowance`]) between [`MIN_ALLOWANCE_NS`] and
/// [`MAX_ALLOWANCE_NS`].
pub const ALLOWANCE_NS: u64 = 4_000_000;
/// The least allowance.
pub const MIN_ALLOWANCE_NS: u64 = 2_000_000;
/// The most: receivers that hold their acknowledgements for tens of
/// milliseconds (stretch ACKs) need that much more window.
pub const MAX_ALLOWANCE_NS: u64 = 60_000_000;
/// The allowance is reconsidered this often.
const CONTROL_NS: u64 = 100_000_000;
/// A download queue that nine arrivals in ten found over this much of
/// the line (and three frames) in a control period stood: the windows
/// leave more room than the line needs.
const STOOD_NS: u64 = 2_000_000;
/// A full frame. A queue that held no more than the frame that just
/// arrived ran dry: the line went unused, the windows were too tight.
const FRAME: u64 = 1514;
/// Periods in a row the queue must run dry for the allowance to grow.
const DRY_PERIODS: u32 = 5;
/// A flow's rate is measured over at least this, and two round trips.
const MIN_INTERVAL_NS: u64 = 100_000_000;
/// Flows that carried at least [`ACTIVE_BYTES`] of download data in the
/// last such period share the line equally at least (a control
/// connection's few bytes do not make it one of them).
const PERIOD_NS: u64 = 200_000_000;
/// See [`PERIOD_NS`]: six full segments.
const ACTIVE_BYTES: u32 = 6 * 1514;
/// How long the download counts as full after its queue last held more
/// than [`FULL_QUEUE_NS`] of the line.
const FULL_HOLD_NS: u64 = 1_000_000_000;
/// The queue that says the download is full.
pub const FULL_QUEUE_NS: u64 = 1_000_000;
/// The board's word for the download's state is rewritten at most this
/// often (the upload thread reads it on every acknowledgement).
const FULL_REFRESH_NS: u64 = 50_000_000;
/// A window grows by at most this much in an interval beyond a quarter
/// of what its flow carried (so a flow that carried next to nothing
/// grows).
const GROWTH_SEGMENTS: u64 = 4 * 1448;
/// No window goes below two full segments.
const MIN_WINDOW: u64 = 2 * 1448;
/// Nor above a gigabyte (the board's 31 bits).
const MAX_WINDOW: u64 = 1 << 30;
/// The board's bit for "the far end scales its windows" (both handshake
/// options are needed for the scale to apply).
const SCALED: u64 = 1 << 31;

fn slot_of(flow: u64) -> usize {
    // Fibonacci hashing: flow ids are consecutive.
    (flow.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - SLOTS.trailing_zeros())) as usize
}

/// A flow's tag in a slot: never 0, which marks an empty one.
fn tag_of(flow: u64) -> u32 {
    (flow as u32) | 1 << 31
}

/// What the download thread tells the upload thread: each flow's window,
/// and whether the download is full. One atomic word per flow slot
/// (tag, scaled bit, window bytes), no lock.
#[derive(Debug)]
pub struct WindowBoard {
    slots: Box<[AtomicU64]>,
    /// Until when (ns) the download counts as full.
    full_until: AtomicU64,
}

impl Default for WindowBoard {
    fn default() -> Self {
        WindowBoard {
            slots: (0..SLOTS).map(|_| AtomicU64::new(0)).collect(),
            full_until: AtomicU64::new(0),
        }
    }
}

impl WindowBoard {
    fn publish(&self, flow: u64, window: Option<(u64, bool)>) {
        let word = match window {
            Some((bytes, scaled)) => {
                u64::from(tag_of(flow)) << 32
                    | if scaled { SCALED } else { 0 }
                    | bytes.clamp(MIN_WINDOW, MAX_WINDOW)
            }
            None => 0,
        };
        if let Some(s) = self.slots.get(slot_of(flow)) {
            s.store(word, Ordering::Relaxed);
        }
    }

    /// Whether slot `slot` holds a window for the flow tagged `tag`.
    fn holds(&self, tag: u32, slot: usize) -> bool {
        self.slots
            .get(slot)
            .is_some_and(|s| (s.load(Ordering::Relaxed) >> 32) as u32 == tag)
    }

    /// `flow`'s window in bytes and whether the far end scales its
    /// windows, while the download is full at `now`.
    fn window(&self, flow: u64, now: Instant) -> Option<(u64, bool)> {
        if self.full_until.load(Ordering::Relaxed) <= now.as_nanos() {
            return None;
        }
        let word = self.slots.get(slot_of(flow))?.load(Ordering::Relaxed);
        if (word >> 32) as u32 != tag_of(flow) {
            return None;
        }
        Some((word & (SCALED - 1), word & SCALED != 0))
    }
}

/// A download flow as the download thread follows it.
#[derive(Debug, Clone, Copy, Default)]
struct Down {
    /// [`tag_of`] the flow (0: empty).
    tag: u32,
    /// The far end's initial sequence number (a SYN sent again carries
    /// the same).
    isn: u32,
    /// The far end's handshake carried the window-scale option.
    scaled: bool,
    /// A window is on the board for it.
    published: bool,
    /// The window its last interval published (bytes; 0: none since its
    /// handshake or its pause).
    window: u32,
    /// Its current interval is its first since its SYN-ACK or since it
    /// resumed after a pause: its window (an equal share, on a full
    /// download) is not held to what it carried at the interval's end
    /// (see [`GROWTH_SEGMENTS`]).
    fresh: bool,
    /// When its last data arrived, ns (0: none yet).
    last: u64,
    /// [`DownloadWindows::period`] of its last data, and its bytes in
    /// that period.
    period: u32,
    period_bytes: u32,
    /// Its least round trip, ns (0: none yet).
    rtt: u64,
    /// Its bytes (frames) since `since`, and the download's total then.
    bytes: u64,
    since: u64,
    total_then: u64,
}

impl Down {
    /// A round trip of the flow was measured (`None`: not with this
    /// packet): its least one so far.
    fn timed(&mut self, rtt_ns: Option<u64>) {
        if let Some(r) = rtt_ns.filter(|&r| r > 0) {
            self.rtt = if self.rtt == 0 { r } else { self.rtt.min(r) };
        }
    }
}

/// The download thread's half: rates, round trips and windows.
#[derive(Debug)]
pub struct DownloadWindows {
    board: Arc<WindowBoard>,
    flows: Box<[Down]>,
    /// The current period's number and start, and the flows that carried
    /// data in it and in the one before.
    period: u32,
    period_start: u64,
    active: u32,
    active_before: u32,
    /// Flows that started an interval afresh (opened, or resumed) in the
    /// current period: each counts in the next one's equal share, so
    /// several that start together (a page's connections) do not each
    /// get the share of one.
    joined: u32,
    /// Until when the download counts as full, as last written.
    full_until: u64,
    /// Windows published.
    windows: u64,
    /// Bytes (frames) of every download packet so far.
    total: u64,
    /// The current allowance, ns.
    allowance: u64,
    /// The current control period's start, and the least download queue
    /// in it, bytes.
    control_start: u64,
    least_backlog: u64,
    /// Control periods in a row in which the queue ran dry.
    dry: u32,
    /// The queue was full in the current control period.
    busy: bool,
    /// Arrivals in it, and those that found the queue stood (over
    /// [`STOOD_NS`] of the line and three frames).
    arrivals: u64,
    above: u64,
    /// The download's rate (bytes/s) as last seen, and the queues (bytes)
    /// that are "full" and "stood" at it.
    levels: (u64, u64, u64),
}

impl DownloadWindows {
    /// The download side, telling `board`.
    pub fn new(board: Arc<WindowBoard>) -> Self {
        DownloadWindows {
            board,
            flows: vec![Down::default(); SLOTS].into_boxed_slice(),
            period: 1,
            period_start: 0,
            active: 0,
            active_before: 0,
            joined: 0,
            full_until: 0,
            windows: 0,
            total: 0,
            allowance: ALLOWANCE_NS,
            control_start: 0,
            least_backlog: u64::MAX,
            dry: 0,
            busy: false,
            arrivals: 0,
            above: 0,
            levels: levels(0),
        }
    }

    /// The queue, over each flow's least round trip, that the windows
    /// leave room for now, ns. Each window must also cover what the
    /// round trip qosd measures does not see: the receiver holding its
    /// acknowledgements (delayed and stretch ACKs, LRO/GRO), the
    /// acknowledgements' own queue upstream, a Wi-Fi LAN's aggregation.
    /// So it adapts while the download is full, every 100 ms: 2 ms more
    /// after the fifth period in a row in which qosd's download queue ran
    /// dry (the line went unused for want of window; shorter spells are
    /// BBR draining its own queue on purpose, one round trip in eight and
    /// in its ProbeRTT, or the windows catching up with a change of
    /// shares, a fast flow's end; so it grows once per five), 1 ms less
    /// after one in which nine arrivals in ten found over 2 ms of the line
    /// queued (room the line did not need, that bursts can fill).
    pub fn allowance(&self) -> std::time::Duration {
        std::time::Duration::from_nanos(self.allowance)
    }

    /// Windows published since start (a flow's every interval while the
    /// download is full).
    pub fn windows_published(&self) -> u64 {
        self.windows
    }

    /// Whether the download counts as full at `now`.
    pub fn full(&self, now: Instant) -> bool {
        self.full_until > now.as_nanos()
    }

    /// qosd's download queue holds `backlog` bytes at `now`, the frame
    /// that just arrived included, and the download runs at `rate`
    /// bytes/s.
    #[inline]
    pub fn on_queue(&mut self, backlog: u64, rate: u64, now: Instant) {
        let t = now.as_nanos();
        if rate != self.levels.0 {
            // Once per change of rate, not per packet.
            self.levels = levels(rate);
        }
        let (_, full_level, stood_level) = self.levels;
        let full = backlog > full_level;
        if full && t + FULL_HOLD_NS > self.full_until + FULL_REFRESH_NS {
            self.full_until = t + FULL_HOLD_NS;
            self.board
                .full_until
                .store(self.full_until, Ordering::Relaxed);
        }
        self.busy |= full;
        self.least_backlog = self.least_backlog.min(backlog);
        self.arrivals += 1;
        if backlog > stood_level {
            self.above += 1;
        }
        if t.saturating_sub(self.control_start) >= CONTROL_NS {
            // Only a period in which the queue was full says anything of
            // the windows: the dry spells after the downloads ended (the
            // second the download still counts as full) do not.
            if self.busy {
                let least = self.least_backlog;
                // Nine arrivals in ten, not all: BBR's drain phase dips
                // the queue once per cycle of eight round trips however
                // much room the windows leave, and a least-queue test
                // then never saw it stand, so the allowance only grew (2
                // to 22 ms in a lab run: CoDel and the guard then dropped
                // 20 packets a second and cost a fifth of the download).
                let stood = self.above * 10 >= self.arrivals * 9;
                if stood {
                    self.dry = 0;
                    self.allowance = (self.allowance - 1_000_000).max(MIN_ALLOWANCE_NS);
                } else if least <= FRAME {
                    self.dry += 1;
                    if self.dry >= DRY_PERIODS {
                        // One step per run of dry periods, not one per
                        // period after the run: BBR's flows take turns
                        // in ProbeRTT (200 ms each, the others' windows
                        // not yet grown into the gap), and a run of them
                        // must not ratchet the allowance up by 2 ms every
                        // 100 ms.
                        self.dry = 0;
                        self.allowance = (self.allowance + 2_000_000).min(MAX_ALLOWANCE_NS);
                    }
                } else {
                    self.dry = 0;
                }
            } else {
                self.dry = 0;
            }
            self.busy = false;
            self.arrivals = 0;
            self.above = 0;
            self.control_start = t;
            self.least_backlog = u64::MAX;
        }
    }

    /// The clamp was switched off: no window applies from now on (the
    /// flows' handshakes are still followed, for when it is back on).
    pub fn off(&mut self) {
        // The control period's findings are stale when it is back on.
        self.busy = false;
        self.dry = 0;
        self.least_backlog = u64::MAX;
        self.arrivals = 0;
        self.above = 0;
        self.full_until = 0;
        self.board.full_until.store(0, Ordering::Relaxed);
    }

    /// A packet of download flow `flow` arrived from the WAN at `now`;
    /// `rtt_ns`: the round trip the WAN-delay meter completed with it, if
    /// any; `rate`: the download's rate, bytes/s. With the clamp not
    /// `enabled` only handshakes are followed (one flag test per packet).
    #[inline]
    pub fn on_packet(
        &mut self,
        pkt: &PacketMeta<'_>,
        flow: u64,
        rtt_ns: Option<u64>,
        rate: u64,
        enabled: bool,
        now: Instant,
    ) {
        if !enabled && pkt.tcp_flags & TCP_SYN == 0 {
            return;
        }
        self.total += pkt.frame_len as u64;
        if pkt.protocol != 6 || pkt.tcp.is_empty() {
            return;
        }
        let t = now.as_nanos();
        let since = t.saturating_sub(self.period_start);
        if since >= PERIOD_NS {
            let periods = since / PERIOD_NS;
            // Periods without a TCP packet had no active flow.
            self.active_before = if periods == 1 { self.active } else { 0 };
            self.active = 0;
            self.joined = 0;
            self.period = self
                .period
                .wrapping_add(u32::try_from(periods).unwrap_or(u32::MAX));
            self.period_start = t;
        }
        let tag = tag_of(flow);
        let slot = slot_of(flow);
        let Some(f) = self.flows.get_mut(slot) else {
            return;
        };
        if pkt.tcp_flags & TCP_SYN != 0 {
            // The far end's SYN or SYN-ACK.
            let isn = pkt.tcp_seq().unwrap_or(0);
            if f.tag == tag && f.isn == isn {
                // Sent again (its first copy lost, or the LAN end's SYN
                // sent again): the same connection, whose round trip
                // this copy may not time.
                f.timed(rtt_ns);
                return;
            }
            // A slot whose flow carried data lately is not given up to a
            // new one (an inbound scan must not lift a download's clamp):
            // the newcomer goes without.
            if f.tag != tag && f.tag != 0 && self.period.wrapping_sub(f.period) < 2 {
                return;
            }
            *f = Down {
                tag,
                isn,
                scaled: window_scale(pkt.tcp).is_some(),
                // A SYN-ACK completes the LAN end's SYN's round trip.
                rtt: rtt_ns.unwrap_or(0),
                period: self.period,
                // Whatever the board holds in the slot is not this
                // connection's: rewritten below.
                published: true,
                ..Down::default()
            };
            // On a full download a new flow starts at an equal share: its
            // slow start would otherwise overshoot into the ISP's buffer
            // before its rate is measured.
            self.start_afresh(slot, flow, rate, t);
            return;
        }
        if f.tag != tag {
            return;
        }
        f.timed(rtt_ns);
        if pkt.payload.is_empty() {
            return;
        }
        // No data for a period (and two round trips): the flow resumes
        // after a pause (a kept-alive connection's next request, a
        // video's next chunk). Like a new one, it starts at an equal
        // share, and its interval starts now: one that spanned the pause
        // would say it carried next to nothing.
        let f = if f.last != 0 && t.saturating_sub(f.last) >= PERIOD_NS.max(2 * f.rtt) {
            self.start_afresh(slot, flow, rate, t);
            let Some(f) = self.flows.get_mut(slot) else {
                return;
            };
            f
        } else {
            f
        };
        f.last = t;
        if f.period != self.period {
            f.period = self.period;
            f.period_bytes = 0;
        }
        let before = f.period_bytes;
        f.period_bytes = f.period_bytes.saturating_add(pkt.frame_len as u32);
        if before < ACTIVE_BYTES && f.period_bytes >= ACTIVE_BYTES {
            self.active += 1;
        }
        f.bytes += pkt.frame_len as u64;
        let elapsed = t.saturating_sub(f.since);
        if elapsed < MIN_INTERVAL_NS.max(2 * f.rtt) {
            return;
        }
        let full = self.full_until > t;
        if full && f.rtt > 0 {
            let span = f.rtt + self.allowance;
            // Its share of the download (of every packet, QUIC and calls
            // included) times the download's rate: a share, not a rate,
            // so autorate's new rate resizes every window at once instead
            // of being learnt (the guard's throttle, which slows the
            // acknowledgements instead, leaves them as they are).
            let all = self.total.saturating_sub(f.total_then).max(f.bytes);
            let own = mul_div(mul_div(rate, f.bytes, all), span, 1_000_000_000);
            let equal = equal_share(rate, span, self.active.max(self.active_before));
            // Neither grows by more than a quarter over what the flow
            // carried (plus a few segments) per interval: when flows
            // slow right down (BBR's ProbeRTT: four segments for 200 ms),
            // the others would otherwise take their shares in one
            // interval, and the slow ones put an equal share in flight at
            // once when they speed up again, all together; in the lab
            // that sent 10 ms of excess into the ISP's buffer every ~10 s.
            // But a window may always keep what it had (a lone flow back
            // from ProbeRTT refills at once: its window alone bounds what
            // it sends), and a flow's first interval keeps its equal
            // share (its slow start and its request's round trip are in
            // what it carried).
            let carried = mul_div(f.bytes, span, elapsed);
            let growth = carried
                .saturating_add(carried / 4)
                .saturating_add(GROWTH_SEGMENTS);
            let floor = if f.fresh { equal } else { equal.min(growth) };
            let window = own.min(growth.max(u64::from(f.window))).max(floor);
            f.window = u32::try_from(window.clamp(MIN_WINDOW, MAX_WINDOW)).unwrap_or(u32::MAX);
            self.board.publish(flow, Some((window, f.scaled)));
            f.published = true;
            self.windows += 1;
        } else if f.published {
            self.board.publish(flow, None);
            f.published = false;
            f.window = 0;
        }
        f.bytes = 0;
        f.since = t;
        f.total_then = self.total;
        f.fresh = false;
    }

    /// `flow` (in `slot`) starts an interval afresh at `t`, opened or
    /// resumed: on a full download, at an equal share among the flows
    /// sharing the line and those that started afresh in this period
    /// with it; else with no window.
    fn start_afresh(&mut self, slot: usize, flow: u64, rate: u64, t: u64) {
        let flows = self.active.max(self.active_before) + self.joined + 1;
        self.joined += 1;
        let Some(f) = self.flows.get_mut(slot) else {
            return;
        };
        f.since = t;
        f.bytes = 0;
        f.total_then = self.total;
        f.fresh = true;
        f.window = 0;
        let share = (self.full_until > t && f.rtt > 0)
            .then(|| equal_share(rate, f.rtt + self.allowance, flows));
        if share.is_some() || f.published {
            f.published = share.is_some();
            self.board.publish(flow, share.map(|w| (w, f.scaled)));
        }
    }
}

/// `rate` (bytes/s), and the queues (bytes) that are "full" and "stood"
/// at it: over a millisecond of the line and at least two frames (on a
/// slow line one frame is more than a millisecond of it, and the frame
/// that just arrived is always there), over [`STOOD_NS`] of it and at
/// least three frames.
fn levels(rate: u64) -> (u64, u64, u64) {
    let of_line = |ns: u64| mul_div(rate, ns, 1_000_000_000);
    (
        rate,
        of_line(FULL_QUEUE_NS).max(2 * FRAME),
        of_line(STOOD_NS).max(3 * FRAME),
    )
}

/// An equal share among `flows` (at least one) of what the download
/// carries, at `rate` bytes/s, in `span_ns`.
fn equal_share(rate: u64, span_ns: u64, flows: u32) -> u64 {
    mul_div(rate, span_ns, 1_000_000_000) / u64::from(flows.max(1))
}

/// `a * b / c` without overflow (saturating), `c > 0`.
fn mul_div(a: u64, b: u64, c: u64) -> u64 {
    u64::try_from(u128::from(a) * u128::from(b) / u128::from(c.max(1))).unwrap_or(u64::MAX)
}

/// The upload thread's half: the LAN end's window scale, and the window
/// to write into its acknowledgements.
#[derive(Debug)]
pub struct UploadWindows {
    board: Arc<WindowBoard>,
    /// Per slot: the flow's tag, and the LAN end's handshake shift plus
    /// one (0: it sent no window-scale option).
    flows: Box<[(u32, u8)]>,
    lowered: u64,
}

impl UploadWindows {
    /// The upload side, reading `board`.
    pub fn new(board: Arc<WindowBoard>) -> Self {
        UploadWindows {
            board,
            flows: vec![(0, 0); SLOTS].into_boxed_slice(),
            lowered: 0,
        }
    }

    /// Acknowledgements whose window was lowered since start.
    pub fn lowered(&self) -> u64 {
        self.lowered
    }

    /// A LAN packet of `flow` on its way to the WAN at `now`: the value to
    /// write into its window field instead of the one it carries, if the
    /// flow's window is to be lower and the clamp is `enabled` (handshakes
    /// are followed either way, so that flows opened while it was off
    /// have the right scale when it is back on).
    #[inline]
    pub fn on_lan_packet(
        &mut self,
        pkt: &PacketMeta<'_>,
        flow: u64,
        enabled: bool,
        now: Instant,
    ) -> Option<u16> {
        if (!enabled && pkt.tcp_flags & TCP_SYN == 0) || pkt.protocol != 6 || pkt.tcp.is_empty() {
            return None;
        }
        let tag = tag_of(flow);
        let slot = self.flows.get_mut(slot_of(flow))?;
        if pkt.tcp_flags & TCP_SYN != 0 {
            // Windows in SYNs are never scaled, and never lowered here. A
            // slot whose flow has a window on the board is not given up
            // (the download side keeps it too).
            let (old, _) = *slot;
            if old == tag || old == 0 || !self.board.holds(old, slot_of(flow)) {
                *slot = (tag, window_scale(pkt.tcp).map_or(0, |s| s + 1));
            }
            return None;
        }
        if pkt.tcp_flags & TCP_ACK == 0 || slot.0 != tag {
            return None;
        }
        let lan_scale = slot.1;
        let (window, scaled) = self.board.window(flow, now)?;
        let shift = if scaled && lan_scale > 0 {
            lan_scale - 1
        } else {
            0
        };
        let field = window_field(pkt.tcp)?;
        if u64::from(field) << shift <= window {
            return None;
        }
        // Rounded up: a window is never cut below what was published.
        let units = window.div_ceil(1u64 << shift).clamp(1, u64::from(u16::MAX));
        let units = u16::try_from(units).unwrap_or(u16::MAX);
        // A segment signed with TCP-MD5 or TCP-AO would fail its signature.
        if units >= field || signed(pkt.tcp) {
            return None;
        }
        self.lowered += 1;
        Some(units)
    }
}

#[cfg(test)]
mod tests;
