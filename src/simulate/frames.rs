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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpKind {
    /// Opening SYN.
    Syn,
    /// The server's SYN-ACK.
    SynAck,
    /// A data segment or a pure ACK (ACK set).
    Ack,
}

/// Options of a SYN or SYN-ACK as Linux sends them: MSS 1460, SACK
/// permitted, timestamps, NOP, window scale 7.
fn syn_options(tsval: u32, tsecr: u32) -> [u8; 20] {
    let mut o = [0u8; 20];
    o[..6].copy_from_slice(&[2, 4, 0x05, 0xb4, 4, 2]);
    o[6..8].copy_from_slice(&[8, 10]);
    o[8..12].copy_from_slice(&tsval.to_be_bytes());
    o[12..16].copy_from_slice(&tsecr.to_be_bytes());
    o[16..].copy_from_slice(&[1, 3, 3, 7]);
    o
}

/// The timestamp option as every later segment carries it: NOP, NOP,
/// kind 8, length 10, TSval, TSecr.
fn ts_option(tsval: u32, tsecr: u32) -> [u8; 12] {
    let mut o = [1, 1, 8, 10, 0, 0, 0, 0, 0, 0, 0, 0];
    o[4..8].copy_from_slice(&tsval.to_be_bytes());
    o[8..].copy_from_slice(&tsecr.to_be_bytes());
    o
}

/// The header fields of a segment [`tcp`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seg {
    /// Its flags.
    pub kind: TcpKind,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgement number (ignored for a SYN).
    pub ack: u32,
    /// The sender's timestamp clock.
    pub tsval: u32,
    /// The timestamp echoed (0 in a SYN).
    pub tsecr: u32,
}

/// Writes an Ethernet/IPv4/TCP frame into `out`: the header `seg`, with
/// the timestamp option, then `payload`.
pub fn tcp(out: &mut Vec<u8>, src: Endpoint, dst: Endpoint, seg: Seg, payload: &[u8]) {
    let Seg {
        kind,
        seq,
        ack,
        tsval,
        tsecr,
    } = seg;
    let ts = (tsval, tsecr);
    out.clear();
    let b = PacketBuilder::ethernet2(MAC_LAN, MAC_WAN)
        .ipv4(src.0, dst.0, 64)
        .tcp(src.1, dst.1, seq, 64240);
    let b = match kind {
        TcpKind::Syn => b.syn(),
        TcpKind::SynAck => b.syn().ack(ack),
        TcpKind::Ack => b.ack(ack),
    };
    let b = match kind {
        TcpKind::Syn | TcpKind::SynAck => b.options_raw(&syn_options(ts.0, ts.1)),
        TcpKind::Ack => b.options_raw(&ts_option(ts.0, ts.1)),
    };
    if let Ok(b) = b {
        let _ = b.write(out, payload);
    }
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
    push_name(&mut q, name);
    q.extend_from_slice(&[0, 1, 0, 1]);
    q
}

/// The answer to [`dns_query`] `id` for `name`: one A record, `addr`,
/// with a 5-minute TTL.
pub fn dns_answer(id: u16, name: &str, addr: [u8; 4]) -> Vec<u8> {
    let mut a = id.to_be_bytes().to_vec();
    a.extend_from_slice(&[0x81, 0x80, 0x00, 0x01, 0x00, 0x01, 0, 0, 0, 0]);
    push_name(&mut a, name);
    a.extend_from_slice(&[0, 1, 0, 1]);
    // The answer's name points at the question's (offset 12).
    a.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0x01, 0x2c, 0, 4]);
    a.extend_from_slice(&addr);
    a
}

fn push_name(out: &mut Vec<u8>, name: &str) {
    for label in name.split('.') {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
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
