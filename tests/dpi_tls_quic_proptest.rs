//! Property tests: the TLS and QUIC parsers never panic (nor hang) on
//! random bytes or on mutated real handshakes, and agree with themselves.

use proptest::prelude::*;
use qosd::classify::dpi::Parse;
use qosd::classify::dpi::quic::{InitialReassembler, is_initial};
use qosd::classify::dpi::tls::{
    client_hello, client_hello_message, hello_len, parse_client_hello_body, plausible_host,
};

fn fixture(name: &str) -> Vec<Vec<u8>> {
    let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            (0..l.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&l[i..i + 2], 16).unwrap())
                .collect()
        })
        .collect()
}

const TLS_FIXTURES: [&str; 4] = [
    "tls_chrome.hex",
    "tls_safari.hex",
    "tls_ech.hex",
    "tls_rdn_tls10.hex",
];

const QUIC_FIXTURES: [&str; 6] = [
    "quic_v1_snapchat.hex",
    "quic_draft27.hex",
    "quic_mvfst27.hex",
    "quic_mvfst_exp.hex",
    "quic_t051.hex",
    "quic_draft32_doq.hex",
];

/// An edit to a byte string.
#[derive(Debug, Clone)]
enum Mutation {
    Set(usize, u8),
    Xor(usize, u8),
    Insert(usize, u8),
    Remove(usize),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        (any::<usize>(), 1..=255u8).prop_map(|(i, b)| Mutation::Xor(i, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<usize>().prop_map(Mutation::Remove),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn mutate(mut bytes: Vec<u8>, edits: &[Mutation]) -> Vec<u8> {
    for m in edits {
        let n = bytes.len().max(1);
        match *m {
            Mutation::Set(i, b) if !bytes.is_empty() => bytes[i % n] = b,
            Mutation::Xor(i, b) if !bytes.is_empty() => bytes[i % n] ^= b,
            Mutation::Insert(i, b) => bytes.insert(i % (bytes.len() + 1), b),
            Mutation::Remove(i) if !bytes.is_empty() => {
                bytes.remove(i % n);
            }
            Mutation::Truncate(i) => bytes.truncate(i % n),
            _ => {}
        }
    }
    bytes
}

/// Runs every TLS entry point; checks they agree with each other.
fn exercise_tls(bytes: &[u8]) {
    let parsed = client_hello(bytes);
    let len = hello_len(bytes);
    if let Parse::Found(hello) = parsed {
        let n = len.expect("a found ClientHello has a length");
        assert!(n <= bytes.len());
        assert_eq!(client_hello(&bytes[..n]), parsed);
        if let Some(sni) = hello.sni {
            assert_eq!(plausible_host(sni.as_bytes()), Some(sni));
        }
    }
    if let Some(n) = len {
        assert!(n >= 9);
    }
    let _ = client_hello_message(bytes);
    let _ = parse_client_hello_body(bytes);
    let _ = plausible_host(bytes);
    // Past the record header, the same bytes as a bare message and body.
    if bytes.len() > 9 {
        let _ = client_hello_message(&bytes[5..]);
        let _ = parse_client_hello_body(&bytes[9..]);
    }
}

/// Splits a stream's single handshake record into records of the given
/// sizes (cycled).
fn refragment(stream: &[u8], sizes: &[usize]) -> Vec<u8> {
    let msg = &stream[5..];
    let mut out = Vec::new();
    let (mut at, mut i) = (0, 0);
    while at < msg.len() {
        let n = sizes[i % sizes.len()].min(msg.len() - at);
        out.extend([22, 3, 1]);
        out.extend((n as u16).to_be_bytes());
        out.extend(&msg[at..at + n]);
        at += n;
        i += 1;
    }
    out
}

proptest! {
    #[test]
    fn tls_random_bytes(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        exercise_tls(&bytes);
    }

    /// Random bytes behind a plausible record and handshake header, so the
    /// walk gets past the first checks.
    #[test]
    fn tls_random_body(body in prop::collection::vec(any::<u8>(), 0..1024), extra in 0usize..64) {
        let len = body.len() + extra;
        let mut s = vec![22, 3, 1];
        s.extend(((len + 4) as u16).to_be_bytes());
        s.extend([1, 0]);
        s.extend((len as u16).to_be_bytes());
        s.extend(&body);
        exercise_tls(&s);
        let _ = parse_client_hello_body(&body);
    }

    #[test]
    fn tls_mutated_real_hellos(
        which in 0..TLS_FIXTURES.len(),
        edits in prop::collection::vec(mutation(), 1..6),
    ) {
        let stream = fixture(TLS_FIXTURES[which]).remove(0);
        exercise_tls(&mutate(stream, &edits));
    }

    /// A real ClientHello re-cut into records of arbitrary sizes is still
    /// found, with its name unless a record boundary cuts through it.
    #[test]
    fn tls_refragmented_real_hellos(
        which in 0..TLS_FIXTURES.len(),
        sizes in prop::collection::vec(1usize..600, 1..8),
    ) {
        let stream = fixture(TLS_FIXTURES[which]).remove(0);
        let Parse::Found(whole) = client_hello(&stream) else { panic!() };
        let cut = refragment(&stream, &sizes);
        prop_assert_eq!(hello_len(&cut), Some(cut.len()));
        let Parse::Found(hello) = client_hello(&cut) else {
            panic!("{:?}", client_hello(&cut));
        };
        prop_assert!(hello.sni.is_none() || hello.sni == whole.sni);
        prop_assert_eq!(hello.legacy_version, whole.legacy_version);
        prop_assert_eq!(client_hello(&cut[..cut.len() - 1]), Parse::NeedMore);
    }

    #[test]
    fn quic_random_datagrams(datagrams in prop::collection::vec(
        prop::collection::vec(any::<u8>(), 0..1500), 1..4,
    )) {
        let mut r = InitialReassembler::new();
        for d in &datagrams {
            let _ = is_initial(d);
            prop_assert_eq!(r.push_datagram(d), Parse::NotThis);
        }
    }

    /// Random bytes behind a valid-looking v1 Initial header.
    #[test]
    fn quic_random_after_header(
        dcid in prop::collection::vec(any::<u8>(), 0..21),
        body in prop::collection::vec(any::<u8>(), 0..1400),
        first in 0xc0u8..=0xcf,
    ) {
        let mut d = vec![first, 0, 0, 0, 1, dcid.len() as u8];
        d.extend(&dcid);
        d.extend([0, 0]);
        d.extend((0x4000 | body.len() as u16).to_be_bytes());
        d.extend(&body);
        let _ = is_initial(&d);
        let mut r = InitialReassembler::new();
        prop_assert_eq!(r.push_datagram(&d), Parse::NotThis);
    }

    #[test]
    fn quic_mutated_real_initials(
        which in 0..QUIC_FIXTURES.len(),
        edits in prop::collection::vec(mutation(), 1..4),
    ) {
        let datagrams = fixture(QUIC_FIXTURES[which]);
        let bad = mutate(datagrams[0].clone(), &edits);
        let _ = is_initial(&bad);
        let mut r = InitialReassembler::new();
        let _ = r.push_datagram(&bad);
        // The untouched datagram still completes it (unless the mutation
        // left a valid but different packet, which AEAD makes unlikely).
        for d in &datagrams {
            let _ = r.push_datagram(d);
        }
    }
}
