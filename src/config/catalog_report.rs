//! `qosd apps`: the app catalog a configuration runs with (the built-in one
//! plus `classify.apps_file`) as an admin reads it: a table of every app,
//! one app in full, or JSON. Admins need it to name apps in rules (`apps =
//! [...]`) and to see what an apps file of theirs added or replaced.

use std::fmt::Write as _;

use serde::Serialize;

use super::model::{App, Catalog, Config, Match};
use super::units::HostPattern;

/// What `source` says of an app that comes with qosd.
pub const BUILT_IN: &str = "built-in";

/// Characters of host patterns, and of signatures, shown per app in the
/// table (at least one of each is shown whole); the rest are counted
/// ("(+3 more)"), and the full view shows them all.
const CELL_WIDTH: usize = 40;

/// Elements of a signature's list shown in the table ("udp 853,784,...").
const LIST_ITEMS: usize = 2;

/// One app of the catalog, as `qosd apps` reports it (and serializes it for
/// `--json`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AppReport<'a> {
    /// The app's name, as rules write it in `apps = [...]`.
    pub name: &'a str,
    /// The category the catalog puts it in.
    pub category: &'a str,
    /// False when the configuration has no category of that name: the app
    /// is still recognised, but its traffic is then categorised by what
    /// comes after the catalog (media seen, DSCP trust, the default).
    pub category_configured: bool,
    /// What the app is.
    pub description: &'a str,
    /// [`BUILT_IN`], or the path of the `classify.apps_file` it comes from.
    pub source: String,
    /// True for an app of the apps file that replaces a built-in one of the
    /// same name.
    pub replaces_built_in: bool,
    /// Host-name patterns matched against TLS/QUIC SNI, HTTP Host and the
    /// names learned from DNS answers.
    pub hosts: &'a [HostPattern],
    /// Signatures (`[[app.match]]`): any one whose conditions all hold
    /// identifies the app.
    pub signatures: &'a [Match],
}

/// Every app of `cfg`'s catalog, in catalog order (built-in apps first,
/// then those the apps file adds).
pub fn app_reports(cfg: &Config) -> Vec<AppReport<'_>> {
    // The configuration's catalog is already merged; the built-in one says
    // which of its apps came from the file. It loaded once already, for
    // `cfg`, so it cannot fail here; if it did, every app would show as
    // coming from the file, which is the safer mistake.
    let built_in = super::load_catalog(None).unwrap_or_default();
    cfg.catalog
        .apps
        .iter()
        .map(|app| report(app, cfg, &built_in))
        .collect()
}

fn report<'a>(app: &'a App, cfg: &Config, built_in: &Catalog) -> AppReport<'a> {
    let original = built_in.app(&app.name);
    let from_file = original != Some(app);
    let source = match (&cfg.classify.apps_file, from_file) {
        (Some(path), true) => path.display().to_string(),
        _ => BUILT_IN.to_owned(),
    };
    AppReport {
        name: &app.name,
        category: &app.category,
        category_configured: cfg.category_id(&app.category).is_some(),
        description: &app.description,
        source,
        replaces_built_in: from_file && original.is_some(),
        hosts: &app.hosts,
        signatures: &app.signatures,
    }
}

/// The table of `qosd apps`: one line per app with its category, its first
/// host patterns and its first signatures, then where the apps come from.
pub fn render_table(apps: &[AppReport<'_>]) -> String {
    let name_w = apps.iter().map(|a| a.name.len()).max().unwrap_or(0).max(3);
    let cat_w = apps
        .iter()
        .map(|a| a.category.len() + usize::from(!a.category_configured))
        .max()
        .unwrap_or(0)
        .max(8);
    let hosts: Vec<String> = apps
        .iter()
        .map(|a| first_few(a.hosts.iter().map(ToString::to_string).collect()))
        .collect();
    let host_w = hosts.iter().map(String::len).max().unwrap_or(0).max(5);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<name_w$}  {:<cat_w$}  {:<host_w$}  signatures",
        "app", "category", "hosts"
    );
    for (a, hosts) in apps.iter().zip(&hosts) {
        let category = if a.category_configured {
            a.category.to_owned()
        } else {
            format!("{}*", a.category)
        };
        let line = format!(
            "{:<name_w$}  {category:<cat_w$}  {hosts:<host_w$}  {}",
            a.name,
            first_few(a.signatures.iter().map(signature_summary).collect()),
        );
        let _ = writeln!(out, "{}", line.trim_end());
    }
    let _ = writeln!(out);
    let from_file: Vec<&AppReport<'_>> = apps.iter().filter(|a| a.source != BUILT_IN).collect();
    match from_file.first() {
        None => {
            let _ = writeln!(out, "{} apps, all built-in", apps.len());
        }
        Some(first) => {
            let replaced = from_file.iter().filter(|a| a.replaces_built_in).count();
            let _ = writeln!(
                out,
                "{} apps: {} built-in, {} from {} ({replaced} of them replacing built-in apps)",
                apps.len(),
                apps.len() - from_file.len(),
                from_file.len(),
                first.source,
            );
        }
    }
    if apps.iter().any(|a| !a.category_configured) {
        let _ = writeln!(
            out,
            "* not a category of this configuration: the app is recognised but does not choose its traffic's category"
        );
    }
    let _ = writeln!(out, "`qosd apps NAME` shows one app in full.");
    out
}

/// One app in full: every host pattern and every signature.
pub fn render_app(app: &AppReport<'_>) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "name:        {}", app.name);
    let note = if app.category_configured {
        ""
    } else {
        " (not a category of this configuration: the app is recognised but does not choose its traffic's category)"
    };
    let _ = writeln!(out, "category:    {}{note}", app.category);
    if !app.description.is_empty() {
        let _ = writeln!(out, "description: {}", app.description);
    }
    let replaces = if app.replaces_built_in {
        " (replaces the built-in app of that name)"
    } else {
        ""
    };
    let _ = writeln!(out, "source:      {}{replaces}", app.source);
    let _ = writeln!(out, "hosts:       {}", app.hosts.len());
    for h in app.hosts {
        let _ = writeln!(out, "  {h}");
    }
    let _ = writeln!(out, "signatures:  {}", app.signatures.len());
    for s in app.signatures {
        let _ = writeln!(out, "  {}", signature_full(s));
    }
    out
}

/// The first of `items` that fit in [`CELL_WIDTH`] (the first always),
/// and how many more there are; "-" for none.
fn first_few(items: Vec<String>) -> String {
    let mut s = String::new();
    let mut shown = 0;
    for item in &items {
        if shown > 0 && s.len() + 2 + item.len() > CELL_WIDTH {
            break;
        }
        if shown > 0 {
            s.push_str(", ");
        }
        s.push_str(item);
        shown += 1;
    }
    if shown == 0 {
        return "-".to_owned();
    }
    if items.len() > shown {
        let _ = write!(s, " (+{} more)", items.len() - shown);
    }
    s
}

/// A signature's conditions as `key value` pairs, every element of every
/// list.
fn signature_full(m: &Match) -> String {
    conditions(m, usize::MAX).join(", ")
}

/// A signature short enough for a table cell: at most [`LIST_ITEMS`]
/// elements of each list ("udp 50000-50019 cidrs
/// 52.112.0.0/14,52.122.0.0/15,...").
fn signature_summary(m: &Match) -> String {
    conditions(m, LIST_ITEMS).join(" ")
}

/// The conditions a catalog signature may hold (the others are refused in
/// signatures when the catalog loads), lists cut after `max` elements.
fn conditions(m: &Match, max: usize) -> Vec<String> {
    let mut parts = Vec::new();
    if let Some(p) = m.protocol {
        parts.push(if max == usize::MAX {
            format!("protocol {p}")
        } else {
            p.to_string()
        });
    }
    let lists: [(&str, Vec<String>); 6] = [
        ("ports", strings(&m.ports)),
        ("src_ports", strings(&m.src_ports)),
        ("dst_ports", strings(&m.dst_ports)),
        ("cidrs", strings(&m.cidrs)),
        ("src_cidrs", strings(&m.src_cidrs)),
        ("dst_cidrs", strings(&m.dst_cidrs)),
    ];
    for (key, items) in lists {
        if items.is_empty() {
            continue;
        }
        let mut value = items
            .iter()
            .take(max)
            .cloned()
            .collect::<Vec<_>>()
            .join(",");
        if items.len() > max {
            value.push_str(",...");
        }
        // In the table, bare ports are the common case: no key for them.
        if key == "ports" && max != usize::MAX {
            parts.push(value);
        } else {
            parts.push(format!("{key} {value}"));
        }
    }
    if let Some(prefix) = &m.payload_prefix {
        parts.push(format!("payload_prefix \"{}\"", escape(prefix)));
    }
    if !m.payload_len.is_empty() {
        let lens: Vec<String> = m
            .payload_len
            .iter()
            .map(|r| {
                if r.first == r.last {
                    r.first.to_string()
                } else {
                    format!("{}-{}", r.first, r.last)
                }
            })
            .collect();
        parts.push(format!("payload_len {}", lens.join(",")));
    }
    // Texts (a user agent may hold spaces and commas) are quoted as the
    // catalog writes them, so they can be copied into an apps file.
    let texts: [(&str, &[String]); 4] = [
        ("http_method", &m.http_method),
        ("http_path_suffix", &m.http_path_suffix),
        ("http_user_agent", &m.http_user_agent),
        ("http_content_type", &m.http_content_type),
    ];
    for (key, items) in texts {
        if items.is_empty() {
            continue;
        }
        let mut value = items
            .iter()
            .take(max)
            .map(|t| format!("\"{}\"", escape(t.as_bytes())))
            .collect::<Vec<_>>()
            .join(",");
        if items.len() > max {
            value.push_str(",...");
        }
        parts.push(format!("{key} {value}"));
    }
    parts
}

/// Bytes as the catalog writes them in a TOML string: printable ASCII as
/// is, any other byte as `\u00XX`, so a prefix can be copied into an apps
/// file.
fn escape(bytes: &[u8]) -> String {
    let mut s = String::new();
    for &b in bytes {
        match b {
            b'"' | b'\\' => {
                s.push('\\');
                s.push(char::from(b));
            }
            0x20..=0x7e => s.push(char::from(b)),
            _ => {
                let _ = write!(s, "\\u{b:04X}");
            }
        }
    }
    s
}

fn strings<T: ToString>(items: &[T]) -> Vec<String> {
    items.iter().map(ToString::to_string).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Env, load_str};

    /// Loads the embedded configuration with `apps` as its apps file (in a
    /// directory of its own, named after `tag`); returns the result and the
    /// file's path.
    fn load_with_apps_file(
        apps: &str,
        tag: &str,
    ) -> (
        Result<Config, crate::config::ConfigErrors>,
        std::path::PathBuf,
    ) {
        let dir =
            std::env::temp_dir().join(format!("qosd-catalog-report-{}-{tag}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("apps.toml");
        std::fs::write(&path, apps).unwrap();
        let text = crate::config::DEFAULT_CONFIG_TOML.replace(
            "# apps_file = \"/etc/qosd/apps.toml\"",
            &format!("apps_file = {:?}", path.display().to_string()),
        );
        (load_str("test.toml", &text, &Env::None), path)
    }

    fn with_apps_file(apps: &str) -> (Config, std::path::PathBuf) {
        let (cfg, path) = load_with_apps_file(apps, "ok");
        (cfg.unwrap(), path)
    }

    #[test]
    fn built_in_apps_with_their_category_and_evidence() {
        let cfg = load_str("test.toml", crate::config::DEFAULT_CONFIG_TOML, &Env::None).unwrap();
        let apps = app_reports(&cfg);
        assert_eq!(apps.len(), cfg.catalog.apps.len());
        assert!(
            apps.iter()
                .all(|a| a.source == BUILT_IN && !a.replaces_built_in)
        );
        let teams = apps.iter().find(|a| a.name == "teams-audio").unwrap();
        assert_eq!(teams.category, "voice");
        assert!(teams.category_configured);

        let table = render_table(&apps);
        let line = table
            .lines()
            .find(|l| l.starts_with("teams-audio "))
            .unwrap();
        assert!(line.contains("voice"), "{line}");
        // Two signatures: the first, cut to two of its three networks, fills
        // the cell.
        assert!(
            line.contains("udp 50000-50019 cidrs 52.112.0.0/14,52.122.0.0/15,... (+1 more)"),
            "{line}"
        );
        assert!(table.contains(&format!("{} apps, all built-in", apps.len())));

        let zoom = apps.iter().find(|a| a.name == "zoom").unwrap();
        let full = render_app(zoom);
        assert!(full.contains("category:    business\n"), "{full}");
        assert!(full.contains("source:      built-in\n"), "{full}");
        for h in zoom.hosts {
            assert!(full.contains(&format!("\n  {h}\n")), "{full}");
        }
    }

    #[test]
    fn json_has_the_identifying_fields_as_arrays() {
        let cfg = load_str("test.toml", crate::config::DEFAULT_CONFIG_TOML, &Env::None).unwrap();
        let apps = app_reports(&cfg);
        let json: serde_json::Value = serde_json::to_value(&apps).unwrap();
        let teams = json
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["name"] == "teams-audio")
            .unwrap();
        assert_eq!(teams["category"], "voice");
        assert_eq!(teams["hosts"], serde_json::json!([]));
        assert_eq!(teams["signatures"][0]["protocol"], "udp");
        assert_eq!(
            teams["signatures"][0]["cidrs"],
            serde_json::json!(["52.112.0.0/14", "52.122.0.0/15", "2603:1063::/38"])
        );
        assert_eq!(
            teams["signatures"][1]["dst_ports"],
            serde_json::json!(["50000-50019"])
        );
    }

    #[test]
    fn apps_file_adds_and_replaces() {
        let (cfg, path) = with_apps_file(
            r#"
[[app]]
name = "erp-acme"
category = "business"
description = "The ERP at head office"
hosts = ["erp.acme.example", "*.erp.acme.example"]
[[app.match]]
protocol = "tcp"
dst_ports = 3300
payload_prefix = "\u0001ACME"
payload_len = [6, "20-40"]

[[app]]
name = "zoom"
category = "video"
hosts = ["zoom.us"]

[[app]]
name = "fax"
category = "faxes"
hosts = ["fax.example"]
"#,
        );
        let apps = app_reports(&cfg);
        let erp = apps.iter().find(|a| a.name == "erp-acme").unwrap();
        assert_eq!(erp.source, path.display().to_string());
        assert!(!erp.replaces_built_in);
        let zoom = apps.iter().find(|a| a.name == "zoom").unwrap();
        assert!(zoom.replaces_built_in);
        assert_eq!(zoom.category, "video");
        let fax = apps.iter().find(|a| a.name == "fax").unwrap();
        assert!(!fax.category_configured);

        let table = render_table(&apps);
        assert!(
            table.contains(&format!(
                "{} apps: {} built-in, 3 from {} (1 of them replacing built-in apps)",
                apps.len(),
                apps.len() - 3,
                path.display()
            )),
            "{table}"
        );
        let fax_line = table.lines().find(|l| l.starts_with("fax ")).unwrap();
        assert!(fax_line.contains("faxes*"), "{fax_line}");
        assert!(table.contains("\n* not a category of this configuration"));

        let full = render_app(erp);
        assert!(
            full.contains(
                "  protocol tcp, dst_ports 3300, payload_prefix \"\\u0001ACME\", payload_len 6,20-40\n"
            ),
            "{full}"
        );
        assert!(full.contains("hosts:       2\n  erp.acme.example\n  *.erp.acme.example\n"));
        assert!(render_app(zoom).contains("(replaces the built-in app of that name)"));
        if let Some(dir) = path.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }

    /// Each HTTP condition's problem names its key in the apps file: empty,
    /// non-ASCII or too long texts, methods qosd does not read, and
    /// combinations that could never hold.
    #[test]
    fn http_conditions_are_checked_with_their_keys() {
        let app =
            |m: &str| format!("[[app]]\nname = \"x\"\ncategory = \"bulk\"\n[[app.match]]\n{m}\n");
        let long = "a".repeat(65);
        for (i, (apps, key, problem)) in [
            (
                app("http_path_suffix = [\".deb\", \"\"]"),
                "app[0].match[0].http_path_suffix[1]",
                "empty path suffix",
            ),
            (
                app("http_user_agent = \"Débian\""),
                "app[0].match[0].http_user_agent",
                "printable ASCII",
            ),
            (
                app(&format!("http_content_type = [\"{long}\"]")),
                "app[0].match[0].http_content_type[0]",
                "too long",
            ),
            (
                app("http_method = [\"propfind\"]"),
                "app[0].match[0].http_method[0]",
                "case-sensitive",
            ),
            (
                app("http_method = \"BREW\""),
                "app[0].match[0].http_method",
                "not an HTTP method",
            ),
            (
                app("http_content_type = \"video/mp4;codecs=x\""),
                "app[0].match[0].http_content_type",
                "only the media type",
            ),
            (
                app("http_path_suffix = \".ts?x\""),
                "app[0].match[0].http_path_suffix",
                "query string",
            ),
            (
                app("http_path_suffix = []"),
                "app[0].match[0].http_path_suffix",
                "empty list",
            ),
            (
                app("protocol = \"udp\"\nhttp_method = \"GET\""),
                "app[0].match[0].protocol",
                "runs over TCP",
            ),
            (
                app("payload_prefix = \"GET \"\nhttp_path_suffix = \".iso\""),
                "app[0].match[0].payload_prefix",
                "not allowed with http_*",
            ),
            (
                app("http_method = \"GET\"\nhttp_content_type = \"video/\""),
                "app[0].match[0].http_content_type",
                "write two blocks",
            ),
        ]
        .into_iter()
        .enumerate()
        {
            let (cfg, path) = load_with_apps_file(&apps, &format!("http{i}"));
            let err = cfg.unwrap_err().to_string();
            if let Some(dir) = path.parent() {
                let _ = std::fs::remove_dir_all(dir);
            }
            assert!(
                err.contains(&format!("{}", path.display()))
                    && err.contains(key)
                    && err.contains(problem),
                "{key}: {err}"
            );
        }
    }

    /// `qosd apps NAME` shows HTTP conditions quoted, as an apps file
    /// writes them; the table shows the first two.
    #[test]
    fn http_conditions_are_shown() {
        let (cfg, path) = load_with_apps_file(
            "[[app]]\nname = \"intranet-video\"\ncategory = \"streaming\"\n[[app.match]]\nprotocol = \"tcp\"\ndst_ports = 8080\nhttp_method = \"GET\"\nhttp_path_suffix = [\".m3u8\", \".ts\", \".mpd\"]\nhttp_user_agent = \"VLC/3, LibVLC\"\n[[app.match]]\nhttp_content_type = [\"video/\"]\n",
            "http-shown",
        );
        let cfg = cfg.unwrap();
        let apps = app_reports(&cfg);
        let app = apps.iter().find(|a| a.name == "intranet-video").unwrap();
        let full = render_app(app);
        assert!(
            full.contains(
                "  protocol tcp, dst_ports 8080, http_method \"GET\", http_path_suffix \".m3u8\",\".ts\",\".mpd\", http_user_agent \"VLC/3\",\"LibVLC\"\n  http_content_type \"video/\"\n"
            ),
            "{full}"
        );
        let table = render_table(&apps);
        let line = table
            .lines()
            .find(|l| l.starts_with("intranet-video "))
            .unwrap();
        assert!(
            line.contains("http_path_suffix \".m3u8\",\".ts\",..."),
            "{line}"
        );
        let json = serde_json::to_value(app).unwrap();
        assert_eq!(
            json["signatures"][1]["http_content_type"],
            serde_json::json!(["video/"])
        );
        if let Some(dir) = path.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }

    /// `payload_len` needs a `payload_prefix` and takes lengths or ranges
    /// of them; each problem names its key in the apps file.
    #[test]
    fn payload_len_is_checked_with_its_key() {
        for (apps, key, problem) in [
            (
                "[[app]]\nname = \"x\"\ncategory = \"bulk\"\n[[app.match]]\nprotocol = \"udp\"\npayload_len = 148\n",
                "app[0].match[0].payload_len",
                "add one",
            ),
            (
                "[[app]]\nname = \"x\"\ncategory = \"bulk\"\n[[app.match]]\nprotocol = \"udp\"\npayload_prefix = \"x\"\npayload_len = [\"9-3\"]\n",
                "app[0].match[0].payload_len[0]",
                "first length is above its last",
            ),
            (
                "[[app]]\nname = \"x\"\ncategory = \"bulk\"\n[[app.match]]\nprotocol = \"udp\"\npayload_prefix = \"x\"\npayload_len = 70000\n",
                "app[0].match[0].payload_len",
                "above 65535",
            ),
        ] {
            let (cfg, path) = load_with_apps_file(apps, problem.split(' ').next().unwrap_or(""));
            let err = cfg.unwrap_err().to_string();
            if let Some(dir) = path.parent() {
                let _ = std::fs::remove_dir_all(dir);
            }
            assert!(err.contains(key) && err.contains(problem), "{key}: {err}");
        }
    }
}
