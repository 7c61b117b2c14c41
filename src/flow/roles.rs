//! Who opened a connection, when the first packet seen may not be its
//! first packet: a flow picked up at its SYN-ACK, mid-stream after a
//! restart of qosd, or after the table evicted it. Everything that reads
//! "client" and "server" (ClientHello and HTTP parsing, `src_ports` /
//! `dst_ports` signatures, reports) depends on getting this right.
//!
//! The evidence, strongest first:
//! 1. TCP's handshake: a SYN's sender opened the connection, a SYN-ACK's
//!    receiver did.
//! 2. Port ranks: a service listens on a well-known port (below 1024) and
//!    clients use ephemeral ones (32768 and up on Linux, 49152 and up on
//!    Windows and macOS). Between a TCP segment picked up mid-stream, the
//!    side on the lower-ranked port is the server. For UDP, whose first
//!    datagram is far more often the client's, only a well-known port
//!    against an unprivileged one overrides the order seen.
//! 3. Otherwise the first packet's sender.

use super::key::Side;
use crate::packet::{PacketMeta, TCP_ACK, TCP_SYN};

/// How likely a port is a server's: lower is more likely.
fn port_rank(port: u16) -> u8 {
    match port {
        0 => 3,
        1..=1023 => 0,
        1024..=32767 => 1,
        _ => 2,
    }
}

/// The side that opened the connection of `pkt`, the first packet seen of
/// its flow; `side` is `pkt`'s source.
pub fn initiator_of(pkt: &PacketMeta<'_>, side: Side) -> Side {
    if !pkt.has_ports() {
        return side;
    }
    let (src, dst) = (port_rank(pkt.src_port), port_rank(pkt.dst_port));
    match pkt.protocol {
        6 => match pkt.tcp_flags & (TCP_SYN | TCP_ACK) {
            TCP_SYN => side,
            f if f == TCP_SYN | TCP_ACK => side.other(),
            // Mid-stream: the sender is the server when its port ranks
            // lower than the receiver's.
            _ if src < dst => side.other(),
            _ => side,
        },
        17 if src == 0 && (1..3).contains(&dst) => side.other(),
        _ => side,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{IpVersion, PacketMeta};

    fn meta(protocol: u8, sp: u16, dp: u16, flags: u8) -> PacketMeta<'static> {
        let mut m = PacketMeta::parse(&[]);
        m.kind = crate::packet::FrameKind::Ip;
        m.ip_version = IpVersion::V4;
        m.protocol = protocol;
        m.src_port = sp;
        m.dst_port = dp;
        m.tcp_flags = flags;
        m
    }

    const PSH_ACK: u8 = 0x18;

    #[test]
    fn the_handshake_names_the_client() {
        assert_eq!(
            initiator_of(&meta(6, 40000, 443, TCP_SYN), Side::Lo),
            Side::Lo
        );
        // Picked up at the SYN-ACK: the receiver opened it.
        assert_eq!(
            initiator_of(&meta(6, 443, 40000, TCP_SYN | TCP_ACK), Side::Hi),
            Side::Lo
        );
        // Even between two ephemeral-looking ports (a server on 50000).
        assert_eq!(
            initiator_of(&meta(6, 50000, 60000, TCP_SYN | TCP_ACK), Side::Lo),
            Side::Hi
        );
    }

    #[test]
    fn mid_stream_tcp_goes_by_port_rank() {
        // A server's segment seen first (after a restart): roles swap.
        assert_eq!(
            initiator_of(&meta(6, 443, 51000, PSH_ACK), Side::Lo),
            Side::Hi
        );
        assert_eq!(
            initiator_of(&meta(6, 8801, 51000, PSH_ACK), Side::Lo),
            Side::Hi
        );
        // The client's segment seen first: kept.
        assert_eq!(
            initiator_of(&meta(6, 51000, 443, PSH_ACK), Side::Hi),
            Side::Hi
        );
        // Equal ranks: the order seen decides.
        assert_eq!(
            initiator_of(&meta(6, 40000, 50000, PSH_ACK), Side::Lo),
            Side::Lo
        );
        assert_eq!(
            initiator_of(&meta(6, 2000, 3000, PSH_ACK), Side::Hi),
            Side::Hi
        );
    }

    #[test]
    fn udp_swaps_only_for_a_well_known_port() {
        assert_eq!(initiator_of(&meta(17, 53, 40000, 0), Side::Lo), Side::Hi);
        assert_eq!(initiator_of(&meta(17, 443, 2000, 0), Side::Lo), Side::Hi);
        // A conferencing server on a registered port answering first is
        // not enough evidence for UDP.
        assert_eq!(initiator_of(&meta(17, 8801, 51000, 0), Side::Lo), Side::Lo);
        // Two well-known ports (NTP symmetric, SIP-like peers): as seen.
        assert_eq!(initiator_of(&meta(17, 123, 123, 0), Side::Hi), Side::Hi);
        // No ports (ICMP): as seen.
        assert_eq!(initiator_of(&meta(1, 0, 0, 0), Side::Lo), Side::Lo);
    }
}
