//! Retransmitted TCP data segments, as one data-path thread sees its own
//! direction's senders: a segment that starts before the highest sequence
//! number its flow already sent carries bytes sent before.
//!
//! The highest sequence end ([`SeqHigh`]) lives in the per-flow slot the
//! WAN-delay measurement already keeps on each thread (the
//! [`super::Stamper`]'s upstream, the [`super::Meter`]'s downstream, by
//! [`super::ProbeBoard::slot_of`]): memory is bounded whatever the number
//! of flows, nothing is allocated, and the packet costs no lookup of its
//! own. Two flows that share a slot take it over from each other, and a
//! flow's first segment after that only learns where it
//! stands: collisions can hide a retransmission, never invent one.

use super::board::ProbeBoard;
use super::tcp::seq_before;
use crate::packet::{PacketMeta, TCP_FIN, TCP_RST, TCP_SYN};

/// What a TCP segment was, for the retransmission count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Segment {
    /// No payload (a SYN, a pure ACK, a bare FIN), or a RST: not data.
    NotData,
    /// Data, none of it sent before (as far as this thread knows).
    New,
    /// Data starting before the highest sequence end its flow had sent: a
    /// retransmission (or, rarely, a keepalive or window probe, or a
    /// segment the network reordered).
    Retransmitted,
}

/// The highest sequence end one flow's sender reached, as one thread saw
/// it, and the flow it belongs to.
#[derive(Debug, Clone, Copy, Default)]
pub struct SeqHigh {
    flow: u64,
    /// The sequence number after the highest byte sent.
    end: u32,
    known: bool,
}

impl SeqHigh {
    /// Reads a TCP packet `pkt` of flow `flow` travelling this thread's
    /// direction; a slot held by another flow is taken over.
    #[inline]
    pub fn on_tcp(&mut self, pkt: &PacketMeta, flow: u64) -> Segment {
        let Some(seq) = pkt.tcp_seq() else {
            return Segment::NotData;
        };
        let flags = pkt.tcp_flags;
        if flags & TCP_RST != 0 {
            return Segment::NotData;
        }
        let len = pkt.payload.len() as u32;
        if flags & TCP_SYN != 0 {
            // The SYN takes one sequence number; any data it carries (TCP
            // Fast Open) is the connection's first, not a resend.
            *self = SeqHigh {
                flow,
                end: seq.wrapping_add(1).wrapping_add(len),
                known: true,
            };
            return Segment::NotData;
        }
        if len == 0 {
            return Segment::NotData;
        }
        let end = seq
            .wrapping_add(len)
            .wrapping_add(u32::from(flags & TCP_FIN != 0));
        if self.flow != flow || !self.known {
            *self = SeqHigh {
                flow,
                end,
                known: true,
            };
            return Segment::New;
        }
        let resent = seq_before(seq, self.end);
        if seq_before(self.end, end) {
            self.end = end;
        }
        if resent {
            Segment::Retransmitted
        } else {
            Segment::New
        }
    }
}

/// Reads the TCP packet `pkt` of flow `flow` against the [`SeqHigh`] that
/// `seq` finds in its flow's slot of `slots` (the stamper's or the
/// meter's per-flow table); anything but TCP is not data.
#[inline]
pub(super) fn in_slot<T>(
    slots: &mut [T],
    seq: impl FnOnce(&mut T) -> &mut SeqHigh,
    pkt: &PacketMeta,
    flow: u64,
) -> Segment {
    if pkt.protocol != 6 {
        return Segment::NotData;
    }
    match slots.get_mut(ProbeBoard::slot_of(flow as u32)) {
        Some(slot) => seq(slot).on_tcp(pkt, flow),
        None => Segment::NotData,
    }
}

#[cfg(test)]
mod tests {
    use etherparse::PacketBuilder;

    use super::*;

    fn tcp(seq: u32, syn: bool, fin: bool, rst: bool, len: usize) -> Vec<u8> {
        let mut b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4([198, 18, 0, 1], [198, 18, 0, 2], 64)
            .tcp(40000, 443, seq, 64240)
            .ack(1);
        if syn {
            b = b.syn();
        }
        if fin {
            b = b.fin();
        }
        if rst {
            b = b.rst();
        }
        let mut out = Vec::new();
        b.write(&mut out, &vec![0u8; len]).unwrap();
        out
    }

    fn see(w: &mut SeqHigh, flow: u64, f: &[u8]) -> Segment {
        w.on_tcp(&PacketMeta::parse(f), flow)
    }

    #[test]
    fn a_segment_sent_again_is_a_retransmission_and_the_next_one_is_not() {
        let mut w = SeqHigh::default();
        assert_eq!(
            see(&mut w, 7, &tcp(999, true, false, false, 0)),
            Segment::NotData
        );
        assert_eq!(
            see(&mut w, 7, &tcp(1000, false, false, false, 100)),
            Segment::New
        );
        assert_eq!(
            see(&mut w, 7, &tcp(1100, false, false, false, 100)),
            Segment::New
        );
        // Sent again whole, then in part (repacketised): both resends.
        let again = tcp(1000, false, false, false, 100);
        assert_eq!(see(&mut w, 7, &again), Segment::Retransmitted);
        assert_eq!(
            see(&mut w, 7, &tcp(1150, false, false, false, 100)),
            Segment::Retransmitted
        );
        // That one also reached new bytes: what follows them is new.
        assert_eq!(
            see(&mut w, 7, &tcp(1250, false, false, false, 100)),
            Segment::New
        );
        // Pure ACKs and RSTs are not data.
        assert_eq!(
            see(&mut w, 7, &tcp(1350, false, false, false, 0)),
            Segment::NotData
        );
        assert_eq!(
            see(&mut w, 7, &tcp(1000, false, false, true, 0)),
            Segment::NotData
        );
    }

    #[test]
    fn a_flow_taking_over_the_slot_starts_afresh_and_sequence_numbers_wrap() {
        let mut w = SeqHigh::default();
        let other = 7 + 4096;
        assert_eq!(
            see(&mut w, 7, &tcp(5000, false, false, false, 100)),
            Segment::New
        );
        // Another flow in the same slot: its first segment only teaches.
        assert_eq!(
            see(&mut w, other, &tcp(10, false, false, false, 100)),
            Segment::New
        );
        assert_eq!(
            see(&mut w, 7, &tcp(4000, false, false, false, 100)),
            Segment::New
        );
        let near = u32::MAX - 49;
        assert_eq!(
            see(&mut w, 9, &tcp(near, false, false, false, 100)),
            Segment::New
        );
        assert_eq!(
            see(&mut w, 9, &tcp(50, false, false, false, 100)),
            Segment::New
        );
        assert_eq!(
            see(&mut w, 9, &tcp(near, false, false, false, 100)),
            Segment::Retransmitted
        );
    }
}
