//! The doorbell key of a frame: which UDP flow it belongs to, in the form
//! the XDP program (`io::xdp::program`) builds from the same bytes before
//! qosd sees the frame. The data path puts the keys of urgent (voice)
//! flows into the program's map; a frame whose key is there rings a
//! doorbell that wakes qosd at once, even from a sleep that does not
//! watch its sockets.
//!
//! Both sides must agree bit for bit, so the rules are deliberately few:
//! Ethernet with at most one VLAN tag (802.1Q or 802.1ad), then IPv4
//! without options and not a fragment, or IPv6 whose first header after
//! the fixed one is UDP. Anything else has no key: such a flow rings no
//! bell, and the data path keeps its older way of waiting for it (the
//! cadence's windows).

/// Bytes in a key.
pub const BELL_KEY_LEN: usize = 40;

/// A key: the UDP ports as on the wire (bytes 0-3), the IP version (4) and
/// protocol (5, always 17), then the source address (8-23) and the
/// destination address (24-39), IPv4 addresses in their first 4 bytes,
/// every other byte zero.
pub type BellKey = [u8; BELL_KEY_LEN];

/// Offsets of the key's parts (the XDP program writes the same ones).
pub const KEY_PORTS: usize = 0;
/// The IP version byte.
pub const KEY_VERSION: usize = 4;
/// The protocol byte.
pub const KEY_PROTO: usize = 5;
/// The source address.
pub const KEY_SRC: usize = 8;
/// The destination address.
pub const KEY_DST: usize = 24;

const ETH_HEADER: usize = 14;
const VLAN_TAG: usize = 4;
const UDP: u8 = 17;

/// The doorbell key of `frame`, or None where the XDP program would build
/// none (see the module's rules).
pub fn bell_key(frame: &[u8]) -> Option<BellKey> {
    let ether_type = |at: usize| -> Option<u16> {
        let b = frame.get(at..at + 2)?;
        Some(u16::from_be_bytes([*b.first()?, *b.get(1)?]))
    };
    let (l3, ether_type) = match ether_type(12)? {
        0x8100 | 0x88a8 => (ETH_HEADER + VLAN_TAG, ether_type(16)?),
        t => (ETH_HEADER, t),
    };
    let mut key = [0u8; BELL_KEY_LEN];
    let copy = |key: &mut BellKey, to: usize, from: usize, len: usize| -> Option<()> {
        key.get_mut(to..to + len)?
            .copy_from_slice(frame.get(l3 + from..l3 + from + len)?);
        Some(())
    };
    match ether_type {
        0x0800 => {
            let h = frame.get(l3..l3 + 24)?;
            let fragment = u16::from_be_bytes([*h.get(6)?, *h.get(7)?]) & 0x1fff;
            if *h.first()? != 0x45 || *h.get(9)? != UDP || fragment != 0 {
                return None;
            }
            copy(&mut key, KEY_PORTS, 20, 4)?;
            copy(&mut key, KEY_SRC, 12, 4)?;
            copy(&mut key, KEY_DST, 16, 4)?;
            *key.get_mut(KEY_VERSION)? = 4;
        }
        0x86dd => {
            let h = frame.get(l3..l3 + 44)?;
            if *h.get(6)? != UDP {
                return None;
            }
            copy(&mut key, KEY_PORTS, 40, 4)?;
            copy(&mut key, KEY_SRC, 8, 16)?;
            copy(&mut key, KEY_DST, 24, 16)?;
            *key.get_mut(KEY_VERSION)? = 6;
        }
        _ => return None,
    }
    *key.get_mut(KEY_PROTO)? = UDP;
    Some(key)
}

/// The doorbell key of `frame` if it names the flow `meta` (the parse of
/// the same frame) found: the same ports and addresses. A tunnel's frame
/// has none: the parser gives the flow inside it, the key would be the
/// tunnel's, and every frame of the tunnel would ring for one call in it.
pub fn bell_key_of(frame: &[u8], meta: &super::PacketMeta) -> Option<BellKey> {
    let key = bell_key(frame)?;
    let ports = [meta.src_port.to_be_bytes(), meta.dst_port.to_be_bytes()].concat();
    let (src, dst, len) = match meta.ip_version {
        super::IpVersion::V4 => (meta.src.get(12..)?, meta.dst.get(12..)?, 4),
        super::IpVersion::V6 => (&meta.src[..], &meta.dst[..], 16),
    };
    let same = meta.protocol == UDP
        && key.get(KEY_PORTS..KEY_PORTS + 4)? == &ports[..]
        && key.get(KEY_VERSION).copied() == Some(if len == 4 { 4 } else { 6 })
        && key.get(KEY_SRC..KEY_SRC + len)? == src
        && key.get(KEY_DST..KEY_DST + len)? == dst;
    same.then_some(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::PacketMeta;

    /// An Ethernet frame, tagged if `vlan`, around `l3`.
    pub(crate) fn eth(ether_type: u16, vlan: bool, l3: &[u8]) -> Vec<u8> {
        let mut f = vec![0x02; 12];
        if vlan {
            f.extend_from_slice(&[0x81, 0x00, 0x00, 0x64]);
        }
        f.extend_from_slice(&ether_type.to_be_bytes());
        f.extend_from_slice(l3);
        f
    }

    /// An IPv4 header (no options) with `proto` and `frag`, then ports.
    pub(crate) fn ipv4(proto: u8, frag: u16) -> Vec<u8> {
        let mut h = vec![0x45, 0, 0, 48, 0, 1];
        h.extend_from_slice(&frag.to_be_bytes());
        h.extend_from_slice(&[64, proto, 0, 0, 198, 18, 0, 10, 198, 19, 0, 20]);
        h.extend_from_slice(&[0x13, 0x8c, 0x13, 0x8d, 0, 28, 0, 0]);
        h
    }

    /// An IPv6 header with `next`, then ports.
    pub(crate) fn ipv6(next: u8) -> Vec<u8> {
        let mut h = vec![0x60, 0, 0, 0, 0, 8, next, 64];
        h.extend((0..16).map(|i| 0x20 + i));
        h.extend((0..16).map(|i| 0x40 + i));
        h.extend_from_slice(&[0x13, 0x8c, 0x13, 0x8d, 0, 8, 0, 0]);
        h
    }

    #[test]
    fn a_udp_frame_has_its_ports_version_and_addresses_in_place() {
        for vlan in [false, true] {
            let k = bell_key(&eth(0x0800, vlan, &ipv4(17, 0))).unwrap();
            assert_eq!(&k[..4], &[0x13, 0x8c, 0x13, 0x8d]);
            assert_eq!((k[4], k[5]), (4, 17));
            assert_eq!(&k[8..12], &[198, 18, 0, 10]);
            assert_eq!(&k[24..28], &[198, 19, 0, 20]);
            assert!(k[12..24].iter().chain(&k[28..]).all(|b| *b == 0));
            let k6 = bell_key(&eth(0x86dd, vlan, &ipv6(17))).unwrap();
            assert_eq!((k6[4], k6[5]), (6, 17));
            assert_eq!(k6[8], 0x20);
            assert_eq!(k6[39], 0x4f);
        }
        // The two directions of a flow have different keys.
        let mut back = ipv4(17, 0);
        back.swap(15, 19);
        assert_ne!(
            bell_key(&eth(0x0800, false, &back)),
            bell_key(&eth(0x0800, false, &ipv4(17, 0)))
        );
    }

    #[test]
    fn a_key_must_name_the_flow_the_parser_found() {
        let udp = |src: [u8; 4], sp, dst: [u8; 4], dp, payload: &[u8]| {
            let mut out = Vec::new();
            etherparse::PacketBuilder::ethernet2([2; 6], [4; 6])
                .ipv4(src, dst, 64)
                .udp(sp, dp)
                .write(&mut out, payload)
                .unwrap();
            out
        };
        let call = udp([198, 18, 0, 10], 5004, [198, 19, 0, 20], 5006, &[0; 160]);
        let meta = PacketMeta::parse(&call);
        assert!(bell_key(&call).is_some());
        assert_eq!(bell_key_of(&call, &meta), bell_key(&call));
        let mut v6 = Vec::new();
        etherparse::PacketBuilder::ethernet2([2; 6], [4; 6])
            .ipv6([0x20; 16], [0x40; 16], 64)
            .udp(5004, 5006)
            .write(&mut v6, &[0; 160])
            .unwrap();
        let meta = PacketMeta::parse(&v6);
        assert!(bell_key(&v6).is_some());
        assert_eq!(bell_key_of(&v6, &meta), bell_key(&v6));
        // A VXLAN tunnel (UDP 4789) around that call: the parser gives the
        // inner flow, so the outer key is not this flow's.
        let mut vxlan = vec![0x08, 0, 0, 0, 0, 0, 0x2a, 0];
        vxlan.extend_from_slice(&call);
        let f = udp([198, 18, 0, 1], 49152, [198, 19, 0, 2], 4789, &vxlan);
        let meta = PacketMeta::parse(&f);
        assert_eq!(meta.dst_port, 5006, "the parser reads the inner flow");
        assert!(bell_key(&f).is_some());
        assert_eq!(bell_key_of(&f, &meta), None);
    }

    #[test]
    fn what_the_program_cannot_read_has_no_key() {
        // TCP, a later fragment, IPv4 options, an IPv6 extension header.
        assert_eq!(bell_key(&eth(0x0800, false, &ipv4(6, 0))), None);
        assert_eq!(bell_key(&eth(0x0800, false, &ipv4(17, 0x0010))), None);
        let mut opts = ipv4(17, 0);
        opts[0] = 0x46;
        assert_eq!(bell_key(&eth(0x0800, false, &opts)), None);
        assert_eq!(bell_key(&eth(0x86dd, false, &ipv6(0))), None);
        // Not IP; too short for the ports; empty.
        assert_eq!(bell_key(&eth(0x0806, false, &ipv4(17, 0))), None);
        let short = eth(0x0800, false, &ipv4(17, 0));
        assert_eq!(bell_key(&short[..short.len() - 9]), None);
        assert_eq!(bell_key(&[]), None);
        // A fragment's first piece ("more fragments", offset 0) has the
        // ports: it has a key.
        assert!(bell_key(&eth(0x0800, false, &ipv4(17, 0x2000))).is_some());
    }
}
