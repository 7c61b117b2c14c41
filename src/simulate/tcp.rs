//! The TCP of a bulk flow, as far as the queues and the WAN-delay meter
//! care: a handshake (SYN, SYN-ACK, ACK, then a ClientHello), sequence and
//! acknowledgement numbers in bytes, the timestamp option on every
//! segment (RFC 7323: each host's own millisecond clock, TS.Recent echoed),
//! a receiver that acknowledges every second segment (at once when one is
//! out of order, after 40 ms when one is left; with [`AckPolicy::Stretch`],
//! the simulator's default, now and then only after a stretch of 5 to 30,
//! as real receivers' GRO and Wi-Fi aggregation do), and a sender as Linux's
//! and Windows' default: CUBIC (RFC 9438) with HyStart++ (RFC 9406),
//! backing off at most once per round trip, lost segments sent again
//! under their sequence numbers.
//!
//! The sender learns of a loss the way SACK and RACK let it: once the
//! receiver has three segments sent after the lost one (the acknowledgement
//! saying so has to come back first), or by a retransmission timeout.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use crate::time::Instant;

/// TCP segment payload (a 1500-byte IP packet with the timestamp option).
pub(super) const MSS: usize = 1448;

/// Largest congestion window, in segments (a 4 MB receive window).
const MAX_CWND: f64 = 2900.0;

/// The receiver acknowledges a lone segment after this long.
pub(super) const DELAYED_ACK: Duration = Duration::from_millis(40);

/// Smallest retransmission timeout (Linux's).
const MIN_RTO: Duration = Duration::from_millis(200);

/// Retransmission timeout before any round trip was measured.
const INITIAL_RTO: Duration = Duration::from_secs(1);

/// Segments received after a lost one before the sender calls it lost.
const REORDERING: u32 = 3;

/// CUBIC's multiplicative decrease and scaling constant (RFC 9438).
const BETA: f64 = 0.7;
const CUBIC_C: f64 = 0.4;
/// The Reno-friendly estimate's increase per round trip.
const ALPHA: f64 = 3.0 * (1.0 - BETA) / (1.0 + BETA);

/// The two ends of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum End {
    /// The office's host, which opens the connection.
    Client,
    /// The Internet server.
    Server,
}

impl End {
    pub(super) fn peer(self) -> End {
        match self {
            End::Client => End::Server,
            End::Server => End::Client,
        }
    }
}

/// A 64-bit mix (splitmix64), for deterministic "random" numbers.
pub(super) fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The timestamp clock of the host at `addr`: milliseconds since a
/// per-host random-looking origin.
pub(super) fn ts_clock(addr: [u8; 4], now: Instant) -> u32 {
    let offset = mix(u64::from(u32::from_be_bytes(addr)) ^ 0x7473_636c_6f63_6b00) as u32;
    ((now.as_nanos() / 1_000_000) as u32).wrapping_add(offset)
}

/// `a` is at or after `b` in 32-bit sequence space.
fn seq_geq(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) >= 0
}

/// One end's view of the timestamps and acknowledgements it sends.
#[derive(Debug, Clone, Default)]
pub(super) struct EndState {
    /// Initial sequence number.
    pub(super) isn: u32,
    /// TS.Recent: the timestamp to echo.
    pub(super) ts_recent: u32,
    /// The acknowledgement number last sent (Last.ACK.sent).
    pub(super) last_ack_sent: u32,
}

impl EndState {
    /// A segment `seq` carrying `tsval` arrived (RFC 7323, 4.3): its
    /// timestamp becomes the one to echo if it is not older and the
    /// segment starts at or before the last acknowledgement sent.
    pub(super) fn received(&mut self, seq: u32, tsval: u32) {
        if seq_geq(self.last_ack_sent, seq) && seq_geq(tsval, self.ts_recent) {
            self.ts_recent = tsval;
        }
    }
}

/// Where the handshake is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Handshake {
    /// The client has the SYN-ACK (and sent its ACK and ClientHello).
    pub(super) syn_acked: bool,
    /// Data flows: the server has the ClientHello (download) or the client
    /// its acknowledgement (upload).
    pub(super) established: bool,
}

/// Both ends of one connection.
#[derive(Debug, Clone, Default)]
pub(super) struct Conn {
    /// Client and server, by [`End::index`].
    pub(super) ends: [EndState; 2],
    /// Length of the ClientHello (the client's first data).
    pub(super) hello_len: u32,
    pub(super) handshake: Handshake,
    pub(super) sender: Sender,
    pub(super) receiver: Receiver,
}

impl Conn {
    /// A connection of flow number `f` (seeds its sequence numbers), whose
    /// sender's round trip is about `rtt` before it measures one, and
    /// whose receiver acknowledges per `acks`.
    pub(super) fn new(f: usize, hello_len: usize, rtt: Duration, acks: AckPolicy) -> Self {
        let seed = mix(f as u64 ^ 0x6973_6e00);
        Conn {
            ends: [
                EndState {
                    isn: seed as u32,
                    ..EndState::default()
                },
                EndState {
                    isn: (seed >> 32) as u32,
                    ..EndState::default()
                },
            ],
            hello_len: hello_len as u32,
            handshake: Handshake::default(),
            sender: Sender::new(rtt),
            receiver: Receiver::new(acks),
        }
    }

    pub(super) fn end(&self, e: End) -> &EndState {
        let [c, s] = &self.ends;
        match e {
            End::Client => c,
            End::Server => s,
        }
    }

    pub(super) fn end_mut(&mut self, e: End) -> &mut EndState {
        let [c, s] = &mut self.ends;
        match e {
            End::Client => c,
            End::Server => s,
        }
    }

    /// The sequence number of the first byte of end `e`'s data segment
    /// `k` (the client's data follows its ClientHello).
    pub(super) fn data_seq(&self, e: End, k: u32) -> u32 {
        let skip = match e {
            End::Client => self.hello_len,
            End::Server => 0,
        };
        self.end(e)
            .isn
            .wrapping_add(1)
            .wrapping_add(skip)
            .wrapping_add(k.wrapping_mul(MSS as u32))
    }
}

/// The data sender's congestion control and loss recovery, in segments.
#[derive(Debug, Clone, Default)]
pub(super) struct Sender {
    cwnd: f64,
    ssthresh: f64,
    /// Transmissions neither acknowledged nor known lost.
    inflight: u32,
    /// The next new segment.
    next: u32,
    /// Transmissions so far (each one's number lets the sender tell
    /// which were sent after a lost one).
    tx: u32,
    /// Segments known lost, to send again.
    again: VecDeque<u32>,
    /// Segments the network dropped that the sender does not know of yet,
    /// with their transmission number.
    dropped: BTreeMap<u32, u32>,
    last_cut: Option<Instant>,
    srtt: Option<Duration>,
    rttvar: Duration,
    /// Round trip assumed before one is measured.
    base_rtt: Duration,
    /// HyStart++'s view of slow start's rounds.
    hystart: HyStart,
    /// Transmissions acknowledged so far.
    acked_tx: u32,
    cubic: Cubic,
    /// The receiver's window, in segments, as its latest acknowledgement
    /// announced it (`None`: not yet, no limit).
    rwnd: Option<u32>,
}

/// CUBIC's state in congestion avoidance.
#[derive(Debug, Clone, Default)]
struct Cubic {
    /// When the current epoch (the growth since the last back-off) began.
    epoch: Option<Instant>,
    /// The window before the last back-off.
    w_max: f64,
    /// Seconds from the epoch's start until the window is back at `w_max`.
    k: f64,
    /// The window a Reno flow would have.
    w_est: f64,
}

/// HyStart++ (RFC 9406, without its conservative phase): slow start ends
/// when a round's smallest round trip is well above the previous round's,
/// before the buffer it fills overflows, as Linux's CUBIC does.
#[derive(Debug, Clone, Default)]
struct HyStart {
    /// The round ends once this many transmissions are acknowledged.
    round_end: u32,
    last_min: Option<Duration>,
    current_min: Option<Duration>,
    samples: u32,
}

impl Sender {
    /// A connection just opened: slow start from 10 segments.
    pub(super) fn new(rtt: Duration) -> Self {
        Sender {
            cwnd: 10.0,
            ssthresh: f64::INFINITY,
            base_rtt: rtt,
            ..Sender::default()
        }
    }

    /// The next segment to send (one lost before, else a new one) and its
    /// transmission number, if the window lets one go.
    pub(super) fn send(&mut self) -> Option<(u32, u32)> {
        if f64::from(self.inflight) >= self.cwnd
            || self.rwnd.is_some_and(|w| self.inflight >= w.max(1))
        {
            return None;
        }
        let k = match self.again.pop_front() {
            Some(k) => k,
            None => {
                let k = self.next;
                self.next = self.next.wrapping_add(1);
                k
            }
        };
        self.inflight += 1;
        self.tx = self.tx.wrapping_add(1);
        Some((k, self.tx))
    }

    /// The receiver announced a window of `segments`: no more than that
    /// is in flight from now on (RFC 9293: a window may shrink; what was
    /// sent beyond it is not taken back).
    pub(super) fn set_window(&mut self, segments: u32) {
        self.rwnd = Some(segments);
    }

    /// The retransmission timeout now (RFC 6298, at least 200 ms).
    pub(super) fn rto(&self) -> Duration {
        match self.srtt {
            Some(s) => (s + self.rttvar * 4).max(MIN_RTO),
            None => INITIAL_RTO,
        }
    }

    /// A round trip measured from an echoed timestamp.
    pub(super) fn rtt_sample(&mut self, rtt: Duration) {
        if self.cwnd < self.ssthresh {
            let h = &mut self.hystart;
            h.current_min = Some(h.current_min.map_or(rtt, |m| m.min(rtt)));
            h.samples += 1;
            if let (Some(last), Some(now)) = (h.last_min, h.current_min) {
                let eta = (last / 8).clamp(Duration::from_millis(4), Duration::from_millis(16));
                if h.samples >= 8 && now >= last + eta {
                    self.ssthresh = self.cwnd;
                }
            }
        }
        match self.srtt {
            None => {
                self.srtt = Some(rtt);
                self.rttvar = rtt / 2;
            }
            Some(s) => {
                let diff = s.abs_diff(rtt);
                self.rttvar = (self.rttvar * 3 + diff) / 4;
                self.srtt = Some((s * 7 + rtt) / 8);
            }
        }
    }

    /// The network dropped transmission `tx` of segment `k`.
    pub(super) fn dropped(&mut self, k: u32, tx: u32) {
        self.dropped.insert(k, tx);
    }

    /// An acknowledgement reached the sender at `now`: `n` transmissions
    /// arrived at the receiver since the one before, the latest of them
    /// transmission `high_tx` (0: unknown). The window grows, and
    /// segments dropped well before `high_tx` are known lost.
    pub(super) fn acked(&mut self, n: u32, high_tx: u32, now: Instant) {
        self.inflight = self.inflight.saturating_sub(n);
        self.acked_tx = self.acked_tx.wrapping_add(n);
        let h = &mut self.hystart;
        if self.acked_tx.wrapping_sub(h.round_end) as i32 >= 0 {
            h.round_end = self.tx;
            if h.samples >= 8 {
                h.last_min = h.current_min;
            }
            h.current_min = None;
            h.samples = 0;
        }
        let grow = f64::from(n);
        if self.cwnd < self.ssthresh {
            self.cwnd += grow;
        } else {
            self.avoid(grow, now);
        }
        self.cwnd = self.cwnd.min(MAX_CWND);
        if high_tx == 0 || self.dropped.is_empty() {
            return;
        }
        let lost: Vec<u32> = self
            .dropped
            .iter()
            .filter(|&(_, &tx)| high_tx.wrapping_sub(tx) as i32 >= REORDERING as i32)
            .map(|(&k, _)| k)
            .collect();
        for k in lost {
            self.dropped.remove(&k);
            self.lost(k, now);
        }
    }

    /// Segment `k`, sent as transmission `tx`, timed out at `now` if the
    /// sender has not learned of its loss otherwise. Returns whether it did.
    pub(super) fn timeout(&mut self, k: u32, tx: u32, now: Instant) -> bool {
        if self.dropped.get(&k) != Some(&tx) {
            return false;
        }
        self.dropped.remove(&k);
        self.inflight = self.inflight.saturating_sub(1);
        self.again.push_back(k);
        self.back_off(now);
        self.cwnd = 2.0;
        true
    }

    /// CUBIC's growth for `n` segments acknowledged at `now`.
    fn avoid(&mut self, n: f64, now: Instant) {
        let c = &mut self.cubic;
        let epoch = match c.epoch {
            Some(e) => e,
            None => {
                if c.w_max < self.cwnd {
                    c.w_max = self.cwnd;
                }
                c.k = ((c.w_max - self.cwnd) / CUBIC_C).cbrt();
                c.w_est = self.cwnd;
                c.epoch = Some(now);
                now
            }
        };
        let t = now.saturating_since(epoch).as_secs_f64();
        let target = (CUBIC_C * (t - c.k).powi(3) + c.w_max).min(1.5 * self.cwnd);
        c.w_est += ALPHA * n / self.cwnd;
        let goal = target.max(c.w_est);
        if goal > self.cwnd {
            self.cwnd += (goal - self.cwnd) / self.cwnd * n;
        } else {
            self.cwnd += 0.01 * n / self.cwnd;
        }
    }

    /// Backs off at `now` (at most once per round trip): CUBIC's decrease.
    /// Returns whether it did.
    fn back_off(&mut self, now: Instant) -> bool {
        if !self.may_cut(now) {
            return false;
        }
        let c = &mut self.cubic;
        // Fast convergence: a flow that lost before reaching its last
        // maximum leaves room for the others.
        c.w_max = if self.cwnd < c.w_max {
            self.cwnd * (1.0 + BETA) / 2.0
        } else {
            self.cwnd
        };
        c.epoch = None;
        self.ssthresh = (self.cwnd * BETA).max(2.0);
        self.last_cut = Some(now);
        true
    }

    fn may_cut(&self, now: Instant) -> bool {
        let round = self.srtt.unwrap_or(self.base_rtt).max(self.base_rtt);
        self.last_cut
            .is_none_or(|c| now.saturating_since(c) > round)
    }

    /// Segment `k` is known lost at `now`: it goes again, and the window
    /// backs off (at most once per round trip).
    fn lost(&mut self, k: u32, now: Instant) {
        self.inflight = self.inflight.saturating_sub(1);
        self.again.push_back(k);
        if self.back_off(now) {
            self.cwnd = self.ssthresh;
        }
    }
}

/// How a receiver spaces its ACKs of segments that arrive in order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) enum AckPolicy {
    /// One ACK per two segments (RFC 9293's delayed ACK).
    #[default]
    EverySecond,
    /// Mostly one per two segments, but now and then one for a stretch of
    /// [`STRETCH_MIN`]..=[`STRETCH_MAX`] (GRO/LRO coalescing, interrupt
    /// moderation, Wi-Fi aggregation at the receiver): what real hosts
    /// send, and what makes their senders send bursts at the server's own
    /// rate, faster than the line drains them.
    Stretch {
        /// Seeds the choice of which ACKs stretch, and how far.
        seed: u64,
    },
}

/// One ACK in this many stretches, with [`AckPolicy::Stretch`].
const STRETCH_ONE_IN: u64 = 6;
/// The shortest stretch, in segments.
pub(super) const STRETCH_MIN: u32 = 5;
/// The longest.
pub(super) const STRETCH_MAX: u32 = 30;

/// The data receiver: cumulative acknowledgement over the segments
/// received in order, one ACK per two segments (or per stretch, with
/// [`AckPolicy::Stretch`]).
#[derive(Debug, Clone, Default)]
pub(super) struct Receiver {
    policy: AckPolicy,
    /// In-order segments the next ACK waits for (2 but for a stretch).
    every: u32,
    /// The next segment expected in order.
    rcv_next: u32,
    /// Segments received beyond a hole.
    beyond: BTreeSet<u32>,
    /// Transmissions arrived since the last ACK.
    pending: u32,
    /// In-order segments not acknowledged yet.
    unacked: u32,
    /// The latest transmission number received.
    high_tx: u32,
    /// ACKs sent (tells a delayed-ACK timer whether it is stale).
    acks: u32,
}

/// An acknowledgement the receiver sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct AckInfo {
    /// Segments received in order (the cumulative acknowledgement).
    pub(super) next: u32,
    /// Transmissions arrived since the last ACK.
    pub(super) n: u32,
    /// The latest transmission received.
    pub(super) high_tx: u32,
}

impl Receiver {
    /// A receiver acknowledging per `policy`.
    pub(super) fn new(policy: AckPolicy) -> Self {
        let mut r = Receiver {
            policy,
            ..Receiver::default()
        };
        r.every = r.next_every();
        r
    }

    /// How many in-order segments the ACK after the current one waits for.
    fn next_every(&self) -> u32 {
        match self.policy {
            AckPolicy::EverySecond => 2,
            AckPolicy::Stretch { seed } => {
                let r = mix(seed ^ u64::from(self.acks));
                if r.is_multiple_of(STRETCH_ONE_IN) {
                    let span = u64::from(STRETCH_MAX - STRETCH_MIN + 1);
                    STRETCH_MIN + ((r >> 32) % span) as u32
                } else {
                    2
                }
            }
        }
    }

    /// Transmission `tx` of segment `k` arrived: whether to acknowledge now
    /// (every second segment, and at once for one out of order, one that
    /// fills a hole, or a duplicate).
    pub(super) fn segment(&mut self, k: u32, tx: u32) -> bool {
        self.pending += 1;
        if tx.wrapping_sub(self.high_tx) as i32 > 0 {
            self.high_tx = tx;
        }
        if k < self.rcv_next {
            return true;
        }
        if k > self.rcv_next {
            self.beyond.insert(k);
            return true;
        }
        self.rcv_next += 1;
        let hole = !self.beyond.is_empty();
        while self.beyond.remove(&self.rcv_next) {
            self.rcv_next += 1;
        }
        if hole {
            return true;
        }
        self.unacked += 1;
        self.unacked >= self.every.max(2)
    }

    /// Whether an ACK is owed.
    pub(super) fn owes(&self) -> bool {
        self.pending > 0
    }

    /// The number of ACKs sent (for the delayed-ACK timer).
    pub(super) fn acks(&self) -> u32 {
        self.acks
    }

    /// An ACK goes out now.
    pub(super) fn ack(&mut self) -> AckInfo {
        self.acks = self.acks.wrapping_add(1);
        self.unacked = 0;
        self.every = self.next_every();
        AckInfo {
            next: self.rcv_next,
            n: std::mem::take(&mut self.pending),
            high_tx: self.high_tx,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receiver_acks_every_second_segment_and_holes_at_once() {
        let mut r = Receiver::default();
        assert!(!r.segment(0, 1));
        assert!(r.segment(1, 2));
        assert_eq!(
            r.ack(),
            AckInfo {
                next: 2,
                n: 2,
                high_tx: 2
            }
        );
        // 2 lost: 3 and 4 are out of order, each acknowledged at once.
        assert!(r.segment(3, 4));
        assert_eq!(r.ack().next, 2);
        assert!(r.segment(4, 5));
        // 2 again fills the hole.
        assert!(r.segment(2, 6));
        assert_eq!(r.ack().next, 5);
    }

    #[test]
    fn stretch_receiver_mostly_acks_two_and_now_and_then_a_stretch() {
        let run = || {
            let mut r = Receiver::new(AckPolicy::Stretch { seed: 7 });
            let mut spans = Vec::new();
            let mut k = 0;
            for _ in 0..600 {
                let mut n = 0;
                loop {
                    n += 1;
                    k += 1;
                    if r.segment(k - 1, k) {
                        break;
                    }
                }
                assert_eq!(r.ack().n, n);
                spans.push(n);
            }
            spans
        };
        let spans = run();
        assert_eq!(spans, run(), "deterministic");
        let two = spans.iter().filter(|&&n| n == 2).count();
        let stretched = spans.iter().filter(|&&n| n >= STRETCH_MIN).count();
        assert_eq!(two + stretched, spans.len(), "{spans:?}");
        // One in STRETCH_ONE_IN, give or take.
        assert!((60..=140).contains(&stretched), "{stretched}");
        assert!(spans.iter().all(|&n| n <= STRETCH_MAX));
    }

    #[test]
    fn sender_resends_what_was_lost_under_its_number() {
        let t = Instant::ZERO;
        let mut s = Sender::new(Duration::from_millis(30));
        let sent: Vec<_> = std::iter::from_fn(|| s.send()).collect();
        assert_eq!(sent.len(), 10);
        s.dropped(2, 3);
        // Transmissions 4 and 5 arrived: not yet enough to call 2 lost.
        s.acked(2, 5, t);
        assert!(s.dropped.contains_key(&2));
        s.acked(2, 7, t);
        assert!(s.dropped.is_empty());
        assert_eq!(s.send(), Some((2, 11)));
        // Backed off once: 10 + 4 grown, then 70 %.
        assert!((s.cwnd - 9.8).abs() < 1e-9, "{}", s.cwnd);
    }

    #[test]
    fn timestamps_echo_the_segment_at_the_left_edge() {
        let mut e = EndState {
            last_ack_sent: 1000,
            ..EndState::default()
        };
        e.received(1000, 50);
        assert_eq!(e.ts_recent, 50);
        // A later segment (after the ACK point) is not echoed.
        e.received(2448, 51);
        assert_eq!(e.ts_recent, 50);
        // Nor an older timestamp.
        e.received(1000, 49);
        assert_eq!(e.ts_recent, 50);
    }
}
