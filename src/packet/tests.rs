use std::net::{IpAddr, Ipv4Addr};

use etherparse::{IpNumber, Ipv4Header, PacketBuilder};
use proptest::prelude::*;

use super::rewrite::{ecn_capable, mark_ce, set_dscp};
use super::*;

const MAC_A: [u8; 6] = [2, 0, 0, 0, 0, 1];
const MAC_B: [u8; 6] = [2, 0, 0, 0, 0, 2];

fn tcp_v4(payload: &[u8], flags_syn: bool) -> Vec<u8> {
    let mut b = PacketBuilder::ethernet2(MAC_A, MAC_B)
        .ipv4([198, 18, 0, 1], [198, 19, 0, 2], 64)
        .tcp(40000, 443, 1, 65535);
    if flags_syn {
        b = b.syn();
    }
    let mut out = Vec::new();
    b.write(&mut out, payload).unwrap();
    out
}

fn udp_v6(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ethernet2(MAC_A, MAC_B)
        .ipv6(
            [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
            64,
        )
        .udp(5353, 53)
        .write(&mut out, payload)
        .unwrap();
    out
}

#[test]
fn ipv4_tcp() {
    let frame = tcp_v4(b"hello", true);
    let m = PacketMeta::parse(&frame);
    assert_eq!(m.kind, FrameKind::Ip);
    assert_eq!(m.ip_version, IpVersion::V4);
    assert_eq!(m.src_ip(), IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1)));
    assert_eq!(m.dst_ip(), IpAddr::V4(Ipv4Addr::new(198, 19, 0, 2)));
    assert_eq!((m.protocol, m.src_port, m.dst_port), (6, 40000, 443));
    assert_eq!(m.tcp_flags & TCP_SYN, TCP_SYN);
    assert_eq!(m.payload, b"hello");
    assert_eq!(m.ip_offset, 14);
    assert_eq!(m.frame_len, frame.len());
    assert!(m.has_ports());
    assert_eq!(m.vlan, None);
}

#[test]
fn ipv6_udp_with_extension_headers() {
    let frame = udp_v6(b"dns");
    let m = PacketMeta::parse(&frame);
    assert_eq!(
        (m.kind, m.ip_version, m.protocol),
        (FrameKind::Ip, IpVersion::V6, 17)
    );
    assert_eq!((m.src_port, m.dst_port), (5353, 53));
    assert_eq!(m.payload, b"dns");
    assert_eq!(m.src_ip().to_string(), "2001:db8::1");

    // Insert a hop-by-hop options header (8 bytes) before UDP.
    let mut with_ext = frame[..14 + 40].to_vec();
    with_ext[14 + 6] = 0; // next header: hop-by-hop
    let plen = u16::from_be_bytes([with_ext[14 + 4], with_ext[14 + 5]]) + 8;
    with_ext[14 + 4..14 + 6].copy_from_slice(&plen.to_be_bytes());
    with_ext.extend_from_slice(&[17, 0, 1, 4, 0, 0, 0, 0]); // next=UDP, len=0, PadN
    with_ext.extend_from_slice(&frame[14 + 40..]);
    let m = PacketMeta::parse(&with_ext);
    assert_eq!((m.kind, m.protocol, m.dst_port), (FrameKind::Ip, 17, 53));
    assert_eq!(m.payload, b"dns");
}

#[test]
fn vlan_and_qinq() {
    let mut out = Vec::new();
    PacketBuilder::ethernet2(MAC_A, MAC_B)
        .single_vlan(20.try_into().unwrap())
        .ipv4([198, 18, 0, 1], [198, 18, 0, 2], 64)
        .udp(1, 2)
        .write(&mut out, b"x")
        .unwrap();
    let m = PacketMeta::parse(&out);
    assert_eq!(
        (m.kind, m.vlan, m.vlan_tags, m.ip_offset),
        (FrameKind::Ip, Some(20), 1, 18)
    );

    let mut out = Vec::new();
    PacketBuilder::ethernet2(MAC_A, MAC_B)
        .double_vlan(100.try_into().unwrap(), 20.try_into().unwrap())
        .ipv4([198, 18, 0, 1], [198, 18, 0, 2], 64)
        .udp(1, 2)
        .write(&mut out, b"x")
        .unwrap();
    let m = PacketMeta::parse(&out);
    assert_eq!(
        (m.kind, m.vlan, m.vlan_tags, m.ip_offset),
        (FrameKind::Ip, Some(100), 2, 22)
    );
}

#[test]
fn non_ip_frames_are_recognised() {
    // ARP request.
    let mut arp = vec![0xff; 6];
    arp.extend_from_slice(&MAC_A);
    arp.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1]);
    arp.extend_from_slice(&MAC_A);
    arp.extend_from_slice(&[198, 18, 0, 1, 0, 0, 0, 0, 0, 0, 198, 18, 0, 2]);
    assert_eq!(
        PacketMeta::parse(&arp).kind,
        FrameKind::NonIp { ether_type: 0x0806 }
    );
    // LLDP (0x88cc) with a short body.
    let mut lldp = vec![0x01, 0x80, 0xc2, 0, 0, 0x0e];
    lldp.extend_from_slice(&MAC_A);
    lldp.extend_from_slice(&[0x88, 0xcc, 2, 7, 4]);
    assert_eq!(
        PacketMeta::parse(&lldp).kind,
        FrameKind::NonIp { ether_type: 0x88cc }
    );
}

#[test]
fn malformed_frames_are_recognised() {
    let frame = tcp_v4(b"payload", false);
    // Truncated inside the IP header.
    assert_eq!(PacketMeta::parse(&frame[..20]).kind, FrameKind::Malformed);
    // Too short for Ethernet.
    assert_eq!(PacketMeta::parse(&frame[..5]).kind, FrameKind::Malformed);
    assert_eq!(PacketMeta::parse(&[]).kind, FrameKind::Malformed);
    // IPv4 total length larger than the frame.
    let mut bogus = frame.clone();
    bogus[16..18].copy_from_slice(&9000u16.to_be_bytes());
    assert_eq!(PacketMeta::parse(&bogus).kind, FrameKind::Malformed);
}

#[test]
fn fragments_are_recognised() {
    let mut frame = tcp_v4(&[0u8; 64], false);
    // Set a non-zero fragment offset (and fix nothing else: the L4 header is
    // not read for fragments).
    frame[14 + 6] = 0x00;
    frame[14 + 7] = 0x10;
    let m = PacketMeta::parse(&frame);
    assert_eq!(m.kind, FrameKind::Ip);
    assert!(m.fragment);
    assert!(!m.has_ports());
    assert_eq!((m.src_port, m.dst_port), (0, 0));
}

fn ipv4_checksum_ok(frame: &[u8], off: usize) -> bool {
    let (h, _) = Ipv4Header::from_slice(&frame[off..]).unwrap();
    h.calc_header_checksum() == h.header_checksum
}

#[test]
fn dscp_rewrite_keeps_ipv4_checksum_valid() {
    let mut frame = tcp_v4(b"abc", false);
    assert!(ipv4_checksum_ok(&frame, 14));
    for dscp in [46u8, 34, 8, 0, 63] {
        assert!(set_dscp(&mut frame, 14, IpVersion::V4, dscp));
        let m = PacketMeta::parse(&frame);
        assert_eq!(m.dscp, dscp);
        assert!(ipv4_checksum_ok(&frame, 14), "dscp {dscp}");
    }
}

#[test]
fn dscp_and_ce_on_ipv6() {
    let mut frame = udp_v6(b"abc");
    assert!(!ecn_capable(&frame, 14, IpVersion::V6));
    assert!(
        !mark_ce(&mut frame, 14, IpVersion::V6),
        "not-ECT must not be marked"
    );
    assert!(set_dscp(&mut frame, 14, IpVersion::V6, 46));
    // Set ECT(0) by hand, then mark.
    frame[15] |= 0x02 << 4;
    assert!(ecn_capable(&frame, 14, IpVersion::V6));
    assert!(mark_ce(&mut frame, 14, IpVersion::V6));
    let m = PacketMeta::parse(&frame);
    assert_eq!((m.dscp, m.ecn), (46, 3));
    // The flow label and version survive.
    assert_eq!(frame[14] >> 4, 6);
}

#[test]
fn ce_mark_on_ipv4() {
    let mut frame = tcp_v4(b"abc", false);
    frame[15] = 0x02; // ECT(0); fix the checksum by rewriting DSCP to itself
    let sum = {
        let (mut h, _) = Ipv4Header::from_slice(&frame[14..]).unwrap();
        h.header_checksum = h.calc_header_checksum();
        h.header_checksum
    };
    frame[24..26].copy_from_slice(&sum.to_be_bytes());
    assert!(mark_ce(&mut frame, 14, IpVersion::V4));
    let m = PacketMeta::parse(&frame);
    assert_eq!(m.ecn, 3);
    assert!(ipv4_checksum_ok(&frame, 14));
}

#[test]
fn udp_builder_sanity() {
    // Guard against a builder change silently producing another protocol.
    let frame = udp_v6(b"");
    assert_eq!(PacketMeta::parse(&frame).protocol, IpNumber::UDP.0);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let m = PacketMeta::parse(&bytes);
        prop_assert!(m.payload.len() <= bytes.len());
        let mut copy = bytes.clone();
        let _ = set_dscp(&mut copy, m.ip_offset, m.ip_version, 46);
        let _ = mark_ce(&mut copy, m.ip_offset, m.ip_version);
    }

    #[test]
    fn mutated_frames_never_panic(pos in 0usize..80, byte in any::<u8>(), cut in 0usize..80) {
        let mut frame = tcp_v4(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", false);
        if pos < frame.len() { frame[pos] = byte; }
        frame.truncate(frame.len().saturating_sub(cut));
        let m = PacketMeta::parse(&frame);
        prop_assert!(m.payload.len() <= frame.len());
        if m.kind == FrameKind::Ip {
            prop_assert!(m.ip_offset < frame.len());
        }
    }
}

#[test]
fn ip_inside_pppoe_sessions() {
    let mut ip = Vec::new();
    PacketBuilder::ipv4([198, 18, 0, 1], [198, 19, 0, 2], 64)
        .udp(4000, 53)
        .write(&mut ip, b"q")
        .unwrap();
    let mut frame = vec![0u8; 12];
    frame.extend_from_slice(&[0x81, 0x00, 0x00, 0x07, 0x88, 0x64]); // VLAN 7, PPPoE session
    frame.extend_from_slice(&[0x11, 0x00, 0x12, 0x34]);
    frame.extend_from_slice(&((ip.len() + 2) as u16).to_be_bytes());
    frame.extend_from_slice(&[0x00, 0x21]);
    frame.extend_from_slice(&ip);
    let m = PacketMeta::parse(&frame);
    assert_eq!(
        (m.kind, m.protocol, m.dst_port, m.vlan),
        (FrameKind::Ip, 17, 53, Some(7))
    );
    assert_eq!(m.ip_offset, 26);
    assert_eq!(m.payload, b"q");
    assert_eq!(m.frame_len, frame.len());
    let mut marked = frame.clone();
    assert!(set_dscp(&mut marked, m.ip_offset, m.ip_version, 46));
    assert!(ipv4_checksum_ok(&marked, 26));
    // PPPoE discovery and LCP are not IP.
    let mut lcp = frame.clone();
    lcp[24..26].copy_from_slice(&[0xc0, 0x21]);
    assert_eq!(
        PacketMeta::parse(&lcp).kind,
        FrameKind::NonIp { ether_type: 0x8864 }
    );
}

#[test]
fn flows_inside_gtp_u_tunnels() {
    let mut inner = Vec::new();
    PacketBuilder::ipv4([10, 1, 0, 2], [10, 2, 0, 3], 64)
        .udp(30000, 40000)
        .write(&mut inner, b"rtp!")
        .unwrap();
    // GTP-U G-PDU with a sequence number (E/S/PN flags) and no extensions.
    let mut gtp = vec![0x32, 0xff];
    gtp.extend_from_slice(&((inner.len() + 4) as u16).to_be_bytes());
    gtp.extend_from_slice(&[0, 0, 0, 1, 0, 7, 0, 0]);
    gtp.extend_from_slice(&inner);
    let mut ip =
        etherparse::Ipv4Header::new(0, 64, IpNumber::UDP, [198, 18, 0, 1], [198, 19, 0, 2])
            .unwrap();
    ip.dscp = etherparse::IpDscp::try_new(46).unwrap();
    let mut frame = Vec::new();
    PacketBuilder::ethernet2(MAC_A, MAC_B)
        .ip(etherparse::IpHeaders::Ipv4(ip, Default::default()))
        .udp(2152, 2152)
        .write(&mut frame, &gtp)
        .unwrap();
    let m = PacketMeta::parse(&frame);
    assert_eq!(m.kind, FrameKind::Ip);
    assert_eq!(m.src_ip().to_string(), "10.1.0.2");
    assert_eq!(
        (m.src_port, m.dst_port, m.payload),
        (30000, 40000, &b"rtp!"[..])
    );
    // The outer header is what egress marking edits.
    assert_eq!((m.ip_offset, m.dscp, m.frame_len), (14, 46, frame.len()));
    // GTP control messages (echo request, type 1) stay the outer flow.
    let mut echo = frame.clone();
    echo[14 + 20 + 8 + 1] = 1;
    assert_eq!(PacketMeta::parse(&echo).dst_port, 2152);
}

/// An outer IPv4 frame from 198.18.0.1 to 198.19.0.2 carrying `payload`
/// as IP protocol `number`, with DSCP 10 on the outer header.
fn outer_v4(number: u8, payload: &[u8]) -> Vec<u8> {
    let mut ip =
        Ipv4Header::new(0, 64, IpNumber(number), [198, 18, 0, 1], [198, 19, 0, 2]).unwrap();
    ip.dscp = etherparse::IpDscp::try_new(10).unwrap();
    let mut frame = Vec::new();
    PacketBuilder::ethernet2(MAC_A, MAC_B)
        .ip(etherparse::IpHeaders::Ipv4(ip, Default::default()))
        .write(&mut frame, IpNumber(number), payload)
        .unwrap();
    frame
}

/// The inner flow every tunnel test carries: TCP 10.1.0.2:40000 ->
/// 10.2.0.3:443 with a payload, as an IP packet.
fn inner_tcp() -> Vec<u8> {
    let mut inner = Vec::new();
    PacketBuilder::ipv4([10, 1, 0, 2], [10, 2, 0, 3], 64)
        .tcp(40000, 443, 1, 65535)
        .write(&mut inner, b"hello")
        .unwrap();
    inner
}

/// Asserts that `frame` parses as the inner flow of [`inner_tcp`], with
/// the outer header's offset, DSCP and length.
fn assert_inner(frame: &[u8], what: &str) {
    let m = PacketMeta::parse(frame);
    assert_eq!(m.kind, FrameKind::Ip, "{what}");
    assert_eq!(m.src_ip().to_string(), "10.1.0.2", "{what}");
    assert_eq!(m.dst_ip().to_string(), "10.2.0.3", "{what}");
    assert_eq!(
        (m.protocol, m.src_port, m.dst_port),
        (6, 40000, 443),
        "{what}"
    );
    assert_eq!(m.payload, b"hello", "{what}");
    assert_eq!(
        (m.ip_offset, m.dscp, m.frame_len),
        (14, 10, frame.len()),
        "{what}"
    );
}

#[test]
fn flows_inside_ip_gre_and_vxlan_tunnels() {
    let inner = inner_tcp();
    let mut inner_eth = Vec::new();
    PacketBuilder::ethernet2(MAC_B, MAC_A)
        .ipv4([10, 1, 0, 2], [10, 2, 0, 3], 64)
        .tcp(40000, 443, 1, 65535)
        .write(&mut inner_eth, b"hello")
        .unwrap();
    // IP-in-IP.
    assert_inner(&outer_v4(4, &inner), "ipip");
    // GRE, plain; with a checksum, key and sequence number; with Ethernet.
    let gre = |flags: u8, proto: u16, extra: usize, body: &[u8]| {
        let mut g = vec![flags, 0];
        g.extend_from_slice(&proto.to_be_bytes());
        g.extend(std::iter::repeat_n(0u8, extra));
        g.extend_from_slice(body);
        g
    };
    assert_inner(&outer_v4(47, &gre(0, 0x0800, 0, &inner)), "gre");
    assert_inner(&outer_v4(47, &gre(0xb0, 0x0800, 12, &inner)), "gre c+k+s");
    assert_inner(&outer_v4(47, &gre(0x20, 0x6558, 4, &inner_eth)), "gretap");
    // PPTP's enhanced GRE: key (length, call id) and a sequence number,
    // then PPP with address/control and a compressed protocol field...
    let mut pptp = vec![0x30, 0x01, 0x88, 0x0b, 0, 0, 0, 7, 0, 0, 0, 1];
    pptp.extend_from_slice(&[0xff, 0x03, 0x21]);
    pptp.extend_from_slice(&inner);
    assert_inner(&outer_v4(47, &pptp), "pptp");
    // ... or with an acknowledgement number and both fields in full.
    let mut pptp_ack = vec![0x30, 0x81, 0x88, 0x0b, 0, 0, 0, 7, 0, 0, 0, 1, 0, 0, 0, 0];
    pptp_ack.extend_from_slice(&[0x00, 0x21]);
    pptp_ack.extend_from_slice(&inner);
    assert_inner(&outer_v4(47, &pptp_ack), "pptp ack");
    // Encrypted PPP (MPPE, 0x00fd) and GRE keepalives stay the tunnel's.
    let mut mppe = pptp.clone();
    mppe[12..15].copy_from_slice(&[0xff, 0x03, 0xfd]);
    let frame = outer_v4(47, &mppe);
    assert_eq!(PacketMeta::parse(&frame).protocol, 47);
    let frame = outer_v4(47, &gre(0, 0x0000, 0, &[]));
    assert_eq!(PacketMeta::parse(&frame).protocol, 47);
    // VXLAN: an Ethernet frame after an 8-byte header with the I flag.
    let mut vx = vec![0x08, 0, 0, 0, 0, 0, 42, 0];
    vx.extend_from_slice(&inner_eth);
    let mut ip = Ipv4Header::new(0, 64, IpNumber::UDP, [198, 18, 0, 1], [198, 19, 0, 2]).unwrap();
    ip.dscp = etherparse::IpDscp::try_new(10).unwrap();
    let mut frame = Vec::new();
    PacketBuilder::ethernet2(MAC_A, MAC_B)
        .ip(etherparse::IpHeaders::Ipv4(ip, Default::default()))
        .udp(51000, VXLAN_PORT)
        .write(&mut frame, &vx)
        .unwrap();
    assert_inner(&frame, "vxlan");
    // Without the I flag it is just UDP to 4789.
    let mut not_vx = frame.clone();
    not_vx[14 + 20 + 8] = 0;
    assert_eq!(PacketMeta::parse(&not_vx).dst_port, VXLAN_PORT);
}

#[test]
fn ipv6_in_ipv4_and_truncated_tunnels() {
    let mut inner6 = Vec::new();
    PacketBuilder::ipv6(
        [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
        [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
        64,
    )
    .udp(5000, 53)
    .write(&mut inner6, b"q")
    .unwrap();
    let frame = outer_v4(41, &inner6);
    let m = PacketMeta::parse(&frame);
    assert_eq!(m.dst_ip().to_string(), "2001:db8::2");
    assert_eq!(
        (m.dst_port, m.ip_version, m.ip_offset),
        (53, IpVersion::V4, 14)
    );
    // A tunnel cut short anywhere is the outer flow, never a panic.
    let inner = inner_tcp();
    for number in [4u8, 41, 47] {
        let body = if number == 47 {
            let mut g = vec![
                0x30, 0x01, 0x88, 0x0b, 0, 0, 0, 7, 0, 0, 0, 1, 0xff, 0x03, 0x21,
            ];
            g.extend_from_slice(&inner);
            g
        } else {
            inner.clone()
        };
        for cut in 0..body.len() {
            let frame = outer_v4(number, &body[..cut]);
            let m = PacketMeta::parse(&frame);
            assert_eq!(m.protocol, number, "protocol {number} cut at {cut}");
        }
    }
}

#[test]
fn group_destinations_are_seen_in_the_frame() {
    let mut frame = udp_v6(b"payload!");
    assert!(!PacketMeta::parse(&frame).l2_group);
    frame[..6].copy_from_slice(&[0xff; 6]);
    assert!(PacketMeta::parse(&frame).l2_group);
    // IPv6 multicast MACs (33:33:...) and IPv4's (01:00:5e:...) too.
    frame[..6].copy_from_slice(&[0x33, 0x33, 0, 0, 0, 0xfb]);
    assert!(PacketMeta::parse(&frame).l2_group);
    let mut v4 = tcp_v4(b"x", false);
    v4[..6].copy_from_slice(&[0x01, 0x00, 0x5e, 0, 0, 1]);
    assert!(PacketMeta::parse(&v4).l2_group);
}

#[test]
fn partial_checksums_are_completed() {
    use super::rewrite::complete_l4_checksum;
    for frame in [tcp_v4(b"some payload", false), udp_v6(b"payload!")] {
        let mut broken = frame.clone();
        // What an offloading sender leaves: some other value in the field.
        let m = PacketMeta::parse(&broken);
        let l4 = m.ip_offset
            + if m.ip_version == IpVersion::V4 {
                20
            } else {
                40
            };
        let field = l4 + if m.protocol == 6 { 16 } else { 6 };
        broken[field] ^= 0x5a;
        assert!(complete_l4_checksum(&mut broken));
        assert_eq!(broken, frame, "checksum differs from etherparse's");
    }
    let mut arp = vec![0u8; 42];
    arp[12..14].copy_from_slice(&[0x08, 0x06]);
    assert!(!complete_l4_checksum(&mut arp));
}

#[test]
fn a_lower_tcp_window_keeps_the_checksum_valid() {
    use super::rewrite::{complete_l4_checksum, set_tcp_window};
    for frame in [tcp_v4(b"some payload", false), tcp_v4(b"", false)] {
        for window in [0u16, 1, 7, 0x1234, 0xffff] {
            let mut f = frame.clone();
            let off = PacketMeta::parse(&f).tcp.as_ptr() as usize - f.as_ptr() as usize;
            assert!(set_tcp_window(&mut f, off, window));
            assert_eq!(f[off + 14..off + 16], window.to_be_bytes());
            // Recomputed from scratch, the checksum is the same.
            let mut full = f.clone();
            assert!(complete_l4_checksum(&mut full));
            assert_eq!(full, f, "window {window}");
        }
    }
    let mut short = tcp_v4(b"", false);
    let off = short.len() - 10;
    let before = short.clone();
    assert!(!set_tcp_window(&mut short, off, 1));
    assert_eq!(short, before);
}

#[test]
fn only_a_tcp_header_right_after_the_outer_ip_header_is_the_frames_own() {
    use super::rewrite::tcp_follows_ip;
    let plain = tcp_v4(b"x", false);
    let m = PacketMeta::parse(&plain);
    let at = m.tcp.as_ptr() as usize - plain.as_ptr() as usize;
    assert!(tcp_follows_ip(&plain, m.ip_offset, m.ip_version, at));
    // TCP inside VXLAN: the inner header is not the frame's own.
    let mut inner = Vec::new();
    PacketBuilder::ethernet2(MAC_A, MAC_B)
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        .tcp(40000, 443, 7, 1000)
        .ack(3)
        .write(&mut inner, b"x")
        .unwrap();
    let mut vxlan = vec![0x08, 0, 0, 0, 0, 0, 0x2a, 0];
    vxlan.extend_from_slice(&inner);
    let mut outer = Vec::new();
    PacketBuilder::ethernet2(MAC_A, MAC_B)
        .ipv4([198, 18, 0, 1], [198, 18, 0, 2], 64)
        .udp(50000, super::VXLAN_PORT)
        .write(&mut outer, &vxlan)
        .unwrap();
    let m = PacketMeta::parse(&outer);
    assert_eq!(m.protocol, 6, "classified as the inner TCP flow");
    let at = m.tcp.as_ptr() as usize - outer.as_ptr() as usize;
    assert!(!tcp_follows_ip(&outer, m.ip_offset, m.ip_version, at));
}

fn any_frame(v6: bool, tcp: bool, tags: u8, payload: &[u8], tcp_options: bool) -> Vec<u8> {
    let eth = PacketBuilder::ethernet2(MAC_A, MAC_B);
    let mut out = Vec::new();
    let build = |out: &mut Vec<u8>, ip: etherparse::PacketBuilderStep<etherparse::IpHeaders>| {
        if tcp {
            let mut t = ip.tcp(40000, 443, 7, 1000).ack(3).psh();
            if tcp_options {
                t = t
                    .options(&[
                        etherparse::TcpOptionElement::MaximumSegmentSize(1460),
                        etherparse::TcpOptionElement::Noop,
                    ])
                    .unwrap();
            }
            t.write(out, payload).unwrap();
        } else {
            ip.udp(5353, 53).write(out, payload).unwrap();
        }
    };
    let a6 = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    let b6 = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
    match (tags, v6) {
        (0, false) => build(&mut out, eth.ipv4([198, 18, 0, 1], [198, 19, 0, 2], 64)),
        (0, true) => build(&mut out, eth.ipv6(a6, b6, 64)),
        (1, false) => build(
            &mut out,
            eth.single_vlan(7.try_into().unwrap())
                .ipv4([198, 18, 0, 1], [198, 19, 0, 2], 64),
        ),
        (1, true) => build(
            &mut out,
            eth.single_vlan(7.try_into().unwrap()).ipv6(a6, b6, 64),
        ),
        (_, false) => build(
            &mut out,
            eth.double_vlan(100.try_into().unwrap(), 7.try_into().unwrap())
                .ipv4([198, 18, 0, 1], [198, 19, 0, 2], 64),
        ),
        (_, true) => build(
            &mut out,
            eth.double_vlan(100.try_into().unwrap(), 7.try_into().unwrap())
                .ipv6(a6, b6, 64),
        ),
    }
    out
}

#[test]
fn fast_path_takes_the_common_frames() {
    for v6 in [false, true] {
        for tcp in [false, true] {
            for tags in 0..3 {
                let f = any_frame(v6, tcp, tags, b"hello", tcp);
                let fast = super::fast::parse(&f)
                    .unwrap_or_else(|| panic!("v6 {v6} tcp {tcp} tags {tags} declined"));
                assert_eq!(
                    fast,
                    PacketMeta::parse_general(&f),
                    "v6 {v6} tcp {tcp} tags {tags}"
                );
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    /// Whenever the fast path answers, it answers what etherparse says.
    #[test]
    fn fast_path_agrees_with_etherparse(
        v6 in any::<bool>(),
        tcp in any::<bool>(),
        tags in 0u8..3,
        opts in any::<bool>(),
        payload in proptest::collection::vec(any::<u8>(), 0..64),
        edits in proptest::collection::vec((0usize..120, any::<u8>()), 0..4),
        cut in 0usize..40,
        pad in 0usize..8,
    ) {
        let mut f = any_frame(v6, tcp, tags, &payload, opts);
        for (pos, b) in edits {
            if let Some(slot) = f.get_mut(pos) { *slot = b; }
        }
        f.truncate(f.len().saturating_sub(cut));
        f.extend(std::iter::repeat_n(0u8, pad));
        if let Some(fast) = super::fast::parse(&f) {
            prop_assert_eq!(fast, PacketMeta::parse_general(&f));
        }
    }
}
