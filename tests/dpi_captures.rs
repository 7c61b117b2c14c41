//! TLS ClientHellos and QUIC Initials extracted from the real captures in
//! the development set (`tests/data/*.hex`: one packet payload per line, in
//! the order the client sent them).

use qosd::classify::dpi::Parse;
use qosd::classify::dpi::quic::{InitialReassembler, Version, is_initial};
use qosd::classify::dpi::tls::{client_hello, hello_len};

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

/// Each TLS fixture: whole, then cut at every length (a valid prefix).
#[test]
fn tls_client_hellos_from_captures() {
    for (file, sni, alpn, version, ech) in [
        (
            "tls_chrome.hex",
            "www.iit.cnr.it",
            Some(&b"h2"[..]),
            0x0303,
            false,
        ),
        ("tls_safari.hex", "www.ntop.org", Some(b"h2"), 0x0303, false),
        (
            "tls_ech.hex",
            "performance.radar.cloudflare.com",
            Some(b"h2"),
            0x0303,
            true,
        ),
        ("tls_rdn_tls10.hex", "ads1.msads.net", None, 0x0301, false),
    ] {
        let stream = &fixture(file)[0];
        let Parse::Found(hello) = client_hello(stream) else {
            panic!("{file}: {:?}", client_hello(stream));
        };
        assert_eq!(hello.sni, Some(sni), "{file}");
        assert_eq!(hello.alpn, alpn, "{file}");
        assert_eq!(hello.legacy_version, version, "{file}");
        assert_eq!(hello.ech, ech, "{file}");
        assert_eq!(hello_len(stream), Some(stream.len()), "{file}");
        for cut in 0..stream.len() {
            assert_eq!(
                client_hello(&stream[..cut]),
                Parse::NeedMore,
                "{file} cut {cut}"
            );
            if cut >= 9 {
                assert_eq!(
                    hello_len(&stream[..cut]),
                    Some(stream.len()),
                    "{file} cut {cut}"
                );
            }
        }
    }
}

/// Each QUIC fixture: the client's first datagrams of a flow. The first
/// carries the whole ClientHello; later ones (retransmissions, Handshake
/// packets) keep the verdict.
#[test]
fn quic_initials_from_captures() {
    for (file, version, sni, alpn) in [
        (
            "quic_v1_snapchat.hex",
            Version::V1,
            Some("str1-euwest1-34-246-231-140.addlive.io"),
            &b"h3"[..],
        ),
        (
            "quic_draft27.hex",
            Version::Draft23,
            Some("play.google.com"),
            b"h3-27",
        ),
        (
            "quic_mvfst27.hex",
            Version::Draft23,
            Some("graph.facebook.com"),
            b"h3-fb-05",
        ),
        (
            "quic_mvfst_exp.hex",
            Version::Draft23,
            Some("video.fmct2-3.fna.fbcdn.net"),
            b"h3-fb-05",
        ),
        (
            "quic_t051.hex",
            Version::T051,
            Some("www.google.com"),
            b"h3-T051",
        ),
        // DNS over QUIC to a literal address: no server name.
        ("quic_draft32_doq.hex", Version::Draft29, None, b"doq-i00"),
    ] {
        let datagrams = fixture(file);
        assert_eq!(is_initial(&datagrams[0]), Some(version), "{file}");
        let mut r = InitialReassembler::new();
        for (i, d) in datagrams.iter().enumerate() {
            match r.push_datagram(d) {
                Parse::Found(hello) => {
                    assert_eq!(hello.sni, sni, "{file} #{i}");
                    assert_eq!(hello.alpn, Some(alpn), "{file} #{i}");
                }
                other => panic!("{file} #{i}: {other:?}"),
            }
        }
        assert_eq!(r.version(), Some(version), "{file}");
        // The small later datagrams are not client Initials on their own.
        for d in datagrams.iter().filter(|d| d.len() < 1200) {
            assert_eq!(is_initial(d), None, "{file}");
            assert_eq!(
                InitialReassembler::new().push_datagram(d),
                Parse::NotThis,
                "{file}"
            );
        }
    }
}
