//! What the classifier reads from a pending flow's packets: host names
//! (TLS ClientHello, QUIC Initial, HTTP Host), payload prefixes, and
//! real-time media behaviour. The state lives in a box that exists only
//! while the flow is pending.

use super::DecidedBy;
use super::catalog::CompiledCatalog;
use super::dpi::{Parse, quic, tls};
use super::matcher::{AppId, FlowFacts};
use crate::packet::PacketMeta;
use crate::time::Instant;

/// Real-time media seen on a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[allow(dead_code)] // Constructed once the media parsers are wired in.
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

/// Most bytes of a client's first stream bytes buffered to read a
/// ClientHello that spans several TCP segments.
const MAX_HELLO_BUFFER: usize = 16 * 1024;

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
        _now: Instant,
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
            found.payload_app = catalog.app_for_payload(facts, payload);
        }
        match protocol {
            6 if from_initiator && !payload.is_empty() && !self.hello_done => {
                self.tcp_client(payload, &mut found)
            }
            17 if from_initiator && !payload.is_empty() && !self.quic_done => {
                self.udp_client(payload, &mut found)
            }
            _ => {}
        }
        let names_done = match protocol {
            6 => self.hello_done,
            17 => self.quic_done,
            _ => true,
        };
        found.done = found.host.is_some() || (names_done && self.seen_payload == [true, true]);
        found
    }

    /// The client side of a TCP stream: a TLS ClientHello, possibly spread
    /// over several segments.
    fn tcp_client(&mut self, payload: &[u8], found: &mut Found) {
        let parsed = match self.hello.as_mut() {
            Some(buf) => {
                let room = MAX_HELLO_BUFFER.saturating_sub(buf.len());
                buf.extend_from_slice(payload.get(..payload.len().min(room)).unwrap_or_default());
                tls::client_hello(buf)
            }
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
                let full = self
                    .hello
                    .as_ref()
                    .is_some_and(|b| b.len() >= MAX_HELLO_BUFFER);
                if full {
                    self.hello_done = true;
                } else if self.hello.is_none() {
                    let want = tls::hello_len(payload)
                        .unwrap_or(4096)
                        .min(MAX_HELLO_BUFFER);
                    let mut buf = Vec::with_capacity(want);
                    buf.extend_from_slice(payload);
                    self.hello = Some(buf);
                }
            }
            Parse::NotThis => self.hello_done = true,
        }
        if self.hello_done {
            self.hello = None;
        }
    }

    /// The client side of a UDP flow: a QUIC Initial.
    fn udp_client(&mut self, payload: &[u8], found: &mut Found) {
        if self.quic.is_none() {
            if quic::is_initial(payload).is_none() {
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
