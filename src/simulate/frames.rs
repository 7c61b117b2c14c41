//! Frames for the simulated office: real Ethernet/IP/TCP/UDP headers, real
//! TLS ClientHellos and RTP headers, so the classifier does the same work as
//! on a real link.

use etherparse::PacketBuilder;

/// An IPv4 endpoint.
pub type Endpoint = ([u8; 4], u16);

const MAC_LAN: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const MAC_WAN: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];

/// Writes an Ethernet/IPv4/UDP frame into `out`.
pub fn udp(out: &mut Vec<u8>, src: Endpoint, dst: Endpoint, payload: &[u8]) {
    out.clear();
    let _ = PacketBuilder::ethernet2(MAC_LAN, MAC_WAN)
        .ipv4(src.0, dst.0, 64)
        .udp(src.1, dst.1)
        .write(out, payload);
}

/// TCP flags for [`tcp`].
#[derive(Debug, Clone, Copy)]
pub enum TcpKind {
    /// Opening SYN.
    Syn,
    /// A data segment (ACK set).
    Data,
    /// A pure ACK.
    Ack,
}

/// Writes an Ethernet/IPv4/TCP frame into `out`.
pub fn tcp(
    out: &mut Vec<u8>,
    src: Endpoint,
    dst: Endpoint,
    kind: TcpKind,
    seq: u32,
    payload: &[u8],
) {
    out.clear();
    let b = PacketBuilder::ethernet2(MAC_LAN, MAC_WAN)
        .ipv4(src.0, dst.0, 64)
        .tcp(src.1, dst.1, seq, 64240);
    let b = match kind {
        TcpKind::Syn => b.syn(),
        TcpKind::Data | TcpKind::Ack => b.ack(1),
    };
    let _ = b.write(out, payload);
}

/// A minimal TLS 1.2 ClientHello record carrying `sni`.
pub fn client_hello(sni: &str) -> Vec<u8> {
    let name = sni.as_bytes();
    let name_len = name.len() as u16;
    let mut sni_ext = Vec::new();
    sni_ext.extend_from_slice(&[0x00, 0x00]); // server_name
    sni_ext.extend_from_slice(&(name_len + 5).to_be_bytes());
    sni_ext.extend_from_slice(&(name_len + 3).to_be_bytes());
    sni_ext.push(0); // host_name
    sni_ext.extend_from_slice(&name_len.to_be_bytes());
    sni_ext.extend_from_slice(name);

    let mut body = vec![0x03, 0x03];
    body.extend_from_slice(&[0x42; 32]); // random
    body.push(0); // session id
    body.extend_from_slice(&[0x00, 0x02, 0x13, 0x01]); // one cipher suite
    body.extend_from_slice(&[0x01, 0x00]); // null compression
    body.extend_from_slice(&(sni_ext.len() as u16).to_be_bytes());
    body.extend_from_slice(&sni_ext);

    let mut hs = vec![0x01];
    hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    hs.extend_from_slice(&body);
    let mut rec = vec![0x16, 0x03, 0x01];
    rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
    rec.extend_from_slice(&hs);
    rec
}

/// An RTP packet: version 2, `pt`, `seq`, `ts`, `ssrc`, then `payload_len`
/// bytes of payload.
pub fn rtp(out: &mut Vec<u8>, pt: u8, seq: u16, ts: u32, ssrc: u32, payload_len: usize) {
    out.clear();
    out.push(0x80);
    out.push(pt & 0x7f);
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(&ts.to_be_bytes());
    out.extend_from_slice(&ssrc.to_be_bytes());
    out.resize(12 + payload_len, 0xd5);
}

/// A DNS query for `name` (id `id`).
pub fn dns_query(id: u16, name: &str) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    q.extend_from_slice(&[0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

/// Writes a video packet into `out`: an RTP-like payload of `n` bytes
/// with a dynamic type, over UDP.
pub fn video(out: &mut Vec<u8>, src: Endpoint, dst: Endpoint, n: usize) {
    let mut payload = Vec::with_capacity(n);
    rtp(&mut payload, 102, 0, 0, 0x5151, n.saturating_sub(12));
    udp(out, src, dst, &payload);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::dpi::{Parse, tls};

    #[test]
    fn client_hello_is_readable() {
        let rec = client_hello("contoso.sharepoint.com");
        match tls::client_hello(&rec) {
            Parse::Found(h) => assert_eq!(h.sni, Some("contoso.sharepoint.com")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rtp_header_is_readable() {
        let mut out = Vec::new();
        rtp(&mut out, 0, 7, 160, 0xdead_beef, 160);
        let h = crate::classify::dpi::rtp::rtp_header(&out).unwrap();
        assert_eq!((h.payload_type, h.sequence, h.ssrc), (0, 7, 0xdead_beef));
    }
}
