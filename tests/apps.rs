//! `qosd apps` as an admin runs it: the table, one app in full, JSON, and
//! the apps a configuration's `classify.apps_file` adds.

use std::process::Command;

fn qosd(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_qosd"))
        .args(args)
        .output()
        .expect("run qosd")
}

fn stdout(out: &std::process::Output) -> String {
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A directory in the temp directory, removed when dropped (also when the
/// test fails).
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let path = std::env::temp_dir().join(format!("qosd-test-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn apps_json(args: &[&str]) -> Vec<serde_json::Value> {
    let mut all = vec!["apps", "--json"];
    all.extend_from_slice(args);
    let v: serde_json::Value = serde_json::from_str(&stdout(&qosd(&all))).unwrap();
    v.as_array().unwrap().clone()
}

fn find<'a>(apps: &'a [serde_json::Value], name: &str) -> &'a serde_json::Value {
    apps.iter()
        .find(|a| a["name"] == name)
        .unwrap_or_else(|| panic!("{name} not listed"))
}

#[test]
fn json_lists_the_built_in_catalog() {
    let apps = apps_json(&[]);
    // Every [[app]] of config/apps.toml, in its order, then those of the
    // generated config/apps-community.toml that it does not name.
    let names_in = |catalog: &'static str| -> Vec<&'static str> {
        catalog
            .lines()
            .filter_map(|l| l.strip_prefix("name = \""))
            .filter_map(|l| l.strip_suffix('"'))
            .collect()
    };
    let mut names = names_in(include_str!("../config/apps.toml"));
    for name in names_in(include_str!("../config/apps-community.toml")) {
        if !names.contains(&name) {
            names.push(name);
        }
    }
    let listed: Vec<&str> = apps.iter().map(|a| a["name"].as_str().unwrap()).collect();
    assert_eq!(listed, names);

    let zoom = find(&apps, "zoom");
    assert_eq!(zoom["category"], "business");
    assert_eq!(zoom["source"], "built-in");
    assert!(
        zoom["hosts"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("*.zoom.us"))
    );
    let dns = find(&apps, "dns");
    assert_eq!(dns["category"], "control");
    assert_eq!(
        dns["signatures"],
        serde_json::json!([
            { "protocol": "udp", "ports": ["53"] },
            { "protocol": "tcp", "ports": ["53"] },
        ])
    );
}

#[test]
fn an_apps_file_adds_and_replaces_apps() {
    let dir = TempDir::new("apps");
    std::fs::write(
        dir.0.join("apps.toml"),
        r#"
[[app]]
name = "erp-acme"
category = "business"
description = "The ERP at head office"
hosts = ["erp.acme.example"]
[[app.match]]
protocol = "tcp"
dst_ports = 3300

[[app]]
name = "zoom"
category = "video"
hosts = ["zoom.us"]
"#,
    )
    .unwrap();
    // A relative apps_file is read from the configuration's directory.
    let config = include_str!("../config/qosd.toml").replace(
        "# apps_file = \"/etc/qosd/apps.toml\"",
        "apps_file = \"apps.toml\"",
    );
    let config_path = dir.0.join("qosd.toml");
    std::fs::write(&config_path, config).unwrap();
    let config_arg = config_path.to_str().unwrap();

    let apps = apps_json(&["--config", config_arg]);
    let erp = find(&apps, "erp-acme");
    assert_eq!(erp["category"], "business");
    assert_eq!(erp["hosts"], serde_json::json!(["erp.acme.example"]));
    assert_eq!(
        erp["signatures"],
        serde_json::json!([{ "protocol": "tcp", "dst_ports": ["3300"] }])
    );
    let source = dir.0.join("apps.toml").display().to_string();
    assert_eq!(erp["source"], source.as_str());
    let zoom = find(&apps, "zoom");
    assert_eq!(zoom["category"], "video");
    assert_eq!(zoom["replaces_built_in"], true);

    let table = stdout(&qosd(&["apps", "--config", config_arg]));
    let line = table.lines().find(|l| l.starts_with("erp-acme ")).unwrap();
    assert!(line.contains("business"), "{line}");
    assert!(line.contains("erp.acme.example"), "{line}");
    assert!(line.contains("tcp dst_ports 3300"), "{line}");

    let full = stdout(&qosd(&["apps", "erp-acme", "--config", config_arg]));
    assert!(
        full.contains("description: The ERP at head office\n"),
        "{full}"
    );
    assert!(full.contains(&format!("source:      {source}\n")), "{full}");
}

#[test]
fn one_app_in_full_and_an_unknown_name() {
    let full = stdout(&qosd(&["apps", "teams-audio"]));
    assert!(
        full.starts_with("name:        teams-audio\ncategory:    voice\n"),
        "{full}"
    );
    assert!(
        full.contains("  protocol udp, src_ports 50000-50019, dst_ports 50000-50019\n"),
        "{full}"
    );
    let one: serde_json::Value =
        serde_json::from_str(&stdout(&qosd(&["apps", "teams-audio", "--json"]))).unwrap();
    assert_eq!(one["category"], "voice");

    let out = qosd(&["apps", "team"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no app named \"team\"; did you mean teams"),
        "{err}"
    );
}
