//! QUIC long headers: which versions qosd reads, and where a packet's
//! fields lie before header protection is removed. No cryptography here.

/// Longest connection ID (RFC 9000 §17.2).
pub(super) const MAX_CID_LEN: usize = 20;
/// The AEAD tag at the end of every protected packet.
pub(super) const AEAD_TAG_LEN: usize = 16;
/// Bytes of ciphertext sampled for header protection (RFC 9001 §5.4.2).
pub(super) const SAMPLE_LEN: usize = 16;
/// Longest packet number encoding; the sample starts this far after the
/// packet number's offset.
pub(super) const MAX_PN_LEN: usize = 4;

/// A QUIC version whose Initial packets can be decrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    /// QUIC version 1, 0x00000001 (RFC 9000, RFC 9001).
    V1,
    /// QUIC version 2, 0x6b3343cf (RFC 9369): own salt, labels and
    /// long-header packet types.
    V2,
    /// IETF drafts 29 to 32 (0xff00001d..=0xff000020): v1 with the
    /// draft-29 salt.
    Draft29,
    /// IETF drafts 23 to 28 (0xff000017..=0xff00001c) and Facebook mvfst
    /// 0xfaceb002 and 0xfaceb00e: v1 with the draft-23 salt.
    Draft23,
    /// Google QUIC T051 (0x54303531): IETF packet format and TLS with its
    /// own salt.
    T051,
}

impl Version {
    /// The version a long header's version field names, if supported.
    pub fn from_wire(version: u32) -> Option<Self> {
        Some(match version {
            0x0000_0001 => Version::V1,
            0x6b33_43cf => Version::V2,
            0xff00_001d..=0xff00_0020 => Version::Draft29,
            0xff00_0017..=0xff00_001c | 0xface_b002 | 0xface_b00e => Version::Draft23,
            0x5430_3531 => Version::T051,
            _ => return None,
        })
    }
    /// The long-header packet type (bits 0x30 of the first byte) of an
    /// Initial packet.
    pub(super) fn initial_type(self) -> u8 {
        match self {
            Version::V2 => 1,
            _ => 0,
        }
    }

    /// The frame type that carries CRYPTO data: Google's T051 uses 0x08
    /// (a STREAM type in IETF QUIC) with the same layout.
    pub(super) fn crypto_frame(self) -> u8 {
        match self {
            Version::T051 => 0x08,
            _ => 0x06,
        }
    }

    /// The long-header packet type of a Retry packet (which has no Length
    /// field).
    fn retry_type(self) -> u8 {
        match self {
            Version::V2 => 0,
            _ => 3,
        }
    }
}

/// The fields of a long header that locate a packet, before header
/// protection is removed.
#[derive(Debug, Clone, Copy)]
pub(super) struct LongHeader<'a> {
    pub(super) version: Version,
    /// Long packet type (0..=3), still valid under header protection.
    pub(super) packet_type: u8,
    /// Destination Connection ID, which the Initial keys derive from.
    pub(super) dcid: &'a [u8],
    /// Offset of the (protected) packet number.
    pub(super) pn_offset: usize,
    /// Offset just past this packet (its Length field's end).
    pub(super) end: usize,
}

impl LongHeader<'_> {
    pub(super) fn initial(&self) -> Option<Version> {
        (self.packet_type == self.version.initial_type()).then_some(self.version)
    }
}

/// Reads a QUIC variable-length integer.
pub(super) fn varint(buf: &[u8]) -> Option<(u64, &[u8])> {
    let (&first, rest) = buf.split_first()?;
    let len = 1usize << (first >> 6);
    let (more, rest) = rest.split_at_checked(len - 1)?;
    let mut v = u64::from(first & 0x3f);
    for &b in more {
        v = v << 8 | u64::from(b);
    }
    Some((v, rest))
}

/// A `u64` length as `usize`, no larger than `max`.
pub(super) fn length(v: u64, max: usize) -> Option<usize> {
    usize::try_from(v).ok().filter(|&n| n <= max)
}

/// Locates the long-header packet at the start of `buf`. `None` for a
/// short header, Version Negotiation, Retry, an unsupported version or
/// inconsistent lengths.
pub(super) fn long_header(buf: &[u8]) -> Option<LongHeader<'_>> {
    let (&first, rest) = buf.split_first()?;
    if first & 0x80 == 0 {
        return None;
    }
    let (version, rest) = rest.split_first_chunk::<4>()?;
    let version = u32::from_be_bytes(*version);
    let (&dcid_len, rest) = rest.split_first()?;
    let (dcid, rest) = rest.split_at_checked(length(dcid_len.into(), MAX_CID_LEN)?)?;
    let (&scid_len, rest) = rest.split_first()?;
    let (_scid, rest) = rest.split_at_checked(length(scid_len.into(), MAX_CID_LEN)?)?;
    let version = Version::from_wire(version)?;
    let packet_type = (first >> 4) & 3;
    let rest = if packet_type == version.initial_type() {
        let (token_len, rest) = varint(rest)?;
        rest.get(length(token_len, rest.len())?..)?
    } else if packet_type == version.retry_type() {
        return None;
    } else {
        rest // 0-RTT or Handshake
    };
    let (len, rest) = varint(rest)?;
    let pn_offset = buf.len() - rest.len();
    let len = length(len, rest.len())?;
    Some(LongHeader {
        version,
        packet_type,
        dcid,
        pn_offset,
        end: pn_offset + len,
    })
}

/// Whether `datagram` starts with a QUIC Initial packet of a supported
/// version whose header is consistent (connection ID lengths, token and
/// Length fields within the datagram, room for a packet number, the
/// header-protection sample and the AEAD tag). Stateless and cheap: no
/// cryptography, no allocation. Server Initials pass too; only decryption
/// ([`InitialReassembler`](super::InitialReassembler)) tells a client's apart.
pub fn is_initial(datagram: &[u8]) -> Option<Version> {
    let h = long_header(datagram)?;
    let v = h.initial()?;
    (h.end - h.pn_offset >= MAX_PN_LEN + SAMPLE_LEN).then_some(v)
}
