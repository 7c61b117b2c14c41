//! QUIC client Initial packets: recognise them, decrypt them with the
//! Initial keys every observer can derive from the Destination Connection ID
//! (RFC 9001 §5.2, RFC 9369 §3.3), reassemble the CRYPTO stream and read the
//! TLS ClientHello's server name and ALPN with [`super::tls`].
//!
//! [`is_initial`] is a cheap, stateless header check for the first datagram
//! of a UDP flow. [`InitialReassembler`] does the work: it decrypts on the
//! stack and keeps only the CRYPTO stream, grown as data arrives (at most
//! [`CRYPTO_CAP`] bytes, each growth first allowed by the caller, who
//! accounts it in the DPI memory budget). Chrome's post-quantum ClientHellos
//! (and any over ~1.1 KB) span two Initial packets, coalesced in one datagram
//! or in two; CRYPTO frames may come out of order (Chrome shuffles them);
//! all of that is reassembled by offset.
//!
//! Supported: QUIC v1 (RFC 9000), v2 (RFC 9369), and three pre-RFC variants
//! seen in captures that differ only by salt: IETF drafts 29–32, drafts
//! 23–28 with Facebook's mvfst 0xfaceb002/0xfaceb00e, and Google's T051.
//! Google QUIC (Q0xx) has no TLS and is not recognised ([`gquic_chlo_sni`]
//! reads the name its older versions send in clear).
//!
//! `header` locates packets in a datagram (no cryptography), `keys` derives
//! the Initial keys and decrypts a packet, `crypto_stream` reassembles the
//! CRYPTO frames; [`InitialReassembler`] drives them for one flow.

mod crypto_stream;
mod header;
mod keys;

use super::Parse;
use super::tls::{self, ClientHello};
use crypto_stream::{CryptoStream, walk_frames};
use header::{AEAD_TAG_LEN, LongHeader, long_header};
pub use header::{Version, is_initial};
use keys::{Keys, open_len};

/// Bytes of CRYPTO stream an [`InitialReassembler`] keeps: ClientHellos
/// longer than this are given up on. Real ones are 300 bytes to ~2 KiB
/// (Chrome's with a post-quantum key share and ECH GREASE: ~1.9 KiB); a
/// flow claiming more is far more likely a flood than a browser.
pub const CRYPTO_CAP: usize = 8 * 1024;
/// Largest QUIC packet an [`InitialReassembler`] decrypts (the stack
/// buffer it decrypts into). Client Initials are 1200 to ~1500 bytes.
pub const MAX_PACKET: usize = 4096;
/// Packets looked at in one datagram (coalesced packets).
pub const MAX_PACKETS_PER_DATAGRAM: usize = 8;
/// Datagrams an [`InitialReassembler`] accepts before giving up.
pub const MAX_DATAGRAMS: u32 = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Collecting,
    Done,
    Failed,
}

/// Per-flow reassembly of a QUIC client's Initial packets into its
/// ClientHello.
///
/// Created once per UDP flow that [`is_initial`] accepted, with nothing
/// allocated; the CRYPTO stream grows to the highest offset received (at
/// most [`CRYPTO_CAP`]), each growth first granted by the caller's
/// `allow` in [`push_datagram_with`](Self::push_datagram_with), and
/// packets are decrypted into a buffer on the stack. Work per datagram is
/// bounded: at most
/// [`MAX_PACKETS_PER_DATAGRAM`] packets, each decrypted at most twice
/// (with the keys of its DCID and with those remembered from the first
/// decrypted packet, which a client keeps using after it switches to the
/// server's connection ID), and the reassembler gives up after
/// [`MAX_DATAGRAMS`] datagrams.
pub struct InitialReassembler {
    keys: Option<Keys>,
    crypto: CryptoStream,
    largest_pn: Option<u64>,
    datagrams: u32,
    decrypted: bool,
    state: State,
}

impl core::fmt::Debug for InitialReassembler {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("InitialReassembler")
            .field("version", &self.version())
            .field("crypto_prefix", &self.crypto.prefix())
            .field("largest_pn", &self.largest_pn)
            .field("datagrams", &self.datagrams)
            .field("state", &self.state)
            .finish()
    }
}

impl Default for InitialReassembler {
    fn default() -> Self {
        Self::new()
    }
}

impl InitialReassembler {
    /// A reassembler with nothing received (and nothing allocated).
    pub fn new() -> Self {
        InitialReassembler {
            keys: None,
            crypto: CryptoStream::new(),
            largest_pn: None,
            datagrams: 0,
            decrypted: false,
            state: State::Collecting,
        }
    }

    /// The version of the Initial packets decrypted so far, if any.
    pub fn version(&self) -> Option<Version> {
        self.keys.as_ref().map(|k| k.version)
    }

    /// Bytes allocated outside the struct (the CRYPTO stream).
    pub fn heap_bytes(&self) -> usize {
        self.crypto.heap_bytes()
    }

    /// True when `allow` refused memory the CRYPTO stream needed: the
    /// reassembler gave up (it answers [`Parse::NotThis`] from then on).
    pub fn refused(&self) -> bool {
        self.crypto.refused
    }

    /// [`push_datagram_with`](Self::push_datagram_with) with no limit but
    /// [`CRYPTO_CAP`].
    pub fn push_datagram(&mut self, datagram: &[u8]) -> Parse<ClientHello<'_>> {
        self.push_datagram_with(datagram, &mut |_| true)
    }

    /// Feeds one client-to-server UDP payload (the server's packets use
    /// other keys and are simply not decryptable here). `allow(n)` is
    /// asked before the CRYPTO stream allocates `n` more bytes; a refusal
    /// makes the reassembler give up for good (see [`Self::refused`]).
    ///
    /// - [`Parse::Found`]: the ClientHello is complete (in this or earlier
    ///   datagrams); repeated on later calls.
    /// - [`Parse::NeedMore`]: client Initial packets were decrypted (now or
    ///   before) but the ClientHello is not complete yet.
    /// - [`Parse::NotThis`]: nothing decryptable as a client Initial has been
    ///   seen (this datagram included), or the CRYPTO stream turned out not
    ///   to be a ClientHello, to exceed [`CRYPTO_CAP`], or
    ///   [`MAX_DATAGRAMS`] passed without completing it, or `allow`
    ///   refused memory (the last four are final).
    pub fn push_datagram_with(
        &mut self,
        datagram: &[u8],
        allow: &mut dyn FnMut(usize) -> bool,
    ) -> Parse<ClientHello<'_>> {
        match self.state {
            State::Failed => return Parse::NotThis,
            State::Done => return self.verdict(),
            State::Collecting => {}
        }
        self.datagrams += 1;
        if self.datagrams > MAX_DATAGRAMS {
            self.state = State::Failed;
            return Parse::NotThis;
        }
        let mut rest = datagram;
        for _ in 0..MAX_PACKETS_PER_DATAGRAM {
            let Some(h) = long_header(rest) else {
                break;
            };
            let (packet, next) = match rest.split_at_checked(h.end) {
                Some(split) => split,
                None => break,
            };
            if let Some(version) = h.initial() {
                self.packet(version, &h, packet, allow);
            }
            rest = next;
        }
        if self.crypto.refused {
            self.state = State::Failed;
            return Parse::NotThis;
        }
        self.verdict()
    }

    /// Decrypts one Initial packet and takes in its frames.
    fn packet(
        &mut self,
        version: Version,
        h: &LongHeader<'_>,
        packet: &[u8],
        allow: &mut dyn FnMut(usize) -> bool,
    ) {
        // Decrypted here rather than in a buffer of the reassembler's: a
        // pending QUIC flow then holds only what it must keep.
        let mut scratch = [0u8; MAX_PACKET];
        let remembered = self
            .keys
            .as_ref()
            .is_some_and(|k| k.matches(version, h.dcid));
        let mut opened = None;
        if !remembered && let Some(fresh) = Keys::derive(version, h.dcid) {
            opened = open_len(&fresh, h, packet, self.largest_pn, &mut scratch);
            if opened.is_some() && self.keys.is_none() {
                self.keys = Some(fresh);
            }
        }
        if opened.is_none()
            && let Some(keys) = self.keys.as_ref()
            && keys.version == version
        {
            opened = open_len(keys, h, packet, self.largest_pn, &mut scratch);
        }
        let Some((pn, len)) = opened else {
            return;
        };
        self.decrypted = true;
        self.largest_pn = Some(self.largest_pn.map_or(pn, |l| l.max(pn)));
        // The plaintext sits right after the header in the scratch buffer.
        let start = packet.len() - len - AEAD_TAG_LEN;
        if let Some(payload) = scratch.get(start..start + len) {
            // A malformed tail loses only the frames after it.
            let _ = walk_frames(payload, version.crypto_frame(), &mut self.crypto, allow);
        }
    }

    fn verdict(&mut self) -> Parse<ClientHello<'_>> {
        if !self.decrypted {
            return Parse::NotThis;
        }
        let prefix = self.crypto.prefix();
        let data = self.crypto.data.get(..prefix).unwrap_or_default();
        if let Some(&[_, a, b, c]) = data.get(..4) {
            let total = 4 + (usize::from(a) << 16 | usize::from(b) << 8 | usize::from(c));
            if total > CRYPTO_CAP {
                self.state = State::Failed;
                return Parse::NotThis;
            }
        }
        match tls::client_hello_message(data) {
            Parse::Found(hello) => {
                self.state = State::Done;
                Parse::Found(hello)
            }
            Parse::NeedMore => Parse::NeedMore,
            Parse::NotThis => {
                self.state = State::Failed;
                Parse::NotThis
            }
        }
    }
}

/// The SNI of a Google QUIC (Q039-Q046) client hello, which those versions
/// send in clear: a `CHLO` message whose tag table holds an `SNI` tag.
/// gQUIC is legacy but still seen from older clients and devices.
pub fn gquic_chlo_sni(datagram: &[u8]) -> Option<&str> {
    // The version ("Q0xx") sits after the flags and 8-byte connection id
    // (Q039-Q043) or right after the first byte (Q046's long header).
    let head = datagram.get(..16)?;
    let versioned = head.windows(3).any(|w| {
        w.first() == Some(&b'Q')
            && w.get(1) == Some(&b'0')
            && w.get(2).is_some_and(u8::is_ascii_digit)
    });
    if !versioned {
        return None;
    }
    let window = datagram.get(..datagram.len().min(96))?;
    let at = window.windows(4).position(|w| w == b"CHLO")?;
    let msg = datagram.get(at..)?;
    let num_tags = usize::from(u16::from_le_bytes([*msg.get(4)?, *msg.get(5)?]));
    if num_tags == 0 || num_tags > 64 {
        return None;
    }
    let table = msg.get(8..8 + num_tags * 8)?;
    let values = msg.get(8 + num_tags * 8..)?;
    let mut start = 0usize;
    for entry in table.chunks_exact(8) {
        let end = u32::from_le_bytes(<[u8; 4]>::try_from(entry.get(4..8)?).ok()?) as usize;
        if end < start || end > values.len() {
            return None;
        }
        if entry.get(..4) == Some(b"SNI\0") {
            return tls::plausible_host(values.get(start..end)?);
        }
        start = end;
    }
    None
}

#[cfg(test)]
pub(crate) mod tests;
