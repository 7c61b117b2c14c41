//! Tests of the QUIC Initial reader, and the packets other modules' tests
//! build with it.

use ring::aead::quic::{AES_128, HeaderProtectionKey};
use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};

use super::keys::{client_key_material, decode_pn, open};
use super::*;

pub(crate) fn unhex(s: &str) -> Vec<u8> {
    let s: Vec<u8> = s.bytes().filter(|b| b.is_ascii_hexdigit()).collect();
    s.chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
        .collect()
}

const RFC_DCID: [u8; 8] = [0x83, 0x94, 0xc8, 0xf0, 0x3e, 0x51, 0x57, 0x08];

/// RFC 9001 Appendix A.2: the protected client Initial (1200 bytes).
const RFC9001_A2: &str = concat!(
    "c000000001088394c8f03e5157080000449e7b9aec34d1b1c98dd7689fb8ec11",
    "d242b123dc9bd8bab936b47d92ec356c0bab7df5976d27cd449f63300099f399",
    "1c260ec4c60d17b31f8429157bb35a1282a643a8d2262cad67500cadb8e7378c",
    "8eb7539ec4d4905fed1bee1fc8aafba17c750e2c7ace01e6005f80fcb7df6212",
    "30c83711b39343fa028cea7f7fb5ff89eac2308249a02252155e2347b63d58c5",
    "457afd84d05dfffdb20392844ae812154682e9cf012f9021a6f0be17ddd0c208",
    "4dce25ff9b06cde535d0f920a2db1bf362c23e596d11a4f5a6cf3948838a3aec",
    "4e15daf8500a6ef69ec4e3feb6b1d98e610ac8b7ec3faf6ad760b7bad1db4ba3",
    "485e8a94dc250ae3fdb41ed15fb6a8e5eba0fc3dd60bc8e30c5c4287e53805db",
    "059ae0648db2f64264ed5e39be2e20d82df566da8dd5998ccabdae053060ae6c",
    "7b4378e846d29f37ed7b4ea9ec5d82e7961b7f25a9323851f681d582363aa5f8",
    "9937f5a67258bf63ad6f1a0b1d96dbd4faddfcefc5266ba6611722395c906556",
    "be52afe3f565636ad1b17d508b73d8743eeb524be22b3dcbc2c7468d54119c74",
    "68449a13d8e3b95811a198f3491de3e7fe942b330407abf82a4ed7c1b311663a",
    "c69890f4157015853d91e923037c227a33cdd5ec281ca3f79c44546b9d90ca00",
    "f064c99e3dd97911d39fe9c5d0b23a229a234cb36186c4819e8b9c5927726632",
    "291d6a418211cc2962e20fe47feb3edf330f2c603a9d48c0fcb5699dbfe58964",
    "25c5bac4aee82e57a85aaf4e2513e4f05796b07ba2ee47d80506f8d2c25e50fd",
    "14de71e6c418559302f939b0e1abd576f279c4b2e0feb85c1f28ff18f58891ff",
    "ef132eef2fa09346aee33c28eb130ff28f5b766953334113211996d20011a198",
    "e3fc433f9f2541010ae17c1bf202580f6047472fb36857fe843b19f5984009dd",
    "c324044e847a4f4a0ab34f719595de37252d6235365e9b84392b061085349d73",
    "203a4a13e96f5432ec0fd4a1ee65accdd5e3904df54c1da510b0ff20dcc0c77f",
    "cb2c0e0eb605cb0504db87632cf3d8b4dae6e705769d1de354270123cb11450e",
    "fc60ac47683d7b8d0f811365565fd98c4c8eb936bcab8d069fc33bd801b03ade",
    "a2e1fbc5aa463d08ca19896d2bf59a071b851e6c239052172f296bfb5e724047",
    "90a2181014f3b94a4e97d117b438130368cc39dbb2d198065ae3986547926cd2",
    "162f40a29f0c3c8745c0f50fba3852e566d44575c29d39a03f0cda721984b6f4",
    "40591f355e12d439ff150aab7613499dbd49adabc8676eef023b15b65bfc5ca0",
    "6948109f23f350db82123535eb8a7433bdabcb909271a6ecbcb58b936a88cd4e",
    "8f2e6ff5800175f113253d8fa9ca8885c2f552e657dc603f252e1a8e308f76f0",
    "be79e2fb8f5d5fbbe2e30ecadd220723c8c0aea8078cdfcb3868263ff8f09400",
    "54da48781893a7e49ad5aff4af300cd804a6b6279ab3ff3afb64491c85194aab",
    "760d58a606654f9f4400e8b38591356fbf6425aca26dc85244259ff2b19c41b9",
    "f96f3ca9ec1dde434da7d2d392b905ddf3d1f9af93d1af5950bd493f5aa731b4",
    "056df31bd267b6b90a079831aaf579be0a39013137aac6d404f518cfd4684064",
    "7e78bfe706ca4cf5e9c5453e9f7cfd2b8b4c8d169a44e55c88d4a9a7f9474241",
    "e221af44860018ab0856972e194cd934",
);

/// RFC 9369 Appendix A.2: the same client Initial under QUIC v2.
const RFC9369_A2: &str = concat!(
    "d76b3343cf088394c8f03e5157080000449ea0c95e82ffe67b6abcdb4298b485",
    "dd04de806071bf03dceebfa162e75d6c96058bdbfb127cdfcbf903388e99ad04",
    "9f9a3dd4425ae4d0992cfff18ecf0fdb5a842d09747052f17ac2053d21f57c5d",
    "250f2c4f0e0202b70785b7946e992e58a59ac52dea6774d4f03b55545243cf1a",
    "12834e3f249a78d395e0d18f4d766004f1a2674802a747eaa901c3f10cda5500",
    "cb9122faa9f1df66c392079a1b40f0de1c6054196a11cbea40afb6ef5253cd68",
    "18f6625efce3b6def6ba7e4b37a40f7732e093daa7d52190935b8da58976ff33",
    "12ae50b187c1433c0f028edcc4c2838b6a9bfc226ca4b4530e7a4ccee1bfa2a3",
    "d396ae5a3fb512384b2fdd851f784a65e03f2c4fbe11a53c7777c023462239dd",
    "6f7521a3f6c7d5dd3ec9b3f233773d4b46d23cc375eb198c63301c21801f6520",
    "bcfb7966fc49b393f0061d974a2706df8c4a9449f11d7f3d2dcbb90c6b877045",
    "636e7c0c0fe4eb0f697545460c806910d2c355f1d253bc9d2452aaa549e27a1f",
    "ac7cf4ed77f322e8fa894b6a83810a34b361901751a6f5eb65a0326e07de7c12",
    "16ccce2d0193f958bb3850a833f7ae432b65bc5a53975c155aa4bcb4f7b2c4e5",
    "4df16efaf6ddea94e2c50b4cd1dfe06017e0e9d02900cffe1935e0491d77ffb4",
    "fdf85290fdd893d577b1131a610ef6a5c32b2ee0293617a37cbb08b847741c3b",
    "8017c25ca9052ca1079d8b78aebd47876d330a30f6a8c6d61dd1ab5589329de7",
    "14d19d61370f8149748c72f132f0fc99f34d766c6938597040d8f9e2bb522ff9",
    "9c63a344d6a2ae8aa8e51b7b90a4a806105fcbca31506c446151adfeceb51b91",
    "abfe43960977c87471cf9ad4074d30e10d6a7f03c63bd5d4317f68ff325ba3bd",
    "80bf4dc8b52a0ba031758022eb025cdd770b44d6d6cf0670f4e990b22347a7db",
    "848265e3e5eb72dfe8299ad7481a408322cac55786e52f633b2fb6b614eaed18",
    "d703dd84045a274ae8bfa73379661388d6991fe39b0d93debb41700b41f90a15",
    "c4d526250235ddcd6776fc77bc97e7a417ebcb31600d01e57f32162a8560cacc",
    "7e27a096d37a1a86952ec71bd89a3e9a30a2a26162984d7740f81193e8238e61",
    "f6b5b984d4d3dfa033c1bb7e4f0037febf406d91c0dccf32acf423cfa1e70710",
    "10d3f270121b493ce85054ef58bada42310138fe081adb04e2bd901f2f13458b",
    "3d6758158197107c14ebb193230cd1157380aa79cae1374a7c1e5bbcb80ee23e",
    "06ebfde206bfb0fcbc0edc4ebec309661bdd908d532eb0c6adc38b7ca7331dce",
    "8dfce39ab71e7c32d318d136b6100671a1ae6a6600e3899f31f0eed19e3417d1",
    "34b90c9058f8632c798d4490da4987307cba922d61c39805d072b589bd52fdf1",
    "e86215c2d54e6670e07383a27bbffb5addf47d66aa85a0c6f9f32e59d85a44dd",
    "5d3b22dc2be80919b490437ae4f36a0ae55edf1d0b5cb4e9a3ecabee93dfc6e3",
    "8d209d0fa6536d27a5d6fbb17641cde27525d61093f1b28072d111b2b4ae5f89",
    "d5974ee12e5cf7d5da4d6a31123041f33e61407e76cffcdcfd7e19ba58cf4b53",
    "6f4c4938ae79324dc402894b44faf8afbab35282ab659d13c93f70412e85cb19",
    "9a37ddec600545473cfb5a05e08d0b209973b2172b4d21fb69745a262ccde96b",
    "a18b2faa745b6fe189cf772a9f84cbfc",
);

#[test]
fn rfc9001_a1_key_material() {
    let m = client_key_material(Version::V1, &RFC_DCID).unwrap();
    assert_eq!(
        m.secret.to_vec(),
        unhex("c00cf151ca5be075ed0ebfb5c80323c42d6b7db67881289af4008f1f6c357aea")
    );
    assert_eq!(m.key.to_vec(), unhex("1f369613dd76d5467730efcbe3b1a22d"));
    assert_eq!(m.iv.to_vec(), unhex("fa044b2f42a3fd3b46fb255c"));
    assert_eq!(m.hp.to_vec(), unhex("9f50449e04a0e810283a1e9933adedd2"));
}

#[test]
fn rfc9369_a1_key_material() {
    let m = client_key_material(Version::V2, &RFC_DCID).unwrap();
    assert_eq!(
        m.secret.to_vec(),
        unhex("14ec9d6eb9fd7af83bf5a668bc17a7e283766aade7ecd0891f70f9ff7f4bf47b")
    );
    assert_eq!(m.key.to_vec(), unhex("8b1a0bc121284290a29e0971b5cd045d"));
    assert_eq!(m.iv.to_vec(), unhex("91f73e2351d8fa91660e909f"));
    assert_eq!(m.hp.to_vec(), unhex("45b95e15235d6f45a6b19cbcb0294ba9"));
}

/// The plaintext the RFC samples carry: one CRYPTO frame then PADDING.
const RFC_CRYPTO_FRAME: &str = concat!(
    "060040f1010000ed0303ebf8fa56f12939b9584a3896472ec40bb863cfd3e868",
    "04fe3a47f06a2b69484c00000413011302010000c000000010000e00000b6578",
    "616d706c652e636f6dff01000100000a00080006001d00170018001000070005",
    "04616c706e000500050100000000003300260024001d00209370b2c9caa47fba",
    "baf4559fedba753de171fa71f50f1ce15d43e994ec74d748002b000302030400",
    "0d0010000e0403050306030203080408050806002d00020101001c0002400100",
    "3900320408ffffffffffffffff05048000ffff07048000ffff08011001048000",
    "75300901100f088394c8f03e51570806048000ffff",
);

fn check_rfc_sample(hex: &str, version: Version, first_unprotected: u8) {
    let packet = unhex(hex);
    assert_eq!(packet.len(), 1200);
    assert_eq!(is_initial(&packet), Some(version));
    let h = long_header(&packet).unwrap();
    assert_eq!(h.dcid, RFC_DCID);
    assert_eq!(h.pn_offset, 18);
    assert_eq!(h.end, 1200);
    let keys = Keys::derive(version, &RFC_DCID).unwrap();
    let mut scratch = vec![0; MAX_PACKET];
    let (pn, plain) = open(&keys, &packet, h.pn_offset, None, &mut scratch).unwrap();
    assert_eq!(pn, 2);
    assert_eq!(plain.len(), 1162);
    let frame = unhex(RFC_CRYPTO_FRAME);
    assert_eq!(&plain[..frame.len()], &frame[..]);
    assert!(plain[frame.len()..].iter().all(|&b| b == 0));
    // Header protection removed: the RFC's unprotected header.
    assert_eq!(scratch[0], first_unprotected);
    assert_eq!(&scratch[18..22], &[0, 0, 0, 2]);

    let mut r = InitialReassembler::new();
    match r.push_datagram(&packet) {
        Parse::Found(hello) => {
            assert_eq!(hello.sni, Some("example.com"));
            assert_eq!(hello.alpn, Some(&b"alpn"[..]));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(r.version(), Some(version));
    // Found again on a repeat; a corrupted copy is not decryptable.
    assert!(matches!(r.push_datagram(&packet), Parse::Found(_)));
    let mut bad = packet.clone();
    bad[600] ^= 1;
    assert_eq!(
        InitialReassembler::new().push_datagram(&bad),
        Parse::NotThis
    );
}

/// RFC 9001 Appendix A.3: the server's Initial looks like an Initial
/// but does not open with client keys.
#[test]
fn rfc9001_a3_server_initial_is_not_a_client_initial() {
    let packet = unhex(concat!(
        "cf000000010008f067a5502a4262b5004075c0d95a482cd0991cd25b0aac406a",
        "5816b6394100f37a1c69797554780bb38cc5a99f5ede4cf73c3ec2493a1839b3",
        "dbcba3f6ea46c5b7684df3548e7ddeb9c3bf9c73cc3f3bded74b562bfb19fb84",
        "022f8ef4cdd93795d77d06edbb7aaf2f58891850abbdca3d20398c276456cbc4",
        "2158407dd074ee",
    ));
    assert_eq!(is_initial(&packet), Some(Version::V1));
    let mut r = InitialReassembler::new();
    assert_eq!(r.push_datagram(&packet), Parse::NotThis);
    assert_eq!(r.version(), None);
}

#[test]
fn rfc9001_a2_client_initial() {
    check_rfc_sample(RFC9001_A2, Version::V1, 0xc3);
}

#[test]
fn rfc9369_a2_client_initial() {
    check_rfc_sample(RFC9369_A2, Version::V2, 0xd3);
}

/// Builds a protected client Initial packet (the inverse of [`open`]).
pub(crate) fn protect(version: Version, dcid: &[u8], pn: u32, frames: &[u8]) -> Vec<u8> {
    protect_with(version, dcid, dcid, pn, frames)
}

pub(crate) fn crypto_frame(offset: usize, data: &[u8]) -> Vec<u8> {
    let mut f = vec![0x06, 0x80];
    f.extend(&(offset as u32).to_be_bytes()[1..]);
    f.extend((0x4000 | data.len() as u16).to_be_bytes());
    f.extend(data);
    f
}

/// A ClientHello handshake message with the given SNI, padded by an
/// unknown extension to about `size` bytes.
pub(crate) fn hello_message(sni: &[u8], size: usize) -> Vec<u8> {
    let mut exts = vec![0x00, 0x00];
    exts.extend(((sni.len() + 5) as u16).to_be_bytes());
    exts.extend(((sni.len() + 3) as u16).to_be_bytes());
    exts.push(0);
    exts.extend((sni.len() as u16).to_be_bytes());
    exts.extend(sni);
    exts.extend([0x00, 0x10, 0x00, 0x05, 0x00, 0x03, 0x02, b'h', b'3']);
    let pad = size.saturating_sub(exts.len() + 50);
    exts.extend([0xfe, 0x02]);
    exts.extend((pad as u16).to_be_bytes());
    exts.extend(vec![0x5a; pad]);
    let mut body = vec![0x03, 0x03];
    body.extend([7; 32]);
    body.extend([0, 0, 2, 0x13, 0x01, 1, 0]);
    body.extend((exts.len() as u16).to_be_bytes());
    body.extend(exts);
    let mut m = vec![1, 0];
    m.extend((body.len() as u16).to_be_bytes());
    m.extend(body);
    m
}

/// Chrome-style "chaos protection": the ClientHello cut in pieces sent
/// as shuffled CRYPTO frames with PING and PADDING in between, over
/// two packets, for every version.
#[test]
fn shuffled_crypto_frames_over_two_packets() {
    let dcid = [0x5e; 8];
    let msg = hello_message(b"teams.microsoft.com", 1800);
    let cuts = [0, 40, 90, 400, 700, 1000, 1300, 1500, msg.len()];
    let pieces: Vec<Vec<u8>> = cuts
        .windows(2)
        .map(|w| crypto_frame(w[0], &msg[w[0]..w[1]]))
        .collect();
    let mut p1 = Vec::new();
    for i in [3, 0, 6] {
        p1.extend(&pieces[i]);
        p1.extend([0x01, 0x00, 0x00]);
    }
    let mut p2 = vec![0x02, 0x00, 0x00, 0x00, 0x00]; // ACK
    for i in [7, 1, 4, 2, 5] {
        p2.extend([0x01]);
        p2.extend(&pieces[i]);
    }
    p2.extend([0; 20]);
    for v in [Version::V1, Version::V2, Version::Draft29, Version::Draft23] {
        let a = protect(v, &dcid, 0, &p1);
        let b = protect(v, &dcid, 1, &p2);
        assert_eq!(is_initial(&a), Some(v));
        let mut r = InitialReassembler::new();
        assert_eq!(r.push_datagram(&a), Parse::NeedMore, "{v:?}");
        match r.push_datagram(&b) {
            Parse::Found(h) => {
                assert_eq!(h.sni, Some("teams.microsoft.com"));
                assert_eq!(h.alpn, Some(&b"h3"[..]));
            }
            other => panic!("{v:?}: {other:?}"),
        }
        // Coalesced, second packet first.
        let mut r = InitialReassembler::new();
        assert!(matches!(r.push_datagram(&[b, a].concat()), Parse::Found(_)));
    }
}

/// After the server's Initial, a client sends to the server's
/// connection ID but keeps the keys of its first DCID.
#[test]
fn keys_kept_after_dcid_change() {
    let msg = hello_message(b"www.youtube.com", 1500);
    let a = protect(Version::V1, &[1; 8], 0, &crypto_frame(0, &msg[..1000]));
    let b = protect_with(
        Version::V1,
        &[1; 8],
        &[9; 5],
        1,
        &crypto_frame(1000, &msg[1000..]),
    );
    let mut r = InitialReassembler::new();
    assert_eq!(r.push_datagram(&a), Parse::NeedMore);
    assert!(matches!(r.push_datagram(&b), Parse::Found(h) if h.sni == Some("www.youtube.com")));
    // Alone, the second packet cannot be decrypted.
    assert_eq!(InitialReassembler::new().push_datagram(&b), Parse::NotThis);
}

/// A protected client Initial with keys from `key_dcid` and
/// `wire_dcid` in its header, 4-byte packet number.
fn protect_with(v: Version, key_dcid: &[u8], wire_dcid: &[u8], pn: u32, frames: &[u8]) -> Vec<u8> {
    let m = client_key_material(v, key_dcid).unwrap();
    let mut p = vec![0xc3 | v.initial_type() << 4];
    p.extend(
        match v {
            Version::V1 => 1u32,
            Version::V2 => 0x6b33_43cf,
            Version::Draft29 => 0xff00_001d,
            Version::Draft23 => 0xff00_001b,
            Version::T051 => 0x5430_3531,
        }
        .to_be_bytes(),
    );
    p.push(wire_dcid.len() as u8);
    p.extend(wire_dcid);
    p.extend([0, 0]); // no SCID, no token
    let len = 4 + frames.len() + AEAD_TAG_LEN;
    p.extend((0x4000 | len as u16).to_be_bytes());
    let pn_offset = p.len();
    p.extend(pn.to_be_bytes());
    let mut payload = frames.to_vec();
    let key = LessSafeKey::new(UnboundKey::new(&aead::AES_128_GCM, &m.key).unwrap());
    let mut nonce = m.iv;
    for (n, b) in nonce[4..].iter_mut().zip(u64::from(pn).to_be_bytes()) {
        *n ^= b;
    }
    let tag = key
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(&p[..]),
            &mut payload,
        )
        .unwrap();
    p.extend(payload);
    p.extend(tag.as_ref());
    let hp = HeaderProtectionKey::new(&AES_128, &m.hp).unwrap();
    let mask = hp.new_mask(&p[pn_offset + 4..pn_offset + 20]).unwrap();
    p[0] ^= mask[0] & 0x0f;
    for i in 0..4 {
        p[pn_offset + i] ^= mask[1 + i];
    }
    p
}

#[test]
fn gives_up_on_oversized_or_foreign_crypto_data() {
    let dcid = [3; 8];
    // A ClientHello declaring more than CRYPTO_CAP bytes.
    let big = crypto_frame(0, &[1, 0, 0x50, 0x00, 3, 3]);
    let mut r = InitialReassembler::new();
    assert_eq!(
        r.push_datagram(&protect(Version::V1, &dcid, 0, &big)),
        Parse::NotThis
    );
    // Final: a good packet afterwards does not revive it.
    let good = protect(
        Version::V1,
        &dcid,
        1,
        &crypto_frame(0, &hello_message(b"a.b", 300)),
    );
    assert_eq!(r.push_datagram(&good), Parse::NotThis);
    assert!(matches!(
        InitialReassembler::new().push_datagram(&good),
        Parse::Found(_)
    ));
    // A ServerHello (type 2) in the CRYPTO stream.
    let server = crypto_frame(0, &[2, 0, 0, 40]);
    let mut r = InitialReassembler::new();
    assert_eq!(
        r.push_datagram(&protect(Version::V1, &dcid, 0, &server)),
        Parse::NotThis
    );
    // ACK-only Initial: decryptable, nothing yet.
    let mut r = InitialReassembler::new();
    let ack = protect(
        Version::V1,
        &dcid,
        0,
        &[0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    );
    assert_eq!(r.push_datagram(&ack), Parse::NeedMore);
    assert!(matches!(r.push_datagram(&good), Parse::Found(_)));
}

/// The CRYPTO stream takes memory as data arrives, each growth asked
/// for first: a ~1.9 KiB ClientHello (Chrome's, post-quantum) over two
/// packets costs about that much, a refusal makes the reassembler give
/// up for good, and nothing is allocated before decryption.
#[test]
fn crypto_stream_grows_with_the_data_and_only_when_allowed() {
    let dcid = [6; 8];
    let msg = hello_message(b"www.google.com", 1900);
    let a = protect(Version::V1, &dcid, 0, &crypto_frame(0, &msg[..1100]));
    let b = protect(Version::V1, &dcid, 1, &crypto_frame(1100, &msg[1100..]));
    let mut granted = 0;
    let mut r = InitialReassembler::new();
    assert_eq!(r.heap_bytes(), 0);
    let mut allow = |n: usize| {
        granted += n;
        true
    };
    assert_eq!(r.push_datagram_with(&a, &mut allow), Parse::NeedMore);
    assert!(matches!(
        r.push_datagram_with(&b, &mut allow),
        Parse::Found(h) if h.sni == Some("www.google.com")
    ));
    assert_eq!(granted, r.heap_bytes());
    // The stream and its bitmap, rounded to 64 bytes: not the cap.
    assert!(r.heap_bytes() >= msg.len() && r.heap_bytes() < msg.len() + 64 + 300);
    assert!(!r.refused());

    // Refused on the second packet: final.
    let mut r = InitialReassembler::new();
    let mut calls = 0;
    let mut stingy = |_: usize| {
        calls += 1;
        calls == 1
    };
    assert_eq!(r.push_datagram_with(&a, &mut stingy), Parse::NeedMore);
    assert_eq!(r.push_datagram_with(&b, &mut stingy), Parse::NotThis);
    assert!(r.refused());
    assert_eq!(r.push_datagram(&b), Parse::NotThis);
    // Garbage that is not decryptable allocates nothing.
    let mut r = InitialReassembler::new();
    let mut bad = a.clone();
    bad[600] ^= 1;
    assert_eq!(
        r.push_datagram_with(&bad, &mut |_| panic!("asked for memory")),
        Parse::NotThis
    );
    assert_eq!(r.heap_bytes(), 0);
}

#[test]
fn gives_up_after_max_datagrams() {
    let dcid = [4; 8];
    let msg = hello_message(b"x.example", 300);
    let part = protect(Version::V1, &dcid, 0, &crypto_frame(0, &msg[..100]));
    let rest = protect(Version::V1, &dcid, 1, &crypto_frame(100, &msg[100..]));
    let mut r = InitialReassembler::new();
    for _ in 0..MAX_DATAGRAMS {
        assert_eq!(r.push_datagram(&part), Parse::NeedMore);
    }
    assert_eq!(r.push_datagram(&rest), Parse::NotThis);
}

#[test]
fn frames_beyond_the_cap_and_bad_frames() {
    let mut c = CryptoStream::new();
    c.insert(u64::MAX, &[1, 2, 3], &mut |_| true);
    c.insert(CRYPTO_CAP as u64 - 1, &[1, 2, 3], &mut |_| true);
    assert_eq!(c.prefix(), 0);
    c.insert(0, &[9; 70], &mut |_| true);
    assert_eq!(c.prefix(), 70);
    c.insert(64, &[9; 100], &mut |_| true);
    assert_eq!(c.prefix(), 164);
    // Unknown frame type (STREAM) stops the walk; ACK with ECN counts.
    assert_eq!(
        walk_frames(&[0x08, 0, 0], 0x06, &mut c, &mut |_| true),
        None
    );
    assert_eq!(
        walk_frames(
            &[0x03, 1, 0, 1, 0, 0, 0, 5, 6, 7],
            0x06,
            &mut c,
            &mut |_| true
        ),
        Some(())
    );
    assert_eq!(
        walk_frames(&[0x03, 1, 0, 1, 0, 0], 0x06, &mut c, &mut |_| true),
        None
    );
    assert_eq!(
        walk_frames(
            &[
                0x02, 0x3f, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0
            ],
            0x06,
            &mut c,
            &mut |_| true
        ),
        None
    );
    assert_eq!(
        walk_frames(
            &[0x1c, 0, 0, 3, b'b', b'y', b'e', 0, 0],
            0x06,
            &mut c,
            &mut |_| true
        ),
        Some(())
    );
    assert_eq!(
        walk_frames(&[0x06, 0, 5, 1], 0x06, &mut c, &mut |_| true),
        None
    );
}

#[test]
fn packet_number_decoding() {
    assert_eq!(decode_pn(None, 0, 8), 0);
    assert_eq!(decode_pn(None, 2, 32), 2);
    assert_eq!(decode_pn(Some(0xa82f30ea), 0x9b32, 16), 0xa82f9b32);
    assert_eq!(decode_pn(Some(255), 0, 8), 256);
    assert_eq!(decode_pn(Some(300), 0xff, 8), 255);
}

#[test]
fn header_checks() {
    let a = protect(Version::V1, &[1; 8], 0, &[0; 1170]);
    assert_eq!(is_initial(&a), Some(Version::V1));
    assert_eq!(is_initial(&a[..a.len() - 1]), None); // Length past the end
    let mut short = a.clone();
    short[0] &= 0x7f;
    assert_eq!(is_initial(&short), None);
    let mut handshake = a.clone();
    handshake[0] |= 0x20; // type 2
    assert_eq!(is_initial(&handshake), None);
    let mut v = a.clone();
    v[4] = 2;
    assert_eq!(is_initial(&v), None); // unknown version
    let mut long_cid = a.clone();
    long_cid[5] = 21;
    assert_eq!(is_initial(&long_cid), None);
    assert_eq!(is_initial(&[0xc0, 0, 0, 0, 1]), None);
    assert_eq!(is_initial(&[]), None);
    // v2 Initial type bits are 0b01; 0b00 is its Retry.
    let b = protect(Version::V2, &[1; 8], 0, &[0; 1170]);
    assert_eq!(is_initial(&b), Some(Version::V2));
    let mut retry = b.clone();
    retry[0] &= !0x30;
    assert_eq!(is_initial(&retry), None);
}

const VERSIONS: [Version; 5] = [
    Version::V1,
    Version::V2,
    Version::Draft29,
    Version::Draft23,
    Version::T051,
];

proptest::proptest! {
    /// Decryptable packets with random frames: the frame walker and the
    /// TLS parser behind it never panic.
    #[test]
    fn decrypted_random_frames(
        frames in proptest::collection::vec(proptest::num::u8::ANY, 0..1300),
        v in 0..VERSIONS.len(),
    ) {
        let packet = protect(VERSIONS[v], &[7; 8], 0, &frames);
        let mut r = InitialReassembler::new();
        let _ = r.push_datagram(&packet);
        let _ = r.push_datagram(&[packet.clone(), packet].concat());
    }

    /// A mutated ClientHello in valid CRYPTO frames over two packets.
    #[test]
    fn decrypted_mutated_hello(
        edits in proptest::collection::vec((0usize..2000, proptest::num::u8::ANY), 1..8),
        split in 1usize..1000,
        v in 0..4usize,
    ) {
        let mut msg = hello_message(b"contoso.sharepoint.com", 1200);
        // Past the handshake header: all bytes are there, so the
        // verdict is final either way.
        for (i, b) in edits {
            let n = msg.len() - 4;
            msg[4 + i % n] = b;
        }
        let split = split.min(msg.len() - 1);
        let crypto = if VERSIONS[v] == Version::T051 { 0x08 } else { 0x06 };
        let mut f1 = crypto_frame(0, &msg[..split]);
        let mut f2 = crypto_frame(split, &msg[split..]);
        f1[0] = crypto;
        f2[0] = crypto;
        let mut r = InitialReassembler::new();
        let _ = r.push_datagram(&protect(VERSIONS[v], &[8; 8], 0, &f1));
        let verdict = r.push_datagram(&protect(VERSIONS[v], &[8; 8], 1, &f2));
        proptest::prop_assert_ne!(verdict, Parse::NeedMore);
    }

    #[test]
    fn walk_random_plaintext(
        bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..1500),
    ) {
        let mut c = CryptoStream::new();
        let _ = walk_frames(&bytes, 0x06, &mut c, &mut |_| true);
        let _ = walk_frames(&bytes, 0x08, &mut c, &mut |_| true);
        proptest::prop_assert!(c.prefix() <= CRYPTO_CAP);
    }

    /// The received-bytes bitmap agrees with a naive model.
    #[test]
    fn crypto_prefix_model(
        ranges in proptest::collection::vec((0u64..17_000, 0usize..2_000), 0..20),
    ) {
        let mut c = CryptoStream::new();
        let mut model = vec![false; CRYPTO_CAP];
        for (offset, len) in ranges {
            c.insert(offset, &vec![0xab; len], &mut |_| true);
            let start = (offset as usize).min(CRYPTO_CAP);
            let end = (offset as usize + len).min(CRYPTO_CAP);
            model[start..end].fill(true);
        }
        let expected = model.iter().take_while(|&&b| b).count();
        proptest::prop_assert_eq!(c.prefix(), expected);
    }
}
