//! Fairness between people (issue 17): inside a category, LAN computers
//! share first, then each computer's flows, so a laptop syncing with 16
//! connections cannot take 16 times the share of a colleague's single
//! upload (`shaper.fairness = "host"`, the default); `"flow"` shares
//! between flows, as before.
//!
//! The lab office with a second LAN computer (`lab.sh host2`): host A
//! (198.18.0.10) runs 16 TCP uploads, host B (198.18.0.11) one, to the
//! same server and category, through qosd at 19 Mbit/s up; then the same
//! with downloads. What each host received is read from the receiving
//! iperf3 (the server's own count for uploads) over the steady part of
//! the run. Root only: without root cargo reports it ignored. The tests
//! are listed in `main` (common::run_lab_tests).

mod common;

use common::*;

fn main() -> std::process::ExitCode {
    run_lab_tests(&[(
        "hosts_share_a_category_equally_whatever_their_number_of_flows",
        hosts_share_a_category_equally_whatever_their_number_of_flows,
    )])
}

/// Seconds of load per run.
const LOAD: u32 = 20;
/// The steady part of a run judged, in seconds since its start.
const JUDGED: (f64, f64) = (5.0, 20.0);

fn config(fairness: &str) -> String {
    format!(
        "{}\n[shaper]\nfairness = \"{fairness}\"\n",
        lab_config("19 Mbit", "47 Mbit")
    )
}

/// Host B's share of what hosts A (16 flows) and B (1 flow) received, and
/// both rates (bits/s); and what `/api/v1/hosts` said halfway through.
fn sixteen_against_one(lab: &Lab, download: bool) -> (f64, f64, f64, serde_json::Value) {
    let mut extra = vec!["-i", "1", "-J"];
    extra.push(if download {
        "-R"
    } else {
        "--get-server-output"
    });
    let mut a_extra = extra.clone();
    a_extra.extend_from_slice(&["-P", "16"]);
    let a = lab.iperf_client_on("lan", 5201, LOAD, &a_extra);
    let b = lab.iperf_client_on("lan2", 5202, LOAD, &extra);
    // Halfway through the load (not a synchronisation: the clients run
    // for LOAD seconds whatever happens here).
    std::thread::sleep(std::time::Duration::from_secs(u64::from(LOAD) / 2));
    let (status, hosts) = gw_get(lab, "http://127.0.0.1:9478/api/v1/hosts");
    assert_eq!(status, 200, "{hosts}");
    let hosts: serde_json::Value = serde_json::from_str(&hosts).expect("hosts JSON");
    let a = iperf_intervals(&output_of(a));
    let b = iperf_intervals(&output_of(b));
    let (a, b) = (
        mean_bps(&a, JUDGED.0, JUDGED.1),
        mean_bps(&b, JUDGED.0, JUDGED.1),
    );
    (b / (a + b), a, b, hosts)
}

/// The rate (bits/s) `/api/v1/hosts` gave the computer with `mac` in
/// direction `dir`, and its flows.
fn host_rate(hosts: &serde_json::Value, mac: &str, dir: &str) -> (f64, u64) {
    let h = hosts
        .as_array()
        .and_then(|l| l.iter().find(|h| h["mac"] == mac))
        .unwrap_or_else(|| panic!("{mac} not in /api/v1/hosts: {hosts}"));
    (
        h["rate_bps"][dir].as_f64().unwrap_or(0.0),
        h["flows"].as_u64().unwrap_or(0),
    )
}

fn hosts_share_a_category_equally_whatever_their_number_of_flows() {
    let lab = Lab::up("qf1", "20mbit", "50mbit");
    lab.host2();
    lab.sh("srv", "iperf3 -s -D -J -p 5201 && iperf3 -s -D -J -p 5202");
    let mut results = Vec::new();
    for (fairness, download) in [("host", false), ("flow", false), ("host", true)] {
        let _qosd = lab.qosd(&config(fairness));
        let (share, a, b, hosts) = sixteen_against_one(&lab, download);
        let dir = if download { "download" } else { "upload" };
        // The per-host view sees both computers, their rates and flows.
        let (ra, fa) = host_rate(&hosts, "02:00:c6:12:00:0a", dir);
        let (rb, fb) = host_rate(&hosts, "02:00:c6:12:00:0b", dir);
        eprintln!(
            "  /api/v1/hosts: A {:.1} Mbit/s, {fa} flows; B {:.1} Mbit/s, {fb} flows",
            ra / 1e6,
            rb / 1e6
        );
        assert!(fa >= 16 && fb >= 1, "flows per host: A {fa}, B {fb}");
        assert!(
            (ra + rb) > 0.5 * (a + b) && (ra + rb) < 1.5 * (a + b),
            "the hosts' rates {:.1} + {:.1} Mbit/s against {:.1} measured",
            ra / 1e6,
            rb / 1e6,
            (a + b) / 1e6
        );
        eprintln!(
            "fairness {fairness}, {dir}: host A (16 flows) {:.1} Mbit/s, host B (1 flow) {:.1} Mbit/s: B's share {:.1} %",
            a / 1e6,
            b / 1e6,
            share * 100.0
        );
        results.push((fairness, dir, share, a + b));
    }
    for (fairness, dir, share, total) in results {
        // The link is really in use (otherwise shares mean nothing).
        assert!(
            total > 0.8 * if dir == "upload" { 19e6 } else { 47e6 },
            "{fairness} {dir}: only {:.1} Mbit/s in all",
            total / 1e6
        );
        if fairness == "host" {
            assert!(
                (share - 0.5).abs() <= 0.05,
                "host fairness, {dir}: the single flow's host got {:.1} %, not 50 ± 5 %",
                share * 100.0
            );
        } else {
            assert!(
                share < 0.15,
                "flow fairness, {dir}: the single flow got {:.1} % (1/17 is 5.9 %)",
                share * 100.0
            );
        }
    }
}
