//! One packet as classification sees it: the parsed frame, its flow's key
//! and side, its direction and the time, computed once per packet.

use super::matcher::FlowFacts;
use crate::config::Direction;
use crate::flow::{FlowKey, Side};
use crate::packet::PacketMeta;
use crate::time::Instant;

/// The context of one IP packet: everything classification needs to know
/// about it besides its flow's state.
#[derive(Debug, Clone, Copy)]
pub struct PacketCtx<'p, 'a> {
    /// The parsed frame.
    pub pkt: &'p PacketMeta<'a>,
    /// Its flow's canonical key.
    pub key: FlowKey,
    /// The side of `key` the packet's source is on.
    pub side: Side,
    /// The direction it travels through the gateway.
    pub dir: Direction,
    /// When it arrived.
    pub now: Instant,
}

impl<'p, 'a> PacketCtx<'p, 'a> {
    /// The context of `pkt` (an IP frame) travelling `dir` at `now`.
    #[inline]
    pub fn new(pkt: &'p PacketMeta<'a>, dir: Direction, now: Instant) -> Self {
        let (key, side) = FlowKey::of(pkt);
        PacketCtx {
            pkt,
            key,
            side,
            dir,
            now,
        }
    }

    /// What conditions see of this packet in a flow opened by `initiator`,
    /// before anything is known of its host or app.
    pub(super) fn facts(&self, initiator: Side) -> FlowFacts<'static> {
        let (src, src_port) = self.key.endpoint(initiator);
        let (dst, dst_port) = self.key.endpoint(initiator.other());
        FlowFacts {
            protocol: self.key.protocol,
            src: u128::from_be_bytes(src),
            src_port,
            dst: u128::from_be_bytes(dst),
            dst_port,
            dscp: self.pkt.dscp,
            vlan: self.pkt.vlan,
            direction: self.dir,
            host: None,
            app: None,
            settled: false,
        }
    }
}
