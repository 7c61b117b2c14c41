//! How a verdict was reached: the `decided_by` of metrics, the API and
//! reports.

/// How a verdict was reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DecidedBy {
    /// Admin rule (index in the configuration).
    Rule(u16),
    /// TLS ClientHello server name.
    Sni,
    /// QUIC Initial's ClientHello server name.
    QuicSni,
    /// HTTP/1 Host header.
    HttpHost,
    /// The server's TLS certificate (subject name or alternative name),
    /// for a ClientHello without a server name.
    Certificate,
    /// Name learned from a DNS answer for the server's address.
    Dns,
    /// Payload prefix signature.
    Payload,
    /// HTTP signature: the method, path or User-Agent of a plain-HTTP
    /// flow's first request, or the Content-Type of its first response.
    Http,
    /// Published IP range of the app.
    IpRange,
    /// Well-known port of the app.
    Port,
    /// RTP/RTCP headers.
    Rtp,
    /// STUN/TURN messages.
    Stun,
    /// DTLS records (WebRTC media).
    Dtls,
    /// Small isochronous packets (real-time media without known headers).
    Heuristic,
    /// Long high-volume flow: bulk.
    Volume,
    /// Trusted DSCP marking.
    Dscp,
    /// UDP no app claimed, to a broadcast or multicast address: the LAN's
    /// discovery and housekeeping (control).
    Discovery,
    /// The app of the call that used the same LAN address and UDP port
    /// just before (its STUN checks with the service, say).
    Endpoint,
    /// Nothing else decided.
    #[default]
    Default,
    /// Not an IP frame (ARP, LLDP, ...).
    NonIp,
}

impl DecidedBy {
    /// The label used in metrics and JSON ("rule" for every rule).
    pub fn kind(self) -> &'static str {
        match self {
            DecidedBy::Rule(_) => "rule",
            DecidedBy::Sni => "sni",
            DecidedBy::QuicSni => "quic-sni",
            DecidedBy::HttpHost => "http-host",
            DecidedBy::Certificate => "tls-cert",
            DecidedBy::Dns => "dns",
            DecidedBy::Payload => "payload",
            DecidedBy::Http => "http",
            DecidedBy::IpRange => "ip-range",
            DecidedBy::Port => "port",
            DecidedBy::Rtp => "rtp",
            DecidedBy::Stun => "stun",
            DecidedBy::Dtls => "dtls",
            DecidedBy::Heuristic => "heuristic",
            DecidedBy::Volume => "volume",
            DecidedBy::Dscp => "dscp",
            DecidedBy::Discovery => "discovery",
            DecidedBy::Endpoint => "endpoint",
            DecidedBy::Default => "default",
            DecidedBy::NonIp => "non-ip",
        }
    }

    /// Every `kind()`, for metrics that must list all label values.
    pub const KINDS: [&'static str; 20] = [
        "rule",
        "sni",
        "quic-sni",
        "http-host",
        "tls-cert",
        "dns",
        "payload",
        "http",
        "ip-range",
        "port",
        "rtp",
        "stun",
        "dtls",
        "heuristic",
        "volume",
        "dscp",
        "discovery",
        "endpoint",
        "default",
        "non-ip",
    ];

    /// Strength of an app identification: a stronger one replaces a weaker.
    /// A name learned from DNS says which service a server belongs to, not
    /// what the flow carries: it ranks below the service's published media
    /// ranges, and for UDP (call media to a conferencing server) below its
    /// media ports too.
    pub(super) fn strength(self, protocol: u8) -> u8 {
        match self {
            DecidedBy::Sni | DecidedBy::QuicSni | DecidedBy::HttpHost => 7,
            DecidedBy::Payload | DecidedBy::Http | DecidedBy::Certificate => 6,
            DecidedBy::IpRange => 5,
            DecidedBy::Dns if protocol == 17 => 2,
            DecidedBy::Dns => 4,
            DecidedBy::Port => 3,
            DecidedBy::Endpoint => 1,
            _ => 0,
        }
    }
}
