//! STUN (RFC 8489, and the classic RFC 3489 form), TURN ChannelData
//! (RFC 8656) and their TCP framings. ICE connectivity checks and TURN
//! relaying are how Teams, Zoom, WebRTC, WhatsApp and most other calling
//! apps set up media, so a STUN exchange marks a flow as real-time.
//!
//! Zero-copy, allocation-free, bounds-checked; attribute walks are bounded
//! by the message length.

use super::Parse;

/// The RFC 5389 magic cookie at offset 4.
pub const MAGIC_COOKIE: u32 = 0x2112_a442;
/// Size of the STUN header.
pub const HEADER_LEN: usize = 20;

/// Attribute MAPPED-ADDRESS.
pub const ATTR_MAPPED_ADDRESS: u16 = 0x0001;
/// Attribute USERNAME.
pub const ATTR_USERNAME: u16 = 0x0006;
/// Attribute MESSAGE-INTEGRITY (HMAC-SHA1).
pub const ATTR_MESSAGE_INTEGRITY: u16 = 0x0008;
/// Attribute ERROR-CODE.
pub const ATTR_ERROR_CODE: u16 = 0x0009;
/// Attribute REALM.
pub const ATTR_REALM: u16 = 0x0014;
/// Attribute NONCE.
pub const ATTR_NONCE: u16 = 0x0015;
/// Attribute XOR-RELAYED-ADDRESS (TURN).
pub const ATTR_XOR_RELAYED_ADDRESS: u16 = 0x0016;
/// Attribute XOR-MAPPED-ADDRESS.
pub const ATTR_XOR_MAPPED_ADDRESS: u16 = 0x0020;
/// Attribute PRIORITY (ICE).
pub const ATTR_PRIORITY: u16 = 0x0024;
/// Attribute USE-CANDIDATE (ICE).
pub const ATTR_USE_CANDIDATE: u16 = 0x0025;
/// Attribute SOFTWARE.
pub const ATTR_SOFTWARE: u16 = 0x8022;
/// Attribute FINGERPRINT (CRC-32).
pub const ATTR_FINGERPRINT: u16 = 0x8028;
/// Attribute ICE-CONTROLLED.
pub const ATTR_ICE_CONTROLLED: u16 = 0x8029;
/// Attribute ICE-CONTROLLING.
pub const ATTR_ICE_CONTROLLING: u16 = 0x802a;
/// Attribute GOOG-NETWORK-INFO (Chrome / WebRTC).
pub const ATTR_GOOG_NETWORK_INFO: u16 = 0xc057;
/// Microsoft attributes (MS-TURN, MS-ICE2), sent by Teams / Skype for
/// Business clients and relays: MS-VERSION, MS-SEQUENCE-NUMBER,
/// CANDIDATE-IDENTIFIER, MS-SERVICE-QUALITY, MS-IMPLEMENTATION-VERSION.
pub const MICROSOFT_ATTRS: [u16; 5] = [0x8008, 0x8050, 0x8054, 0x8055, 0x8070];

#[inline]
fn be16(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(off)?, *b.get(off + 1)?]))
}

#[inline]
fn be32(b: &[u8], off: usize) -> Option<u32> {
    let s = b.get(off..off + 4)?;
    Some(u32::from_be_bytes(s.try_into().ok()?))
}

/// The class of a STUN message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StunClass {
    /// A request.
    Request,
    /// An indication (no response expected).
    Indication,
    /// A success response.
    SuccessResponse,
    /// An error response.
    ErrorResponse,
}

/// Method Binding.
pub const METHOD_BINDING: u16 = 0x001;
/// Method Allocate (TURN).
pub const METHOD_ALLOCATE: u16 = 0x003;
/// Method Refresh (TURN).
pub const METHOD_REFRESH: u16 = 0x004;
/// Method Send (TURN indication).
pub const METHOD_SEND: u16 = 0x006;
/// Method Data (TURN indication).
pub const METHOD_DATA: u16 = 0x007;
/// Method CreatePermission (TURN).
pub const METHOD_CREATE_PERMISSION: u16 = 0x008;
/// Method ChannelBind (TURN).
pub const METHOD_CHANNEL_BIND: u16 = 0x009;

/// Splits a message type into class and method.
fn split_type(t: u16) -> (StunClass, u16) {
    let class = match ((t >> 7) & 2) | ((t >> 4) & 1) {
        0 => StunClass::Request,
        1 => StunClass::Indication,
        2 => StunClass::SuccessResponse,
        _ => StunClass::ErrorResponse,
    };
    let method = (t & 0x000f) | ((t >> 1) & 0x0070) | ((t >> 2) & 0x0f80);
    (class, method)
}

/// One attribute: its type and value (padding excluded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StunAttribute<'a> {
    /// Attribute type.
    pub typ: u16,
    /// Attribute value, without padding.
    pub value: &'a [u8],
}

/// Iterator over the attributes of a message (already validated).
#[derive(Debug, Clone)]
pub struct StunAttributes<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for StunAttributes<'a> {
    type Item = StunAttribute<'a>;

    fn next(&mut self) -> Option<StunAttribute<'a>> {
        let typ = be16(self.rest, 0)?;
        let len = usize::from(be16(self.rest, 2)?);
        let value = self.rest.get(4..4 + len)?;
        let padded = 4 + len.next_multiple_of(4);
        self.rest = self.rest.get(padded..).unwrap_or(&[]);
        Some(StunAttribute { typ, value })
    }
}

/// A STUN message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StunMessage<'a> {
    /// The class.
    pub class: StunClass,
    /// The method (12 bits; see the `METHOD_*` constants).
    pub method: u16,
    /// Transaction id: 12 bytes (RFC 5389 and later) or 16 (classic).
    pub transaction_id: &'a [u8],
    /// True for a classic RFC 3489 message (no magic cookie).
    pub classic: bool,
    /// Length of the whole message, header included.
    pub len: usize,
    attrs: &'a [u8],
    /// Number of attributes.
    pub attribute_count: u16,
    /// The SOFTWARE attribute's value (a client or server name and version,
    /// e.g. "Coturn-4.5.0.3"), not checked for UTF-8.
    pub software: Option<&'a [u8]>,
    /// A USERNAME attribute is present (ICE checks carry ufrag pairs).
    pub has_username: bool,
    /// A MESSAGE-INTEGRITY attribute is present.
    pub has_message_integrity: bool,
    /// `Some(valid)` if a FINGERPRINT attribute is present: whether its
    /// CRC-32 matches. A valid fingerprint all but rules out a false
    /// positive.
    pub fingerprint: Option<bool>,
    /// At least one Microsoft (MS-TURN / MS-ICE2) attribute is present.
    pub microsoft: bool,
    /// A GOOG-NETWORK-INFO attribute is present (Chrome/WebRTC stacks).
    pub google: bool,
}

impl<'a> StunMessage<'a> {
    /// The attributes, in order.
    pub fn attributes(&self) -> StunAttributes<'a> {
        StunAttributes { rest: self.attrs }
    }

    /// The first attribute of type `typ`.
    pub fn attribute(&self, typ: u16) -> Option<&'a [u8]> {
        self.attributes().find(|a| a.typ == typ).map(|a| a.value)
    }
}

/// Parses a STUN message that fills `payload` exactly (one UDP datagram).
///
/// RFC 5389+: first two bits zero, magic cookie at offset 4, length field =
/// payload length - 20 and a multiple of 4, attributes that tile the body
/// exactly. Classic RFC 3489 messages (no cookie) are accepted only in a
/// strict form that random bytes practically never take: one of the six
/// classic Binding / Shared Secret types, and only classic attributes with
/// their fixed lengths (see [`classic_ok`]).
pub fn stun(payload: &[u8]) -> Option<StunMessage<'_>> {
    let msg = stun_prefix(payload)?;
    (msg.len == payload.len()).then_some(msg)
}

/// Parses the STUN message at the start of `buf` (which may hold more
/// after it, as a TCP stream does).
fn stun_prefix(buf: &[u8]) -> Option<StunMessage<'_>> {
    let t = be16(buf, 0)?;
    if t & 0xc000 != 0 {
        return None;
    }
    let body_len = usize::from(be16(buf, 2)?);
    if body_len % 4 != 0 {
        return None;
    }
    let len = HEADER_LEN + body_len;
    let msg = buf.get(..len)?;
    let attrs = msg.get(HEADER_LEN..)?;
    let classic = be32(msg, 4)? != MAGIC_COOKIE;
    if classic && !classic_ok(t) {
        return None;
    }
    let (class, method) = split_type(t);
    let mut m = StunMessage {
        class,
        method,
        transaction_id: msg.get(if classic { 4 } else { 8 }..HEADER_LEN)?,
        classic,
        len,
        attrs,
        attribute_count: 0,
        software: None,
        has_username: false,
        has_message_integrity: false,
        fingerprint: None,
        microsoft: false,
        google: false,
    };
    // Walk the attributes: they must tile the body exactly.
    let mut off = 0;
    while off < attrs.len() {
        let typ = be16(attrs, off)?;
        let alen = usize::from(be16(attrs, off + 2)?);
        let value = attrs.get(off + 4..off + 4 + alen)?;
        let next = off + 4 + alen.next_multiple_of(4);
        if next > attrs.len() {
            return None;
        }
        if classic && !classic_attr_ok(typ, value) {
            return None;
        }
        m.attribute_count = m.attribute_count.saturating_add(1);
        match typ {
            ATTR_SOFTWARE => m.software = m.software.or(Some(value)),
            ATTR_USERNAME => m.has_username = true,
            ATTR_MESSAGE_INTEGRITY => m.has_message_integrity = true,
            ATTR_FINGERPRINT if !classic => {
                let crc = crc32(msg.get(..HEADER_LEN + off)?) ^ 0x5354_554e;
                m.fingerprint = Some(alen == 4 && be32(value, 0) == Some(crc));
            }
            ATTR_GOOG_NETWORK_INFO => m.google = true,
            t if MICROSOFT_ATTRS.contains(&t) => m.microsoft = true,
            _ => {}
        }
        off = next;
    }
    Some(m)
}

/// The message types RFC 3489 defines: Binding and Shared Secret request,
/// response and error response.
pub fn classic_ok(t: u16) -> bool {
    matches!(t, 0x0001 | 0x0101 | 0x0111 | 0x0002 | 0x0102 | 0x0112)
}

/// A classic attribute with a plausible value: RFC 3489 types (addresses
/// are 8 bytes of IPv4 with family 1; CHANGE-REQUEST 4 bytes with only the
/// two flags; MESSAGE-INTEGRITY 20 bytes), plus the XOR-MAPPED-ADDRESS
/// (0x8020) and SERVER (0x8022) that pre-RFC 5389 servers sent.
fn classic_attr_ok(typ: u16, v: &[u8]) -> bool {
    let address = |v: &[u8]| v.len() == 8 && v.first() == Some(&0) && v.get(1) == Some(&1);
    match typ {
        0x0001 | 0x0002 | 0x0004 | 0x0005 | 0x000b | 0x8020 => address(v),
        0x0003 => v.len() == 4 && be32(v, 0).is_some_and(|x| x & !0x6 == 0),
        // USERNAME, PASSWORD: opaque, a multiple of 4 bytes.
        0x0006 | 0x0007 => !v.is_empty() && v.len().is_multiple_of(4),
        // UNKNOWN-ATTRIBUTES: a list of 16-bit types.
        0x000a => !v.is_empty() && v.len().is_multiple_of(2),
        0x8022 => true,
        0x0008 => v.len() == 20,
        0x0009 => v.len() >= 4 && v.len().is_multiple_of(4),
        _ => false,
    }
}

/// CRC-32 (IEEE 802.3, reflected, as FINGERPRINT uses), bit by bit: only
/// STUN messages (a few hundred bytes, on a flow's first packets) go
/// through it, so a table is not worth its cache footprint.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xedb8_8320 & mask);
        }
    }
    !crc
}

/// A TURN ChannelData message (RFC 8656 section 12).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelData<'a> {
    /// The channel number (0x4000-0x4FFF).
    pub channel: u16,
    /// The application data (often RTP/RTCP, DTLS or STUN of the peer).
    pub data: &'a [u8],
}

/// Parses a ChannelData message filling a UDP datagram: channel number in
/// 0x4000-0x4FFF, length field not beyond the datagram, and at most 3
/// bytes of padding after the data.
///
/// Four header bytes are weak evidence (QUIC short headers also start
/// with 0x40-0x4F, about 1 in 16000 random datagrams of such a start pass):
/// use it on flows already known to talk to a TURN server.
pub fn channel_data(payload: &[u8]) -> Option<ChannelData<'_>> {
    let channel = be16(payload, 0)?;
    if !(0x4000..=0x4fff).contains(&channel) {
        return None;
    }
    let len = usize::from(be16(payload, 2)?);
    let data = payload.get(4..4 + len)?;
    if payload.len() - 4 - len > 3 {
        return None;
    }
    Some(ChannelData { channel, data })
}

/// A STUN message read from a TCP stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamFrame<'a> {
    /// The message.
    pub message: StunMessage<'a>,
    /// True if it came inside an RFC 4571 2-byte length prefix (ICE-TCP,
    /// RFC 6544); false if bare (STUN/TURN over TCP, RFC 8489 / 8656).
    pub framed: bool,
    /// Bytes of the stream this frame takes (prefix included): the next
    /// message starts there.
    pub consumed: usize,
}

/// Reads the STUN message (with magic cookie) at the start of a TCP
/// stream, bare or RFC 4571-framed. `NeedMore` if the header is plausible
/// but the message is not complete yet, `NotThis` otherwise.
///
/// ChannelData is not looked for here: over TCP its 0x40-0x4F first byte
/// is also every upper-case ASCII letter from `@` to `O` (HTTP's GET, HEAD,
/// OPTIONS...), and it can only follow a STUN ChannelBind anyway; use
/// [`channel_data_stream`] on streams known to be TURN.
pub fn stream_message(stream: &[u8]) -> Parse<StreamFrame<'_>> {
    match bare(stream) {
        Parse::NotThis => {}
        other => return other,
    }
    // RFC 4571: length, then a STUN message of exactly that length.
    let Some(frame_len) = be16(stream, 0) else {
        return Parse::NeedMore;
    };
    let frame_len = usize::from(frame_len);
    if frame_len < HEADER_LEN || frame_len % 4 != 0 {
        return Parse::NotThis;
    }
    let Some(inner) = stream.get(2..) else {
        return Parse::NeedMore;
    };
    // The inner header must already look like STUN with a matching length.
    match (be16(inner, 0), be16(inner, 2), be32(inner, 4)) {
        (Some(t), Some(l), Some(cookie)) => {
            if t & 0xc000 != 0 || cookie != MAGIC_COOKIE || HEADER_LEN + usize::from(l) != frame_len
            {
                return Parse::NotThis;
            }
        }
        _ => {
            // Too short to tell; plausible only if what we have fits.
            let t_ok = inner.first().is_none_or(|&b| b & 0xc0 == 0);
            let len_ok = be16(inner, 2).is_none_or(|l| HEADER_LEN + usize::from(l) == frame_len);
            let cookie = MAGIC_COOKIE.to_be_bytes();
            let seen = inner.get(4..).unwrap_or(&[]);
            let cookie_ok = seen.get(..seen.len().min(4)) == cookie.get(..seen.len().min(4));
            return if t_ok && len_ok && cookie_ok {
                Parse::NeedMore
            } else {
                Parse::NotThis
            };
        }
    }
    let Some(msg_bytes) = inner.get(..frame_len) else {
        return Parse::NeedMore;
    };
    match stun(msg_bytes) {
        Some(m) => Parse::Found(StreamFrame {
            message: m,
            framed: true,
            consumed: 2 + frame_len,
        }),
        None => Parse::NotThis,
    }
}

/// Reads a ChannelData message at the start of a TURN-over-TCP stream,
/// where it is padded to a multiple of 4 bytes. Returns it and the bytes it
/// takes.
pub fn channel_data_stream(stream: &[u8]) -> Parse<(ChannelData<'_>, usize)> {
    let Some(&b0) = stream.first() else {
        return Parse::NeedMore;
    };
    if !(0x40..=0x4f).contains(&b0) {
        return Parse::NotThis;
    }
    let (Some(channel), Some(len)) = (be16(stream, 0), be16(stream, 2)) else {
        return Parse::NeedMore;
    };
    let len = usize::from(len);
    let padded = 4 + len.next_multiple_of(4);
    match (stream.get(4..4 + len), stream.len() >= padded) {
        (Some(data), true) => Parse::Found((ChannelData { channel, data }, padded)),
        _ => Parse::NeedMore,
    }
}

/// A bare STUN message (with cookie) at the stream start.
fn bare(stream: &[u8]) -> Parse<StreamFrame<'_>> {
    let Some(&b0) = stream.first() else {
        return Parse::NeedMore;
    };
    if b0 & 0xc0 != 0 {
        return Parse::NotThis;
    }
    match (be16(stream, 2), be32(stream, 4)) {
        (Some(l), Some(MAGIC_COOKIE)) => {
            if l % 4 != 0 {
                return Parse::NotThis;
            }
            if stream.len() < HEADER_LEN + usize::from(l) {
                return Parse::NeedMore;
            }
            match stun_prefix(stream) {
                Some(m) if !m.classic => Parse::Found(StreamFrame {
                    message: m,
                    framed: false,
                    consumed: m.len,
                }),
                _ => Parse::NotThis,
            }
        }
        (_, Some(_)) => Parse::NotThis,
        _ => {
            // Fewer than 8 bytes: could be a bare STUN header if the cookie
            // bytes seen so far match.
            let cookie = MAGIC_COOKIE.to_be_bytes();
            let seen = stream.get(4..).unwrap_or(&[]);
            let n = seen.len().min(4);
            if seen.get(..n) == cookie.get(..n) {
                Parse::NeedMore
            } else {
                Parse::NotThis
            }
        }
    }
}

/// What a UDP datagram's first byte says under the RFC 7983 / RFC 5764
/// demultiplexing rule used when STUN, DTLS, TURN channels and SRTP share
/// a port (WebRTC, Teams).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstByte {
    /// 0-3: STUN.
    Stun,
    /// 16-19: ZRTP.
    Zrtp,
    /// 20-63: DTLS.
    Dtls,
    /// 64-79: TURN ChannelData.
    TurnChannel,
    /// 128-191: RTP or RTCP.
    RtpRtcp,
    /// Anything else.
    Other,
}

/// Classifies a datagram's first byte per RFC 7983 section 7.
pub fn demux_first_byte(b: u8) -> FirstByte {
    match b {
        0..=3 => FirstByte::Stun,
        16..=19 => FirstByte::Zrtp,
        20..=63 => FirstByte::Dtls,
        64..=79 => FirstByte::TurnChannel,
        128..=191 => FirstByte::RtpRtcp,
        _ => FirstByte::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    use crate::classify::dpi::test_util::hex;

    // lru_ipv6_caches.pcapng #8 (WhatsApp call): Binding success response
    // with GOOG-NETWORK-INFO, XOR-MAPPED-ADDRESS, MESSAGE-INTEGRITY and
    // FINGERPRINT.
    const WA_RESPONSE: &str = "010100302112a442447671485446587878483277c05700040003000a00240004027f8bff000800141d9f579a75e612f5\
     bed367c841267ece615c252f80280004a8cc6ae6";
    // lru_ipv6_caches.pcapng #9: ICE Binding request (USERNAME, private
    // attribute 0xdaba, ICE-CONTROLLED, PRIORITY, MESSAGE-INTEGRITY,
    // FINGERPRINT).
    const WA_REQUEST: &str = "0001007c2112a44251342f57744654696477666100060031454447455241595f44454641554c545f555345524e414d45\
     3a454447455241595f44454641554c545f555345524e414d45000000daba000400000a14c05700040003000a80290008\
     845152a3f1a3764c002400046e7f28ff00080014fa46765e517a2feca9ed2e25f8aa6f6be7fa88aa802800046681a9b6";
    // lru_ipv6_caches.pcapng #55: WhatsApp's private method 0x0801, no attributes.
    const WA_0801: &str = "080100002112a4424343464a65574e5473575073";
    // stun_dtls_rtp_unidir.pcapng #1: TURN Allocate request.
    const ALLOCATE: &str =
        "000300102112a442c40ac48eb05c7122ba8820cc001900041100000080280004c6ac1844";
    // stun_dtls_rtp_unidir.pcapng #4: Allocate error 437 from coturn.
    const ALLOC_ERROR: &str = "0113005c2112a442f2d3c401cccdccd3c1496d4a00090030000004254d69736d61746368656420616c6c6f636174696f\
     6e3a2077726f6e67207472616e73616374696f6e204944008022001a436f7475726e2d342e352e302e33202764616e20\
     45696465722700048028000461588525";
    // stun_dtls_rtp_unidir.pcapng #6: CreatePermission success response.
    const PERMISSION_OK: &str = "010800282112a4422454228c7e19af5c16abf3f78022001a436f7475726e2d342e352e302e33202764616e2045696465\
     7227207780280004e30f0dab";
    // stun_dtls_rtp_unidir.pcapng #10: Data indication carrying a STUN request.
    const DATA_IND: &str = "0017009c2112a442c729dbba4eb4896de9daba5e0013006c000100582112a4427eea3d15a8edfbc7baaf261700060019\
     65613276727043344a77636a434630653a323730653339336600000000250000002400046e7e00ff802a000800000000\
     0000000100080014914a2c765adf897916048dadc372aef0e0eb87958028000448cd1107001200080001cc702b12a4d1\
     8022001a436f7475726e2d342e352e302e33202764616e204569646572272027";
    // stun_classic.pcap #1 and #2: RFC 3489 Binding request / response.
    const CLASSIC_REQ: &str = "000100089429ef88294dd52632c72931cb8dbb4c0003000400000000";
    const CLASSIC_RESP: &str = "0101000c9429ef88294dd52632c72931cb8dbb4c000100080001d70aac103fe0";
    // stun_tcp_multiple_msgs_same_pkt.pcap #5: three Allocate requests in
    // one TCP segment.
    const TCP_THREE: &str = "000300082112a442704b6e453952586746596c590019000411000000000300082112a442704b6e453952586746596c59\
     0019000411000000000300082112a442704b6e453952586746596c590019000411000000";
    // geforcenow.pcapng #43: ICE Binding request.
    const GEFORCE: &str = "0001004c2112a4426666415444672f477a30615900060009456135613a4a564452000000c0570004000003e7802a0008\
     c27b994adddec12a002400046e001eff000800145b8ca4d08efce2f6f70abdd1446a846afce358db802800040d6738bb";
    // Not STUN: DNS (dns-google-nsid #3), RTP (false_positives #5, start),
    // RTCP (rtcp_multiple #2, start), DTLS ClientHello (dtls_certificate_fragments #1, start),
    // Discord keep-alive.
    const DNS: &str = "4d150120000100000000000103777777046e746f70036f72670000010001000029100000000000000400030000";
    const RTP: &str = "80080f62436d6bfc34127856d5d5d555d5d5d5d5d5d5d555";
    const RTCP: &str = "81c9000701932db400000000010000010000bec200000001000000000000000081ca000e";
    const DTLS: &str = "16feff0000000000000000012b0100011f000000000000011ffefd5cb74537a4b3e0e432dac0848f2c6ace2225352f39";
    const KEEPALIVE: &str = "1337cafea9010000";

    #[test]
    fn whatsapp_ice() {
        let b = hex(WA_RESPONSE);
        let m = stun(&b).unwrap();
        assert_eq!(
            (m.class, m.method, m.classic),
            (StunClass::SuccessResponse, METHOD_BINDING, false)
        );
        assert_eq!(m.transaction_id, &b[8..20]);
        assert_eq!(m.fingerprint, Some(true));
        assert!(m.has_message_integrity && m.google && !m.has_username && !m.microsoft);
        let types: Vec<u16> = m.attributes().map(|a| a.typ).collect();
        assert_eq!(types, [0xc057, 0x0024, 0x0008, 0x8028]);

        let b = hex(WA_REQUEST);
        let m = stun(&b).unwrap();
        assert_eq!((m.class, m.method), (StunClass::Request, METHOD_BINDING));
        assert!(m.has_username && m.has_message_integrity);
        assert_eq!(m.fingerprint, Some(true));
        assert_eq!(
            m.attribute(ATTR_USERNAME).unwrap(),
            b"EDGERAY_DEFAULT_USERNAME:EDGERAY_DEFAULT_USERNAME"
        );
        assert_eq!(m.attribute(0xdaba).unwrap(), [0, 0, 0x0a, 0x14]);
        assert!(m.attribute(ATTR_ICE_CONTROLLED).is_some());

        let b = hex(WA_0801);
        let m = stun(&b).unwrap();
        assert_eq!(
            (m.class, m.method, m.attribute_count),
            (StunClass::Request, 0x201, 0)
        );
        assert_eq!(m.fingerprint, None);
    }

    #[test]
    fn turn_messages() {
        let b = hex(ALLOCATE);
        let m = stun(&b).unwrap();
        assert_eq!((m.class, m.method), (StunClass::Request, METHOD_ALLOCATE));
        assert_eq!(m.fingerprint, Some(true));
        let b = hex(ALLOC_ERROR);
        let m = stun(&b).unwrap();
        assert_eq!(
            (m.class, m.method),
            (StunClass::ErrorResponse, METHOD_ALLOCATE)
        );
        assert_eq!(m.software.unwrap(), b"Coturn-4.5.0.3 'dan Eider'");
        assert_eq!(&m.attribute(ATTR_ERROR_CODE).unwrap()[2..4], [4, 37]);
        let b = hex(PERMISSION_OK);
        let m = stun(&b).unwrap();
        assert_eq!(
            (m.class, m.method),
            (StunClass::SuccessResponse, METHOD_CREATE_PERMISSION)
        );
        assert_eq!(m.fingerprint, Some(true));
        let b = hex(DATA_IND);
        let m = stun(&b).unwrap();
        assert_eq!((m.class, m.method), (StunClass::Indication, METHOD_DATA));
        // The DATA attribute carries the peer's STUN request.
        let inner = stun(m.attribute(0x0013).unwrap()).unwrap();
        assert!(inner.has_username);
        assert_eq!(inner.fingerprint, Some(true));
        let b = hex(GEFORCE);
        let m = stun(&b).unwrap();
        assert!(m.has_username && m.google);
        assert_eq!(m.fingerprint, Some(true));
    }

    #[test]
    fn classic_rfc3489() {
        let b = hex(CLASSIC_REQ);
        let m = stun(&b).unwrap();
        assert!(m.classic);
        assert_eq!((m.class, m.method), (StunClass::Request, METHOD_BINDING));
        assert_eq!(m.transaction_id, &b[4..20]);
        let b = hex(CLASSIC_RESP);
        let m = stun(&b).unwrap();
        assert!(m.classic);
        assert_eq!(m.class, StunClass::SuccessResponse);
        // Unknown type, unknown attribute, bad address family, bad
        // CHANGE-REQUEST flags: refused.
        let mut b = hex(CLASSIC_REQ);
        b[1] = 0x03;
        assert!(stun(&b).is_none());
        let mut b = hex(CLASSIC_REQ);
        b[21] = 0x24;
        assert!(stun(&b).is_none());
        let mut b = hex(CLASSIC_RESP);
        b[25] = 2;
        assert!(stun(&b).is_none());
        let mut b = hex(CLASSIC_REQ);
        b[27] = 1;
        assert!(stun(&b).is_none());
    }

    #[test]
    fn fingerprint_mismatch_is_reported() {
        let mut b = hex(ALLOCATE);
        b[10] ^= 1; // transaction id bit flip
        assert_eq!(stun(&b).unwrap().fingerprint, Some(false));
    }

    #[test]
    fn microsoft_attributes() {
        // Binding request with MS-IMPLEMENTATION-VERSION (0x8070) = 2.
        let mut b = hex("000100082112a442000102030405060708090a0b");
        b.extend_from_slice(&[0x80, 0x70, 0, 4, 0, 0, 0, 2]);
        let m = stun(&b).unwrap();
        assert!(m.microsoft);
    }

    #[test]
    fn other_protocols_are_not_stun() {
        for s in [DNS, RTP, RTCP, DTLS, KEEPALIVE] {
            let b = hex(s);
            assert!(stun(&b).is_none(), "{s}");
            assert!(channel_data(&b).is_none(), "{s}");
            assert!(!matches!(stream_message(&b), Parse::Found(_)), "{s}");
        }
    }

    #[test]
    fn malformed_stun_is_refused() {
        let full = hex(WA_REQUEST);
        for n in 0..full.len() {
            assert!(stun(&full[..n]).is_none(), "{n}");
        }
        let mut b = full.clone();
        b.push(0);
        assert!(stun(&b).is_none()); // length field != payload - 20
        let mut b = full.clone();
        b[3] = 0x7b; // not a multiple of 4
        b.truncate(20 + 0x7b);
        assert!(stun(&b).is_none());
        let mut b = full.clone();
        b[23] = 0xff; // USERNAME runs past the end
        assert!(stun(&b).is_none());
        let mut b = full.clone();
        b[0] = 0x40; // top bits set
        assert!(stun(&b).is_none());
        let mut b = full;
        b[7] = 0x43; // cookie wrong: not classic either (USERNAME of odd size)
        assert!(stun(&b).is_none());
    }

    #[test]
    fn channel_data_over_udp() {
        let mut b = vec![0x40, 0x01, 0, 12];
        b.extend_from_slice(&hex(RTP)[..12]);
        let c = channel_data(&b).unwrap();
        assert_eq!((c.channel, c.data.len()), (0x4001, 12));
        b.extend_from_slice(&[0, 0, 0]);
        assert!(channel_data(&b).is_some());
        b.push(0);
        assert!(channel_data(&b).is_none());
        assert!(channel_data(&[0x50, 0, 0, 0]).is_none());
        assert!(channel_data(&[0x40, 0, 0, 5, 1, 2]).is_none());
        assert_eq!(channel_data(&[0x4f, 0xff, 0, 0]).unwrap().data, b"");
    }

    #[test]
    fn tcp_streams() {
        let s = hex(TCP_THREE);
        let mut off = 0;
        let mut n = 0;
        while off < s.len() {
            match stream_message(&s[off..]) {
                Parse::Found(f) => {
                    assert!(!f.framed);
                    assert_eq!(f.message.method, METHOD_ALLOCATE);
                    off += f.consumed;
                    n += 1;
                }
                other => panic!("{other:?} at {off}"),
            }
        }
        assert_eq!(n, 3);
        for k in 0..28 {
            assert_eq!(stream_message(&s[..k]), Parse::NeedMore, "{k}");
        }
        // RFC 4571 framing (ICE-TCP).
        let msg = hex(WA_REQUEST);
        let mut framed = (msg.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&msg);
        match stream_message(&framed) {
            Parse::Found(f) => {
                assert!(f.framed);
                assert_eq!(f.consumed, framed.len());
            }
            other => panic!("{other:?}"),
        }
        for k in 0..framed.len() {
            assert_eq!(stream_message(&framed[..k]), Parse::NeedMore, "{k}");
        }
        // ChannelData over TCP is padded to 4.
        let cd = [0x40, 0x02, 0, 3, 1, 2, 3, 0, 0x40];
        match channel_data_stream(&cd) {
            Parse::Found((c, n)) => assert_eq!((c.channel, c.data, n), (0x4002, &[1, 2, 3][..], 8)),
            other => panic!("{other:?}"),
        }
        assert_eq!(channel_data_stream(&cd[..7]), Parse::NeedMore);
        assert_eq!(channel_data_stream(&cd[..0]), Parse::NeedMore);
        assert_eq!(channel_data_stream(&hex(ALLOCATE)), Parse::NotThis);
        assert_eq!(stream_message(&cd), Parse::NotThis);
        // TLS and HTTP are not STUN.
        assert_eq!(stream_message(b"GET / HTTP/1.1\r\n"), Parse::NotThis);
        assert_eq!(stream_message(&hex("160301020001")), Parse::NotThis);
    }

    #[test]
    fn first_byte_demux() {
        assert_eq!(demux_first_byte(hex(ALLOCATE)[0]), FirstByte::Stun);
        assert_eq!(demux_first_byte(hex(DTLS)[0]), FirstByte::Dtls);
        assert_eq!(demux_first_byte(hex(RTP)[0]), FirstByte::RtpRtcp);
        assert_eq!(demux_first_byte(0x40), FirstByte::TurnChannel);
        assert_eq!(demux_first_byte(0xff), FirstByte::Other);
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = stun(&b);
            let _ = channel_data(&b);
            let _ = stream_message(&b);
            let _ = channel_data_stream(&b);
        }

        #[test]
        fn random_bytes_with_a_cookie_never_panic(
            t in 0u16..0x4000,
            body in proptest::collection::vec(any::<u8>(), 0..200),
        ) {
            let mut b = t.to_be_bytes().to_vec();
            b.extend_from_slice(&((body.len() + 12) as u16).to_be_bytes());
            b.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
            b.extend_from_slice(&[7; 12]);
            b.extend_from_slice(&body);
            if let Some(m) = stun(&b) {
                prop_assert_eq!(m.attributes().count(), usize::from(m.attribute_count));
            }
            let _ = stream_message(&b);
        }

        #[test]
        fn mutated_real_packets_never_panic(
            which in 0usize..8,
            muts in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
            cut in any::<usize>(),
        ) {
            let mut b = hex([WA_RESPONSE, WA_REQUEST, ALLOCATE, ALLOC_ERROR, DATA_IND, CLASSIC_REQ, CLASSIC_RESP, TCP_THREE][which]);
            for (i, v) in muts {
                let n = b.len();
                b[i % n] = v;
            }
            let n = b.len();
            b.truncate(cut % (n + 1));
            if let Some(m) = stun(&b) {
                let _ = m.attributes().count();
            }
            let _ = channel_data(&b);
            let _ = stream_message(&b);
        }

        #[test]
        fn random_datagrams_are_almost_never_stun(b in proptest::collection::vec(any::<u8>(), 20..300)) {
            prop_assert!(stun(&b).is_none());
        }
    }
}
