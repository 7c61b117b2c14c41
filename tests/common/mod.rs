//! The lab for integration tests: a throwaway office in network namespaces
//! (deploy/lab/lab.sh), qosd run inside its gateway, and the traffic tools.
//! Everything is torn down when the guards drop, also when a test fails.
//!
//! The lab test binaries have their own harness ([`run_lab_tests`],
//! `harness = false` in Cargo.toml): without root every lab test is
//! reported as *ignored*, not passed; as root (CI) they run, and a missing
//! tool is a failure, not a skip.

#![allow(dead_code)] // each test binary uses part of it

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Lab tests share the machine's two cores: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// The repository's root (scripts under deploy/).
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// True when running as root, which the lab (network namespaces) needs.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Panics when a tool the lab uses is not installed.
fn require_tools() {
    for tool in ["ip", "tc", "iperf3", "irtt", "ethtool", "python3", "ping"] {
        let found = Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {tool}"))
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        assert!(
            found,
            "{tool} is missing: .ci/run installs it (apt-get install iproute2 iperf3 irtt ethtool iputils-ping python3)"
        );
    }
}

/// The `main` of a lab test binary: runs `tests` (name, function) like
/// `cargo test` would, with its arguments (filters, `--list`, `--exact`,
/// `--ignored`, `--include-ignored`...).
///
/// Without root every test is marked ignored, so cargo reports "N ignored"
/// instead of counting tests that did nothing as passed; `--ignored` or
/// `--include-ignored` still runs them, and then they fail for want of
/// root. A test that panics fails (libtest-mimic catches the panic). The
/// tests run one at a time, in listing order: they share the machine's
/// cores (and [`Lab`] takes a lock besides).
///
/// A `#[test]` attribute means nothing in these files: a test that is not
/// in the list does not run.
pub fn run_lab_tests(tests: &[(&'static str, fn())]) -> std::process::ExitCode {
    use libtest_mimic::{Arguments, Failed, Trial};

    let mut args = Arguments::from_args();
    if args.test_threads.is_none() {
        args.test_threads = Some(1);
    }
    let root = is_root();
    if !root && !args.list && !args.ignored && !args.include_ignored {
        eprintln!(
            "lab tests need root (network namespaces): reported as ignored; CI runs them as root"
        );
    }
    let trials = tests
        .iter()
        .map(|&(name, test)| {
            Trial::test(name, move || {
                if !is_root() {
                    return Err(Failed::from(
                        "lab tests need root (network namespaces); CI runs them as root",
                    ));
                }
                require_tools();
                test();
                Ok(())
            })
            .with_ignored_flag(!root)
        })
        .collect();
    libtest_mimic::run(&args, trials).exit_code()
}

/// The congestion control of the lab's TCP senders (iperf3 `-C`, which
/// needs root for one outside `tcp_allowed_congestion_control`): CUBIC,
/// the default of Linux and Windows, pinned so that a test does not
/// depend on the host's `net.ipv4.tcp_congestion_control` (BBR on this
/// project's lab machines). BBRv1 does not slow down on a drop, which is
/// how qosd tells a download to slow down: BENCHMARKS.md, "Downloads from
/// BBR senders", measures it.
pub const TCP_CC: &str = "cubic";

/// A lab office. Dropping it removes every namespace and process in it.
pub struct Lab {
    pub prefix: String,
    _serial: MutexGuard<'static, ()>,
}

impl Lab {
    /// Builds the office with line rates `up`/`down` ("30mbit"), a 300 ms
    /// buffer and no base round trip.
    pub fn up(prefix: &str, up: &str, down: &str) -> Lab {
        Lab::up_with(prefix, up, down, 300, 0)
    }

    /// Builds the office with line rates `up`/`down`, a line buffer of
    /// `buffer_ms` and a base round trip of `rtt_ms` between the gateway
    /// and the server (`lab.sh up -r`; 0 for none).
    pub fn up_with(prefix: &str, up: &str, down: &str, buffer_ms: u32, rtt_ms: u32) -> Lab {
        let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let lab = Lab {
            prefix: prefix.to_owned(),
            _serial: serial,
        };
        let (buffer, rtt) = (buffer_ms.to_string(), rtt_ms.to_string());
        let mut args = vec!["up", "-p", prefix, "-u", up, "-d", down, "-b", &buffer];
        if rtt_ms > 0 {
            args.extend(["-r", &rtt]);
        }
        let out = Command::new(repo().join("deploy/lab/lab.sh"))
            .args(&args)
            .output()
            .expect("run lab.sh");
        assert!(
            out.status.success(),
            "lab.sh up failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        lab
    }

    /// Runs a command in namespace `node` (lan, gw, isp, srv) and waits.
    pub fn exec(&self, node: &str, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &format!("{}-{node}", self.prefix)])
            .args(args)
            .output()
            .expect("ip netns exec")
    }

    /// Like `exec`, asserting success; returns stdout.
    pub fn sh(&self, node: &str, script: &str) -> String {
        let out = self.exec(node, &["sh", "-c", script]);
        assert!(
            out.status.success(),
            "{node}: `{script}` failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Starts a command in `node` in the background.
    pub fn spawn(&self, node: &str, args: &[&str]) -> Child {
        Command::new("ip")
            .args(["netns", "exec", &format!("{}-{node}", self.prefix)])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn in namespace")
    }

    /// Starts the voice echo server (irtt) on the server, port 5004.
    pub fn voice_server(&self) -> Child {
        self.spawn("srv", &["irtt", "server", "-b", "198.18.0.20:5004"])
    }

    /// A voice-like stream from the LAN for `secs` seconds: 172-byte UDP
    /// packets every 20 ms to the voice port, every round trip in JSON on
    /// stdout (read it with [`output_of`] and [`irtt_stats`]).
    pub fn voice_client(&self, secs: u32) -> Child {
        let duration = format!("{secs}s");
        self.spawn(
            "lan",
            &[
                "irtt",
                "client",
                "-i",
                "20ms",
                "-d",
                &duration,
                "-l",
                "172",
                "-q",
                "-o",
                "-",
                "198.18.0.20:5004",
            ],
        )
    }

    /// An iperf3 client on the LAN to the server's `port` for `secs`
    /// seconds, with `extra` arguments (`-P 4`, `-R`, `-J`...). Its TCP
    /// senders, both ways, run [`TCP_CC`] unless `extra` names another
    /// (`-C bbr`).
    pub fn iperf_client(&self, port: u16, secs: u32, extra: &[&str]) -> Child {
        self.iperf_client_on("lan", port, secs, extra)
    }

    /// [`Lab::iperf_client`] on LAN computer `node` ("lan", or "lan2" once
    /// [`Lab::host2`] added it).
    pub fn iperf_client_on(&self, node: &str, port: u16, secs: u32, extra: &[&str]) -> Child {
        let (port, secs) = (port.to_string(), secs.to_string());
        let mut args = vec!["iperf3", "-c", "198.18.0.20", "-p", &port, "-t", &secs];
        if !extra.contains(&"-C") {
            args.extend_from_slice(&["-C", TCP_CC]);
        }
        args.extend_from_slice(extra);
        self.spawn(node, &args)
    }

    /// Adds a second computer to the office LAN: node "lan2", 198.18.0.11,
    /// with a MAC address of its own (`lab.sh host2`).
    pub fn host2(&self) {
        self.lab_sh(&["host2"]);
    }

    /// Bridges lan0 and wan0 with the kernel ("without qosd").
    pub fn kernel_bridge(&self, on: bool) {
        self.lab_sh(&[if on { "bridge" } else { "unbridge" }]);
    }

    /// Runs `deploy/lab/lab.sh COMMAND -p PREFIX ARGS...` on this lab
    /// (`unplug`, `plug`, `carrier off`...), asserting success.
    pub fn lab_sh(&self, args: &[&str]) {
        let (cmd, rest) = args.split_first().expect("a lab.sh command");
        let out = Command::new(repo().join("deploy/lab/lab.sh"))
            .arg(cmd)
            .args(["-p", &self.prefix])
            .args(rest)
            .output()
            .expect("lab.sh");
        assert!(
            out.status.success(),
            "lab.sh {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// This lab's scratch directory (configs, tokens, logs), created on
    /// first use and removed with the lab.
    pub fn scratch(&self) -> PathBuf {
        let dir = self.scratch_path();
        fs::create_dir_all(&dir).expect("scratch dir");
        dir
    }

    fn scratch_path(&self) -> PathBuf {
        std::env::temp_dir().join(format!("qosd-lab-{}-{}", self.prefix, std::process::id()))
    }

    /// Starts qosd in the gateway with `config` (TOML text).
    pub fn qosd(&self, config: &str) -> Qosd {
        let dir = self.scratch();
        let cfg = dir.join("qosd.toml");
        fs::write(&cfg, config).expect("write config");
        let log = dir.join("qosd.log");
        let child = Command::new("ip")
            .args(["netns", "exec", &format!("{}-gw", self.prefix)])
            .arg(env!("CARGO_BIN_EXE_qosd"))
            .args(["run", "--config"])
            .arg(&cfg)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("start qosd");
        let mut q = Qosd {
            child: Some(child),
            log,
            config: cfg,
        };
        q.wait_for_log("running", Duration::from_secs(10));
        q
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = Command::new(repo().join("deploy/lab/lab.sh"))
            .args(["down", "-p", &self.prefix])
            .output();
        let _ = fs::remove_dir_all(self.scratch_path());
    }
}

/// A running qosd. Dropping it stops it (SIGTERM, then SIGKILL).
pub struct Qosd {
    child: Option<Child>,
    pub log: PathBuf,
    pub config: PathBuf,
}

impl Qosd {
    /// Waits until the log contains `text`; panics with the log otherwise.
    pub fn wait_for_log(&mut self, text: &str, timeout: Duration) {
        let start = Instant::now();
        loop {
            let log = fs::read_to_string(&self.log).unwrap_or_default();
            if log.contains(text) {
                return;
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("qosd exited ({status}) before logging {text:?}:\n{log}");
            }
            assert!(
                start.elapsed() < timeout,
                "qosd did not log {text:?} within {timeout:?}:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends SIGTERM and waits for exit; returns (exit code, time to stop).
    pub fn stop(&mut self) -> (Option<i32>, Duration) {
        let Some(mut child) = self.child.take() else {
            return (None, Duration::ZERO);
        };
        let start = Instant::now();
        // SAFETY: signalling our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = start + Duration::from_secs(5);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return (status.code(), start.elapsed());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return (None, start.elapsed());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits up to `timeout` for qosd to exit by itself; its exit code
    /// (`Some(None)` when killed by a signal), or `None` if it still runs.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<Option<i32>> {
        let start = Instant::now();
        let child = self.child.as_mut()?;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status.code());
            }
            if start.elapsed() > timeout {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Qosd {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Waits for a background child and returns its stdout.
pub fn output_of(mut child: Child) -> String {
    let mut s = String::new();
    if let Some(mut out) = child.stdout.take() {
        let _ = out.read_to_string(&mut s);
    }
    let _ = child.wait();
    s
}

/// Received throughput (bits/s) from `iperf3 -J` output.
pub fn iperf_bps(json: &str) -> f64 {
    let v: serde_json::Value = serde_json::from_str(json)
        .unwrap_or_else(|e| panic!("iperf3 output is not JSON ({e}):\n{json}"));
    v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .unwrap_or_else(|| panic!("no sum_received in:\n{json}"))
}

/// Round-trip statistics of a voice-like stream.
#[derive(Debug, Clone, Copy)]
pub struct VoiceStats {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub loss_pct: f64,
    pub sent: u64,
}

/// Parses `irtt client -o -` JSON.
pub fn irtt_stats(json: &str) -> VoiceStats {
    let v: serde_json::Value = serde_json::from_str(json)
        .unwrap_or_else(|e| panic!("irtt output is not JSON ({e}):\n{json}"));
    let mut rtts: Vec<f64> = v["round_trips"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|r| r["delay"]["rtt"].as_f64())
                .map(|ns| ns / 1e6)
                .collect()
        })
        .unwrap_or_default();
    rtts.sort_by(|a, b| a.total_cmp(b));
    let pct = |q: f64| percentile(&rtts, q);
    VoiceStats {
        p50_ms: pct(0.5),
        p99_ms: pct(0.99),
        loss_pct: v["stats"]["packet_loss_percent"].as_f64().unwrap_or(100.0),
        sent: v["stats"]["packets_sent"].as_u64().unwrap_or(0),
    }
}

/// The lab's configuration for qosd (deploy/lab/qosd-lab.toml: `lan0`/
/// `wan0`, voice on UDP 5004, business on TCP 5301-5302, bulk on TCP
/// 5201-5202) with the given shaped rates.
pub fn lab_config(up: &str, down: &str) -> String {
    include_str!("../../deploy/lab/qosd-lab.toml")
        .replace("upload = \"19 Mbit\"", &format!("upload = \"{up}\""))
        .replace("download = \"47 Mbit\"", &format!("download = \"{down}\""))
}

/// Reads a file in a namespace-independent way.
pub fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_default()
}

/// `python3 -c GET URL`, run in the gateway: prints the status, then the
/// body (status 0 when nothing answered).
const GET: &str = r#"
import sys, urllib.request, urllib.error
try:
    r = urllib.request.urlopen(sys.argv[1], timeout=2); print(r.status); print(r.read().decode())
except urllib.error.HTTPError as e:
    print(e.code); print(e.read().decode())
except Exception as e:
    print(0); print(e)
"#;

/// GETs `url` from inside the lab's gateway (qosd's listeners are on its
/// loopback): the status and the body.
pub fn gw_get(lab: &Lab, url: &str) -> (u16, String) {
    let out = lab.exec("gw", &["python3", "-c", GET, url]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (status, rest) = text.split_once('\n').unwrap_or((&text, ""));
    (status.trim().parse().unwrap_or(0), rest.to_owned())
}

/// qosd's metrics in the lab, by series (`name{labels}`).
pub fn metrics(lab: &Lab) -> std::collections::HashMap<String, f64> {
    gw_get(lab, "http://127.0.0.1:9477/metrics")
        .1
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            l.rsplit_once(' ')
                .and_then(|(k, v)| Some((k.to_owned(), v.parse().ok()?)))
        })
        .collect()
}

impl Lab {
    /// Changes the ISP line's capacity now (`lab.sh line`: the tbf's rate
    /// changes in place, its buffer keeps its size in bytes), as an LTE
    /// cell filling up or rain over a satellite link would.
    pub fn line(&self, up: &str, down: &str) {
        self.lab_sh(&["line", "-u", up, "-d", down]);
    }
}

/// One round trip of an irtt stream: when it was sent (wall clock, as
/// [`std::time::SystemTime`] counts it) and its round trip, `None` when
/// lost.
#[derive(Debug, Clone, Copy)]
pub struct RoundTrip {
    pub sent: std::time::SystemTime,
    pub rtt_ms: Option<f64>,
    /// The two one-way delays (up, down), ms: the lab's namespaces share
    /// one clock, so irtt's are exact.
    pub one_way_ms: Option<(f64, f64)>,
}

/// Every round trip of `irtt client -o -` JSON, in sending order.
pub fn irtt_round_trips(json: &str) -> Vec<RoundTrip> {
    let v: serde_json::Value = serde_json::from_str(json)
        .unwrap_or_else(|e| panic!("irtt output is not JSON ({e}):\n{json}"));
    v["round_trips"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|r| {
                    let wall = r["timestamps"]["client"]["send"]["wall"].as_u64()?;
                    let answered = r["lost"].as_str() == Some("false");
                    let ms = |k: &str| {
                        r["delay"][k]
                            .as_f64()
                            .filter(|_| answered)
                            .map(|ns| ns / 1e6)
                    };
                    Some(RoundTrip {
                        sent: std::time::UNIX_EPOCH + Duration::from_nanos(wall),
                        rtt_ms: ms("rtt"),
                        one_way_ms: ms("send").zip(ms("receive")),
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The statistics of the round trips sent in `[from, to)`.
pub fn voice_window(
    trips: &[RoundTrip],
    from: std::time::SystemTime,
    to: std::time::SystemTime,
) -> VoiceStats {
    let inside: Vec<&RoundTrip> = trips
        .iter()
        .filter(|t| t.sent >= from && t.sent < to)
        .collect();
    let mut rtts: Vec<f64> = inside.iter().filter_map(|t| t.rtt_ms).collect();
    rtts.sort_by(|a, b| a.total_cmp(b));
    let pct = |q: f64| percentile(&rtts, q);
    let sent = inside.len() as u64;
    VoiceStats {
        p50_ms: pct(0.5),
        p99_ms: pct(0.99),
        loss_pct: if sent == 0 {
            100.0
        } else {
            100.0 * (sent - rtts.len() as u64) as f64 / sent as f64
        },
        sent,
    }
}

/// The `q` quantile of `sorted` (nearest rank); infinite when empty.
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    sorted
        .get(((sorted.len() as f64 - 1.0) * q).round() as usize)
        .copied()
        .unwrap_or(f64::INFINITY)
}

/// The 99th percentile of the one-way delays (up, down) of the round
/// trips sent in `[from, to)`, ms; infinite without any.
pub fn one_way_p99(
    trips: &[RoundTrip],
    from: std::time::SystemTime,
    to: std::time::SystemTime,
) -> (f64, f64) {
    let inside = || {
        trips
            .iter()
            .filter(move |t| t.sent >= from && t.sent < to)
            .filter_map(|t| t.one_way_ms)
    };
    let p99 = |mut v: Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        percentile(&v, 0.99)
    };
    (
        p99(inside().map(|(up, _)| up).collect()),
        p99(inside().map(|(_, down)| down).collect()),
    )
}

/// One interval of an iperf3 test as its receiver counted it: seconds
/// since the test started, and the goodput in bits/s.
#[derive(Debug, Clone, Copy)]
pub struct Interval {
    pub start: f64,
    pub end: f64,
    pub bps: f64,
}

/// The per-interval goodput of `iperf3 -J` output (`-i 1` for one a
/// second), all streams together, as the receiving end counted it: the
/// client's own intervals with `-R`, otherwise the server's, which the
/// client gets with `--get-server-output` from a server started with `-J`.
pub fn iperf_intervals(json: &str) -> Vec<Interval> {
    let v: serde_json::Value = serde_json::from_str(json)
        .unwrap_or_else(|e| panic!("iperf3 output is not JSON ({e}):\n{json}"));
    if let Some(e) = v["error"].as_str() {
        panic!("iperf3 failed: {e}");
    }
    let reverse = v["start"]["test_start"]["reverse"].as_i64() == Some(1);
    let receiver = if reverse {
        &v
    } else {
        v.get("server_output_json").unwrap_or_else(|| {
            panic!("no server_output_json (client needs --get-server-output, server -J):\n{json}")
        })
    };
    receiver["intervals"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|i| {
                    Some(Interval {
                        start: i["sum"]["start"].as_f64()?,
                        end: i["sum"]["end"].as_f64()?,
                        bps: i["sum"]["bits_per_second"].as_f64()?,
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The mean goodput (bits/s) of the intervals whose middle falls in
/// `[from, to)` seconds of the test; NaN when none does.
pub fn mean_bps(intervals: &[Interval], from: f64, to: f64) -> f64 {
    let (bits, secs) = intervals
        .iter()
        .filter(|i| (from..to).contains(&((i.start + i.end) / 2.0)))
        .fold((0.0, 0.0), |(b, s), i| {
            (b + i.bps * (i.end - i.start), s + (i.end - i.start))
        });
    if secs > 0.0 { bits / secs } else { f64::NAN }
}
