//! Initial packet protection: the keys every observer can derive from the
//! Destination Connection ID (RFC 9001 §5.2, RFC 9369 §3.3), and removing
//! header protection and decrypting a packet with them.

use ring::aead::quic::{AES_128, HeaderProtectionKey};
use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::hkdf;

use super::header::{AEAD_TAG_LEN, LongHeader, MAX_CID_LEN, MAX_PN_LEN, SAMPLE_LEN, Version};

impl Version {
    fn salt(self) -> &'static [u8; 20] {
        match self {
            Version::V1 => &[
                0x38, 0x76, 0x2c, 0xf7, 0xf5, 0x59, 0x34, 0xb3, 0x4d, 0x17, 0x9a, 0xe6, 0xa4, 0xc8,
                0x0c, 0xad, 0xcc, 0xbb, 0x7f, 0x0a,
            ],
            Version::V2 => &[
                0x0d, 0xed, 0xe3, 0xde, 0xf7, 0x00, 0xa6, 0xdb, 0x81, 0x93, 0x81, 0xbe, 0x6e, 0x26,
                0x9d, 0xcb, 0xf9, 0xbd, 0x2e, 0xd9,
            ],
            Version::Draft29 => &[
                0xaf, 0xbf, 0xec, 0x28, 0x99, 0x93, 0xd2, 0x4c, 0x9e, 0x97, 0x86, 0xf1, 0x9c, 0x61,
                0x11, 0xe0, 0x43, 0x90, 0xa8, 0x99,
            ],
            Version::Draft23 => &[
                0xc3, 0xee, 0xf7, 0x12, 0xc7, 0x2e, 0xbb, 0x5a, 0x11, 0xa7, 0xd2, 0x43, 0x2b, 0xb4,
                0x63, 0x65, 0xbe, 0xf9, 0xf5, 0x02,
            ],
            Version::T051 => &[
                0x7a, 0x4e, 0xde, 0xf4, 0xe7, 0xcc, 0xee, 0x5f, 0xa4, 0x50, 0x6c, 0x19, 0x12, 0x4f,
                0xc8, 0xcc, 0xda, 0x6e, 0x03, 0x3d,
            ],
        }
    }
    /// HKDF labels for the packet key, IV and header-protection key.
    fn labels(self) -> [&'static [u8]; 3] {
        match self {
            Version::V2 => [b"quicv2 key", b"quicv2 iv", b"quicv2 hp"],
            _ => [b"quic key", b"quic iv", b"quic hp"],
        }
    }
}

/// Key material for one direction of Initial packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct KeyMaterial {
    /// The client Initial secret.
    pub(super) secret: [u8; 32],
    /// AEAD key.
    pub(super) key: [u8; 16],
    /// AEAD IV, XORed with the packet number into the nonce.
    pub(super) iv: [u8; 12],
    /// Header-protection key.
    pub(super) hp: [u8; 16],
}

/// `HKDF-Expand-Label(secret, label, "", out.len())` (RFC 8446 §7.1).
fn expand_label(prk: &hkdf::Prk, label: &[u8], out: &mut [u8]) -> Option<()> {
    struct Len(usize);
    impl hkdf::KeyType for Len {
        fn len(&self) -> usize {
            self.0
        }
    }
    let out_len = u16::try_from(out.len()).ok()?.to_be_bytes();
    let label_len = [u8::try_from(label.len() + 6).ok()?];
    let info: [&[u8]; 5] = [&out_len, &label_len, b"tls13 ", label, &[0]];
    prk.expand(&info, Len(out.len())).ok()?.fill(out).ok()
}

/// The client Initial secret and keys for `dcid` (RFC 9001 §5.2).
pub(super) fn client_key_material(version: Version, dcid: &[u8]) -> Option<KeyMaterial> {
    let initial = hkdf::Salt::new(hkdf::HKDF_SHA256, version.salt()).extract(dcid);
    let mut m = KeyMaterial {
        secret: [0; 32],
        key: [0; 16],
        iv: [0; 12],
        hp: [0; 16],
    };
    expand_label(&initial, b"client in", &mut m.secret)?;
    let client = hkdf::Prk::new_less_safe(hkdf::HKDF_SHA256, &m.secret);
    let [key, iv, hp] = version.labels();
    expand_label(&client, key, &mut m.key)?;
    expand_label(&client, iv, &mut m.iv)?;
    expand_label(&client, hp, &mut m.hp)?;
    Some(m)
}

/// Ready-to-use client Initial keys, remembered with the DCID they came
/// from.
pub(super) struct Keys {
    pub(super) version: Version,
    dcid: [u8; MAX_CID_LEN],
    dcid_len: usize,
    aead: LessSafeKey,
    iv: [u8; 12],
    hp: HeaderProtectionKey,
}

impl Keys {
    pub(super) fn derive(version: Version, dcid: &[u8]) -> Option<Keys> {
        let m = client_key_material(version, dcid)?;
        let mut stored = [0; MAX_CID_LEN];
        stored.get_mut(..dcid.len())?.copy_from_slice(dcid);
        Some(Keys {
            version,
            dcid: stored,
            dcid_len: dcid.len(),
            aead: LessSafeKey::new(UnboundKey::new(&aead::AES_128_GCM, &m.key).ok()?),
            iv: m.iv,
            hp: HeaderProtectionKey::new(&AES_128, &m.hp).ok()?,
        })
    }

    pub(super) fn matches(&self, version: Version, dcid: &[u8]) -> bool {
        self.version == version && self.dcid.get(..self.dcid_len) == Some(dcid)
    }
}

/// Recovers a full packet number from its truncated encoding (RFC 9000
/// Appendix A.3). Packet numbers start at 0, so with nothing received yet
/// the expected one is 0.
pub(super) fn decode_pn(largest: Option<u64>, truncated: u64, bits: u32) -> u64 {
    let expected = largest.map_or(0, |l| i128::from(l) + 1);
    let win = 1i128 << bits;
    let hwin = win / 2;
    let candidate = (expected & !(win - 1)) | i128::from(truncated);
    let pn = if candidate <= expected - hwin && candidate < (1i128 << 62) - win {
        candidate + win
    } else if candidate > expected + hwin && candidate >= win {
        candidate - win
    } else {
        candidate
    };
    u64::try_from(pn).unwrap_or(0)
}

/// Removes header protection and decrypts `packet` (one whole packet) into
/// `scratch`. Returns the packet number and the plaintext payload.
pub(super) fn open<'s>(
    keys: &Keys,
    packet: &[u8],
    pn_offset: usize,
    largest: Option<u64>,
    scratch: &'s mut [u8],
) -> Option<(u64, &'s [u8])> {
    let buf = scratch.get_mut(..packet.len())?;
    buf.copy_from_slice(packet);
    let sample = buf.get(pn_offset + MAX_PN_LEN..pn_offset + MAX_PN_LEN + SAMPLE_LEN)?;
    let mask = keys.hp.new_mask(sample).ok()?;
    let (first, _) = buf.split_first_mut()?;
    *first ^= mask[0] & 0x0f;
    let pn_len = usize::from(*first & 3) + 1;
    let (header, payload) = buf.split_at_mut_checked(pn_offset + pn_len)?;
    let pn_bytes = header.get_mut(pn_offset..)?;
    let mut truncated = 0u64;
    for (b, m) in pn_bytes.iter_mut().zip(&mask[1..]) {
        *b ^= m;
        truncated = truncated << 8 | u64::from(*b);
    }
    let bits = u32::try_from(pn_len * 8).ok()?;
    let pn = decode_pn(largest, truncated, bits);
    let mut nonce = keys.iv;
    for (n, p) in nonce[4..].iter_mut().zip(pn.to_be_bytes()) {
        *n ^= p;
    }
    if payload.len() < AEAD_TAG_LEN {
        return None;
    }
    let plain = keys
        .aead
        .open_in_place(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(&*header),
            payload,
        )
        .ok()?;
    Some((pn, plain))
}

/// [`open`] into `scratch`: packet number and plaintext length.
pub(super) fn open_len(
    keys: &Keys,
    h: &LongHeader<'_>,
    packet: &[u8],
    largest: Option<u64>,
    scratch: &mut [u8],
) -> Option<(u64, usize)> {
    open(keys, packet, h.pn_offset, largest, scratch).map(|(pn, plain)| (pn, plain.len()))
}
