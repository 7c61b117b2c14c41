//! Tunnels whose inner flow qosd classifies and queues: GTP-U (mobile
//! backhaul), VXLAN, GRE (plain, with a key or sequence number, carrying
//! IP or Ethernet, and PPTP's enhanced GRE carrying PPP), IP-in-IP, 6in4
//! and 4in6. A tunnel holds many flows of many kinds; classified as its
//! outer flow, a call inside a VPN to head office shares one queue (and
//! one category) with the backup running beside it.
//!
//! One level is opened, never more: a tunnel inside a tunnel stays that
//! inner tunnel's flow, so the work per frame is bounded.

use etherparse::{NetSlice, SlicedPacket, TransportSlice};

use super::{FrameKind, PacketMeta, be16};

/// GTP-U's port (3GPP TS 29.281).
pub const GTP_U_PORT: u16 = 2152;
/// VXLAN's port (RFC 7348).
pub const VXLAN_PORT: u16 = 4789;

/// The IP flow inside the tunnel `sliced` is, if it is one of those above
/// and what it carries parses as IP.
pub(super) fn inner<'a>(sliced: &SlicedPacket<'a>) -> Option<PacketMeta<'a>> {
    match &sliced.transport {
        Some(TransportSlice::Udp(u)) => {
            let (sp, dp) = (u.source_port(), u.destination_port());
            if sp == GTP_U_PORT || dp == GTP_U_PORT {
                gtp(u.payload())
            } else if dp == VXLAN_PORT {
                vxlan(u.payload())
            } else {
                None
            }
        }
        Some(_) => None,
        None => {
            let (number, payload) = match &sliced.net {
                Some(NetSlice::Ipv4(ip)) if !ip.is_payload_fragmented() => {
                    (ip.payload().ip_number.0, ip.payload().payload)
                }
                Some(NetSlice::Ipv6(ip)) if !ip.is_payload_fragmented() => {
                    (ip.payload().ip_number.0, ip.payload().payload)
                }
                _ => return None,
            };
            match number {
                // IPv4 in IP (RFC 2003) and IPv6 in IP (RFC 4213's 6in4).
                4 | 41 => from_ip(payload),
                47 => gre(payload),
                _ => None,
            }
        }
    }
}

/// An IP packet, if it parses as one with an IP layer.
fn from_ip(bytes: &[u8]) -> Option<PacketMeta<'_>> {
    let sliced = SlicedPacket::from_ip(bytes).ok()?;
    let meta = PacketMeta::from_sliced(bytes, &sliced);
    (meta.kind == FrameKind::Ip).then_some(meta)
}

/// An Ethernet frame, if it carries IP.
fn from_ethernet(bytes: &[u8]) -> Option<PacketMeta<'_>> {
    let sliced = SlicedPacket::from_ethernet(bytes).ok()?;
    let meta = PacketMeta::from_sliced(bytes, &sliced);
    (meta.kind == FrameKind::Ip).then_some(meta)
}

/// The IP flow carried by a GTP-U G-PDU (3GPP TS 29.281), if any.
fn gtp(gtp: &[u8]) -> Option<PacketMeta<'_>> {
    let flags = *gtp.first()?;
    // Version 1, protocol type GTP, message type 255 (G-PDU).
    if flags >> 5 != 1 || flags & 0x10 == 0 || *gtp.get(1)? != 0xff {
        return None;
    }
    let mut off = 8usize;
    if flags & 0x07 != 0 {
        // Sequence number, N-PDU number and next extension type.
        let mut next = *gtp.get(off + 3)?;
        off += 4;
        let mut hops = 0;
        while next != 0 && hops < 8 {
            let len = usize::from(*gtp.get(off)?) * 4;
            if len == 0 {
                return None;
            }
            next = *gtp.get(off + len - 1)?;
            off += len;
            hops += 1;
        }
    }
    from_ip(gtp.get(off..)?)
}

/// The Ethernet frame inside a VXLAN packet (RFC 7348: flags with the
/// valid-VNI bit, reserved bytes, the 24-bit VNI).
fn vxlan(bytes: &[u8]) -> Option<PacketMeta<'_>> {
    if bytes.first()? & 0x08 == 0 {
        return None;
    }
    from_ethernet(bytes.get(8..)?)
}

/// GRE's protocol types (EtherTypes) qosd opens.
const GRE_IPV4: u16 = 0x0800;
const GRE_IPV6: u16 = 0x86dd;
const GRE_ETHERNET: u16 = 0x6558;
const GRE_PPP: u16 = 0x880b;

/// What a GRE packet carries: version 0 (RFC 2784, with RFC 2890's key
/// and sequence number) with IP or Ethernet inside, or version 1, PPTP's
/// enhanced GRE (RFC 2637), with PPP inside.
fn gre(bytes: &[u8]) -> Option<PacketMeta<'_>> {
    let (flags, version) = (*bytes.first()?, *bytes.get(1)? & 0x07);
    let protocol = be16(bytes, 2)?;
    // Source routing (the R bit, RFC 1701) is obsolete: not opened.
    if flags & 0x40 != 0 {
        return None;
    }
    let checksum = flags & 0x80 != 0;
    let key = flags & 0x20 != 0;
    let seq = flags & 0x10 != 0;
    match (version, protocol) {
        (0, _) => {
            let off = 4 + 4 * (usize::from(checksum) + usize::from(key) + usize::from(seq));
            let payload = bytes.get(off..)?;
            match protocol {
                GRE_IPV4 | GRE_IPV6 => from_ip(payload),
                GRE_ETHERNET => from_ethernet(payload),
                _ => None,
            }
        }
        (1, GRE_PPP) if key && !checksum => {
            let ack = bytes.get(1)? & 0x80 != 0;
            let off = 8 + 4 * (usize::from(seq) + usize::from(ack));
            ppp(bytes.get(off..)?)
        }
        _ => None,
    }
}

/// IP inside a PPP frame as PPTP sends it: the address and control bytes
/// and the protocol field may each be compressed away (RFC 1661 and 1662).
/// Compressed or encrypted payloads (MPPE) are not IP and stay the
/// tunnel's.
fn ppp(bytes: &[u8]) -> Option<PacketMeta<'_>> {
    let bytes = match bytes {
        [0xff, 0x03, rest @ ..] => rest,
        _ => bytes,
    };
    let (protocol, off) = match *bytes.first()? {
        // An odd first byte is a one-byte (compressed) protocol field.
        b if b & 1 == 1 => (u16::from(b), 1),
        _ => (be16(bytes, 0)?, 2),
    };
    match protocol {
        0x21 | 0x57 => from_ip(bytes.get(off..)?),
        _ => None,
    }
}
