//! The common case read by hand: Ethernet, up to two VLAN tags, IPv4 (not
//! fragmented) or IPv6 without extension headers, TCP or UDP. Everything
//! else (and anything doubtful) returns `None` and goes through
//! etherparse's `SlicedPacket`, which this must agree with exactly: a
//! property test compares both on random and mutated frames. Profiling
//! showed etherparse's generic path as the engine's largest single cost.

use super::{FrameKind, IpVersion, PacketMeta, be16};

const VLAN: u16 = 0x8100;
const QINQ: u16 = 0x88a8;

/// The frame parsed on the fast path, or `None` to take the general one.
#[inline]
pub(super) fn parse(frame: &[u8]) -> Option<PacketMeta<'_>> {
    let mut ether_type = be16(frame, 12)?;
    let mut off = 14usize;
    let mut vlan = None;
    let mut tags = 0u8;
    while ether_type == VLAN || ether_type == QINQ {
        if tags == 2 {
            return None;
        }
        let tci = be16(frame, off)?;
        vlan = vlan.or(Some(tci & 0x0fff));
        ether_type = be16(frame, off + 2)?;
        off += 4;
        tags += 1;
    }
    let ip = frame.get(off..)?;
    let (version, ihl, total, protocol, tos, src, dst) = match ether_type {
        0x0800 => {
            let b0 = *ip.first()?;
            let ihl = usize::from(b0 & 0x0f) * 4;
            let total = usize::from(be16(ip, 2)?);
            // Fragments, options-free or not, and odd lengths: general path.
            let frag = be16(ip, 6)?;
            if b0 >> 4 != 4 || ihl < 20 || total < ihl || total > ip.len() || frag & 0x3fff != 0 {
                return None;
            }
            let mut src = [0u8; 16];
            let mut dst = [0u8; 16];
            src[10] = 0xff;
            src[11] = 0xff;
            dst[10] = 0xff;
            dst[11] = 0xff;
            src.get_mut(12..)?.copy_from_slice(ip.get(12..16)?);
            dst.get_mut(12..)?.copy_from_slice(ip.get(16..20)?);
            (
                IpVersion::V4,
                ihl,
                total,
                *ip.get(9)?,
                *ip.get(1)?,
                src,
                dst,
            )
        }
        0x86dd => {
            let b0 = *ip.first()?;
            let plen = usize::from(be16(ip, 4)?);
            if b0 >> 4 != 6 || plen == 0 || 40 + plen > ip.len() {
                return None;
            }
            let next = *ip.get(6)?;
            let tos = ((b0 & 0x0f) << 4) | (ip.get(1)? >> 4);
            let src: [u8; 16] = ip.get(8..24)?.try_into().ok()?;
            let dst: [u8; 16] = ip.get(24..40)?.try_into().ok()?;
            (IpVersion::V6, 40, 40 + plen, next, tos, src, dst)
        }
        _ => return None,
    };
    let l4 = ip.get(ihl..total)?;
    let (src_port, dst_port, tcp_flags, payload, tcp) = match protocol {
        6 => {
            let data_off = usize::from(*l4.get(12)? >> 4) * 4;
            if data_off < 20 || data_off > l4.len() {
                return None;
            }
            (
                be16(l4, 0)?,
                be16(l4, 2)?,
                *l4.get(13)?,
                l4.get(data_off..)?,
                l4.get(..data_off)?,
            )
        }
        17 => {
            let ulen = usize::from(be16(l4, 4)?);
            if ulen < 8 || ulen > l4.len() {
                return None;
            }
            let (sp, dp) = (be16(l4, 0)?, be16(l4, 2)?);
            if sp == super::GTP_U_PORT || dp == super::GTP_U_PORT || dp == super::VXLAN_PORT {
                return None; // tunnels: the general path looks inside
            }
            (sp, dp, 0, l4.get(8..ulen)?, &[][..])
        }
        _ => return None,
    };
    Some(PacketMeta {
        kind: FrameKind::Ip,
        frame_len: frame.len(),
        vlan,
        vlan_tags: tags,
        ip_version: version,
        ip_offset: off,
        src,
        dst,
        protocol,
        src_port,
        dst_port,
        dscp: tos >> 2,
        ecn: tos & 0x03,
        tcp_flags,
        fragment: false,
        l2_group: super::l2_group(frame),
        payload,
        tcp,
    })
}
