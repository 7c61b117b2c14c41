//! What the classifier reads from a pending flow's packets: host names
//! (TLS ClientHello, QUIC Initial, HTTP Host), payload prefixes, and
//! real-time media behaviour. The state lives in a box that exists only
//! while the flow is pending.

use super::DecidedBy;
use super::catalog::CompiledCatalog;
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

/// Per-flow inspection state while the flow is pending.
#[derive(Debug, Default)]
pub struct DpiState {
    /// A payload was seen from the initiator / from the responder.
    seen_payload: [bool; 2],
}

impl DpiState {
    /// Inspects one packet of the flow.
    pub fn inspect(
        &mut self,
        _protocol: u8,
        pkt: &PacketMeta<'_>,
        from_initiator: bool,
        _now: Instant,
        catalog: &CompiledCatalog,
        facts: &FlowFacts<'_>,
    ) -> Found {
        let mut found = Found::default();
        let who = usize::from(!from_initiator);
        if !pkt.payload.is_empty() && !self.seen_payload.get(who).copied().unwrap_or(true) {
            if let Some(seen) = self.seen_payload.get_mut(who) {
                *seen = true;
            }
            found.payload_app = catalog.app_for_payload(facts, pkt.payload);
        }
        found.done = self.seen_payload == [true, true];
        found
    }
}
