//! Fuzzing findings, replayed by plain `cargo test` (no fuzzing toolchain).
//!
//! The harnesses of the cargo-fuzz targets live in `fuzz/src/lib.rs`; this
//! file compiles that same source, so each input below goes through exactly
//! the checks the fuzzer applied. Replayed:
//! - every file under `fuzz/regressions/<target>/`: the inputs with which
//!   a fuzzer found a crash or a hang (each fixed in `src/`; SECURITY.md,
//!   section Fuzzing, lists them);
//! - a sample of each committed corpus `fuzz/corpus/<target>/`, cheaply,
//!   so a change that breaks a harness's checks on known-good inputs shows
//!   here and not only in a fuzzing run.

#[path = "../fuzz/src/lib.rs"]
mod harness;

use std::path::Path;

/// Files of `dir`, sorted by name (empty if there is no such directory).
fn files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    v.retain(|p| p.is_file());
    v.sort();
    v
}

/// Runs `harness` on every regression input of `target` and on at most
/// `sample` files of its corpus (spread evenly over it).
fn replay(target: &str, harness: fn(&[u8]), sample: usize) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let corpus = files(&root.join("corpus").join(target));
    assert!(!corpus.is_empty(), "no committed corpus for {target}");
    let step = corpus.len().div_ceil(sample.max(1)).max(1);
    let inputs = files(&root.join("regressions").join(target))
        .into_iter()
        .chain(corpus.into_iter().step_by(step));
    for path in inputs {
        let data = std::fs::read(&path).unwrap();
        let run = std::panic::catch_unwind(|| harness(&data));
        assert!(run.is_ok(), "{target}: {} fails", path.display());
    }
}

#[test]
fn packet() {
    replay("packet", harness::packet, 400);
}

#[test]
fn engine() {
    replay("engine", harness::engine, 40);
}

#[test]
fn classify() {
    replay("classify", harness::classify, 40);
}

#[test]
fn tls() {
    replay("tls", harness::tls, 400);
}

#[test]
fn tls_server() {
    replay("tls_server", harness::tls_server, 400);
}

#[test]
fn quic() {
    replay("quic", harness::quic, 100);
}

#[test]
fn dns() {
    replay("dns", harness::dns, 400);
}

#[test]
fn http() {
    replay("http", harness::http, 400);
}

#[test]
fn rtp() {
    replay("rtp", harness::rtp, 400);
}

#[test]
fn stun() {
    replay("stun", harness::stun, 400);
}

#[test]
fn dtls() {
    replay("dtls", harness::dtls, 400);
}

#[test]
fn rpc() {
    replay("rpc", harness::rpc, 400);
}

#[test]
fn config() {
    replay("config", harness::config, 60);
}

#[test]
fn catalog() {
    replay("catalog", harness::catalog, 60);
}

#[test]
fn api() {
    replay("api", harness::api, 60);
    // In the same test: the harness's daemon is shared by the process.
    api_harness_applies_valid_changes_only();
}

/// The QUIC harness's own encryption (its "sealed" mode) must produce
/// Initial packets qosd decrypts, or that mode would fuzz nothing past the
/// AEAD check: a TLS fixture's ClientHello, in two CRYPTO frames over two
/// packets, for every version.
#[test]
fn quic_harness_seals_what_qosd_opens() {
    use qosd::classify::dpi::Parse;
    use qosd::classify::dpi::quic::InitialReassembler;
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/tls_chrome.hex");
    let hex = std::fs::read_to_string(path).unwrap();
    let hex = hex.trim();
    let stream: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    let msg = &stream[5..];
    let crypto = |ty: u8, offset: usize, data: &[u8]| {
        let mut f = vec![ty, 0x80, 0];
        f.extend((offset as u16).to_be_bytes());
        f.extend((0x4000 | data.len() as u16).to_be_bytes());
        f.extend(data);
        f
    };
    let cut = msg.len() / 2;
    for v in 0..5 {
        let ty = if v == 4 { 0x08 } else { 0x06 }; // Google T051
        let dcid = [0x83, 0x94, 0xc8, 0xf0, 0x3e, 0x51, 0x57, 0x08];
        let a = harness::quic_protect(v, &dcid, &dcid, 0, &crypto(ty, cut, &msg[cut..]));
        let b = harness::quic_protect(v, &dcid, &[9; 5], 1, &crypto(ty, 0, &msg[..cut]));
        let mut r = InitialReassembler::new();
        assert_eq!(r.push_datagram(&a), Parse::NeedMore, "version {v}");
        match r.push_datagram(&b) {
            Parse::Found(h) => assert!(h.sni.is_some(), "version {v}"),
            other => panic!("version {v}: {other:?}"),
        }
    }
}

/// The API harness must really reach `change_category` (a harness that
/// only ever got 401 would fuzz nothing): a valid body changes the
/// category, an invalid one is refused and changes nothing.
fn api_harness_applies_valid_changes_only() {
    let request = |pick: u8, body: &str| {
        let mut input = vec![pick];
        input.extend((body.len() as u16).to_le_bytes());
        input.extend(body.as_bytes());
        input
    };
    let business = |cfg: &qosd::config::Config| {
        let c = cfg
            .category
            .iter()
            .position(|c| c.name == "business")
            .unwrap();
        (c as u8, cfg.category[c].weight)
    };
    let (pick, _) = business(&harness::DEFAULT);
    harness::api(&request(pick, r#"{"weight": 37}"#));
    assert_eq!(business(&harness::api_config()).1, 37);
    // The harness starts every input from the default configuration.
    harness::api(&request(pick, r#"{"weight": 1001}"#));
    assert_eq!(*harness::api_config(), *harness::DEFAULT);
}
