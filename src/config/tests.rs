use std::collections::HashMap;
use std::path::Path;

use super::*;

/// A minimal valid configuration; cases below edit it.
const BASE: &str = r#"
default_category = "web"
[link]
upload = "20 Mbit"
download = "50 Mbit"
[[category]]
name = "voice"
priority = 0
min = "10%"
max = "30%"
[[category]]
name = "web"
"#;

fn load(text: &str) -> Result<Config, ConfigErrors> {
    load_str("test.toml", text, &Env::None)
}

fn errors(text: &str) -> Vec<ConfigError> {
    match load(text) {
        Ok(_) => panic!("expected errors for:\n{text}"),
        Err(e) => e.0,
    }
}

#[test]
fn base_is_valid() {
    let cfg = load(BASE).unwrap();
    assert_eq!(cfg.category.len(), 2);
    assert_eq!(cfg.default_category_id(), CategoryId(1));
    assert_eq!(cfg.link.upload, Rate::from_bps(20_000_000));
    let voice = &cfg.category[0];
    assert_eq!(
        voice.min_rate(Direction::Upload, &cfg.link),
        Rate::from_bps(2_000_000)
    );
    assert_eq!(
        voice.max_rate(Direction::Download, &cfg.link),
        Rate::from_bps(15_000_000)
    );
    // Defaults filled in.
    assert_eq!(cfg.category[1].weight, 10);
    assert_eq!(cfg.category[1].priority, 4);
    assert_eq!(cfg.flows.max_flows, 65_536);
    assert_eq!(cfg.classify.dpi_memory.bytes(), 32 << 20);
    assert_eq!(cfg.metrics.listen.to_string(), DEFAULT_METRICS_LISTEN);
    assert_eq!(cfg.interfaces.lan, "lan0");
}

/// Each case: (what to do to BASE, expected key path, expected words in the
/// message). Every validation error the foundation issue lists is here.
#[test]
fn validation_errors_name_key_and_problem() {
    let cases: &[(&str, &str, &str, &str)] = &[
        // (description, toml, key, message fragment)
        (
            "unknown key",
            "[link]\nuplaod = \"1 Mbit\"",
            "link.uplaod",
            "unknown key",
        ),
        (
            "unknown section",
            "[metric]\nlisten = \"127.0.0.1:1\"",
            "metric",
            "unknown key",
        ),
        (
            "dpi_memory too large",
            "[classify]\ndpi_memory = \"8 GiB\"",
            "classify.dpi_memory",
            "dpi_memory 8 GiB is out of range (0 B-4 GiB)",
        ),
        (
            "dpi_memory in bits",
            "[classify]\ndpi_memory = \"32 Mbit\"",
            "classify.dpi_memory",
            "counts bits; write memory in bytes",
        ),
        (
            "unknown category key",
            "[[category]]\nname = \"x\"\ncolour = 1",
            "category[2].colour",
            "unknown key",
        ),
        (
            "duplicate category",
            "[[category]]\nname = \"voice\"",
            "category[2].name",
            "duplicate category name \"voice\"",
        ),
        (
            "rule unknown category",
            "[[rule]]\ncategory = \"vocie\"\nports = 5060",
            "rule[0].category",
            "unknown category \"vocie\"",
        ),
        (
            "sum of min over 100%",
            "[[category]]\nname = \"bulk\"\nmin = \"95%\"",
            "category",
            "add up to 105% of the upload link",
        ),
        (
            "min above max",
            "[[category]]\nname = \"bulk\"\nmin = \"5 Mbit\"\nmax = \"2 Mbit\"",
            "category[2].min",
            "is above max",
        ),
        (
            "min above link",
            "[[category]]\nname = \"bulk\"\nmin = \"30 Mbit\"",
            "category[2].min",
            "above the upload link rate (20 Mbit)",
        ),
        (
            "zero max",
            "[[category]]\nname = \"bulk\"\nmax = \"0 Mbit\"",
            "category[2].max",
            "zero",
        ),
        (
            "zero max percent",
            "[[category]]\nname = \"bulk\"\nmax = \"0%\"",
            "category[2].max",
            "zero",
        ),
        (
            "percent over 100",
            "[[category]]\nname = \"bulk\"\nmax = \"120%\"",
            "category[2].max",
            "above 100%",
        ),
        (
            "negative min",
            "[[category]]\nname = \"bulk\"\nmin = \"-1 Mbit\"",
            "category[2].min",
            "negative",
        ),
        (
            "unknown dscp",
            "[[category]]\nname = \"bulk\"\ndscp = \"EFF\"",
            "category[2].dscp",
            "unknown DSCP \"EFF\"",
        ),
        (
            "dscp out of range",
            "[[category]]\nname = \"bulk\"\ndscp = 64",
            "category[2].dscp",
            "out of range",
        ),
        (
            "priority range",
            "[[category]]\nname = \"bulk\"\npriority = 8",
            "category[2].priority",
            "out of range (0-7)",
        ),
        (
            "weight zero",
            "[[category]]\nname = \"bulk\"\nweight = 0",
            "category[2].weight",
            "out of range (1-1000)",
        ),
        (
            "weight not a number",
            "[[category]]\nname = \"bulk\"\nweight = \"heavy\"",
            "category[2].weight",
            "not a whole number",
        ),
        (
            "weight a list",
            "[[category]]\nname = \"bulk\"\nweight = [1]",
            "category[2].weight",
            "found a list",
        ),
        (
            "bad name",
            "[[category]]\nname = \"Bulk Data\"",
            "category[2].name",
            "invalid name",
        ),
        (
            "missing name",
            "[[category]]\nweight = 3",
            "category[2].name",
            "missing",
        ),
        (
            "per-direction typo",
            "[[category]]\nname = \"bulk\"\nmin = { uplod = \"1 Mbit\" }",
            "category[2].min.uplod",
            "unknown key",
        ),
        (
            "codel interval",
            "[[category]]\nname = \"bulk\"\ncodel_target = \"50ms\"\ncodel_interval = \"20ms\"",
            "category[2].codel_interval",
            "above codel_target",
        ),
        (
            "codel bad duration",
            "[[category]]\nname = \"bulk\"\ncodel_target = \"5\"",
            "category[2].codel_target",
            "no unit",
        ),
        (
            "reversed ports",
            "[[rule]]\ncategory = \"voice\"\ndst_ports = [\"5000-4000\"]",
            "rule[0].dst_ports[0]",
            "reversed",
        ),
        (
            "port too big",
            "[[rule]]\ncategory = \"voice\"\nports = 70000",
            "rule[0].ports",
            "above 65535",
        ),
        (
            "a payload condition in a rule",
            "[[rule]]\ncategory = \"voice\"\npayload_prefix = \"x\"",
            "rule[0].payload_prefix",
            "not allowed in a [[rule]]",
        ),
        (
            "an HTTP condition in a rule",
            "[[rule]]\ncategory = \"bulk\"\nhttp_user_agent = \"Microsoft BITS\"",
            "rule[0].http_user_agent",
            "not allowed in a [[rule]]",
        ),
        (
            "bad port text",
            "[[rule]]\ncategory = \"voice\"\nsrc_ports = \"sip\"",
            "rule[0].src_ports",
            "not a port",
        ),
        (
            "bad cidr v4",
            "[[rule]]\ncategory = \"voice\"\ncidrs = [\"10.0.0.0/33\"]",
            "rule[0].cidrs[0]",
            "not a valid CIDR",
        ),
        (
            "bad cidr v6",
            "[[rule]]\ncategory = \"voice\"\ndst_cidrs = \"2001:db8::/129\"",
            "rule[0].dst_cidrs",
            "not a valid CIDR",
        ),
        (
            "cidr host bits",
            "[[rule]]\ncategory = \"voice\"\nsrc_cidrs = \"10.1.2.3/8\"",
            "rule[0].src_cidrs",
            "did you mean \"10.0.0.0/8\"",
        ),
        (
            "rule unknown dscp",
            "[[rule]]\ncategory = \"voice\"\ndscp = [\"AF99\"]",
            "rule[0].dscp[0]",
            "unknown DSCP",
        ),
        (
            "vlan range",
            "[[rule]]\ncategory = \"voice\"\nvlan = 4095",
            "rule[0].vlan",
            "out of range (1-4094)",
        ),
        (
            "unknown protocol",
            "[[rule]]\ncategory = \"voice\"\nprotocol = \"tpc\"",
            "rule[0].protocol",
            "unknown protocol",
        ),
        (
            "ports without tcp/udp",
            "[[rule]]\ncategory = \"voice\"\nprotocol = \"icmp\"\nports = 1",
            "rule[0].protocol",
            "ports only exist",
        ),
        (
            "bad host pattern",
            "[[rule]]\ncategory = \"voice\"\nhosts = \"*sharepoint.com\"",
            "rule[0].hosts",
            "'*' is only allowed",
        ),
        (
            "bad direction",
            "[[rule]]\ncategory = \"voice\"\ndirection = \"sideways\"",
            "rule[0].direction",
            "unknown direction",
        ),
        (
            "rule without category",
            "[[rule]]\nports = 1",
            "rule[0].category",
            "missing",
        ),
        (
            "duplicate rule name",
            "[[rule]]\nname = \"a\"\ncategory = \"voice\"\n[[rule]]\nname = \"a\"\ncategory = \"web\"",
            "rule[1].name",
            "duplicate rule name",
        ),
        (
            "empty list",
            "[[rule]]\ncategory = \"voice\"\nports = []",
            "rule[0].ports",
            "empty list",
        ),
        (
            "bad listen",
            "[metrics]\nlisten = \"localhost\"",
            "metrics.listen",
            "not an address and port",
        ),
        (
            "bad timeout",
            "[flows]\nudp_idle_timeout = \"soon\"",
            "flows.udp_idle_timeout",
            "cannot read \"soon\" as a duration",
        ),
        (
            "timeout too short",
            "[flows]\ntcp_idle_timeout = \"10ms\"",
            "flows.tcp_idle_timeout",
            "between 1s and 7 days",
        ),
        (
            "unknown fairness",
            "[shaper]\nfairness = \"person\"",
            "shaper.fairness",
            "unknown fairness \"person\"",
        ),
        (
            "bad host_max",
            "[shaper]\nhost_max = \"lots\"",
            "shaper.host_max",
            "does not start with a number",
        ),
        (
            "max_flows range",
            "[flows]\nmax_flows = 1",
            "flows.max_flows",
            "out of range",
        ),
        (
            "same interfaces",
            "[interfaces]\nlan = \"eth0\"\nwan = \"eth0\"",
            "interfaces.wan",
            "must differ",
        ),
        (
            "bad interface",
            "[interfaces]\nlan = \"a/b\"",
            "interfaces.lan",
            "not a valid interface name",
        ),
        (
            "overhead range",
            "[link]\noverhead = 1000",
            "link.overhead",
            "out of range (-64-256)",
        ),
        (
            "category not a list",
            "[category]\nname = \"x\"",
            "category",
            "[[double brackets]]",
        ),
    ];
    for (what, extra, key, fragment) in cases {
        // Sections may appear only once in TOML: cases that edit [link] or
        // [interfaces] replace the BASE's section instead of appending.
        let text = if extra.starts_with("[link]") {
            BASE.replace("[link]\n", &format!("{extra}\n"))
        } else if extra.starts_with("[category]") {
            format!(
                "default_category = \"x\"\n[link]\nupload = \"1 Mbit\"\ndownload = \"1 Mbit\"\n{extra}"
            )
        } else {
            format!("{BASE}{extra}\n")
        };
        let errs = match load(&text) {
            Ok(_) => panic!("{what}: expected an error at {key}"),
            Err(e) => e.0,
        };
        assert!(
            errs.iter()
                .any(|e| e.key == *key && e.message.contains(fragment) && e.file == "test.toml"),
            "{what}: expected `{key}: ...{fragment}...`, got:\n{}",
            ConfigErrors(errs.clone())
        );
    }
}

#[test]
fn link_rate_errors() {
    let cases = [
        ("\"0 Mbit\"", "zero"),
        ("\"-20 Mbit\"", "negative"),
        ("\"20 Mbt\"", "unknown unit \"Mbt\""),
        ("\"20\"", "no unit"),
        ("20", "no unit"),
        ("\"20 Mbps\"", "not accepted"),
        ("\"4 kbit\"", "below the minimum"),
    ];
    for (value, fragment) in cases {
        let text = BASE.replace("upload = \"20 Mbit\"", &format!("upload = {value}"));
        let errs = errors(&text);
        assert!(
            errs.iter()
                .any(|e| e.key == "link.upload" && e.message.contains(fragment)),
            "{value}: {errs:?}"
        );
    }
    let text = BASE.replace("upload = \"20 Mbit\"\n", "");
    assert!(
        errors(&text)
            .iter()
            .any(|e| e.key == "link.upload" && e.message.contains("missing"))
    );
}

#[test]
fn empty_category_list_and_missing_default() {
    let errs = errors("[link]\nupload = \"1 Mbit\"\ndownload = \"1 Mbit\"\n");
    assert!(
        errs.iter()
            .any(|e| e.key == "category" && e.message.contains("at least one")),
        "{errs:?}"
    );
    assert!(
        errs.iter()
            .any(|e| e.key == "default_category" && e.message.contains("missing")),
        "{errs:?}"
    );
}

#[test]
fn datapath_threads_default_to_one_and_take_one_or_two() {
    assert_eq!(load(BASE).unwrap().datapath.threads, 1);
    let cfg = load(&format!("{BASE}[datapath]\nthreads = 2\n")).unwrap();
    assert_eq!(cfg.datapath.threads, 2);
    for bad in ["0", "3", "\"many\""] {
        let errs = errors(&format!("{BASE}[datapath]\nthreads = {bad}\n"));
        assert_eq!(errs[0].key, "datapath.threads", "{bad}: {errs:?}");
    }
}

#[test]
fn datapath_backend_defaults_to_auto_and_names_every_choice() {
    assert_eq!(load(BASE).unwrap().datapath.backend, Backend::Auto);
    for (text, want) in [
        ("auto", Backend::Auto),
        ("XDP", Backend::Xdp),
        ("ring", Backend::Ring),
        ("pnet", Backend::Pnet),
    ] {
        let cfg = load(&format!("{BASE}[datapath]\nbackend = \"{text}\"\n")).unwrap();
        assert_eq!(cfg.datapath.backend, want);
        assert_eq!(want.as_str(), text.to_ascii_lowercase());
    }
    let errs = errors(&format!("{BASE}[datapath]\nbackend = \"dpdk\"\n"));
    assert_eq!(errs[0].key, "datapath.backend");
    assert!(
        errs[0]
            .message
            .contains("\"auto\", \"xdp\", \"ring\" or \"pnet\""),
        "{errs:?}"
    );
}

#[test]
fn unknown_default_category() {
    let errs = errors(&BASE.replace("default_category = \"web\"", "default_category = \"www\""));
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].key, "default_category");
    assert!(
        errs[0]
            .message
            .contains("unknown category \"www\" (known: voice, web)")
    );
}

#[test]
fn syntax_error_is_reported_with_the_file() {
    let errs = errors("default_category = \n");
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].key, "");
    assert!(errs[0].message.contains("not valid TOML"), "{errs:?}");
    assert!(errs[0].to_string().starts_with("test.toml: not valid TOML"));
}

#[test]
fn all_errors_are_reported_at_once() {
    let text = BASE
        .replace("upload = \"20 Mbit\"", "upload = \"20 Mbt\"")
        .replace("max = \"30%\"", "max = \"30%\"\ndscp = \"XX\"")
        + "[[rule]]\ncategory = \"nope\"\n";
    let errs = errors(&text);
    let keys: Vec<&str> = errs.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys.len(), 3, "{errs:?}");
    for k in ["link.upload", "category[0].dscp", "rule[0].category"] {
        assert!(keys.contains(&k), "{k} missing from {keys:?}");
    }
}

#[test]
fn per_direction_values() {
    let text = BASE
        .replace(
            "min = \"10%\"",
            "min = { upload = \"1 Mbit\", download = \"20%\" }",
        )
        .replace(
            "[link]\n",
            "[link]\noverhead = { upload = 18, download = -4 }\n",
        );
    let cfg = load(&text).unwrap();
    let voice = &cfg.category[0];
    assert_eq!(
        voice.min_rate(Direction::Upload, &cfg.link).bps(),
        1_000_000
    );
    assert_eq!(
        voice.min_rate(Direction::Download, &cfg.link).bps(),
        10_000_000
    );
    assert_eq!(cfg.link.overhead.get(Direction::Upload), 18);
    assert_eq!(cfg.link.overhead.get(Direction::Download), -4);
}

#[test]
fn rules_parse_every_condition() {
    let text = format!(
        "{BASE}[[rule]]\nname = \"teams\"\ncategory = \"voice\"\nprotocol = \"udp\"\nports = [3478, \"50000-50019\"]\n\
         src_ports = \"1024-65535\"\ndst_cidrs = [\"52.112.0.0/14\", \"2603:1063::/38\"]\ncidrs = \"198.18.0.1\"\n\
         dscp = [\"EF\", 34]\nvlan = [20, 30]\nhosts = [\"*.teams.microsoft.com\", \"teams.live.com\"]\ndirection = \"upload\"\n\
         [[rule]]\ncategory = \"web\"\nports = \"80, 443\"\n"
    );
    let cfg = load(&text).unwrap();
    let r = &cfg.rule[0];
    assert_eq!(r.name, "teams");
    assert_eq!(r.category_id, CategoryId(0));
    assert_eq!(r.when.protocol, Some(Protocol::UDP));
    assert_eq!(
        r.when.ports,
        vec![
            PortRange {
                first: 3478,
                last: 3478
            },
            PortRange {
                first: 50000,
                last: 50019
            }
        ]
    );
    assert_eq!(r.when.dst_cidrs.len(), 2);
    assert_eq!(r.when.cidrs[0].to_string(), "198.18.0.1/32");
    assert_eq!(r.when.dscp, vec![Dscp::EF, Dscp::new(34).unwrap()]);
    assert_eq!(r.when.vlan, vec![20, 30]);
    assert!(r.when.hosts[0].matches("eu.teams.microsoft.com"));
    assert!(!r.when.hosts[0].matches("teams.microsoft.com"));
    assert!(r.when.hosts[1].matches("Teams.Live.com."));
    assert_eq!(r.when.direction, Some(Direction::Upload));
    // Unnamed rules get a name from their position; comma lists work.
    assert_eq!(cfg.rule[1].name, "rule1");
    assert_eq!(cfg.rule[1].when.ports.len(), 2);
}

#[test]
fn environment_overrides() {
    let env: HashMap<String, String> = [
        ("QOSD_LINK__UPLOAD", "30 Mbit"),
        ("QOSD_INTERFACES__LAN", "eth7"),
        ("QOSD_FLOWS__MAX_FLOWS", "1000"),
        ("QOSD_SHAPER__FAIRNESS", "flow"),
        ("QOSD_DEFAULT_CATEGORY", "voice"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let cfg = load_str("test.toml", BASE, &Env::Map(env)).unwrap();
    assert_eq!(cfg.link.upload.bps(), 30_000_000);
    assert_eq!(cfg.interfaces.lan, "eth7");
    assert_eq!(cfg.flows.max_flows, 1000);
    assert_eq!(cfg.shaper.fairness, crate::config::Fairness::Flow);
    assert_eq!(cfg.default_category, "voice");

    // A bad override is reported at the key it overrides.
    let env = HashMap::from([("QOSD_LINK__DOWNLOAD".to_owned(), "fast".to_owned())]);
    let errs = load_str("test.toml", BASE, &Env::Map(env)).unwrap_err().0;
    assert!(errs.iter().any(|e| e.key == "link.download"), "{errs:?}");
}

#[test]
fn printed_config_reads_back_identically() {
    let cfg = load_str(EMBEDDED_NAME, DEFAULT_CONFIG_TOML, &Env::None).unwrap();
    let printed = cfg.to_toml();
    let again = load_str(EMBEDDED_NAME, &printed, &Env::None).unwrap();
    assert_eq!(cfg, again, "printed:\n{printed}");
    // Defaults appear in the printed form.
    assert!(printed.contains("codel_target = \"5ms\""));
    assert!(printed.contains("max = \"100%\""));
    assert!(printed.contains("fairness = \"host\""));
}

#[test]
fn shipped_configs_validate() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut files = vec![root.join("qosd.toml")];
    let examples = std::fs::read_dir(root.join("examples")).unwrap();
    for entry in examples {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            files.push(path);
        }
    }
    assert!(
        files.len() >= 3,
        "expected the default and at least two examples"
    );
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let name = f.display().to_string();
        if let Err(e) = load_str(&name, &text, &Env::None) {
            panic!("{e}");
        }
    }
    // The embedded copy is the file.
    let file = std::fs::read_to_string(root.join("qosd.toml")).unwrap();
    assert_eq!(file, DEFAULT_CONFIG_TOML);
}

mod units {
    use super::super::units::*;

    #[test]
    fn rate_spellings() {
        let ok = [
            ("20 Mbit", 20_000_000),
            ("20mbit", 20_000_000),
            ("20MBIT", 20_000_000),
            ("1.5 Gbit/s", 1_500_000_000),
            ("512 kbit", 512_000),
            ("512kbit/s", 512_000),
            ("100M", 100_000_000),
            ("2.5 Mb/s", 2_500_000),
            ("0.5 Mbit", 500_000),
            (".5 Mbit", 500_000),
            ("1 Tbit", 1_000_000_000_000),
            ("1000 bit", 1000),
            ("8000bit/s", 8000),
            ("1 kibit", 1024),
            ("1 Mibit", 1_048_576),
            ("  42 Mbitps ", 42_000_000),
            ("+3 Mbit", 3_000_000),
            ("1.000001 Mbit", 1_000_001),
        ];
        for (text, bps) in ok {
            assert_eq!(text.parse::<Rate>(), Ok(Rate::from_bps(bps)), "{text}");
        }
    }

    #[test]
    fn rate_rejects() {
        let bad = [
            ("", "empty"),
            ("20", "no unit"),
            ("Mbit", "does not start with a number"),
            ("-5 Mbit", "negative"),
            ("0 Mbit", "zero"),
            ("0.0000001 kbit", "zero"),
            ("20 Mbps", "not accepted"),
            ("20 kbps", "not accepted"),
            ("20 MB/s", "not accepted"),
            ("20 Mbyte/s", "not accepted"),
            ("20 Mbt", "unknown unit"),
            ("1.2.3 Mbit", "not a number"),
            ("1e6 bit", "unknown unit"),
            ("99999999999999999999999999999 Gbit", "above the maximum"),
            ("999999999999999999999999999999 Tbit", "too large"),
            ("999999999999999999999999999999999 bit", "too large"),
            ("18446744073709551616 bit", "above the maximum"),
            ("2 Tbit", "above the maximum"),
            ("fast", "does not start with a number"),
        ];
        for (text, fragment) in bad {
            match text.parse::<Rate>() {
                Ok(r) => panic!("{text:?} parsed as {r}"),
                Err(e) => assert!(e.contains(fragment), "{text:?}: {e}"),
            }
        }
    }

    #[test]
    fn rate_display_round_trips() {
        for bps in [
            1u64,
            999,
            1000,
            1500,
            64_000,
            512_000,
            20_000_000,
            1_500_000_000,
            1_234_567,
            1_000_000_000_000,
        ] {
            let r = Rate::from_bps(bps);
            let text = r.to_string();
            assert_eq!(text.parse::<Rate>(), Ok(r), "{bps} printed as {text}");
        }
        assert_eq!(Rate::from_bps(20_000_000).to_string(), "20 Mbit");
        assert_eq!(Rate::from_bps(1_500_000_000).to_string(), "1.5 Gbit");
        assert_eq!(Rate::from_bps(1_234_567).to_string(), "1234.567 kbit");
    }

    #[test]
    fn byte_size_spellings() {
        let ok = [
            ("32 MiB", 32 << 20),
            ("32MiB", 32 << 20),
            ("32 mib", 32 << 20),
            ("512 KiB", 512 << 10),
            ("1.5 GiB", 3 << 29),
            ("0.5 KiB", 512),
            ("64 MB", 64_000_000),
            ("2 kB", 2_000),
            ("1 GB", 1_000_000_000),
            ("4096 B", 4096),
            ("4096 bytes", 4096),
            ("33554432", 33_554_432),
            ("0", 0),
            ("  +7 KiB ", 7 << 10),
            ("1 TiB", 1 << 40),
        ];
        for (text, bytes) in ok {
            assert_eq!(
                text.parse::<ByteSize>(),
                Ok(ByteSize::from_bytes(bytes)),
                "{text}"
            );
        }
    }

    #[test]
    fn byte_size_rejects() {
        let bad = [
            ("", "empty"),
            ("  ", "empty"),
            ("MiB", "does not start with a number"),
            ("lots", "does not start with a number"),
            ("-1 MiB", "negative"),
            ("32 Mbit", "counts bits"),
            ("32 kibit", "counts bits"),
            ("32 M", "unknown unit"),
            ("32 MiBs", "unknown unit"),
            ("1e6", "unknown unit"),
            ("1.2.3 MiB", "not a number"),
            ("2 TiB", "above the maximum of 1 TiB"),
            ("1099511627777", "above the maximum"),
            ("99999999999999999999999999999999 B", "too large"),
        ];
        for (text, fragment) in bad {
            match text.parse::<ByteSize>() {
                Ok(r) => panic!("{text:?} parsed as {r}"),
                Err(e) => assert!(e.contains(fragment), "{text:?}: {e}"),
            }
        }
    }

    #[test]
    fn byte_size_display_round_trips() {
        for (bytes, text) in [
            (0, "0 B"),
            (1000, "1000 B"),
            (1024, "1 KiB"),
            (1536, "1536 B"),
            (3 << 19, "1536 KiB"),
            (32 << 20, "32 MiB"),
            (4 << 30, "4 GiB"),
            (1 << 40, "1 TiB"),
        ] {
            let size = ByteSize::from_bytes(bytes);
            assert_eq!(size.to_string(), text);
            assert_eq!(text.parse::<ByteSize>(), Ok(size), "{text}");
        }
    }

    #[test]
    fn bandwidth_resolves_against_link() {
        let link = Rate::from_bps(20_000_000);
        assert_eq!(
            Bandwidth::parse("10%", false).unwrap().resolve(link).bps(),
            2_000_000
        );
        assert_eq!(
            Bandwidth::parse("2.5 %", false)
                .unwrap()
                .resolve(link)
                .bps(),
            500_000
        );
        assert_eq!(
            Bandwidth::parse("5 Mbit", false)
                .unwrap()
                .resolve(link)
                .bps(),
            5_000_000
        );
        assert_eq!(
            Bandwidth::parse("50 Mbit", false)
                .unwrap()
                .resolve(link)
                .bps(),
            20_000_000
        );
        assert_eq!(Bandwidth::parse("0", true), Ok(Bandwidth::NONE));
        assert_eq!(Bandwidth::parse("0 Mbit", true), Ok(Bandwidth::NONE));
        assert!(Bandwidth::parse("0 Mbt", true).is_err());
        assert!(Bandwidth::parse("0", false).is_err());
        assert!(Bandwidth::parse("ten%", false).is_err());
    }

    #[test]
    fn dscp_names_and_numbers() {
        assert_eq!("EF".parse::<Dscp>().unwrap().value(), 46);
        assert_eq!("af41".parse::<Dscp>().unwrap().value(), 34);
        assert_eq!("CS1".parse::<Dscp>().unwrap().value(), 8);
        assert_eq!("LE".parse::<Dscp>().unwrap().value(), 1);
        assert_eq!("63".parse::<Dscp>().unwrap().value(), 63);
        assert_eq!("BE".parse::<Dscp>().unwrap().to_string(), "DF");
        assert_eq!(Dscp::new(5).unwrap().to_string(), "5");
        assert!("64".parse::<Dscp>().is_err());
        assert!("AF44".parse::<Dscp>().is_err());
    }

    #[test]
    fn port_ranges() {
        assert_eq!(
            "443".parse::<PortRange>(),
            Ok(PortRange {
                first: 443,
                last: 443
            })
        );
        assert_eq!(
            "50000-50019".parse::<PortRange>(),
            Ok(PortRange {
                first: 50000,
                last: 50019
            })
        );
        assert_eq!(
            "1:1024".parse::<PortRange>(),
            Ok(PortRange {
                first: 1,
                last: 1024
            })
        );
        assert!(
            "5000-4000"
                .parse::<PortRange>()
                .unwrap_err()
                .contains("reversed")
        );
        assert!(
            "65536"
                .parse::<PortRange>()
                .unwrap_err()
                .contains("above 65535")
        );
        assert!("-1".parse::<PortRange>().is_err());
        assert!("1-".parse::<PortRange>().is_err());
    }

    #[test]
    fn host_patterns() {
        let p: HostPattern = "*.SharePoint.com".parse().unwrap();
        assert!(p.matches("contoso.sharepoint.com"));
        assert!(p.matches("a.b.sharepoint.com."));
        assert!(!p.matches("sharepoint.com"));
        assert!(!p.matches("evilsharepoint.com"));
        assert!(!p.matches(""));
        let exact: HostPattern = "erp.example.com".parse().unwrap();
        assert!(exact.matches("ERP.example.com"));
        assert!(!exact.matches("x.erp.example.com"));
        for bad in ["", "*.", "a..b", "*a.com", "a.*.com", "white space.com"] {
            assert!(bad.parse::<HostPattern>().is_err(), "{bad}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("300s").unwrap().as_secs(), 300);
        assert_eq!(parse_duration("5m").unwrap().as_secs(), 300);
        assert_eq!(parse_duration("100ms").unwrap().as_millis(), 100);
        assert!(parse_duration("5").unwrap_err().contains("no unit"));
        assert!(parse_duration("later").is_err());
    }
}

#[test]
fn autorate_defaults_off_with_bounds_around_the_link() {
    let cfg = load(BASE).unwrap();
    let a = cfg.autorate;
    assert!(!a.enabled);
    // Unset: the configured rate is the ceiling, a fifth of it the floor.
    assert_eq!(a.upload_max, Rate::from_bps(20_000_000));
    assert_eq!(a.upload_min, Rate::from_bps(4_000_000));
    assert_eq!(a.download_max, Rate::from_bps(50_000_000));
    assert_eq!(a.download_min, Rate::from_bps(10_000_000));
    assert_eq!(a.delay_threshold, std::time::Duration::from_millis(15));
}

#[test]
fn autorate_bounds_must_hold_the_starting_rate() {
    let ok = format!(
        "{BASE}\n[autorate]\nenabled = true\nupload_min = \"2 Mbit\"\nupload_max = \"25 Mbit\"\n\
         download_min = \"5 Mbit\"\ndownload_max = \"60 Mbit\"\ndelay_threshold = \"30ms\"\n"
    );
    let a = load(&ok).unwrap().autorate;
    assert!(a.enabled);
    assert_eq!(a.min(Direction::Upload), Rate::from_bps(2_000_000));
    assert_eq!(a.max(Direction::Download), Rate::from_bps(60_000_000));
    assert_eq!(a.delay_threshold, std::time::Duration::from_millis(30));

    let bad = format!(
        "{BASE}\n[autorate]\nenabled = true\nupload_min = \"21 Mbit\"\ndownload_max = \"40 Mbit\"\n\
         download_min = \"fast\"\ndelay_threshold = \"1ms\"\nspeed = 3\n"
    );
    let errs = errors(&bad);
    let at = |key: &str| {
        errs.iter()
            .find(|e| e.key == key)
            .unwrap_or_else(|| panic!("no error at {key}: {errs:?}"))
            .message
            .clone()
    };
    assert!(at("autorate.upload_min").contains("link.upload"));
    assert!(at("autorate.download_max").contains("below link.download"));
    at("autorate.download_min");
    at("autorate.delay_threshold");
    at("autorate.speed");

    // Off, bounds that exclude the start are not an error: nothing uses them.
    let off = format!("{BASE}\n[autorate]\nupload_min = \"21 Mbit\"\n");
    assert!(load(&off).is_ok());
}

#[test]
fn autorate_from_the_environment() {
    let env: HashMap<String, String> = [
        ("QOSD_AUTORATE__ENABLED", "true"),
        ("QOSD_AUTORATE__DOWNLOAD_MIN", "8 Mbit"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let cfg = load_str("test.toml", BASE, &Env::Map(env)).unwrap();
    assert!(cfg.autorate.enabled);
    assert_eq!(cfg.autorate.download_min, Rate::from_bps(8_000_000));
}

#[test]
fn the_window_clamp_is_on_by_default_and_checked() {
    assert!(load(BASE).unwrap().link.window_clamp);
    let off = BASE.replacen("[link]", "[link]\nwindow_clamp = false", 1);
    assert!(!load(&off).unwrap().link.window_clamp);
    let errs = errors(&BASE.replacen("[link]", "[link]\nwindow_clamp = 3", 1));
    assert!(
        errs.iter().any(|e| e.key == "link.window_clamp"),
        "{errs:?}"
    );
}

#[test]
fn the_isp_queue_guard_is_on_by_default_and_its_target_is_checked() {
    let link = load(BASE).unwrap().link;
    assert!(link.isp_queue_guard);
    assert_eq!(link.isp_queue_target, std::time::Duration::from_millis(3));
    let set = BASE.replacen(
        "[link]",
        "[link]\nisp_queue_guard = false\nisp_queue_target = \"8ms\"",
        1,
    );
    let link = load(&set).unwrap().link;
    assert!(!link.isp_queue_guard);
    assert_eq!(link.isp_queue_target, std::time::Duration::from_millis(8));
    for bad in ["\"0.5ms\"", "\"200ms\"", "\"soon\""] {
        let text = BASE.replacen("[link]", &format!("[link]\nisp_queue_target = {bad}"), 1);
        let errs = errors(&text);
        assert!(
            errs.iter().any(|e| e.key == "link.isp_queue_target"),
            "{bad}: {errs:?}"
        );
    }
    let errs = errors(&BASE.replacen("[link]", "[link]\nisp_queue_guard = \"maybe\"", 1));
    assert!(
        errs.iter().any(|e| e.key == "link.isp_queue_guard"),
        "{errs:?}"
    );
}

#[test]
fn the_community_catalog_loads_and_adds_apps() {
    let community = load_catalog_str(EMBEDDED_COMMUNITY_NAME, COMMUNITY_APPS_TOML).unwrap();
    assert!(community.apps.len() >= 50, "{}", community.apps.len());
    let hosts: usize = community.apps.iter().map(|a| a.hosts.len()).sum();
    assert!((500..=3000).contains(&hosts), "{hosts} host patterns");
    let hand = load_catalog_str(EMBEDDED_APPS_NAME, DEFAULT_APPS_TOML).unwrap();
    let built_in = load_catalog(None).unwrap();
    // Hand-written apps first, in their order and with their categories and
    // signatures; community apps after them.
    for (h, b) in hand.apps.iter().zip(&built_in.apps) {
        assert_eq!((&h.name, &h.category), (&b.name, &b.category));
        assert_eq!(h.signatures, b.signatures);
        assert!(b.hosts.starts_with(&h.hosts), "{}", h.name);
    }
    assert!(built_in.apps.len() > hand.apps.len());
    let bilibili = built_in.app("bilibili").unwrap();
    assert_eq!(bilibili.category, "streaming");
    assert!(bilibili.hosts.contains(&"*.bilivideo.com".parse().unwrap()));
    // A hand-written app gains the community hosts it did not list.
    let spotify = built_in.app("spotify").unwrap();
    assert_eq!(spotify.category, "streaming");
    assert!(spotify.hosts.contains(&"spotify.link".parse().unwrap()));
    // No host pattern is listed twice in the merged catalog.
    let mut seen = std::collections::HashSet::new();
    for app in &built_in.apps {
        for h in &app.hosts {
            assert!(seen.insert(h), "{h} listed twice ({})", app.name);
        }
    }
}

#[test]
fn community_apps_do_not_take_hosts_from_hand_written_apps() {
    let mut hand = load_catalog_str(
        "hand.toml",
        r#"
[[app]]
name = "meet"
category = "business"
hosts = ["meet.example.com", "*.meet.example.com"]
[[app]]
name = "video"
category = "streaming"
hosts = ["video.example"]
[[app.match]]
protocol = "udp"
ports = 9999
"#,
    )
    .unwrap();
    let community = load_catalog_str(
        "community.toml",
        r#"
[[app]]
name = "example-suite"
category = "bulk"
hosts = ["example.com", "*.example.com", "meet.example.com", "*.meet.example.com"]
[[app]]
name = "video"
category = "bulk"
hosts = ["video.example", "*.video.example", "cdn.example"]
[[app]]
name = "only-stolen"
category = "bulk"
hosts = ["meet.example.com"]
"#,
    )
    .unwrap();
    merge_community(&mut hand, community);
    let names: Vec<&str> = hand.apps.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["meet", "video", "example-suite"]);
    let hosts = |name: &str| -> Vec<String> {
        hand.app(name)
            .unwrap()
            .hosts
            .iter()
            .map(ToString::to_string)
            .collect()
    };
    assert_eq!(hosts("meet"), ["meet.example.com", "*.meet.example.com"]);
    assert_eq!(hosts("example-suite"), ["example.com", "*.example.com"]);
    // The hand-written app keeps its category and signature and gains the
    // community hosts it lacked.
    let video = hand.app("video").unwrap();
    assert_eq!(video.category, "streaming");
    assert_eq!(video.signatures.len(), 1);
    assert_eq!(
        hosts("video"),
        ["video.example", "*.video.example", "cdn.example"]
    );
}

#[test]
fn community_catalog_errors_name_the_embedded_file() {
    let e = load_catalog_str(
        EMBEDDED_COMMUNITY_NAME,
        "[[app]]\nname = \"x\"\ncategory = \"bulk\"\nhosts = [\"*.*.bad\"]\n",
    )
    .unwrap_err();
    assert_eq!(e.0[0].file, "<embedded apps-community.toml>");
    assert!(e.0[0].key.starts_with("app[0].hosts"), "{:?}", e.0[0]);
}
