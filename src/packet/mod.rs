//! A small, zero-copy view of an Ethernet frame: what the flow table, the
//! classifier and the shaper need, read once with etherparse's
//! `SlicedPacket`. Never panics and never rejects a frame: frames that are
//! not IP, fragments and malformed frames are recognised as such so the data
//! path can still forward (and count) them.

pub mod bell;
mod fast;
pub mod rewrite;
mod tunnel;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use etherparse::{LinkExtSlice, NetSlice, SlicedPacket, TransportSlice};

/// What kind of frame this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    /// IPv4 or IPv6 with a readable header (the L4 header may be absent:
    /// fragments, unknown protocols).
    Ip,
    /// Not IP (ARP, LLDP, STP, ...): forwarded unshaped in the control category.
    NonIp {
        /// The innermost EtherType (after VLAN tags).
        ether_type: u16,
    },
    /// Claims to be IP (or is too short for Ethernet) but cannot be read.
    Malformed,
}

/// IP version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpVersion {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

/// The parsed view of one frame. Addresses are stored as 16 bytes
/// (IPv4-mapped for IPv4) so that flow keys hash and compare quickly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketMeta<'a> {
    /// What kind of frame this is; the fields below are meaningful for `Ip`.
    pub kind: FrameKind,
    /// Whole frame length in bytes (Ethernet header included).
    pub frame_len: usize,
    /// Outer 802.1Q VLAN id, if tagged.
    pub vlan: Option<u16>,
    /// Number of VLAN tags (QinQ gives 2).
    pub vlan_tags: u8,
    /// IP version.
    pub ip_version: IpVersion,
    /// Byte offset of the IP header in the frame (for DSCP/ECN rewrites).
    pub ip_offset: usize,
    /// Source address (IPv4-mapped for IPv4).
    pub src: [u8; 16],
    /// Destination address (IPv4-mapped for IPv4).
    pub dst: [u8; 16],
    /// IP protocol / final IPv6 next header (6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6...).
    pub protocol: u8,
    /// TCP/UDP source port (0 otherwise).
    pub src_port: u16,
    /// TCP/UDP destination port (0 otherwise).
    pub dst_port: u16,
    /// DSCP (6 bits).
    pub dscp: u8,
    /// ECN (2 bits): 0 not-ECT, 1 ECT(1), 2 ECT(0), 3 CE.
    pub ecn: u8,
    /// TCP flags byte (FIN 0x01, SYN 0x02, RST 0x04, ACK 0x10); 0 for others.
    pub tcp_flags: u8,
    /// True when the IP payload is a fragment (no L4 header read).
    pub fragment: bool,
    /// The frame went to an Ethernet group address (broadcast or
    /// multicast): a subnet's broadcast (192.168.1.255) says so here, where
    /// the IP address alone does not.
    pub l2_group: bool,
    /// TCP/UDP payload (ICMP: the ICMP message after its header); empty otherwise.
    pub payload: &'a [u8],
    /// The TCP header with its options (sequence and acknowledgement
    /// numbers, timestamps); empty for everything else.
    pub tcp: &'a [u8],
}

/// TCP FIN flag.
pub const TCP_FIN: u8 = 0x01;
/// TCP SYN flag.
pub const TCP_SYN: u8 = 0x02;
/// TCP RST flag.
pub const TCP_RST: u8 = 0x04;
/// TCP ACK flag.
pub const TCP_ACK: u8 = 0x10;

/// EtherType of IPv4.
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// EtherType of IPv6.
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
pub use tunnel::{GTP_U_PORT, VXLAN_PORT};
/// EtherType of PPPoE session frames.
pub const ETHERTYPE_PPPOE_SESSION: u16 = 0x8864;

impl<'a> PacketMeta<'a> {
    fn empty(kind: FrameKind, frame_len: usize) -> Self {
        PacketMeta {
            kind,
            frame_len,
            vlan: None,
            vlan_tags: 0,
            ip_version: IpVersion::V4,
            ip_offset: 0,
            src: [0; 16],
            dst: [0; 16],
            protocol: 0,
            src_port: 0,
            dst_port: 0,
            dscp: 0,
            ecn: 0,
            tcp_flags: 0,
            fragment: false,
            l2_group: false,
            payload: &[],
            tcp: &[],
        }
    }

    /// Parses an Ethernet II frame. Never fails: unreadable frames come back
    /// as [`FrameKind::Malformed`], non-IP as [`FrameKind::NonIp`].
    #[inline]
    pub fn parse(frame: &'a [u8]) -> Self {
        if let Some(meta) = fast::parse(frame) {
            return meta;
        }
        Self::parse_general(frame)
    }

    /// Every frame the fast path declines, through etherparse.
    pub fn parse_general(frame: &'a [u8]) -> Self {
        let mut meta = Self::parse_sliced(frame);
        meta.l2_group = l2_group(frame);
        meta
    }

    /// [`PacketMeta::parse_general`] but for the Ethernet destination.
    fn parse_sliced(frame: &'a [u8]) -> Self {
        let sliced = match SlicedPacket::from_ethernet(frame) {
            Ok(s) => s,
            Err(_) => return Self::unreadable(frame),
        };
        if sliced.net.is_none()
            && let Some(inner) = Self::pppoe(frame, &sliced)
        {
            return inner;
        }
        if let Some(mut inner) = tunnel::inner(&sliced) {
            // Classify and queue by the tunnelled flow; account the outer
            // frame, and keep the outer header's offset, DSCP and VLAN,
            // which egress marking edits.
            let outer = Self::parse_outer(frame, &sliced);
            inner.frame_len = frame.len();
            inner.vlan = outer.vlan;
            inner.vlan_tags = outer.vlan_tags;
            inner.ip_offset = outer.ip_offset;
            inner.ip_version = outer.ip_version;
            inner.dscp = outer.dscp;
            inner.ecn = outer.ecn;
            return inner;
        }
        Self::parse_outer(frame, &sliced)
    }

    /// An Ethernet frame without tunnels.
    fn parse_outer(frame: &'a [u8], sliced: &SlicedPacket<'a>) -> Self {
        let mut meta = Self::from_sliced(frame, sliced);
        let mut ether_type = be16(frame, 12).unwrap_or(0);
        for ext in &sliced.link_exts {
            if let LinkExtSlice::Vlan(v) = ext {
                if meta.vlan.is_none() {
                    meta.vlan = Some(v.vlan_identifier().value());
                }
                meta.vlan_tags = meta.vlan_tags.saturating_add(1);
                ether_type = v.ether_type().0;
            }
        }
        if meta.kind == FrameKind::Malformed {
            meta.kind = FrameKind::NonIp { ether_type };
        }
        meta
    }

    /// The IP and transport parts of a sliced frame; `kind` stays
    /// `Malformed` when there is no IP layer.
    pub(super) fn from_sliced(frame: &'a [u8], sliced: &SlicedPacket<'a>) -> Self {
        let mut meta = Self::empty(FrameKind::Malformed, frame.len());
        let base = frame.as_ptr() as usize;
        match &sliced.net {
            Some(NetSlice::Ipv4(ip)) => {
                let h = ip.header();
                meta.kind = FrameKind::Ip;
                meta.ip_version = IpVersion::V4;
                meta.ip_offset = (h.slice().as_ptr() as usize).saturating_sub(base);
                meta.src = Ipv4Addr::from(h.source()).to_ipv6_mapped().octets();
                meta.dst = Ipv4Addr::from(h.destination()).to_ipv6_mapped().octets();
                meta.protocol = h.protocol().0;
                meta.dscp = h.dcp().value();
                meta.ecn = h.ecn().value();
                meta.fragment = ip.is_payload_fragmented();
            }
            Some(NetSlice::Ipv6(ip)) => {
                let h = ip.header();
                meta.kind = FrameKind::Ip;
                meta.ip_version = IpVersion::V6;
                meta.ip_offset = (h.slice().as_ptr() as usize).saturating_sub(base);
                meta.src = h.source();
                meta.dst = h.destination();
                meta.protocol = ip.payload().ip_number.0;
                meta.dscp = h.dscp().value();
                meta.ecn = h.ecn().value();
                meta.fragment = ip.is_payload_fragmented();
            }
            Some(NetSlice::Arp(_)) | None => return meta,
        }
        match &sliced.transport {
            Some(TransportSlice::Tcp(t)) => {
                meta.src_port = t.source_port();
                meta.dst_port = t.destination_port();
                meta.tcp_flags = t.header_slice().get(13).copied().unwrap_or(0);
                meta.payload = t.payload();
                meta.tcp = t.header_slice();
            }
            Some(TransportSlice::Udp(u)) => {
                meta.src_port = u.source_port();
                meta.dst_port = u.destination_port();
                meta.payload = u.payload();
            }
            Some(TransportSlice::Icmpv4(i)) => meta.payload = i.payload(),
            Some(TransportSlice::Icmpv6(i)) => meta.payload = i.payload(),
            Some(TransportSlice::Igmp(_)) | None => {}
        }
        meta
    }

    /// IP inside a PPPoE session frame (DSL gateways' WAN side): parsed
    /// from the IP header on, with `ip_offset` pointing into the frame.
    fn pppoe(frame: &'a [u8], sliced: &SlicedPacket<'a>) -> Option<Self> {
        let tags = sliced.link_exts.len();
        let off = 14 + 4 * tags;
        if be16(frame, off - 2)? != ETHERTYPE_PPPOE_SESSION {
            return None;
        }
        // PPPoE header: ver/type 0x11, code 0, session id, length; then the
        // PPP protocol: 0x0021 IPv4, 0x0057 IPv6.
        if frame.get(off).copied()? != 0x11 || frame.get(off + 1).copied()? != 0 {
            return None;
        }
        if !matches!(be16(frame, off + 6)?, 0x0021 | 0x0057) {
            return None;
        }
        let ip = frame.get(off + 8..)?;
        let inner = SlicedPacket::from_ip(ip).ok()?;
        let mut meta = Self::from_sliced(frame, &inner);
        if meta.kind != FrameKind::Ip {
            return None;
        }
        meta.frame_len = frame.len();
        for ext in &sliced.link_exts {
            if let LinkExtSlice::Vlan(v) = ext {
                if meta.vlan.is_none() {
                    meta.vlan = Some(v.vlan_identifier().value());
                }
                meta.vlan_tags = meta.vlan_tags.saturating_add(1);
            }
        }
        Some(meta)
    }

    /// A frame etherparse refused: still tell IP from non-IP by EtherType so
    /// that e.g. an unknown EtherType with a short body is not "malformed".
    fn unreadable(frame: &'a [u8]) -> Self {
        let Some(mut ether_type) = be16(frame, 12) else {
            return Self::empty(FrameKind::Malformed, frame.len());
        };
        // Skip VLAN tags (802.1Q, 802.1ad, and the old QinQ 0x9100).
        let mut off = 14;
        let mut meta = Self::empty(FrameKind::Malformed, frame.len());
        while matches!(ether_type, 0x8100 | 0x88a8 | 0x9100) {
            let (Some(tci), Some(next)) = (be16(frame, off), be16(frame, off + 2)) else {
                break;
            };
            if meta.vlan.is_none() {
                meta.vlan = Some(tci & 0x0fff);
            }
            meta.vlan_tags = meta.vlan_tags.saturating_add(1);
            ether_type = next;
            off += 4;
        }
        if ether_type != ETHERTYPE_IPV4 && ether_type != ETHERTYPE_IPV6 {
            meta.kind = FrameKind::NonIp { ether_type };
        }
        meta
    }

    /// The TCP sequence number (of the first payload byte; of the SYN
    /// itself for a SYN), if this is a TCP segment with a header.
    #[inline]
    pub fn tcp_seq(&self) -> Option<u32> {
        let b: [u8; 4] = self.tcp.get(4..8)?.try_into().ok()?;
        Some(u32::from_be_bytes(b))
    }

    /// Source address as `IpAddr` (IPv4 when IPv4-mapped).
    pub fn src_ip(&self) -> IpAddr {
        addr_from_bytes(self.src, self.ip_version)
    }

    /// Destination address as `IpAddr`.
    pub fn dst_ip(&self) -> IpAddr {
        addr_from_bytes(self.dst, self.ip_version)
    }

    /// True for an IP frame whose L4 ports were read (TCP/UDP, not a fragment).
    pub fn has_ports(&self) -> bool {
        self.kind == FrameKind::Ip && !self.fragment && matches!(self.protocol, 6 | 17 | 132)
    }
}

/// Whether an Ethernet frame goes to a group address: the first bit sent
/// of the destination MAC, the low bit of its first byte.
#[inline]
pub(crate) fn l2_group(frame: &[u8]) -> bool {
    frame.first().is_some_and(|b| b & 1 == 1)
}

/// The big-endian u16 at `off`, if the frame is long enough.
#[inline]
pub(crate) fn be16(bytes: &[u8], off: usize) -> Option<u16> {
    let b = bytes.get(off..off.checked_add(2)?)?;
    Some(u16::from_be_bytes(<[u8; 2]>::try_from(b).ok()?))
}

/// The 16-byte form back to an `IpAddr`.
pub fn addr_from_bytes(bytes: [u8; 16], version: IpVersion) -> IpAddr {
    let v6 = Ipv6Addr::from(bytes);
    match (version, v6.to_ipv4_mapped()) {
        (IpVersion::V4, Some(v4)) => IpAddr::V4(v4),
        _ => IpAddr::V6(v6),
    }
}

#[cfg(test)]
mod tests;
