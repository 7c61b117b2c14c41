//! `qosd check-config` as an admin runs it: exit codes, messages on stderr,
//! `--print`.

use std::process::Command;

fn qosd(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_qosd"))
        .args(args)
        .env_remove("QOSD_LINK__UPLOAD")
        .output()
        .expect("run qosd")
}

/// A file in the temp directory, removed when dropped (also when the test
/// fails).
struct TempFile(std::path::PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn write_temp(name: &str, text: &str) -> TempFile {
    let path = std::env::temp_dir().join(format!("qosd-test-{}-{name}", std::process::id()));
    std::fs::write(&path, text).unwrap();
    TempFile(path)
}

#[test]
fn embedded_default_is_valid() {
    let out = qosd(&["check-config"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("valid"));
}

#[test]
fn three_mistakes_give_three_errors_and_exit_2() {
    let path = write_temp(
        "three.toml",
        r#"
default_category = "browsing"
[link]
upload = "20 Mbt"
download = "50 Mbit"
[[category]]
name = "voice"
min = "10%"
dscp = "EFF"
[[category]]
name = "browsing"
[[rule]]
category = "vocie"
ports = 5060
"#,
    );
    let out = qosd(&["check-config", path.0.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let file = path.0.display().to_string();
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with(&file)).collect();
    assert_eq!(errors.len(), 3, "{stderr}");
    for key in ["link.upload:", "category[0].dscp:", "rule[0].category:"] {
        assert!(
            errors.iter().any(|l| l.contains(key)),
            "{key} missing in:\n{stderr}"
        );
    }
    assert!(out.stdout.is_empty());
}

#[test]
fn missing_file_exits_2() {
    let out = qosd(&["check-config", "/nonexistent/qosd.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("/nonexistent/qosd.toml: cannot read the file")
    );
}

#[test]
fn print_shows_defaults_and_reads_back() {
    let path = write_temp(
        "minimal.toml",
        "default_category = \"web\"\n[link]\nupload = \"10mbit\"\ndownload = \"1.5 Gbit/s\"\n[[category]]\nname = \"web\"\n",
    );
    let out = qosd(&["check-config", "--print", path.0.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    let printed = String::from_utf8(out.stdout).unwrap();
    for expected in [
        "upload = \"10 Mbit\"",
        "download = \"1.5 Gbit\"",
        "weight = 10",
        "max_flows = 65536",
        "listen = \"127.0.0.1:9477\"",
    ] {
        assert!(
            printed.contains(expected),
            "{expected} missing from:\n{printed}"
        );
    }
    let again = write_temp("printed.toml", &printed);
    let out = qosd(&["check-config", again.0.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
