//! In-place edits of a frame on its way through: DSCP marking per
//! category, ECN CE marking by CoDel, and a lower TCP receive window (the
//! download window clamp). Pure functions on bytes; the IPv4 header and
//! TCP checksums are updated incrementally (RFC 1624) so the rest of the
//! frame is never read.

use super::IpVersion;

/// Reads the 8-bit traffic class (IPv4 TOS / IPv6 traffic class).
fn traffic_class(frame: &[u8], ip_offset: usize, version: IpVersion) -> Option<u8> {
    match version {
        IpVersion::V4 => frame.get(ip_offset + 1).copied(),
        IpVersion::V6 => {
            let b0 = *frame.get(ip_offset)?;
            let b1 = *frame.get(ip_offset + 1)?;
            Some(((b0 & 0x0f) << 4) | (b1 >> 4))
        }
    }
}

/// A ones'-complement checksum after one of the 16-bit words it covers
/// changed from `old_word` to `new_word` (RFC 1624 eqn. 3: HC' = ~(~HC +
/// ~m + m')).
fn updated_checksum(old_sum: u16, old_word: u16, new_word: u16) -> u16 {
    let mut sum = u32::from(!old_sum) + u32::from(!old_word) + u32::from(new_word);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}

/// Whether the TCP header at `tcp_offset` is the frame's own, right after
/// its (outer) IP header at `ip_offset`, not one inside a tunnel, whose
/// outer header may carry a checksum of its own over it (VXLAN or GTP-U
/// over UDP, GRE), nor one behind IPv6 extension headers.
pub fn tcp_follows_ip(
    frame: &[u8],
    ip_offset: usize,
    version: IpVersion,
    tcp_offset: usize,
) -> bool {
    match version {
        IpVersion::V4 => {
            let (Some(&b0), Some(&proto)) = (frame.get(ip_offset), frame.get(ip_offset + 9)) else {
                return false;
            };
            proto == 6 && ip_offset + usize::from(b0 & 0x0f) * 4 == tcp_offset
        }
        IpVersion::V6 => frame.get(ip_offset + 6) == Some(&6) && ip_offset + 40 == tcp_offset,
    }
}

/// Writes `window` into the window field of the TCP header at `tcp_offset`
/// in `frame`, fixing the TCP checksum (which must be complete: partial
/// ones are completed on receive). Returns false, leaving the frame as it
/// was, when the header is not all there.
pub fn set_tcp_window(frame: &mut [u8], tcp_offset: usize, window: u16) -> bool {
    let Some(h) = tcp_offset
        .checked_add(20)
        .and_then(|end| frame.get_mut(tcp_offset..end))
    else {
        return false;
    };
    let (Some(&w0), Some(&w1), Some(&c0), Some(&c1)) = (h.get(14), h.get(15), h.get(16), h.get(17))
    else {
        return false;
    };
    let sum = updated_checksum(
        u16::from_be_bytes([c0, c1]),
        u16::from_be_bytes([w0, w1]),
        window,
    );
    let ([w0, w1], [c0, c1]) = (window.to_be_bytes(), sum.to_be_bytes());
    if let Some(f) = h.get_mut(14..18) {
        f.copy_from_slice(&[w0, w1, c0, c1]);
    }
    true
}

/// Writes the traffic class, fixing the IPv4 header checksum.
fn set_traffic_class(frame: &mut [u8], ip_offset: usize, version: IpVersion, tc: u8) -> bool {
    match version {
        IpVersion::V4 => {
            let (Some(&b0), Some(&old_tos)) = (frame.get(ip_offset), frame.get(ip_offset + 1))
            else {
                return false;
            };
            if frame.len() < ip_offset + 20 || b0 >> 4 != 4 {
                return false;
            }
            let old_word = u16::from_be_bytes([b0, old_tos]);
            let new_word = u16::from_be_bytes([b0, tc]);
            let (Some(c0), Some(c1)) = (frame.get(ip_offset + 10), frame.get(ip_offset + 11))
            else {
                return false;
            };
            let old_sum = u16::from_be_bytes([*c0, *c1]);
            let bytes = updated_checksum(old_sum, old_word, new_word).to_be_bytes();
            if let Some(slot) = frame.get_mut(ip_offset + 10..ip_offset + 12) {
                slot.copy_from_slice(&bytes);
            }
            if let Some(t) = frame.get_mut(ip_offset + 1) {
                *t = tc;
            }
            true
        }
        IpVersion::V6 => {
            let Some(hdr) = frame.get_mut(ip_offset..ip_offset + 2) else {
                return false;
            };
            if hdr.first().is_none_or(|b| b >> 4 != 6) {
                return false;
            }
            if let [b0, b1] = hdr {
                *b0 = (*b0 & 0xf0) | (tc >> 4);
                *b1 = (*b1 & 0x0f) | (tc << 4);
            }
            true
        }
    }
}

/// Sets the DSCP (keeping ECN). Returns false when the header is not there.
pub fn set_dscp(frame: &mut [u8], ip_offset: usize, version: IpVersion, dscp: u8) -> bool {
    match traffic_class(frame, ip_offset, version) {
        Some(tc) if tc >> 2 == dscp & 0x3f => true,
        Some(tc) => set_traffic_class(
            frame,
            ip_offset,
            version,
            ((dscp & 0x3f) << 2) | (tc & 0x03),
        ),
        None => false,
    }
}

/// Marks Congestion Experienced if the packet is ECN-capable (ECT(0) or
/// ECT(1)); returns true when the packet now carries CE.
pub fn mark_ce(frame: &mut [u8], ip_offset: usize, version: IpVersion) -> bool {
    match traffic_class(frame, ip_offset, version) {
        Some(tc) if tc & 0x03 == 0x03 => true,
        Some(tc) if tc & 0x03 != 0 => set_traffic_class(frame, ip_offset, version, tc | 0x03),
        _ => false,
    }
}

/// True if the packet is ECN-capable (ECT(0), ECT(1) or already CE).
pub fn ecn_capable(frame: &[u8], ip_offset: usize, version: IpVersion) -> bool {
    traffic_class(frame, ip_offset, version).is_some_and(|tc| tc & 0x03 != 0)
}

/// Fills in the full TCP or UDP checksum of an (untunnelled) IP frame
/// whose checksum a local sender left partial for hardware offload
/// (AF_PACKET reports TP_STATUS_CSUMNOTREADY). Returns false when the
/// frame is not TCP/UDP over IP or is malformed.
pub fn complete_l4_checksum(frame: &mut [u8]) -> bool {
    use etherparse::checksum::Sum16BitWords;
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};

    let base = frame.as_ptr() as usize;
    let (l4_off, l4_len, proto, pseudo) = {
        let Ok(s) = SlicedPacket::from_ethernet(frame) else {
            return false;
        };
        let (proto, l4) = match &s.transport {
            Some(TransportSlice::Tcp(t)) => (6u8, t.slice()),
            Some(TransportSlice::Udp(u)) => (17u8, u.slice()),
            _ => return false,
        };
        let len = l4.len();
        let Ok(len16) = u16::try_from(len) else {
            return false;
        };
        let pseudo = match &s.net {
            Some(NetSlice::Ipv4(ip)) => {
                let h = ip.header();
                Sum16BitWords::new()
                    .add_4bytes(h.source())
                    .add_4bytes(h.destination())
            }
            Some(NetSlice::Ipv6(ip)) => {
                let h = ip.header();
                Sum16BitWords::new()
                    .add_16bytes(h.source())
                    .add_16bytes(h.destination())
            }
            _ => return false,
        }
        .add_2bytes([0, proto])
        .add_2bytes(len16.to_be_bytes());
        (
            (l4.as_ptr() as usize).saturating_sub(base),
            len,
            proto,
            pseudo,
        )
    };
    let field = l4_off + if proto == 6 { 16 } else { 6 };
    let Some(slot) = frame.get_mut(field..field + 2) else {
        return false;
    };
    slot.copy_from_slice(&[0, 0]);
    let Some(l4) = frame.get(l4_off..l4_off + l4_len) else {
        return false;
    };
    let sum = pseudo.add_slice(l4);
    // UDP sends a computed zero as 0xffff (zero means "no checksum").
    let value = if proto == 17 {
        sum.to_ones_complement_with_no_zero()
    } else {
        sum.ones_complement()
    };
    match frame.get_mut(field..field + 2) {
        Some(slot) => {
            // The sum was taken over native-order words: its bytes are in wire order.
            slot.copy_from_slice(&value.to_ne_bytes());
            true
        }
        None => false,
    }
}
