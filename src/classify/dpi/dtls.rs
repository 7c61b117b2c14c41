//! DTLS records (RFC 6347 for DTLS 1.0/1.2, RFC 9147 for DTLS 1.3): how
//! WebRTC, Teams and Zoom key their SRTP media, and what several VPNs
//! (AnyConnect, GeForce Now streaming...) run on.
//!
//! A datagram is checked as a whole: every record in it must be well formed
//! and the records must fill it exactly. A ClientHello is flagged and its
//! body exposed, so that the TLS parser can read its SNI.
//!
//! Zero-copy, allocation-free, bounds-checked.

/// Content type ChangeCipherSpec.
pub const CT_CHANGE_CIPHER_SPEC: u8 = 20;
/// Content type Alert.
pub const CT_ALERT: u8 = 21;
/// Content type Handshake.
pub const CT_HANDSHAKE: u8 = 22;
/// Content type ApplicationData.
pub const CT_APPLICATION_DATA: u8 = 23;
/// Content type Heartbeat (RFC 6520).
pub const CT_HEARTBEAT: u8 = 24;
/// Content type tls12_cid (RFC 9146: a record with a connection id).
pub const CT_TLS12_CID: u8 = 25;
/// Record version of DTLS 1.0.
pub const DTLS_1_0: u16 = 0xfeff;
/// Record version of DTLS 1.2 (and the legacy version of DTLS 1.3).
pub const DTLS_1_2: u16 = 0xfefd;
/// Handshake type ClientHello.
pub const HS_CLIENT_HELLO: u8 = 1;
/// Handshake type HelloVerifyRequest (DTLS 1.0/1.2 cookie exchange).
pub const HS_HELLO_VERIFY_REQUEST: u8 = 3;

/// Size of a DTLS 1.0/1.2 record header.
pub const RECORD_HEADER_LEN: usize = 13;
/// Largest record fragment allowed (2^14 + 2048, RFC 6347 4.3.2).
pub const MAX_FRAGMENT: usize = 16384 + 2048;
/// Longest connection id looked for in tls12_cid records.
const MAX_CID: usize = 20;
/// Smallest DTLS 1.3 ciphertext: one byte of inner content type plus a
/// 16-byte AEAD tag.
const MIN_UNIFIED_CIPHERTEXT: usize = 17;
const HANDSHAKE_HEADER_LEN: usize = 12;

#[inline]
fn be16(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(off)?, *b.get(off + 1)?]))
}

#[inline]
fn be24(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_be_bytes([
        0,
        *b.get(off)?,
        *b.get(off + 1)?,
        *b.get(off + 2)?,
    ]))
}

#[inline]
fn be48(b: &[u8], off: usize) -> Option<u64> {
    let s = b.get(off..off + 6)?;
    Some(s.iter().fold(0u64, |acc, &x| (acc << 8) | u64::from(x)))
}

/// Which header a record has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    /// The DTLS 1.0/1.2 header (also used by DTLS 1.3 for its handshake
    /// in clear, ClientHello included).
    Plaintext,
    /// A DTLS 1.3 unified header (first bits 001): encrypted, content type
    /// hidden, epoch and sequence number truncated (and the latter
    /// encrypted).
    Unified,
}

/// One DTLS record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DtlsRecord<'a> {
    /// Header form.
    pub kind: RecordKind,
    /// Content type (20-25); 0 for a unified header, whose content type is
    /// encrypted.
    pub content_type: u8,
    /// Record version (0xfeff or 0xfefd); 0 for a unified header.
    pub version: u16,
    /// Epoch (0 during the handshake in clear); for a unified header only
    /// its low 2 bits.
    pub epoch: u16,
    /// 48-bit sequence number; for a unified header only its low 8 or 16
    /// bits (as sent, i.e. still encrypted).
    pub sequence: u64,
    /// Connection id length (tls12_cid records only; unified headers with
    /// a connection id are not parsed).
    pub cid_len: u8,
    /// The record's payload.
    pub fragment: &'a [u8],
}

/// Reads one record at the start of `b`; returns it and its total size.
/// `allow_lengthless` says whether the record may extend to the end of the datagram
/// without a length field (DTLS 1.3 unified header with L = 0).
fn record(b: &[u8], allow_lengthless: bool) -> Option<(DtlsRecord<'_>, usize)> {
    let b0 = *b.first()?;
    if b0 & 0xe0 == 0x20 {
        return unified(b, allow_lengthless);
    }
    if !(CT_CHANGE_CIPHER_SPEC..=CT_TLS12_CID).contains(&b0) {
        return None;
    }
    let version = be16(b, 1)?;
    if version != DTLS_1_0 && version != DTLS_1_2 {
        return None;
    }
    let epoch = be16(b, 3)?;
    // Before keys exist (epoch 0) only the handshake in clear, its alerts
    // and the ChangeCipherSpec are possible.
    if epoch == 0 && !matches!(b0, CT_CHANGE_CIPHER_SPEC | CT_ALERT | CT_HANDSHAKE) {
        return None;
    }
    let sequence = be48(b, 5)?;
    let cid_len = if b0 == CT_TLS12_CID {
        // The connection id's length was negotiated and is not in the
        // record: take the smallest that makes the record end exactly at
        // the end of the datagram.
        (1..=MAX_CID).find(|&c| {
            be16(b, 11 + c).is_some_and(|l| RECORD_HEADER_LEN + c + usize::from(l) == b.len())
        })?
    } else {
        0
    };
    let len = usize::from(be16(b, 11 + cid_len)?);
    if len > MAX_FRAGMENT || (b0 == CT_CHANGE_CIPHER_SPEC && epoch == 0 && len != 1) {
        return None;
    }
    let start = RECORD_HEADER_LEN + cid_len;
    let fragment = b.get(start..start + len)?;
    Some((
        DtlsRecord {
            kind: RecordKind::Plaintext,
            content_type: b0,
            version,
            epoch,
            sequence,
            cid_len: u8::try_from(cid_len).ok()?,
            fragment,
        },
        start + len,
    ))
}

/// A DTLS 1.3 unified header record: 0b001CSLEE, \[CID\], seq (8/16 bits),
/// \[length\], ciphertext. Records with a connection id are refused (its
/// length is not in the packet).
fn unified(b: &[u8], allow_lengthless: bool) -> Option<(DtlsRecord<'_>, usize)> {
    let b0 = *b.first()?;
    if b0 & 0x10 != 0 {
        return None; // C: connection id of unknown length
    }
    let seq16 = b0 & 0x08 != 0;
    let has_len = b0 & 0x04 != 0;
    let mut off = 1;
    let sequence = if seq16 {
        off += 2;
        u64::from(be16(b, 1)?)
    } else {
        off += 1;
        u64::from(*b.get(1)?)
    };
    let len = if has_len {
        let l = usize::from(be16(b, off)?);
        off += 2;
        l
    } else if allow_lengthless {
        b.len().checked_sub(off)?
    } else {
        return None;
    };
    if !(MIN_UNIFIED_CIPHERTEXT..=MAX_FRAGMENT).contains(&len) {
        return None;
    }
    let fragment = b.get(off..off + len)?;
    Some((
        DtlsRecord {
            kind: RecordKind::Unified,
            content_type: 0,
            version: 0,
            epoch: u16::from(b0 & 0x03),
            sequence,
            cid_len: 0,
            fragment,
        },
        off + len,
    ))
}

/// Iterator over the records of a datagram; stops at the first malformed
/// one (use [`dtls_record`] to check the whole datagram first).
#[derive(Debug, Clone)]
pub struct DtlsRecords<'a> {
    rest: &'a [u8],
    first: bool,
}

impl<'a> Iterator for DtlsRecords<'a> {
    type Item = DtlsRecord<'a>;

    fn next(&mut self) -> Option<DtlsRecord<'a>> {
        let (r, size) = record(self.rest, !self.first)?;
        self.first = false;
        self.rest = self.rest.get(size..).unwrap_or(&[]);
        Some(r)
    }
}

/// The records of a datagram, in order.
pub fn records(payload: &[u8]) -> DtlsRecords<'_> {
    DtlsRecords {
        rest: payload,
        first: true,
    }
}

/// The first record of a DTLS datagram, if the datagram is DTLS: every
/// record well formed (content type 20-25, version 0xfeff/0xfefd,
/// epoch-0 records only handshake/alert/CCS, length within the datagram
/// and at most 2^14 + 2048; or a DTLS 1.3 unified header), and the records
/// filling the datagram exactly. A unified header without a length field
/// is accepted only behind another record, since on its own any datagram
/// starting with 0x20-0x2F would pass.
pub fn dtls_record(payload: &[u8]) -> Option<DtlsRecord<'_>> {
    let mut it = records(payload);
    let first = it.next()?;
    for _ in it.by_ref() {}
    it.rest.is_empty().then_some(first)
}

/// A handshake message (fragment) carried in a plaintext handshake record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handshake<'a> {
    /// Handshake type (1 = ClientHello, 2 = ServerHello, 3 =
    /// HelloVerifyRequest, 11 = Certificate...).
    pub msg_type: u8,
    /// Length of the whole message.
    pub length: u32,
    /// Message sequence number.
    pub message_seq: u16,
    /// Where this fragment starts in the message.
    pub fragment_offset: u32,
    /// The bytes of the message in this fragment.
    pub body: &'a [u8],
}

impl<'a> Handshake<'a> {
    /// True if this fragment is the whole message.
    pub fn is_complete(&self) -> bool {
        self.fragment_offset == 0 && self.body.len() == self.length as usize
    }

    /// The ClientHello, if this is a complete one.
    pub fn client_hello(&self) -> Option<DtlsClientHello<'a>> {
        if self.msg_type != HS_CLIENT_HELLO || !self.is_complete() {
            return None;
        }
        DtlsClientHello::parse(self.body)
    }
}

impl<'a> DtlsRecord<'a> {
    /// The first handshake message (fragment) of a plaintext epoch-0
    /// handshake record (several may be packed in one record; the rest
    /// follow in [`DtlsRecord::handshakes`]).
    pub fn handshake(&self) -> Option<Handshake<'a>> {
        self.handshakes().next()
    }

    /// The handshake message fragments of a plaintext epoch-0 handshake
    /// record.
    pub fn handshakes(&self) -> Handshakes<'a> {
        let clear = self.kind == RecordKind::Plaintext
            && self.content_type == CT_HANDSHAKE
            && self.epoch == 0;
        Handshakes {
            rest: if clear { self.fragment } else { &[] },
        }
    }

    /// True if this record carries (the start of) a ClientHello.
    pub fn is_client_hello(&self) -> bool {
        self.handshake()
            .is_some_and(|h| h.msg_type == HS_CLIENT_HELLO && h.fragment_offset == 0)
    }
}

/// Iterator over the handshake fragments of a record.
#[derive(Debug, Clone)]
pub struct Handshakes<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Handshakes<'a> {
    type Item = Handshake<'a>;

    fn next(&mut self) -> Option<Handshake<'a>> {
        let b = self.rest;
        let msg_type = *b.first()?;
        let length = be24(b, 1)?;
        let message_seq = be16(b, 4)?;
        let fragment_offset = be24(b, 6)?;
        let frag_len = be24(b, 9)? as usize;
        let end = HANDSHAKE_HEADER_LEN + frag_len;
        let body = b.get(HANDSHAKE_HEADER_LEN..end);
        let valid =
            body.is_some() && u64::from(fragment_offset) + frag_len as u64 <= u64::from(length);
        let Some(body) = body.filter(|_| valid) else {
            self.rest = &[];
            return None;
        };
        self.rest = b.get(end..).unwrap_or(&[]);
        Some(Handshake {
            msg_type,
            length,
            message_seq,
            fragment_offset,
            body,
        })
    }
}

/// A DTLS ClientHello body, split at the fields DTLS adds to TLS.
///
/// A DTLS ClientHello differs from a TLS one by a `cookie` field between
/// `legacy_session_id` and `cipher_suites`. `body` is the whole message
/// body (as `tls::parse_client_hello_body` would get it for TLS, but with
/// the cookie); `after_cookie` starts at `cipher_suites`, so a TLS parser
/// can read the suites, compression methods and extensions (SNI, ALPN)
/// from there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DtlsClientHello<'a> {
    /// The whole ClientHello body.
    pub body: &'a [u8],
    /// `client_version` / `legacy_version` (0xfeff or 0xfefd; DTLS 1.3
    /// says 0xfefd and puts 0xfefc in supported_versions).
    pub version: u16,
    /// The 32-byte client random.
    pub random: &'a [u8],
    /// Session id (0-32 bytes).
    pub session_id: &'a [u8],
    /// Cookie (empty in a first ClientHello, echoed from the
    /// HelloVerifyRequest in the second).
    pub cookie: &'a [u8],
    /// The body from `cipher_suites` on.
    pub after_cookie: &'a [u8],
}

impl<'a> DtlsClientHello<'a> {
    /// Splits a complete ClientHello body.
    pub fn parse(body: &'a [u8]) -> Option<Self> {
        let version = be16(body, 0)?;
        if version != DTLS_1_0 && version != DTLS_1_2 {
            return None;
        }
        let random = body.get(2..34)?;
        let sid_len = usize::from(*body.get(34)?);
        if sid_len > 32 {
            return None;
        }
        let session_id = body.get(35..35 + sid_len)?;
        let c = 35 + sid_len;
        let cookie_len = usize::from(*body.get(c)?);
        let cookie = body.get(c + 1..c + 1 + cookie_len)?;
        let after_cookie = body.get(c + 1 + cookie_len..)?;
        // cipher_suites must at least have its length field and fit.
        let suites_len = usize::from(be16(after_cookie, 0)?);
        if suites_len == 0 || suites_len % 2 != 0 || 2 + suites_len > after_cookie.len() {
            return None;
        }
        Some(DtlsClientHello {
            body,
            version,
            random,
            session_id,
            cookie,
            after_cookie,
        })
    }
}

/// The complete ClientHello in a DTLS datagram, if there is one (the
/// datagram must be valid DTLS). A ClientHello fragmented over several
/// records or datagrams (large post-quantum key shares) is not reassembled
/// here: check [`DtlsRecord::is_client_hello`] and the fragments.
pub fn client_hello(payload: &[u8]) -> Option<DtlsClientHello<'_>> {
    dtls_record(payload)?;
    records(payload)
        .flat_map(|r| r.handshakes())
        .find_map(|h| h.client_hello())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    use crate::classify::dpi::test_util::hex;

    // dtls_certificate_fragments.pcap #1: first ClientHello (no cookie).
    const CH1: &str = "16feff0000000000000000012b0100011f000000000000011ffefd5cb74537a4b3e0e432dac0848f2c6ace2225352f39\
     ce541e162622d7da65d6f1000000a0c030c02cc028c024c014c00a00a500a300a1009f006b006a006900680039003800\
     3700360088008700860085c032c02ec02ac026c00fc005009d003d00350084c02fc02bc027c023c013c00900a400a200\
     a0009e00670040003f003e0033003200310030009a0099009800970045004400430042c031c02dc029c025c00ec00400\
     9c003c002f009600410007c012c008001600130010000dc00dc003000a00ff01000055000b000403000102000a001c00\
     1a00170019001c001b0018001a0016000e000d000b000c0009000a00230000000d0020001e0601060206030501050205\
     03040104020403030103020303020102020203000f000101";
    // #2: HelloVerifyRequest carrying a 20-byte cookie.
    const HVR: &str = "16feff00000000000000000023030000170000000000000017feff1466acf8c1472146e4e7c30876eb9ce1408a10f943";
    // #3: second ClientHello, echoing the cookie.
    const CH2: &str = "16feff0000000000000001013f010001330001000000000133fefd5cb74537a4b3e0e432dac0848f2c6ace2225352f39\
     ce541e162622d7da65d6f1001466acf8c1472146e4e7c30876eb9ce1408a10f94300a0c030c02cc028c024c014c00a00\
     a500a300a1009f006b006a0069006800390038003700360088008700860085c032c02ec02ac026c00fc005009d003d00\
     350084c02fc02bc027c023c013c00900a400a200a0009e00670040003f003e0033003200310030009a00990098009700\
     45004400430042c031c02dc029c025c00ec004009c003c002f009600410007c012c008001600130010000dc00dc00300\
     0a00ff01000055000b000403000102000a001c001a00170019001c001b0018001a0016000e000d000b000c0009000a00\
     230000000d0020001e060106020603050105020503040104020403030103020303020102020203000f000101";
    // #5: a Certificate fragment and ServerHelloDone in one datagram.
    const CERT_FRAG: &str = "16feff000000000000000300fb0b00060b000200051c0000ef199670f2717feb322e6e64afc245920e455780255ae615\
     66a2910e4497358db00e8e0947293b6e92b796e37f1d97d3a23dfa56244c531a06cce21d35042d74b0d9f48ea5e6bcaf\
     54fe4056f7ec7cb0a6f6c640c6386d2d846008f6bea17ecc0d7ff5a4e200f5272ab6360ef64eeb535f8442ccd2eb2b90\
     0541dbceacc90c4e7e4abd0561d5740a11ce52c1f9a6a156466624318d64c73dd608316a2d9cf73825e0308e1d947378\
     3947d8b637652998e88ce3bf0c8d95625f4961bd5bc550ef23f8cb0a95f44b6d2a95e32ddf77fabdeb5c8148169ccda3\
     0d230fa7a3c0464e559a68e0c15b99dc06c1dcc77adb4fe816feff0000000000000004000c0e00000000030000000000\
     00";
    // #6: ClientKeyExchange, ChangeCipherSpec, encrypted Finished (epoch 1).
    const CKE_CCS_FIN: &str = "16feff0000000000000002010e10000102000200000000010201000dea43fd5ddaac53986f098a13b0322ebf0c964c63\
     7fff8900b70611f928f787aac16ced4e6873fb9307682df3d86e2f8a3558b44534b0d51fe24e142fac3016173838d53d\
     92c67155e583c63d3ce6dde8b9ba058eb2aaa9ff84cf55446ac391fd24041c72412b098d87b6eafab3ea0f551eee8f3a\
     f714b462675be07f4bb430cd0238baa3ad31c608d18120be15e6ea61622fe499c6b365a45e997722199f3855ba5b9084\
     5ed506e0d7d5994f48a0b76714fd9253ae4b5a6c5a0b24d3aa4af2a02d522d364b9fe8683485a3fd5b679c6bb79c3c33\
     d2e3a67e49226093cd1f6742714c1b0b3c8f619ba654d872b5bf1118b3dd4f8713ba91f88327645797542e14feff0000\
     00000000000300010116feff000100000000000000407d30d5c2c3d3866ec035386f2952a3896ebc0911b1eaafccfd60\
     c31381c4f1e55a1146003b68302ff7dace2ba91cb1a014a8bca712f9fd2f62da70b91be462af";
    // #8: application data, epoch 1.
    const APPDATA: &str = "17feff00010000000000010100e617fce8410238e80adb83eb3d404b32029676bbc2ef7c8f4e6f38594926f5058be90f\
     351eba00ff2c0519866273cddd668a3ac4bb4448845f39d4b96474da2c9f256634cff2fadd688c400b008eeb1fca7195\
     a620313e45c46459c27d44901807c42ae0b87c5387a2481f122c3e80a7293390aed9fee86ab627c0e4c1a3bbb041338f\
     1c4079a07e37e5e7e4d1a5e64a4fe04545bf135cd013a0fcae68ac1fbe6e2dc61da8e62e6ca2ac60d39d48a8d6e06432\
     9722dd8dd8dd6bf55b691e0b3a65dd724e6f8abc4ef3b410395db637bb18ffc2c8f9795e501af2c547a0d99deb1d78e4\
     b3d50e3d020fad531239bead152bfc6a49b87fbb20d7725cbf827ef17f";
    // #21 (Discord voice): ClientHello with extended master secret,
    // renegotiation info, groups, session ticket, use_srtp.
    const DISCORD_CH: &str = "16feff0000000000000000008e010000820000000000000082fefd2f6f8f91baefc2d01dd254571e757e7d4d0ca0f2e2\
     959f32adb326e8612687d900000018c02bc02fcca9cca8c009c013c00ac014009c002f0035000a0100004000170000ff\
     01000100000a00080006001d00170018000b0002010000230000000d0014001204030804040105030805050108060601\
     0201000e00050002000100";
    // geforcenow.pcapng #69: DTLS 1.2 ChangeCipherSpec + encrypted Finished.
    const GFN_CCS: &str = "14fefd000000000000000a00010116fefd00010000000000000028ded786765d6d1382f9ba4aea92189c9a017a563465\
     5f1d058a8612b2e7cec0fb5206979eadfd510c";
    // Not DTLS: STUN (stun_dtls_rtp_unidir #1), RTP (false_positives #5,
    // start), DNS (dns-google-nsid #3), TLS ClientHello record start.
    const STUN: &str = "000300102112a442c40ac48eb05c7122ba8820cc001900041100000080280004c6ac1844";
    const RTP: &str = "80080f62436d6bfc34127856d5d5d555d5d5d5d5d5d5d555";
    const DNS: &str = "4d150120000100000000000103777777046e746f70036f72670000010001000029100000000000000400030000";
    const TLS: &str = "160301020001000200030303";

    #[test]
    fn client_hello_without_and_with_cookie() {
        let b = hex(CH1);
        let r = dtls_record(&b).unwrap();
        assert_eq!(
            (r.kind, r.content_type, r.version, r.epoch, r.sequence),
            (RecordKind::Plaintext, CT_HANDSHAKE, DTLS_1_0, 0, 0)
        );
        assert!(r.is_client_hello());
        let h = r.handshake().unwrap();
        assert!(h.is_complete());
        assert_eq!((h.msg_type, h.length, h.message_seq), (1, 287, 0));
        let ch = client_hello(&b).unwrap();
        assert_eq!(ch.version, DTLS_1_2);
        assert_eq!(ch.body.len(), 287);
        assert!(ch.session_id.is_empty() && ch.cookie.is_empty());
        assert_eq!(&ch.after_cookie[..2], [0x00, 0xa0]); // 80 suites

        let b = hex(CH2);
        let ch = client_hello(&b).unwrap();
        assert_eq!(ch.cookie.len(), 20);
        // The cookie is the one the HelloVerifyRequest sent.
        let hvr = hex(HVR);
        let r = dtls_record(&hvr).unwrap();
        let h = r.handshake().unwrap();
        assert_eq!(h.msg_type, HS_HELLO_VERIFY_REQUEST);
        assert!(!r.is_client_hello());
        assert!(client_hello(&hvr).is_none());
        assert_eq!(&h.body[3..], ch.cookie);
        assert_eq!(&ch.after_cookie[..2], [0x00, 0xa0]);

        let b = hex(DISCORD_CH);
        let ch = client_hello(&b).unwrap();
        assert_eq!(ch.after_cookie.len(), 130 - 36);
        assert_eq!(&ch.after_cookie[..2], [0x00, 0x18]);
    }

    #[test]
    fn several_records_per_datagram() {
        let b = hex(CERT_FRAG);
        let recs: Vec<_> = records(&b).collect();
        assert_eq!(recs.len(), 2);
        let cert = recs[0].handshake().unwrap();
        // The last fragment of the server's Certificate message.
        assert_eq!(
            (
                cert.msg_type,
                cert.length,
                cert.fragment_offset,
                cert.body.len()
            ),
            (11, 1547, 1308, 239)
        );
        assert!(!cert.is_complete());
        assert_eq!(recs[1].handshake().unwrap().msg_type, 14);
        assert!(dtls_record(&b).is_some());
        assert!(client_hello(&b).is_none());

        let b = hex(CKE_CCS_FIN);
        let recs: Vec<_> = records(&b).collect();
        let types: Vec<_> = recs.iter().map(|r| (r.content_type, r.epoch)).collect();
        assert_eq!(types, [(22, 0), (20, 0), (22, 1)]);
        // The Finished is encrypted: no handshake is read from it.
        assert!(recs[2].handshake().is_none());
        assert!(dtls_record(&b).is_some());

        let b = hex(GFN_CCS);
        let r = dtls_record(&b).unwrap();
        assert_eq!(
            (r.content_type, r.version),
            (CT_CHANGE_CIPHER_SPEC, DTLS_1_2)
        );
        assert_eq!(records(&b).count(), 2);

        let b = hex(APPDATA);
        let r = dtls_record(&b).unwrap();
        assert_eq!(
            (r.content_type, r.epoch, r.sequence, r.fragment.len()),
            (CT_APPLICATION_DATA, 1, 1, 256)
        );
        assert!(!r.is_client_hello());
    }

    #[test]
    fn malformed_datagrams_are_refused() {
        for s in [CH1, CKE_CCS_FIN, CERT_FRAG] {
            let full = hex(s);
            // Cut anywhere but at a record boundary: refused.
            let mut bounds = vec![0];
            let mut at = 0;
            for r in records(&full) {
                at = r.fragment.as_ptr() as usize - full.as_ptr() as usize + r.fragment.len();
                bounds.push(at);
            }
            assert_eq!(at, full.len());
            for n in 0..full.len() {
                let got = dtls_record(&full[..n]).is_some();
                assert_eq!(got, bounds.contains(&n) && n > 0, "{n}");
            }
            let mut b = full.clone();
            b.push(0); // trailing byte
            assert!(dtls_record(&b).is_none());
        }
        let mut b = hex(APPDATA);
        b[4] = 0; // application data in epoch 0
        assert!(dtls_record(&b).is_none());
        let mut b = hex(APPDATA);
        b[2] = 0xfc; // unknown version
        assert!(dtls_record(&b).is_none());
        let mut b = hex(CH1);
        b[0] = 26; // content type out of range
        assert!(dtls_record(&b).is_none());
        // Handshake fragment claiming more than the message length.
        let mut b = hex(CH1);
        b[16] = 0x00; // length 0x00011f -> 0x00001f, fragment still 0x11f
        assert!(dtls_record(&b).unwrap().handshake().is_none());
        assert!(client_hello(&b).is_none());
        // ClientHello with a bogus session id length.
        let mut b = hex(CH1);
        b[13 + 12 + 34] = 33;
        assert!(client_hello(&b).is_none());
    }

    #[test]
    fn other_protocols_are_not_dtls() {
        for s in [STUN, RTP, DNS, TLS] {
            assert!(dtls_record(&hex(s)).is_none(), "{s}");
        }
        assert!(dtls_record(&[]).is_none());
    }

    fn unified_record(b0: u8, seq: &[u8], len: Option<u16>, n: usize) -> Vec<u8> {
        let mut v = vec![b0];
        v.extend_from_slice(seq);
        if let Some(l) = len {
            v.extend_from_slice(&l.to_be_bytes());
        }
        v.extend(std::iter::repeat_n(0xa5, n));
        v
    }

    #[test]
    fn dtls13_unified_headers() {
        // 0b001_0_1_1_10: no CID, 16-bit seq, length present, epoch 2.
        let b = unified_record(0x2e, &[0x12, 0x34], Some(40), 40);
        let r = dtls_record(&b).unwrap();
        assert_eq!(
            (r.kind, r.epoch, r.sequence, r.fragment.len()),
            (RecordKind::Unified, 2, 0x1234, 40)
        );
        // Two records, the second without length (runs to the end).
        let mut b2 = b.clone();
        b2.extend(unified_record(0x23, &[7], None, 30));
        assert_eq!(records(&b2).count(), 2);
        assert!(dtls_record(&b2).is_some());
        // A lengthless record alone is refused (any 0x20-0x2f byte would do).
        assert!(dtls_record(&unified_record(0x23, &[7], None, 30)).is_none());
        // Connection id present: not parsed.
        assert!(dtls_record(&unified_record(0x3e, &[0, 1], Some(40), 40)).is_none());
        // Ciphertext shorter than an AEAD tag.
        assert!(dtls_record(&unified_record(0x2e, &[0, 1], Some(8), 8)).is_none());
        // Length beyond the datagram.
        assert!(dtls_record(&unified_record(0x2e, &[0, 1], Some(41), 40)).is_none());
        // A DTLS 1.3 flight: plaintext ServerHello record then unified.
        let mut flight = hex(HVR);
        flight.extend(unified_record(0x2d, &[0, 9], Some(20), 20));
        assert_eq!(records(&flight).count(), 2);
        assert!(dtls_record(&flight).is_some());
    }

    #[test]
    fn tls12_cid_records() {
        // type 25, DTLS 1.2, epoch 1, seq 5, 4-byte CID, length 20.
        let mut b = vec![
            25, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 5, 0xc1, 0xc2, 0xc3, 0xc4, 0, 20,
        ];
        b.extend([0u8; 20]);
        let r = dtls_record(&b).unwrap();
        assert_eq!((r.content_type, r.cid_len, r.fragment.len()), (25, 4, 20));
        b.push(0);
        // With one more byte a 4-byte CID no longer fits, and no other
        // CID length makes the record end at the datagram's end either.
        assert!(dtls_record(&b).is_none());
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = dtls_record(&b);
            let _ = client_hello(&b);
            let _ = DtlsClientHello::parse(&b);
            for r in records(&b) {
                for h in r.handshakes() {
                    let _ = h.client_hello();
                }
            }
        }

        #[test]
        fn random_records_never_panic(
            ct in 20u8..26,
            v in prop_oneof![Just(0xfeffu16), Just(0xfefd)],
            epoch in 0u16..3,
            body in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            let mut b = vec![ct];
            b.extend_from_slice(&v.to_be_bytes());
            b.extend_from_slice(&epoch.to_be_bytes());
            b.extend_from_slice(&[0, 0, 0, 0, 0, 1]);
            b.extend_from_slice(&(body.len() as u16).to_be_bytes());
            b.extend_from_slice(&body);
            if let Some(r) = dtls_record(&b) {
                for h in r.handshakes() {
                    prop_assert!(h.body.len() <= r.fragment.len());
                    let _ = h.client_hello();
                }
            }
        }

        #[test]
        fn mutated_real_packets_never_panic(
            which in 0usize..7,
            muts in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
            cut in any::<usize>(),
        ) {
            let mut b = hex([CH1, HVR, CH2, CERT_FRAG, CKE_CCS_FIN, DISCORD_CH, GFN_CCS][which]);
            for (i, v) in muts {
                let n = b.len();
                b[i % n] = v;
            }
            let n = b.len();
            b.truncate(cut % (n + 1));
            let _ = dtls_record(&b);
            if let Some(ch) = client_hello(&b) {
                prop_assert!(ch.random.len() == 32);
            }
        }
    }
}
