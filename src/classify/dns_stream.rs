//! DNS answers carried over TCP (truncated UDP answers are retried there,
//! RFC 7766): follows a resolver's stream across segments and learns the
//! names in each message, keeping between segments only the start of a
//! message that is incomplete.

use std::sync::Arc;

use super::NameLookup;
use super::budget::{self, DpiBudget, Holder, Refusals, Reservation};
use crate::time::Instant;

/// Most bytes of one DNS message over TCP that are kept to learn from:
/// the header, the question and the answers come first, and at most
/// [`super::dpi::dns::MAX_ANSWERS`] answers are read anyway (a 4 KiB start holds
/// them in practice; DNSSEC signatures and additional records, which can
/// make a message 64 KiB, are skipped).
pub const DNS_TCP_KEEP: usize = 4096;

/// A DNS server's TCP stream between segments: where it stands in the
/// message that a segment left incomplete. Exists (boxed, reserved from
/// the budget) only while a message is incomplete.
#[derive(Debug)]
pub(super) struct DnsTcp {
    pub(super) res: Reservation,
    /// The first byte of the length prefix, when a segment ended after it.
    high: Option<u8>,
    /// The message's length (from its prefix), once known.
    len: usize,
    /// Bytes of the message seen so far.
    seen: usize,
    /// Its first bytes (up to `min(len, DNS_TCP_KEEP)`), while they are
    /// incomplete (`None` once learned from, or when the budget refused
    /// them).
    start: Option<Vec<u8>>,
}

/// Follows DNS messages in a server's TCP segments (each message prefixed
/// by its 16-bit length) and learns from each, keeping between segments
/// only the start of a message that is incomplete: at most
/// [`DNS_TCP_KEEP`] bytes, and no more than its length says is coming.
/// Returns what the budget refused (the stream is then
/// followed without that state: a message's names are lost, or, when even
/// the small position record is refused, the next segment is read as if
/// a message started there).
pub(super) fn learn_dns_stream(
    stream: &mut Option<Box<DnsTcp>>,
    mut segment: &[u8],
    names: &dyn NameLookup,
    now: Instant,
    budget: &Arc<DpiBudget>,
) -> Refusals {
    let mut refused = Refusals::default();
    // A message begun in an earlier segment.
    if let Some(mut st) = stream.take() {
        if let Some(high) = st.high {
            let Some((&low, rest)) = segment.split_first() else {
                *stream = Some(st);
                return refused;
            };
            drop(st); // only the length's first byte: it starts afresh
            let len = usize::from(u16::from_be_bytes([high, low]));
            match dns_message(len, rest, names, now, budget, &mut refused) {
                Ok(used) => segment = rest.get(used..).unwrap_or_default(),
                Err(state) => {
                    *stream = state;
                    return refused;
                }
            }
        } else {
            let keep = st.len.min(DNS_TCP_KEEP);
            if let Some(buf) = st.start.as_mut() {
                // Grown by what arrived, not to what the length promises:
                // a message that never completes holds only what was sent.
                let take = keep.saturating_sub(st.seen).min(segment.len());
                let part = segment.get(..take).unwrap_or_default();
                if !budget::extend_reserved(buf, part, &mut st.res) {
                    refused.add(Holder::Dns);
                    if let Some(buf) = st.start.take() {
                        st.res.shrink(buf.capacity());
                    }
                }
            }
            let take = st.len.saturating_sub(st.seen).min(segment.len());
            st.seen += take;
            segment = segment.get(take..).unwrap_or_default();
            if st.seen >= keep
                && let Some(buf) = st.start.take()
            {
                names.learn(&buf, now);
                st.res.shrink(buf.capacity());
            }
            if st.seen < st.len {
                *stream = Some(st);
                return refused; // the segment ended inside the message
            }
            // Done with it: `st` and its reservation go.
        }
    }
    // Messages that start in this segment: learned from the segment itself.
    while let Some(len) = segment
        .get(..2)
        .and_then(|b| <[u8; 2]>::try_from(b).ok())
        .map(|b| usize::from(u16::from_be_bytes(b)))
    {
        let body = segment.get(2..).unwrap_or_default();
        match dns_message(len, body, names, now, budget, &mut refused) {
            Ok(used) => segment = body.get(used..).unwrap_or_default(),
            Err(state) => {
                *stream = state;
                return refused;
            }
        }
    }
    if let [high] = segment
        && let Some(mut st) = dns_state(budget, &mut refused)
    {
        // The segment ended between the two bytes of a length.
        st.high = Some(*high);
        *stream = Some(st);
    }
    refused
}

/// A message of `len` bytes that starts with `body`: `Ok(len)` when it is
/// all there (and learned from), else the state to follow the rest with
/// (learned from already when its kept start is all there).
fn dns_message(
    len: usize,
    body: &[u8],
    names: &dyn NameLookup,
    now: Instant,
    budget: &Arc<DpiBudget>,
    refused: &mut Refusals,
) -> Result<usize, Option<Box<DnsTcp>>> {
    if let Some(msg) = body.get(..len) {
        names.learn(msg, now);
        return Ok(len);
    }
    let keep = len.min(DNS_TCP_KEEP);
    if let Some(start) = body.get(..keep) {
        // The answers are here; the rest (signatures, extra records) is
        // only skipped.
        names.learn(start, now);
    }
    let Some(mut st) = dns_state(budget, refused) else {
        return Err(None);
    };
    st.len = len;
    st.seen = body.len();
    if body.len() < keep {
        let mut buf = Vec::new();
        if budget::extend_reserved(&mut buf, body, &mut st.res) {
            st.start = Some(buf);
        } else {
            refused.add(Holder::Dns);
        }
    }
    Err(Some(st))
}

/// New DNS-over-TCP state, reserved from `budget` (`None`, and a refusal
/// noted, when it has no room).
fn dns_state(budget: &Arc<DpiBudget>, refused: &mut Refusals) -> Option<Box<DnsTcp>> {
    match Reservation::new(budget, size_of::<DnsTcp>()) {
        Some(res) => Some(Box::new(DnsTcp {
            res,
            high: None,
            len: 0,
            seen: 0,
            start: None,
        })),
        None => {
            refused.add(Holder::Dns);
            None
        }
    }
}
