//! The web console in a real browser: headless Chromium, driven by
//! Selenium (`tests/console/console_test.py`), against qosd running in a
//! lab office under traffic. Root only: without root cargo reports it
//! ignored. As root a missing browser, driver or Selenium is a failure
//! naming the Debian packages (`.ci/run` installs them).
//!
//! `LAB_CONSOLE_SHOTS=DIR` also saves the README's screenshots in DIR
//! (not a `QOSD_` variable: qosd, which inherits the environment, would
//! read that as a configuration key).

mod common;

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn main() -> std::process::ExitCode {
    run_lab_tests(&[("console_in_headless_chromium", console_in_headless_chromium)])
}

const TOKEN: &str = "lab-console-token-0123456789";
/// Debian's python3, which python3-selenium installs into (a `python3`
/// earlier on PATH, such as a pyenv shim, would not have it).
const PYTHON: &str = "/usr/bin/python3";
/// The whole browser run: page loads, waits and the share's move are each
/// bounded far below this inside the script (screenshots add a minute).
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(240);

/// Panics, naming the packages, when the browser test cannot run.
fn require_browser() {
    let missing: Vec<&str> = [
        ("/usr/bin/chromium", "chromium"),
        ("/usr/bin/chromedriver", "chromium-driver"),
    ]
    .iter()
    .filter(|(path, _)| !std::path::Path::new(path).exists())
    .map(|(_, package)| *package)
    .chain(
        (!Command::new(PYTHON)
            .args(["-c", "import selenium"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success()))
        .then_some("python3-selenium"),
    )
    .collect();
    assert!(
        missing.is_empty(),
        "the console's browser test needs {missing:?}: apt-get install chromium chromium-driver python3-selenium (.ci/run installs them)"
    );
}

/// Kills background processes when dropped, so a failed assertion does not
/// leave traffic running until the lab goes down.
struct Background(Vec<std::process::Child>);

impl Drop for Background {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn console_in_headless_chromium() {
    require_browser();
    // The line is faster than qosd's rates, so qosd's queues are the
    // bottleneck and its weights decide the shares. Low rates leave the
    // two cores to Chromium.
    let lab = Lab::up("qc1", "20mbit", "40mbit");
    let token_file = lab.scratch().join("token");
    std::fs::write(&token_file, TOKEN).unwrap();
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let cfg = format!(
        "{}\n[metrics]\nlisten = \"127.0.0.1:9477\"\n[api]\nlisten = \"127.0.0.1:9478\"\ntoken_file = \"{}\"\n",
        lab_config("10 Mbit", "20 Mbit"),
        token_file.display()
    );
    let qosd = lab.qosd(&cfg);

    // Business (weight 50) and bulk (weight 5) both saturate the upload.
    lab.sh("srv", "iperf3 -s -D -p 5201 && iperf3 -s -D -p 5301");
    let secs = 230;
    let _traffic = Background(vec![
        lab.iperf_client(5301, secs, &["-P", "2"]),
        lab.iperf_client(5201, secs, &["-P", "2"]),
    ]);

    let script = repo().join("tests/console/console_test.py");
    let mut args = vec![
        PYTHON.to_owned(),
        script.display().to_string(),
        "--url".into(),
        "http://127.0.0.1:9478/".into(),
        "--token".into(),
        TOKEN.into(),
        "--categories".into(),
        "control,voice,business,browsing,bulk".into(),
        "--raise".into(),
        "bulk".into(),
        "--weight".into(),
        "500".into(),
    ];
    if let Ok(dir) = std::env::var("LAB_CONSOLE_SHOTS") {
        std::fs::create_dir_all(&dir).unwrap();
        let dir = std::fs::canonicalize(&dir).unwrap();
        args.extend(["--shots".into(), dir.display().to_string()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    // In the gateway, where qosd's API listens on loopback.
    let mut browser = lab.spawn("gw", &args);
    let (mut out, mut err) = (browser.stdout.take(), browser.stderr.take());
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(o) = out.as_mut() {
            let _ = o.read_to_string(&mut s);
        }
        if let Some(e) = err.as_mut() {
            let _ = e.read_to_string(&mut s);
        }
        s
    });
    let start = Instant::now();
    let status = loop {
        if let Ok(Some(status)) = browser.try_wait() {
            break Some(status);
        }
        if start.elapsed() > SCRIPT_TIMEOUT {
            let _ = browser.kill();
            let _ = browser.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let output = reader.join().unwrap_or_default();
    eprintln!("{output}");
    match status {
        Some(s) if s.success() => {}
        Some(s) => panic!(
            "the browser test failed ({s}):\n{output}\nqosd log:\n{}",
            qosd.log_text()
        ),
        None => panic!("the browser test did not end within {SCRIPT_TIMEOUT:?}:\n{output}"),
    }
    assert!(output.contains("RESULT ok"), "{output}");
    // The token never reaches qosd's log (the page sends it only in the
    // Authorization header, which qosd does not log).
    assert!(
        !qosd.log_text().contains(TOKEN),
        "the token is in qosd's log"
    );
}
