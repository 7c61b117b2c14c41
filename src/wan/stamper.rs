//! The LAN-to-WAN half of the measurement, on the upload thread: which
//! packet of a flow to time, and when it left.

use std::sync::Arc;

use super::board::{Probe, ProbeBoard, SLOTS};
use super::retrans::{self, Segment, SeqHigh};
use super::tcp::{TcpView, seq_before};
use super::{Source, rtcp};
use crate::packet::PacketMeta;
use crate::time::Instant;

/// An unanswered probe older than this is given up (lost, or never
/// echoed): longer than any round trip worth measuring, a geostationary
/// hop under load included.
const PROBE_TIMEOUT_NS: u64 = 3_000_000_000;
/// A flow's stamped probe is looked up on the board (a line the download
/// thread writes) at most this often: between looks, its packets cost one
/// read of the upload thread's own table.
const LOOK_EVERY_NS: u64 = 2_000_000;

/// The upload thread's view of one board slot.
#[derive(Debug, Clone, Copy, Default)]
struct Local {
    flow: u32,
    key: u32,
    source: Option<Source>,
    /// The board version of the stamp; `None` while the probed packet is
    /// still in qosd's queue.
    version: Option<u32>,
    /// When the probe was made, then when it left.
    at: Instant,
    /// When the board was last looked at for its answer.
    looked: Instant,
    /// The probe's follower was picked.
    followed: bool,
    /// The TSval of the flow's packet that found the slot free: the probe
    /// goes on the first packet with a later one, the first sent at its
    /// tick (an echo of the tick may answer any packet sent in it).
    armed: Option<(u32, u32)>,
    /// The highest sequence end of the LAN sender of the flow holding the
    /// slot (retransmissions; kept across probes).
    seq: SeqHigh,
}

/// Picks the packets to time and stamps their departure.
pub struct Stamper {
    board: Arc<ProbeBoard>,
    local: Box<[Local]>,
}

impl Stamper {
    /// A stamper writing on `board`.
    pub fn new(board: Arc<ProbeBoard>) -> Self {
        Stamper {
            board,
            local: vec![Local::default(); SLOTS].into_boxed_slice(),
        }
    }

    /// A packet of flow `flow` from the LAN, at ingress: the probe it
    /// should carry to its departure, if it is to be timed. Withdraws the
    /// flow's probe if this packet sends the probed data again.
    #[inline]
    pub fn on_lan_packet(&mut self, pkt: &PacketMeta, flow: u64, now: Instant) -> Option<Probe> {
        // Only TCP and DNS queries can be timed: nothing else costs more
        // than this test.
        if pkt.protocol != 6 && !(pkt.protocol == 17 && pkt.dst_port == 53) {
            return self.on_udp(pkt, flow as u32, now);
        }
        let flow = flow as u32;
        let slot = ProbeBoard::slot_of(flow);
        let l = self.local.get_mut(slot)?;
        if l.source.is_some() && now.nanos_since(l.at) < PROBE_TIMEOUT_NS {
            let answered = match l.version {
                Some(v) if now.nanos_since(l.looked) >= LOOK_EVERY_NS => {
                    l.looked = now;
                    self.board.is_answered(l.flow, v)
                }
                _ => false,
            };
            if !answered {
                // Karn: only a probe timed by sequence can be sent again
                // (a resent segment carries a new TSval, which cannot
                // match).
                if l.flow == flow
                    && matches!(l.source, Some(Source::TcpAck | Source::TcpHandshake))
                    && let Some(v) = TcpView::parse(pkt.tcp)
                    && resends(*l, &v, pkt.payload.len())
                {
                    self.board.withdraw(flow);
                    l.source = None;
                    return None;
                }
                // The next data segment after a data probe is its
                // follower.
                if l.flow == flow
                    && !l.followed
                    && !pkt.payload.is_empty()
                    && let (Some(source), Some(v)) = (l.source, TcpView::parse(pkt.tcp))
                {
                    l.followed = true;
                    return Some(Probe {
                        flow,
                        key: l.key,
                        source,
                        end: Some(v.seq.wrapping_add(pkt.payload.len() as u32)),
                        follower: true,
                    });
                }
                return None;
            }
        }
        let probe = if pkt.protocol == 6 {
            let v = TcpView::parse(pkt.tcp)?;
            let probe = tcp_probe(flow, &v, pkt.payload.len())?;
            if probe.source == Source::TcpTimestamp {
                match l.armed {
                    Some((f, ts)) if f == flow && seq_before(ts, probe.key) => {}
                    _ => {
                        l.armed = Some((flow, probe.key));
                        l.source = None;
                        return None;
                    }
                }
            }
            probe
        } else {
            dns_probe(flow, pkt)?
        };
        *l = Local {
            flow,
            key: probe.key,
            source: Some(probe.source),
            version: None,
            at: now,
            looked: now,
            followed: false,
            armed: None,
            seq: l.seq,
        };
        Some(probe)
    }

    /// A call's RTCP sender report is always timed, over any probe the
    /// slot holds: the far end's next report echoes the newest SR it got,
    /// and SRs come seconds apart.
    fn on_udp(&mut self, pkt: &PacketMeta, flow: u32, now: Instant) -> Option<Probe> {
        if pkt.protocol != 17 || !rtcp::looks_like_rtcp(pkt.payload) {
            return None;
        }
        let key = rtcp::sender_report_key(pkt.payload)?;
        let l = self.local.get_mut(ProbeBoard::slot_of(flow))?;
        let probe = Probe {
            flow,
            key,
            source: Source::Rtcp,
            end: None,
            follower: false,
        };
        *l = Local {
            flow,
            key,
            source: Some(Source::Rtcp),
            version: None,
            at: now,
            looked: now,
            followed: true,
            armed: None,
            seq: l.seq,
        };
        Some(probe)
    }

    /// Whether the TCP packet `pkt` of flow `flow` from the LAN carries
    /// data its sender sent before ([`super::retrans`]); call after
    /// [`Stamper::on_lan_packet`], which has just read the same slot.
    #[inline]
    pub fn segment(&mut self, pkt: &PacketMeta, flow: u64) -> Segment {
        retrans::in_slot(&mut self.local, |l| &mut l.seq, pkt, flow)
    }

    /// The packet carrying `probe` left toward the WAN at `now`.
    #[inline]
    pub fn departed(&mut self, probe: Probe, now: Instant) {
        let slot = ProbeBoard::slot_of(probe.flow);
        if probe.follower {
            if let Some(x) = self.local.get(slot)
                && x.flow == probe.flow
                && x.key == probe.key
                && let (Some(version), Some(end)) = (x.version, probe.end)
            {
                self.board.follow(probe.flow, version, end, now);
            }
            return;
        }
        if let Some(x) = self.local.get_mut(slot)
            && x.flow == probe.flow
            && x.key == probe.key
            && x.source == Some(probe.source)
            && x.version.is_none()
        {
            x.version = Some(self.board.stamp(probe, now));
            x.at = now;
            x.looked = now;
        }
    }
}

/// Whether a segment (`v`, `len` payload bytes) sends again what the
/// probe `l` timed: its answer would then not tell which copy it answers.
fn resends(l: Local, v: &TcpView, len: usize) -> bool {
    match l.source {
        Some(Source::TcpAck) => len > 0 && seq_before(v.seq, l.key),
        Some(Source::TcpHandshake) => v.syn() && !v.has_ack(),
        _ => false,
    }
}

fn tcp_probe(flow: u32, v: &TcpView, len: usize) -> Option<Probe> {
    let end = (len > 0).then(|| v.seq.wrapping_add(len as u32));
    let (key, source) = if v.syn() && !v.has_ack() {
        // The SYN-ACK acknowledges seq + 1, timestamps or not.
        (v.seq.wrapping_add(1), Source::TcpHandshake)
    } else if let Some((tsval, _)) = v.timestamps {
        // The far end echoes TSval in its next segment, data or ACK.
        (tsval, Source::TcpTimestamp)
    } else if let Some(end) = end {
        (end, Source::TcpAck)
    } else {
        return None;
    };
    Some(Probe {
        flow,
        key,
        source,
        end,
        follower: false,
    })
}

/// A DNS query (UDP to port 53, QR clear) is timed by its id.
fn dns_probe(flow: u32, pkt: &PacketMeta) -> Option<Probe> {
    if pkt.protocol != 17 || pkt.dst_port != 53 || pkt.payload.len() < 12 {
        return None;
    }
    let id = u16::from_be_bytes([*pkt.payload.first()?, *pkt.payload.get(1)?]);
    if pkt.payload.get(2)? & 0x80 != 0 {
        return None;
    }
    Some(Probe {
        flow,
        key: u32::from(id),
        source: Source::Dns,
        end: None,
        follower: false,
    })
}
