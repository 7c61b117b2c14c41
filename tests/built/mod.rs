//! Traffic built for tests, frame by frame: Ethernet/IPv4 frames made with
//! etherparse (checksums and lengths right), TCP connections with real
//! sequence numbers, TLS ClientHellos from rustls, QUIC Initials from
//! quinn-proto, DNS answers with name compression, ICE STUN checks with
//! real MESSAGE-INTEGRITY and FINGERPRINT, RTP with advancing sequence
//! numbers and timestamps. Written to a pcap file (Ethernet link type) with
//! pcap-file, to be read back by `qosd classify`.

#![allow(dead_code)] // each test or bench target uses part of it

use std::collections::HashMap;
use std::fs;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use etherparse::{IpHeaders, Ipv4Header, PacketBuilder, TcpOptionElement, ip_number};
use pcap_file::DataLink;
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use rustls::RootCertStore;
use rustls::pki_types::ServerName;

/// TCP segment size used by the connections built here (Ethernet MTU 1500).
pub const MSS: usize = 1460;

/// 2026-01-01T09:00:00Z: captures start on an office morning.
pub const EPOCH: Duration = Duration::from_secs(1_767_258_000);

/// `a.b.c.d:port`.
pub fn ep(a: [u8; 4], port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::from(a), port)
}

/// Milliseconds.
pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Microseconds.
pub fn us(n: u64) -> Duration {
    Duration::from_micros(n)
}

/// A locally administered MAC derived from the address, so that each host
/// keeps one MAC across flows.
fn mac(a: &SocketAddrV4) -> [u8; 6] {
    let o = a.ip().octets();
    [0x02, 0x00, o[0], o[1], o[2], o[3]]
}

/// Small deterministic PRNG (xorshift64*): payload bytes and jitter.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Uniform in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// IP protocol numbers as `qosd classify` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub fn name(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

/// One frame of a capture and what it belongs to.
#[derive(Debug, Clone)]
pub struct Frame {
    pub at: Duration,
    pub proto: Proto,
    pub src: SocketAddrV4,
    pub dst: SocketAddrV4,
    pub bytes: Vec<u8>,
}

/// A capture being built. Frames may be added out of time order (one
/// connection at a time); they are written sorted by time (stable).
#[derive(Debug, Default, Clone)]
pub struct Capture {
    frames: Vec<Frame>,
}

/// TCP flags of a segment.
#[derive(Debug, Clone, Copy, Default)]
pub struct Flags {
    pub syn: bool,
    pub ack: bool,
    pub psh: bool,
    pub fin: bool,
    pub rst: bool,
}

pub const SYN: Flags = Flags {
    syn: true,
    ack: false,
    psh: false,
    fin: false,
    rst: false,
};
pub const SYN_ACK: Flags = Flags { ack: true, ..SYN };
pub const ACK: Flags = Flags {
    syn: false,
    ack: true,
    psh: false,
    fin: false,
    rst: false,
};
pub const PSH_ACK: Flags = Flags { psh: true, ..ACK };
pub const FIN_ACK: Flags = Flags { fin: true, ..ACK };

/// An IPv4 header with a DSCP mark (etherparse fills in lengths and the
/// checksum when writing).
fn ipv4(src: &SocketAddrV4, dst: &SocketAddrV4, dscp: u8, ttl: u8) -> IpHeaders {
    let mut h = Ipv4Header::new(0, ttl, ip_number::UDP, src.ip().octets(), dst.ip().octets())
        .expect("ipv4 header");
    h.dscp = etherparse::IpDscp::try_new(dscp).expect("dscp");
    h.dont_fragment = true;
    IpHeaders::Ipv4(h, Default::default())
}

/// An Ethernet/IPv4/UDP frame.
pub fn udp_frame(src: SocketAddrV4, dst: SocketAddrV4, dscp: u8, payload: &[u8]) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(mac(&src), mac(&dst))
        .ip(ipv4(&src, &dst, dscp, 64))
        .udp(src.port(), dst.port());
    let mut out = Vec::with_capacity(b.size(payload.len()));
    b.write(&mut out, payload).expect("udp frame");
    out
}

/// An Ethernet/IPv4/TCP frame.
#[allow(clippy::too_many_arguments)]
pub fn tcp_frame(
    src: SocketAddrV4,
    dst: SocketAddrV4,
    seq: u32,
    ack: u32,
    flags: Flags,
    window: u16,
    options: &[TcpOptionElement],
    payload: &[u8],
) -> Vec<u8> {
    let mut b = PacketBuilder::ethernet2(mac(&src), mac(&dst))
        .ip(ipv4(&src, &dst, 0, 64))
        .tcp(src.port(), dst.port(), seq, window);
    if flags.syn {
        b = b.syn();
    }
    if flags.ack {
        b = b.ack(ack);
    }
    if flags.psh {
        b = b.psh();
    }
    if flags.fin {
        b = b.fin();
    }
    if flags.rst {
        b = b.rst();
    }
    if !options.is_empty() {
        b = b.options(options).expect("tcp options");
    }
    let mut out = Vec::with_capacity(b.size(payload.len()));
    b.write(&mut out, payload).expect("tcp frame");
    out
}

impl Capture {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a frame built by the caller.
    pub fn push(&mut self, frame: Frame) {
        self.frames.push(frame);
    }

    /// Adds a UDP datagram.
    pub fn udp(&mut self, at: Duration, src: SocketAddrV4, dst: SocketAddrV4, payload: &[u8]) {
        self.udp_dscp(at, src, dst, 0, payload);
    }

    /// Adds a UDP datagram whose IP header carries `dscp`.
    pub fn udp_dscp(
        &mut self,
        at: Duration,
        src: SocketAddrV4,
        dst: SocketAddrV4,
        dscp: u8,
        payload: &[u8],
    ) {
        self.frames.push(Frame {
            at,
            proto: Proto::Udp,
            src,
            dst,
            bytes: udp_frame(src, dst, dscp, payload),
        });
    }

    /// The frames in time order.
    pub fn frames(&self) -> Vec<Frame> {
        let mut f = self.frames.clone();
        f.sort_by_key(|f| f.at);
        f
    }

    /// Writes the capture (Ethernet link type, microsecond timestamps).
    pub fn write(&self, path: &Path) {
        let file = fs::File::create(path).expect("create pcap");
        let header = PcapHeader {
            datalink: DataLink::ETHERNET,
            ..PcapHeader::default()
        };
        let mut w =
            PcapWriter::with_header(std::io::BufWriter::new(file), header).expect("pcap header");
        for f in self.frames() {
            w.write_packet(&PcapPacket::new(f.at, f.bytes.len() as u32, &f.bytes))
                .expect("pcap packet");
        }
    }

    /// (packets, frame bytes, packets a->b, packets b->a) of the flow
    /// between `a` and `b`, both ways.
    pub fn totals(&self, proto: Proto, a: SocketAddrV4, b: SocketAddrV4) -> FlowTotals {
        let mut t = FlowTotals::default();
        for f in &self.frames {
            if f.proto != proto {
                continue;
            }
            if f.src == a && f.dst == b {
                t.forward += 1;
            } else if f.src == b && f.dst == a {
                t.backward += 1;
            } else {
                continue;
            }
            t.bytes += f.bytes.len() as u64;
        }
        t
    }

    /// Number of distinct flows (5-tuples, either way) in the capture.
    pub fn flow_count(&self) -> usize {
        let mut seen = std::collections::HashSet::new();
        for f in &self.frames {
            let (lo, hi) = if (f.src.ip(), f.src.port()) <= (f.dst.ip(), f.dst.port()) {
                (f.src, f.dst)
            } else {
                (f.dst, f.src)
            };
            seen.insert((f.proto, lo, hi));
        }
        seen.len()
    }
}

/// Packets and bytes of one flow in a capture.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlowTotals {
    pub forward: u64,
    pub backward: u64,
    pub bytes: u64,
}

/// A TCP connection between a client and a server, with sequence numbers
/// and acknowledgements kept right. `at` is the capture point's clock: the
/// gateway sits next to the client, so the server's answers arrive one RTT
/// after what they answer.
#[derive(Debug, Clone)]
pub struct Tcp {
    pub client: SocketAddrV4,
    pub server: SocketAddrV4,
    c_seq: u32,
    s_seq: u32,
    pub at: Duration,
    pub rtt: Duration,
}

impl Tcp {
    /// Three-way handshake starting at `at` (SYN with MSS, SACK, window
    /// scale, as Windows and Linux send).
    pub fn open(
        cap: &mut Capture,
        at: Duration,
        client: SocketAddrV4,
        server: SocketAddrV4,
        rtt: Duration,
    ) -> Tcp {
        let mut t = Tcp {
            client,
            server,
            c_seq: 0x1f2e_3d4c ^ u32::from(client.port()),
            s_seq: 0x7a6b_5c4d ^ u32::from(server.port()),
            at,
            rtt,
        };
        let opts = [
            TcpOptionElement::MaximumSegmentSize(MSS as u16),
            TcpOptionElement::Noop,
            TcpOptionElement::WindowScale(8),
            TcpOptionElement::SelectiveAcknowledgementPermitted,
            TcpOptionElement::Noop,
            TcpOptionElement::Noop,
        ];
        t.emit(cap, true, SYN, &opts, &[]);
        t.c_seq = t.c_seq.wrapping_add(1);
        t.at += rtt;
        t.emit(cap, false, SYN_ACK, &opts, &[]);
        t.s_seq = t.s_seq.wrapping_add(1);
        t.at += us(80);
        t.emit(cap, true, ACK, &[], &[]);
        t
    }

    fn emit(
        &self,
        cap: &mut Capture,
        from_client: bool,
        flags: Flags,
        opts: &[TcpOptionElement],
        payload: &[u8],
    ) {
        let (src, dst, seq, ack) = if from_client {
            (self.client, self.server, self.c_seq, self.s_seq)
        } else {
            (self.server, self.client, self.s_seq, self.c_seq)
        };
        cap.push(Frame {
            at: self.at,
            proto: Proto::Tcp,
            src,
            dst,
            bytes: tcp_frame(src, dst, seq, ack, flags, 1026, opts, payload),
        });
    }

    /// The client sends `segments` back to back (each one TCP segment, at
    /// most [`MSS`]); the server acknowledges them one RTT later.
    pub fn client_segments(&mut self, cap: &mut Capture, segments: &[&[u8]]) {
        for s in segments {
            assert!(s.len() <= MSS);
            self.emit(cap, true, PSH_ACK, &[], s);
            self.c_seq = self.c_seq.wrapping_add(s.len() as u32);
            self.at += us(30);
        }
        self.at += self.rtt;
        self.emit(cap, false, ACK, &[], &[]);
        self.at += us(50);
    }

    /// The client sends `data`, cut into MSS-sized segments.
    pub fn client_sends(&mut self, cap: &mut Capture, data: &[u8]) {
        let segs: Vec<&[u8]> = data.chunks(MSS).collect();
        self.client_segments(cap, &segs);
    }

    /// The server sends `data` in MSS-sized segments (paced at `gap`); the
    /// client acknowledges every second segment right away.
    pub fn server_sends(&mut self, cap: &mut Capture, data: &[u8], gap: Duration) {
        let n = data.chunks(MSS).count();
        for (i, s) in data.chunks(MSS).enumerate() {
            self.emit(cap, false, PSH_ACK, &[], s);
            self.s_seq = self.s_seq.wrapping_add(s.len() as u32);
            self.at += us(20);
            if i % 2 == 1 || i + 1 == n {
                self.emit(cap, true, ACK, &[], &[]);
            }
            self.at += gap;
        }
    }

    /// Client FIN, server FIN-ACK, client ACK.
    pub fn close(&mut self, cap: &mut Capture) {
        self.emit(cap, true, FIN_ACK, &[], &[]);
        self.c_seq = self.c_seq.wrapping_add(1);
        self.at += self.rtt;
        self.emit(cap, false, FIN_ACK, &[], &[]);
        self.s_seq = self.s_seq.wrapping_add(1);
        self.at += us(60);
        self.emit(cap, true, ACK, &[], &[]);
    }

    /// Sends a segment of the client again (a retransmission) with the
    /// sequence number it had `back` bytes ago.
    pub fn client_retransmits(&mut self, cap: &mut Capture, back: u32, data: &[u8]) {
        let seq = self.c_seq;
        self.c_seq = seq.wrapping_sub(back);
        self.emit(cap, true, PSH_ACK, &[], data);
        self.c_seq = seq;
        self.at += us(30);
    }

    /// Emits one client segment at an explicit sequence offset (relative
    /// to the next byte to send) without advancing; for reordering tests.
    pub fn client_segment_at(&mut self, cap: &mut Capture, offset: u32, data: &[u8]) {
        let seq = self.c_seq;
        self.c_seq = seq.wrapping_add(offset);
        self.emit(cap, true, PSH_ACK, &[], data);
        self.c_seq = seq;
        self.at += us(30);
    }

    /// Advances the client's sequence number by `n` bytes already emitted.
    pub fn client_advance(&mut self, n: u32) {
        self.c_seq = self.c_seq.wrapping_add(n);
    }
}

// ---------------------------------------------------------------------------
// TLS and QUIC from real client libraries

/// A rustls client configuration (ring provider, no roots: the tests only
/// need what the client writes first) offering the ALPN list `alpn`.
pub fn rustls_config(alpn: &[&[u8]]) -> rustls::ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(RootCertStore::empty())
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config
}

/// The first bytes a rustls client (ALPN h2, http/1.1) writes: its
/// ClientHello for `server` (a host name, or an IP address: then rustls
/// sends no SNI, as RFC 6066 requires).
pub fn tls_client_hello(server: &str) -> Vec<u8> {
    rustls_first_flight(rustls_config(&[b"h2", b"http/1.1"]), server)
}

/// The bytes a rustls client with `config` writes first to `server`.
pub fn rustls_first_flight(config: rustls::ClientConfig, server: &str) -> Vec<u8> {
    let name = ServerName::try_from(server.to_owned()).expect("server name");
    let mut conn =
        rustls::ClientConnection::new(Arc::new(config), name).expect("client connection");
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out).expect("write_tls");
    }
    out
}

/// Many long ALPN protocols: a ClientHello larger than one TCP segment or
/// one QUIC Initial packet, as post-quantum key shares make them.
pub fn many_protocols() -> Vec<Vec<u8>> {
    (0..70)
        .map(|i| format!("x-qosd-test-protocol-{i:03}").into_bytes())
        .collect()
}

/// What a TLS 1.3 server answers, in shape: a ServerHello record, a
/// ChangeCipherSpec and encrypted application-data records (random bytes).
pub fn tls_server_flight(rng: &mut Rng, encrypted: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut hello = vec![0x02, 0x00, 0x00, 0x76, 0x03, 0x03];
    hello.extend(rng.bytes(32)); // random
    hello.push(32);
    hello.extend(rng.bytes(32)); // session id echo
    hello.extend([0x13, 0x01, 0x00]); // TLS_AES_128_GCM_SHA256, no compression
    hello.extend([0x00, 0x2e]); // extensions
    hello.extend([0x00, 0x2b, 0x00, 0x02, 0x03, 0x04]); // supported_versions
    hello.extend([0x00, 0x33, 0x00, 0x24, 0x00, 0x1d, 0x00, 0x20]); // key_share x25519
    hello.extend(rng.bytes(32));
    out.extend([0x16, 0x03, 0x03]);
    out.extend((hello.len() as u16).to_be_bytes());
    out.extend(hello);
    out.extend([0x14, 0x03, 0x03, 0x00, 0x01, 0x01]);
    let mut left = encrypted;
    while left > 0 {
        let n = left.min(16_384);
        out.extend([0x17, 0x03, 0x03]);
        out.extend((n as u16).to_be_bytes());
        out.extend(rng.bytes(n));
        left -= n;
    }
    out
}

/// Encrypted application data records of `n` payload bytes in total.
pub fn tls_app_data(rng: &mut Rng, n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut left = n;
    while left > 0 {
        let k = left.min(16_384);
        out.extend([0x17, 0x03, 0x03]);
        out.extend((k as u16).to_be_bytes());
        out.extend(rng.bytes(k));
        left -= k;
    }
    out
}

/// The UDP payloads a quinn-proto client sends first (QUIC v1, ALPN h3),
/// one per datagram: its Initial packet(s) carrying the ClientHello for
/// `host`.
pub fn quic_first_datagrams(host: &str, server: SocketAddrV4) -> Vec<Vec<u8>> {
    quic_first_datagrams_alpn(host, server, &[b"h3"])
}

/// Like [`quic_first_datagrams`] with the ALPN list `alpn` (a long list
/// makes a ClientHello that needs two Initial packets, as post-quantum key
/// shares do).
pub fn quic_first_datagrams_alpn(host: &str, server: SocketAddrV4, alpn: &[&[u8]]) -> Vec<Vec<u8>> {
    quic_first_datagrams_version(host, server, alpn, None)
}

/// Like [`quic_first_datagrams_alpn`], for the QUIC `version` (wire value;
/// quinn-proto's default, v1, when `None`).
pub fn quic_first_datagrams_version(
    host: &str,
    server: SocketAddrV4,
    alpn: &[&[u8]],
    version: Option<u32>,
) -> Vec<Vec<u8>> {
    let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .expect("tls13")
    .with_root_certificates(RootCertStore::empty())
    .with_no_client_auth();
    tls.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let crypto =
        quinn_proto::crypto::rustls::QuicClientConfig::try_from(tls).expect("quic tls config");
    let mut config = quinn_proto::ClientConfig::new(Arc::new(crypto));
    if let Some(v) = version {
        config.version(v);
    }
    let mut endpoint = quinn_proto::Endpoint::new(
        Arc::new(quinn_proto::EndpointConfig::default()),
        None,
        false,
        None,
    );
    let now = std::time::Instant::now();
    let (_, mut conn) = endpoint
        .connect(now, config, SocketAddr::V4(server), host)
        .expect("connect");
    let mut datagrams = Vec::new();
    let mut buf = Vec::new();
    while let Some(t) = conn.poll_transmit(now, 1, &mut buf) {
        datagrams.push(buf[..t.size].to_vec());
        buf.clear();
    }
    datagrams
}

/// A QUIC long-header packet in shape (the server's Initial/Handshake
/// answer): header bits, version 1, connection ids, random protected bytes.
pub fn quic_server_long(rng: &mut Rng, len: usize) -> Vec<u8> {
    let mut p = vec![0xc3, 0x00, 0x00, 0x00, 0x01, 0x08];
    p.extend(rng.bytes(8));
    p.push(0x08);
    p.extend(rng.bytes(8));
    p.extend(rng.bytes(len.saturating_sub(p.len())));
    p
}

/// A QUIC short-header (1-RTT) packet in shape.
pub fn quic_short(rng: &mut Rng, len: usize) -> Vec<u8> {
    let mut p = vec![0x40 | (rng.next() as u8 & 0x3f)];
    p.extend(rng.bytes(len - 1));
    p
}

// ---------------------------------------------------------------------------
// DNS

/// A DNS message writer with RFC 1035 4.1.4 name compression, as
/// resolvers write answers.
pub struct DnsWriter {
    pub msg: Vec<u8>,
    names: HashMap<String, u16>,
}

/// Record types.
pub const DNS_A: u16 = 1;
pub const DNS_CNAME: u16 = 5;
pub const DNS_AAAA: u16 = 28;

impl DnsWriter {
    /// A header: `id`, flags, counts (qd, an, ns, ar).
    pub fn new(id: u16, flags: u16, counts: [u16; 4]) -> Self {
        let mut msg = Vec::with_capacity(512);
        msg.extend(id.to_be_bytes());
        msg.extend(flags.to_be_bytes());
        for c in counts {
            msg.extend(c.to_be_bytes());
        }
        DnsWriter {
            msg,
            names: HashMap::new(),
        }
    }

    /// Writes `name`, compressed against the names written before.
    pub fn name(&mut self, name: &str) {
        let labels: Vec<&str> = name.trim_end_matches('.').split('.').collect();
        for i in 0..labels.len() {
            let suffix = labels[i..].join(".").to_ascii_lowercase();
            if let Some(&off) = self.names.get(&suffix) {
                self.msg.extend((0xc000 | off).to_be_bytes());
                return;
            }
            if self.msg.len() < 0x3fff {
                self.names.insert(suffix, self.msg.len() as u16);
            }
            self.msg.push(labels[i].len() as u8);
            self.msg.extend(labels[i].as_bytes());
        }
        self.msg.push(0);
    }

    /// A question (class IN).
    pub fn question(&mut self, name: &str, qtype: u16) {
        self.name(name);
        self.msg.extend(qtype.to_be_bytes());
        self.msg.extend(1u16.to_be_bytes());
    }

    /// A CNAME record.
    pub fn cname(&mut self, owner: &str, ttl: u32, target: &str) {
        self.name(owner);
        self.msg.extend(DNS_CNAME.to_be_bytes());
        self.msg.extend(1u16.to_be_bytes());
        self.msg.extend(ttl.to_be_bytes());
        let len_at = self.msg.len();
        self.msg.extend([0, 0]);
        self.name(target);
        let rdlen = (self.msg.len() - len_at - 2) as u16;
        self.msg[len_at..len_at + 2].copy_from_slice(&rdlen.to_be_bytes());
    }

    /// An A record.
    pub fn a(&mut self, owner: &str, ttl: u32, addr: [u8; 4]) {
        self.name(owner);
        self.msg.extend(DNS_A.to_be_bytes());
        self.msg.extend(1u16.to_be_bytes());
        self.msg.extend(ttl.to_be_bytes());
        self.msg.extend(4u16.to_be_bytes());
        self.msg.extend(addr);
    }

    /// An EDNS(0) OPT pseudo-record (UDP size 1232), as resolvers add.
    pub fn opt(&mut self) {
        self.msg.push(0);
        self.msg.extend(41u16.to_be_bytes());
        self.msg.extend(1232u16.to_be_bytes());
        self.msg.extend(0u32.to_be_bytes());
        self.msg.extend(0u16.to_be_bytes());
    }
}

/// A standard query (RD, EDNS) for `name`.
pub fn dns_query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut w = DnsWriter::new(id, 0x0100, [1, 0, 0, 1]);
    w.question(name, qtype);
    w.opt();
    w.msg
}

/// A response to [`dns_query`]: `chain` is the CNAME chain after the
/// question name (each with its TTL), then the A records of the last name.
pub fn dns_answer(
    id: u16,
    name: &str,
    chain: &[(&str, u32)],
    addrs: &[[u8; 4]],
    a_ttl: u32,
) -> Vec<u8> {
    let an = (chain.len() + addrs.len()) as u16;
    let mut w = DnsWriter::new(id, 0x8180, [1, an, 0, 1]);
    w.question(name, DNS_A);
    let mut owner = name.to_owned();
    for (target, ttl) in chain {
        w.cname(&owner, *ttl, target);
        owner = (*target).to_owned();
    }
    for a in addrs {
        w.a(&owner, a_ttl, *a);
    }
    w.opt();
    w.msg
}

// ---------------------------------------------------------------------------
// STUN (RFC 8489) as ICE (RFC 8445) sends it

const COOKIE: u32 = 0x2112_a442;

/// CRC-32 (ISO-HDLC, as in FINGERPRINT).
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn stun_attr(msg: &mut Vec<u8>, typ: u16, value: &[u8]) {
    msg.extend(typ.to_be_bytes());
    msg.extend((value.len() as u16).to_be_bytes());
    msg.extend(value);
    while !msg.len().is_multiple_of(4) {
        msg.push(0);
    }
}

fn stun_set_len(msg: &mut [u8], body: usize) {
    msg[2..4].copy_from_slice(&(body as u16).to_be_bytes());
}

/// Appends MESSAGE-INTEGRITY (HMAC-SHA1 with `password`, the ICE short-term
/// credential) and FINGERPRINT, with the length field adjusted for each as
/// RFC 8489 14.5 and 14.7 require.
fn stun_seal(mut msg: Vec<u8>, password: &[u8]) -> Vec<u8> {
    let body = msg.len() - 20;
    stun_set_len(&mut msg, body + 24);
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, password);
    let tag = ring::hmac::sign(&key, &msg);
    stun_attr(&mut msg, 0x0008, tag.as_ref());
    let body = msg.len() - 20;
    stun_set_len(&mut msg, body + 8);
    let fp = crc32(&msg) ^ 0x5354_554e;
    stun_attr(&mut msg, 0x8028, &fp.to_be_bytes());
    msg
}

/// An ICE connectivity check: Binding request with USERNAME, PRIORITY,
/// ICE-CONTROLLING, MESSAGE-INTEGRITY and FINGERPRINT.
pub fn stun_binding_request(txid: [u8; 12], username: &str, password: &[u8]) -> Vec<u8> {
    let mut m = vec![0x00, 0x01, 0, 0];
    m.extend(COOKIE.to_be_bytes());
    m.extend(txid);
    stun_attr(&mut m, 0x0006, username.as_bytes());
    stun_attr(&mut m, 0x0024, &0x6e7f_1eff_u32.to_be_bytes());
    stun_attr(&mut m, 0x802a, &0x1234_5678_9abc_def0_u64.to_be_bytes());
    stun_seal(m, password)
}

/// The Binding success response: XOR-MAPPED-ADDRESS of `mapped`.
pub fn stun_binding_response(txid: [u8; 12], mapped: SocketAddrV4, password: &[u8]) -> Vec<u8> {
    let mut m = vec![0x01, 0x01, 0, 0];
    m.extend(COOKIE.to_be_bytes());
    m.extend(txid);
    let mut xma = vec![0x00, 0x01];
    xma.extend((mapped.port() ^ (COOKIE >> 16) as u16).to_be_bytes());
    xma.extend((u32::from(*mapped.ip()) ^ COOKIE).to_be_bytes());
    stun_attr(&mut m, 0x0020, &xma);
    stun_seal(m, password)
}

// ---------------------------------------------------------------------------
// RTP (RFC 3550)

/// An RTP sender: one SSRC, sequence number and timestamp advancing.
#[derive(Debug, Clone)]
pub struct Rtp {
    pub payload_type: u8,
    pub ssrc: u32,
    pub seq: u16,
    pub ts: u32,
    first: bool,
}

impl Rtp {
    pub fn new(payload_type: u8, ssrc: u32, seq: u16, ts: u32) -> Self {
        Rtp {
            payload_type,
            ssrc,
            seq,
            ts,
            first: true,
        }
    }

    /// The next packet: `payload` after the 12-byte header; the marker on
    /// the first packet (start of a talk spurt) or when `marker` is set.
    pub fn packet(&mut self, payload: &[u8], marker: bool) -> Vec<u8> {
        let m = if marker || self.first { 0x80 } else { 0 };
        self.first = false;
        let mut p = vec![0x80, m | self.payload_type];
        p.extend(self.seq.to_be_bytes());
        p.extend(self.ts.to_be_bytes());
        p.extend(self.ssrc.to_be_bytes());
        p.extend(payload);
        self.seq = self.seq.wrapping_add(1);
        p
    }

    /// Advances the media clock (samples, or 90 kHz ticks for video).
    pub fn tick(&mut self, n: u32) {
        self.ts = self.ts.wrapping_add(n);
    }
}

/// One G.711 mu-law frame of 20 ms (160 samples) of quiet speech.
pub fn g711_frame(rng: &mut Rng) -> Vec<u8> {
    (0..160).map(|_| 0xf0 | (rng.next() as u8 & 0x0f)).collect()
}

// ---------------------------------------------------------------------------
// Running qosd

/// A scratch directory removed on drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(test: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("qosd-built-{}-{test}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("scratch dir");
        Scratch(dir)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}
