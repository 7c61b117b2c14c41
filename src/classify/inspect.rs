//! What the classifier reads from a pending flow's packets: host names
//! (TLS ClientHello, QUIC Initial, HTTP Host), payload prefixes, and
//! real-time media behaviour. The state lives in a box that exists only
//! while the flow is pending.

use super::DecidedBy;
use super::catalog::CompiledCatalog;
use super::dpi::rtp::{MediaKind, MediaTracker, RtpOrRtcp, rtp_or_rtcp};
use super::dpi::{Parse, dtls, http, quic, rpc, stun, tls};
use super::matcher::{AppId, FlowFacts};
use crate::packet::PacketMeta;
use crate::time::Instant;

/// Real-time media seen on a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Media {
    /// Nothing seen.
    #[default]
    None,
    /// RTP/RTCP headers; `video` when the payload looks like video.
    Rtp {
        /// Looks like video rather than audio.
        video: bool,
    },
    /// Small isochronous packets without a known header.
    Isochronous {
        /// Looks like video rather than audio.
        video: bool,
    },
    /// STUN/TURN.
    Stun,
    /// DTLS records.
    Dtls,
}

/// What one packet revealed.
#[derive(Debug, Default)]
pub struct Found {
    /// A host name and how it was read.
    pub host: Option<(Box<str>, DecidedBy)>,
    /// An app recognised by a payload prefix.
    pub payload_app: Option<AppId>,
    /// Media seen so far.
    pub media: Media,
    /// Nothing more will be learned from this flow's packets.
    pub done: bool,
}

/// Most bytes of a client's stream buffered to read a ClientHello or HTTP
/// request headers that span several TCP segments.
const MAX_HELLO_BUFFER: usize = 16 * 1024;

/// Appends what still fits of `payload` to `buf` (at most
/// [`MAX_HELLO_BUFFER`] bytes in all) and returns the whole buffer.
fn append_bounded<'a>(buf: &'a mut Vec<u8>, payload: &[u8]) -> &'a [u8] {
    let room = MAX_HELLO_BUFFER.saturating_sub(buf.len());
    buf.extend_from_slice(payload.get(..payload.len().min(room)).unwrap_or_default());
    buf
}

/// Per-flow inspection state while the flow is pending.
#[derive(Debug, Default)]
pub struct DpiState {
    /// A payload was seen from the initiator / from the responder.
    seen_payload: [bool; 2],
    /// The client's stream so far, while a ClientHello is incomplete.
    hello: Option<Vec<u8>>,
    /// The client's stream is not a ClientHello (or it was read).
    hello_done: bool,
    /// QUIC Initial reassembly, for UDP flows that start with one.
    quic: Option<Box<quic::InitialReassembler>>,
    /// The flow is not QUIC (or its Initial was read).
    quic_done: bool,
    /// The client stream is not TLS: look for an HTTP request instead.
    http_pending: bool,
    /// A first client segment that was not the start of anything known,
    /// kept in case the next one is the start of a ClientHello it follows.
    stray: Option<Vec<u8>>,
    /// Media timing and RTP headers, per direction (initiator first).
    media: [MediaTracker; 2],
    /// Strongest media evidence so far.
    media_seen: Media,
    /// RTP was confirmed and the tracker has told audio from video: the
    /// media verdict cannot change any more.
    media_known: bool,
}

/// A host name from a parser, owned.
fn owned_host(h: &str) -> Box<str> {
    h.to_ascii_lowercase().into_boxed_str()
}

impl DpiState {
    /// Inspects one packet of the flow.
    pub fn inspect(
        &mut self,
        protocol: u8,
        pkt: &PacketMeta<'_>,
        from_initiator: bool,
        now: Instant,
        catalog: &CompiledCatalog,
        facts: &FlowFacts<'_>,
    ) -> Found {
        let mut found = Found::default();
        let payload = pkt.payload;
        let who = usize::from(!from_initiator);
        if !payload.is_empty() && !self.seen_payload.get(who).copied().unwrap_or(true) {
            if let Some(seen) = self.seen_payload.get_mut(who) {
                *seen = true;
            }
            found.payload_app = catalog.app_for_payload(facts, payload).or_else(|| {
                let prog = rpc::call_program(payload, protocol == 6)?;
                rpc::NFS_FAMILY
                    .contains(&prog)
                    .then(|| catalog.app_id("nfs"))
                    .flatten()
            });
        }
        match protocol {
            6 if from_initiator && !payload.is_empty() => self.tcp_client(payload, &mut found),
            17 if !payload.is_empty() => {
                if from_initiator && !self.quic_done {
                    self.udp_client(payload, &mut found);
                }
                self.udp_media(payload, who, now);
            }
            _ => {}
        }
        found.media = self.media_seen;
        let names_done = match protocol {
            6 => self.hello_done && !self.http_pending,
            17 => self.quic_done,
            _ => true,
        };
        // UDP flows keep being watched for media timing until the
        // inspection limit, unless RTP (audio or video) already settled it.
        let media_done = protocol != 17 || self.media_known;
        found.done =
            found.host.is_some() || (names_done && media_done && self.seen_payload == [true, true]);
        found
    }

    /// Whether the buffered start of the stream reached its bound: the
    /// parser gets no more bytes, so its answer is final.
    fn buffer_full(&self) -> bool {
        self.hello
            .as_ref()
            .is_some_and(|b| b.len() >= MAX_HELLO_BUFFER)
    }

    /// The client side of a TCP stream: a TLS ClientHello, possibly spread
    /// over several segments.
    fn tcp_client(&mut self, payload: &[u8], found: &mut Found) {
        if self.http_pending {
            // The request's headers so far, then this segment: Host may
            // come segments after the request line.
            let parsed = match self.hello.as_mut() {
                Some(buf) => http::request_host(append_bounded(buf, payload)),
                None => http::request_host(payload),
            };
            match parsed {
                Parse::Found(host) => {
                    found.host = Some((owned_host(host), DecidedBy::HttpHost));
                    self.http_pending = false;
                }
                Parse::NeedMore => {
                    if self.buffer_full() {
                        self.http_pending = false;
                    } else if self.hello.is_none() {
                        self.hello = Some(payload.to_vec());
                    }
                }
                Parse::NotThis => self.http_pending = false,
            }
            if !self.http_pending {
                self.hello = None;
            }
            return;
        }
        if self.hello_done {
            return;
        }
        let parsed = match self.hello.as_mut() {
            Some(buf) => tls::client_hello(append_bounded(buf, payload)),
            None => tls::client_hello(payload),
        };
        match parsed {
            Parse::Found(hello) => {
                if let Some(sni) = hello.sni {
                    found.host = Some((owned_host(sni), DecidedBy::Sni));
                }
                self.hello_done = true;
            }
            Parse::NeedMore => {
                if self.buffer_full() {
                    self.hello_done = true;
                } else if self.hello.is_none() {
                    let want = tls::hello_len(payload)
                        .unwrap_or(4096)
                        .min(MAX_HELLO_BUFFER);
                    let mut buf = Vec::with_capacity(want);
                    // A segment that came before this one but belongs after
                    // it (reordered on the way): the hello may need both.
                    buf.extend_from_slice(payload);
                    if let Some(stray) = self.stray.take() {
                        buf.extend_from_slice(&stray);
                        if let Parse::Found(hello) = tls::client_hello(&buf) {
                            if let Some(sni) = hello.sni {
                                found.host = Some((owned_host(sni), DecidedBy::Sni));
                            }
                            self.hello_done = true;
                        }
                    }
                    if !self.hello_done {
                        self.hello = Some(buf);
                    }
                }
            }
            Parse::NotThis => {
                if self.hello.is_none() && http::is_http_request_start(payload) {
                    self.hello_done = true;
                    self.http_pending = true;
                    self.tcp_client(payload, found);
                    return;
                }
                if self.hello.is_none() && self.stray.is_none() && payload.len() <= MAX_HELLO_BUFFER
                {
                    // Perhaps the second half of a ClientHello that overtook
                    // the first: keep it for one more segment.
                    self.stray = Some(payload.to_vec());
                    return;
                }
                self.hello_done = true;
                self.stray = None;
            }
        }
        if self.hello_done {
            self.hello = None;
        }
    }

    /// Media evidence in a UDP payload from one side (`who`: 0 initiator).
    fn udp_media(&mut self, payload: &[u8], who: usize, now: Instant) {
        let rtp = match rtp_or_rtcp(payload) {
            Some(RtpOrRtcp::Rtp(h)) => Some(h),
            // A compound RTCP packet opening with a sender or receiver
            // report (RFC 3550 6.1) is a call's control channel.
            Some(RtpOrRtcp::Rtcp(info))
                if info.packets >= 2 && matches!(info.first_type, 200 | 201) =>
            {
                if self.media_seen == Media::None || self.media_seen == Media::Stun {
                    self.media_seen = Media::Rtp { video: false };
                }
                None
            }
            _ => None,
        };
        if let Some(tracker) = self.media.get_mut(who)
            && let Some(v) = tracker.observe(payload.len(), rtp.as_ref(), now)
        {
            let video = v.kind == MediaKind::Video;
            self.media_seen = if v.rtp {
                Media::Rtp { video }
            } else {
                Media::Isochronous { video }
            };
            // RTP alone does not settle it: with a dynamic payload type the
            // tracker needs more packets to tell video from audio, and a
            // verdict frozen too early would put video calls in voice.
            self.media_known = v.rtp && v.kind != MediaKind::Unknown;
            return;
        }
        if matches!(
            self.media_seen,
            Media::Rtp { .. } | Media::Isochronous { .. }
        ) {
            return;
        }
        if stun::stun(payload).is_some() {
            self.media_seen = Media::Stun;
        } else if self.media_seen == Media::None && dtls::dtls_record(payload).is_some() {
            self.media_seen = Media::Dtls;
        }
    }

    /// The client side of a UDP flow: a QUIC Initial.
    fn udp_client(&mut self, payload: &[u8], found: &mut Found) {
        if self.quic.is_none() {
            if quic::is_initial(payload).is_none() {
                if let Some(sni) = quic::gquic_chlo_sni(payload) {
                    found.host = Some((owned_host(sni), DecidedBy::QuicSni));
                }
                self.quic_done = true;
                return;
            }
            self.quic = Some(Box::default());
        }
        let Some(reassembler) = self.quic.as_mut() else {
            return;
        };
        match reassembler.push_datagram(payload) {
            Parse::Found(hello) => {
                if let Some(sni) = hello.sni {
                    found.host = Some((owned_host(sni), DecidedBy::QuicSni));
                }
                self.quic_done = true;
            }
            Parse::NeedMore => {}
            Parse::NotThis => self.quic_done = true,
        }
        if self.quic_done {
            self.quic = None;
        }
    }
}
