//! The WAN-to-LAN half of the measurement, on the download thread: the
//! answers to the stamper's probes, each flow's one-way delays where both
//! ends use TCP timestamps, and the bytes the far ends acknowledge.

use std::sync::Arc;
use std::time::Duration;

use super::board::{ProbeBoard, SLOTS};
use super::retrans::{self, Segment, SeqHigh};
use super::tcp::{TcpView, seq_before};
use super::window::WindowedMin;
use super::{DelaySample, OutsideQueue, Source, TcpRtt, rtcp};
use crate::packet::PacketMeta;
use crate::time::Instant;

/// Which direction's queue a sample measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Toward {
    /// The way up (office to Internet): the modem's upload buffer.
    Upload,
    /// The way down: the ISP's download buffer.
    Download,
    /// A round trip: one of the two, or both.
    Either,
}

impl Toward {
    const ALL: [Toward; 3] = [Toward::Upload, Toward::Download, Toward::Either];
}

/// Half the window of every minimum: a path's baseline follows a longer
/// route within a minute, and a queue that stands less than 30 s never
/// becomes the baseline.
const HALF_WINDOW_NS: u64 = 30_000_000_000;
/// Round trips beyond this are not a line's delay (a stalled peer).
const MAX_RTT_NS: u64 = 10_000_000_000;
/// A flow gives at most one one-way sample per this long: a few busy
/// flows must not drown the others in the median.
const OWD_EVERY_NS: u64 = 10_000_000;
/// How long a flow's remote clock is watched before its rate is trusted:
/// the rate read over it must be within a factor of 1.6 of a known one
/// (they are 2.5 times apart or more), which a queue that grew or shrank
/// by up to a third of the span while it was watched still meets.
const CLOCK_SPAN_NS: u64 = 1_000_000_000;
/// Remote timestamp clock rates seen in the wild, in nanoseconds per tick:
/// 1 ms (Linux, BSDs, macOS, Windows), 10 ms and 4 ms (older kernels),
/// 1 us (Linux with usec timestamps).
const CLOCKS_NS: [u64; 4] = [1_000_000, 10_000_000, 4_000_000, 1_000];
/// The coarsest remote clock whose one-way delays feed the outside-queue
/// estimate.
const FINE_CLOCK_NS: u64 = 1_000_000;
/// Entries in the table of per-path minimums.
const PATHS: usize = 1024;
/// Samples kept per [`Toward`] between two drains; more are thinned.
const KEEP: usize = 128;

/// One flow's state on the download thread (by board slot).
#[derive(Debug, Clone, Copy, Default)]
struct FlowClock {
    id: u64,
    /// Highest acknowledgement seen, if any.
    ack: Option<u32>,
    /// The remote timestamp clock: where it was watched from...
    t0: Instant,
    ts0: u32,
    watching: bool,
    /// ...and its rate once known.
    ns_per_tick: u64,
    last_owd: Instant,
    /// The last TSval seen: one-way delays are read on the first segment
    /// of each remote tick only (the later ones of a burst wait behind it).
    last_tsval: Option<u32>,
    down: WindowedMin,
    up: WindowedMin,
    /// The flow's smallest round trip.
    min_rtt: u64,
    /// The least answer of the current short window.
    window: LeastOfWindow,
    /// The far end's highest sequence end (retransmissions).
    seq: SeqHigh,
}

/// A flow's answers closer together than this are read as one: the
/// lesser of the two counts.
const ANSWER_WINDOW_NS: u64 = 100_000_000;

/// A flow's previous answer, to read each answer with it.
#[derive(Debug, Clone, Copy, Default)]
struct LeastOfWindow {
    last: Option<(Toward, u64, Instant)>,
}

impl LeastOfWindow {
    /// Takes an answer (`q` toward `to`) at `now`: the sample to keep is
    /// the lesser of it and the flow's previous answer, when that came
    /// within the window and measured the same way. So every answer gives
    /// a sample at once (a bloated line answers rarely), and one that
    /// waited on the far end's ACK policy is outvoted by its neighbour.
    fn take(&mut self, to: Toward, q: u64, now: Instant) -> Option<(Toward, u64)> {
        let least = match self.last {
            Some((t, p, at)) if t == to && now.nanos_since(at) < ANSWER_WINDOW_NS => q.min(p),
            _ => q,
        };
        self.last = Some((to, q, now));
        Some((to, least))
    }
}

impl FlowClock {
    fn new(id: u64) -> Self {
        FlowClock {
            id,
            min_rtt: u64::MAX,
            ..FlowClock::default()
        }
    }

    /// Remote time of `ts` since `ts0`, in nanoseconds; `None` before the
    /// clock is known or for a timestamp older than `ts0`.
    fn remote_ns(&self, ts: u32) -> Option<i64> {
        if self.ns_per_tick == 0 {
            return None;
        }
        let ticks = ts.wrapping_sub(self.ts0);
        if ticks > i32::MAX as u32 {
            return None;
        }
        i64::try_from(u64::from(ticks).checked_mul(self.ns_per_tick)?).ok()
    }

    fn local_ns(&self, t: Instant) -> i64 {
        i64::try_from(t.nanos_since(self.t0)).unwrap_or(i64::MAX)
    }

    /// Learns the remote clock from a TSval seen at `now`.
    fn watch(&mut self, tsval: u32, now: Instant) {
        if self.ns_per_tick != 0 {
            return;
        }
        if !self.watching {
            (self.t0, self.ts0, self.watching) = (now, tsval, true);
            return;
        }
        let span = now.nanos_since(self.t0);
        if span < CLOCK_SPAN_NS {
            return;
        }
        let ticks = u64::from(tsval.wrapping_sub(self.ts0));
        let found = (ticks > 0 && ticks < 1 << 31)
            .then(|| span / ticks)
            .and_then(|per| {
                CLOCKS_NS
                    .into_iter()
                    .find(|c| per * 10 <= c * 16 && per * 16 >= c * 10)
            });
        match found {
            Some(c) => self.ns_per_tick = c,
            // Not a clock we know (or a queue that changed a lot while
            // we watched): look again from here.
            None => (self.t0, self.ts0) = (now, tsval),
        }
    }
}

/// A bounded set of samples, thinned when full.
#[derive(Debug, Clone)]
struct Kept {
    samples: Vec<DelaySample>,
    seen: u64,
}

impl Kept {
    fn new() -> Self {
        Kept {
            samples: Vec::with_capacity(KEEP),
            seen: 0,
        }
    }

    fn push(&mut self, s: DelaySample) {
        self.seen += 1;
        if self.samples.len() < KEEP {
            self.samples.push(s);
        } else if let Some(slot) = self.samples.get_mut((self.seen as usize / 2) % KEEP)
            && self.seen.is_multiple_of(2)
        {
            *slot = s;
        }
    }
}

/// The download thread's half: answers, one-way delays, acknowledged
/// bytes.
pub struct Meter {
    board: Arc<ProbeBoard>,
    flows: Box<[FlowClock]>,
    paths: Box<[(u64, WindowedMin)]>,
    kept: [Kept; 3],
    acked: u64,
    by_source: [u64; Source::ALL.len()],
    outside: OutsideQueue,
}

impl Meter {
    /// A meter reading answers to the probes on `board`.
    pub fn new(board: Arc<ProbeBoard>) -> Self {
        Meter {
            board,
            flows: vec![FlowClock::default(); SLOTS].into_boxed_slice(),
            paths: vec![(0, WindowedMin::default()); PATHS].into_boxed_slice(),
            kept: [Kept::new(), Kept::new(), Kept::new()],
            acked: 0,
            by_source: [0; Source::ALL.len()],
            outside: OutsideQueue::default(),
        }
    }

    /// The queue standing in the ISP's download buffer at `now`, from the
    /// one-way delays of the flows whose far ends stamp fine TCP
    /// timestamps; `None` when none did lately.
    #[inline]
    pub fn outside_queue(&self, now: Instant) -> Option<u64> {
        self.outside.standing(now)
    }

    /// Bytes the far ends have acknowledged of the office's TCP uploads,
    /// since start: what the upload direction delivered.
    pub fn acked_bytes(&self) -> u64 {
        self.acked
    }

    /// Round trips measured since start, by [`Source::index`].
    pub fn samples_by_source(&self) -> [u64; Source::ALL.len()] {
        self.by_source
    }

    /// Hands over the samples taken since the last call.
    pub fn drain(&mut self, mut f: impl FnMut(Toward, DelaySample)) {
        for (to, kept) in Toward::ALL.into_iter().zip(&mut self.kept) {
            for s in kept.samples.drain(..) {
                f(to, s);
            }
            kept.seen = 0;
        }
    }

    fn keep(&mut self, to: Toward, s: DelaySample) {
        let i = Toward::ALL.iter().position(|t| *t == to).unwrap_or(2);
        if let Some(k) = self.kept.get_mut(i) {
            k.push(s);
        }
    }

    /// Whether the TCP packet `pkt` of flow `flow` from the WAN carries
    /// data its sender sent before ([`super::retrans`]); call after
    /// [`Meter::on_wan_packet`], which has just read the same slot.
    #[inline]
    pub fn segment(&mut self, pkt: &PacketMeta, flow: u64) -> Segment {
        retrans::in_slot(&mut self.flows, |fc| &mut fc.seq, pkt, flow)
    }

    /// A packet of flow `flow` from the WAN, at ingress. Returns the TCP
    /// round trip it completed, if any, for the caller to attribute to the
    /// flow's category (the same samples [`Meter::samples_by_source`]
    /// counts as TCP).
    #[inline]
    pub fn on_wan_packet(&mut self, pkt: &PacketMeta, flow: u64, now: Instant) -> Option<TcpRtt> {
        match pkt.protocol {
            6 => {
                let v = TcpView::parse(pkt.tcp)?;
                self.on_tcp(pkt, &v, flow, now)
            }
            17 if pkt.src_port == 53 && pkt.payload.len() >= 12 => {
                self.on_dns(pkt, flow, now);
                None
            }
            17 if rtcp::looks_like_rtcp(pkt.payload) => {
                self.on_rtcp(pkt, flow, now);
                None
            }
            _ => None,
        }
    }

    fn on_tcp(&mut self, pkt: &PacketMeta, v: &TcpView, flow: u64, now: Instant) -> Option<TcpRtt> {
        let slot = ProbeBoard::slot_of(flow as u32);
        let fc = self.flows.get_mut(slot)?;
        if fc.id != flow {
            *fc = FlowClock::new(flow);
        }
        if v.has_ack() {
            match fc.ack {
                Some(a) if seq_before(a, v.ack) => {
                    self.acked += u64::from(v.ack.wrapping_sub(a));
                    fc.ack = Some(v.ack);
                }
                Some(_) => {}
                None => fc.ack = Some(v.ack),
            }
        }
        let mut owd_down = None;
        if let Some((tsval, _)) = v.timestamps {
            fc.watch(tsval, now);
            let first_of_tick = fc.last_tsval.is_none_or(|t| seq_before(t, tsval));
            if first_of_tick {
                fc.last_tsval = Some(tsval);
            }
            if let Some(remote) = fc.remote_ns(tsval) {
                let owd = fc.local_ns(now) - remote;
                // Every packet tells the ISP's queue, the later ones of a
                // burst included (they did wait behind it); only fine
                // clocks, as a 4 or 10 ms tick would read as a queue.
                let min = fc.down.get();
                if fc.ns_per_tick <= FINE_CLOCK_NS && min != i64::MAX {
                    self.outside
                        .observe(u64::try_from(owd - min).unwrap_or(0), now);
                }
                if first_of_tick && now.nanos_since(fc.last_owd) >= OWD_EVERY_NS {
                    fc.last_owd = now;
                    let min = fc.down.update(owd, now, HALF_WINDOW_NS);
                    owd_down = Some((owd - min) as u64);
                }
            }
        }
        let base_hint = fc.min_rtt;
        if let Some(q) = owd_down {
            let base = if base_hint == u64::MAX { 0 } else { base_hint };
            self.keep(Toward::Download, sample(q, base, true));
        }
        let st = self.board.pending(flow as u32)?;
        // Answered: the far end has seen the probe (its timestamp echoed,
        // or a later one: this answer times a later packet, so it frees the
        // probe without a sample; the SYN or the data acknowledged).
        let (answered, exact) = match st.probe.source {
            Source::TcpTimestamp => match v.timestamps {
                Some((_, ecr)) if ecr == st.probe.key => (true, true),
                Some((_, ecr)) => (seq_before(st.probe.key, ecr), false),
                None => (false, false),
            },
            Source::TcpHandshake => {
                let a = v.syn() && v.has_ack() && v.ack == st.probe.key;
                (a, a)
            }
            Source::TcpAck => {
                let a = v.has_ack() && !seq_before(v.ack, st.probe.key);
                (a, a)
            }
            Source::Dns | Source::Rtcp => (false, false),
        };
        if !answered {
            return None;
        }
        self.board.answer(flow as u32, st.version);
        if !exact {
            return None;
        }
        // A data segment is timed by the acknowledgement of exactly its
        // end; one that also covers the next segment was sent when that
        // one arrived (delayed ACKs), so it times the follower.
        let sent = match st.probe.end {
            None => st.sent,
            Some(end) if v.ack == end => st.sent,
            Some(_) => match st.next {
                Some((t, next_end)) if v.ack == next_end => t,
                _ => return None,
            },
        };
        let rtt = now.nanos_since(sent);
        if rtt == 0 || rtt > MAX_RTT_NS {
            return None;
        }
        self.count(st.probe.source);
        // The probe carried data: a LAN sender's segment, acknowledged by
        // the far end. Otherwise a LAN receiver's ACK (or a client's SYN),
        // answered by the far end's next segment.
        let timed = TcpRtt {
            rtt_ns: rtt,
            data: st.probe.end.is_some(),
        };
        let base = self.path_base(&pkt.src, rtt, now);
        let Some(fc) = self.flows.get_mut(slot) else {
            return Some(timed);
        };
        fc.min_rtt = fc.min_rtt.min(rtt);
        // Both one-way delays known: the round trip is told apart.
        let up = match (st.probe.source, v.timestamps) {
            (Source::TcpTimestamp, Some((tsval, _))) => fc.remote_ns(tsval).map(|remote| {
                let owd = remote - (fc.local_ns(sent));
                let min = fc.up.update(owd, now, HALF_WINDOW_NS);
                (owd - min) as u64
            }),
            _ => None,
        };
        let (to, q) = match up {
            Some(q) => (Toward::Upload, q),
            None => (Toward::Either, rtt.saturating_sub(base)),
        };
        // What answers a probe is the far end's reaction: a receiver holds
        // back its ACK for the next segment (delayed ACKs), a paced sender
        // its next segment. That wait is some samples' and not others',
        // while a queue in the line is every sample's: a flow gives the
        // least of its samples over a short window.
        if let Some(done) = fc.window.take(to, q, now) {
            self.keep(done.0, sample(done.1, base, done.0 != Toward::Either));
        }
        Some(timed)
    }

    fn on_dns(&mut self, pkt: &PacketMeta, flow: u64, now: Instant) {
        let Some(st) = self.board.pending(flow as u32) else {
            return;
        };
        let id = pkt
            .payload
            .get(..2)
            .and_then(|b| <[u8; 2]>::try_from(b).ok())
            .map(|b| u32::from(u16::from_be_bytes(b)));
        if st.probe.source != Source::Dns || id != Some(st.probe.key) {
            return;
        }
        self.board.answer(flow as u32, st.version);
        self.round_trip(Source::Dns, &pkt.src, now.nanos_since(st.sent), now);
    }

    /// A call's RTCP from the far end: a report block that echoes the
    /// probed sender report times it, less the far end's hold.
    fn on_rtcp(&mut self, pkt: &PacketMeta, flow: u64, now: Instant) {
        let Some(st) = self.board.pending(flow as u32) else {
            return;
        };
        if st.probe.source != Source::Rtcp {
            return;
        }
        let Some(hold) = rtcp::hold_for(pkt.payload, st.probe.key) else {
            return;
        };
        self.board.answer(flow as u32, st.version);
        // DLSR counts 1/65536 s.
        let hold_ns = u64::from(hold) * 1_000_000_000 / 65_536;
        if let Some(rtt) = now.nanos_since(st.sent).checked_sub(hold_ns) {
            self.round_trip(Source::Rtcp, &pkt.src, rtt, now);
        }
    }

    /// A round trip of `rtt` ns to `remote` measured from `source`: a
    /// sample of either direction against the path's minimum.
    fn round_trip(&mut self, source: Source, remote: &[u8; 16], rtt: u64, now: Instant) {
        if rtt == 0 || rtt > MAX_RTT_NS {
            return;
        }
        self.count(source);
        let base = self.path_base(remote, rtt, now);
        self.keep(
            Toward::Either,
            sample(rtt.saturating_sub(base), base, false),
        );
    }

    fn count(&mut self, source: Source) {
        if let Some(n) = self.by_source.get_mut(source.index()) {
            *n += 1;
        }
    }

    /// The minimum round trip to `remote`, `rtt` included.
    fn path_base(&mut self, remote: &[u8; 16], rtt: u64, now: Instant) -> u64 {
        let h = hash(remote);
        let Some((tag, min)) = self.paths.get_mut((h as usize) % PATHS) else {
            return rtt;
        };
        if *tag != h {
            (*tag, *min) = (h, WindowedMin::default());
        }
        min.update(rtt as i64, now, HALF_WINDOW_NS) as u64
    }
}

fn sample(queue_ns: u64, base_ns: u64, one_way: bool) -> DelaySample {
    DelaySample {
        queue: Duration::from_nanos(queue_ns),
        base: Duration::from_nanos(base_ns),
        one_way,
    }
}

/// FNV-1a of an address (not keyed: the table only spreads paths, and a
/// collision costs a baseline, not memory).
fn hash(a: &[u8; 16]) -> u64 {
    a.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    }) | 1
}
