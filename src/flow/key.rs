//! A flow's identity: the canonical bidirectional key of a packet and which
//! side of it the packet's source is. Nothing here knows what the table
//! keeps per flow.

use crate::packet::PacketMeta;

/// Which end of a canonical key an address belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The lower (address, port) endpoint.
    Lo,
    /// The higher endpoint.
    Hi,
}

/// A canonical, bidirectional flow key. Ordered only so that it can ride
/// along in sorted collections (the API's top flows).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FlowKey {
    /// Lower endpoint address (IPv4-mapped for IPv4).
    pub lo: [u8; 16],
    /// Higher endpoint address.
    pub hi: [u8; 16],
    /// Port of `lo` (0 without ports).
    pub lo_port: u16,
    /// Port of `hi`.
    pub hi_port: u16,
    /// Outer VLAN id (0 when untagged).
    pub vlan: u16,
    /// IP protocol.
    pub protocol: u8,
}

impl FlowKey {
    /// The key of `pkt`'s flow and which side of it `pkt`'s source is.
    /// ICMP and fragments are keyed by address pair and protocol only.
    #[inline]
    pub fn of(pkt: &PacketMeta<'_>) -> (FlowKey, Side) {
        let (sp, dp) = if pkt.has_ports() {
            (pkt.src_port, pkt.dst_port)
        } else {
            (0, 0)
        };
        let vlan = pkt.vlan.unwrap_or(0);
        if (pkt.src, sp) <= (pkt.dst, dp) {
            (
                FlowKey {
                    lo: pkt.src,
                    hi: pkt.dst,
                    lo_port: sp,
                    hi_port: dp,
                    vlan,
                    protocol: pkt.protocol,
                },
                Side::Lo,
            )
        } else {
            (
                FlowKey {
                    lo: pkt.dst,
                    hi: pkt.src,
                    lo_port: dp,
                    hi_port: sp,
                    vlan,
                    protocol: pkt.protocol,
                },
                Side::Hi,
            )
        }
    }

    /// (address, port) of `side`.
    pub fn endpoint(&self, side: Side) -> ([u8; 16], u16) {
        match side {
            Side::Lo => (self.lo, self.lo_port),
            Side::Hi => (self.hi, self.hi_port),
        }
    }
}

impl Side {
    /// The other end.
    #[inline]
    pub const fn other(self) -> Side {
        match self {
            Side::Lo => Side::Hi,
            Side::Hi => Side::Lo,
        }
    }
}
