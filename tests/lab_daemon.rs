//! `qosd run` end to end in a lab office (network namespaces, veth, tbf
//! line with a deep buffer): transparency, shaping accuracy,
//! prioritisation against the plain kernel bridge, clean stop.
//! Root only: without root cargo reports them ignored. The tests are
//! listed in `main` (common::run_lab_tests; `#[test]` does nothing here).

mod common;

use std::time::Duration;

use common::*;

fn main() -> std::process::ExitCode {
    run_lab_tests(&[
        ("transparency", transparency),
        ("transparency_ring_backend", transparency_ring_backend),
        ("transparency_xdp_backend", transparency_xdp_backend),
        ("transparency_two_threads", transparency_two_threads),
        (
            "shapes_each_direction_to_its_rate",
            shapes_each_direction_to_its_rate,
        ),
        (
            "voice_keeps_low_latency_under_load",
            voice_keeps_low_latency_under_load,
        ),
        (
            "stop_is_clean_and_restores_interfaces",
            stop_is_clean_and_restores_interfaces,
        ),
        (
            "takes_over_from_the_bypass_bridge",
            takes_over_from_the_bypass_bridge,
        ),
        (
            "drops_root_after_opening_its_sockets",
            drops_root_after_opening_its_sockets,
        ),
    ])
}

/// Echo server: TCP and UDP on port 7000, both address families; exits
/// after `secs`.
const ECHO_SERVER: &str = r#"
import socket, sys, threading, time
def tcp(fam, addr):
    s = socket.socket(fam, socket.SOCK_STREAM); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, 7000)); s.listen(8)
    while True:
        c, _ = s.accept()
        def serve(c):
            while True:
                d = c.recv(65536)
                if not d: break
                c.sendall(d)
            c.close()
        threading.Thread(target=serve, args=(c,), daemon=True).start()
def udp(fam, addr):
    s = socket.socket(fam, socket.SOCK_DGRAM); s.bind((addr, 7000))
    while True:
        d, a = s.recvfrom(65536); s.sendto(d, a)
for fam, addr in ((socket.AF_INET, sys.argv[1]), (socket.AF_INET6, sys.argv[2])):
    for f in (tcp, udp):
        threading.Thread(target=f, args=(fam, addr), daemon=True).start()
print("ready", flush=True)
time.sleep(float(sys.argv[3]))
"#;

/// Echo client: sends random bytes over TCP (200 kB) and one full-MTU UDP
/// datagram with DF set, and checks the echo is byte-identical.
const ECHO_CLIENT: &str = r#"
import os, socket, sys
fam = socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET
data = os.urandom(200000)
s = socket.create_connection((sys.argv[1], 7000), timeout=10)
s.sendall(data); s.shutdown(socket.SHUT_WR)
got = b''
while True:
    d = s.recv(65536)
    if not d: break
    got += d
assert got == data, "tcp echo differs (%d vs %d bytes)" % (len(got), len(data))
size = int(sys.argv[2])
u = socket.socket(fam, socket.SOCK_DGRAM); u.settimeout(5)
if fam == socket.AF_INET:
    u.setsockopt(socket.IPPROTO_IP, 10, 2)   # IP_MTU_DISCOVER = IP_PMTUDISC_DO: DF set
payload = os.urandom(size)
u.sendto(payload, (sys.argv[1], 7000))
back, _ = u.recvfrom(65536)
assert back == payload, "udp echo differs"
print("ok", len(got), len(back))
"#;

/// Sends one 802.1Q-tagged frame (VLAN 100, EtherType 0x88b5, a full
/// 1500-byte payload) on eth0 to the MAC in argv[1].
const VLAN_SEND: &str = r#"
import socket, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW); s.bind(("eth0", 0))
dst = bytes.fromhex(sys.argv[1].replace(":", ""))
src = bytes.fromhex(open("/sys/class/net/eth0/address").read().strip().replace(":", ""))
payload = bytes((i * 7 + 3) % 256 for i in range(1500))
s.send(dst + src + b"\x81\x00\x00\x64" + b"\x88\xb5" + payload)
"#;

/// Waits for that frame on eth0 and prints its VLAN id and whether the
/// payload arrived intact. The kernel may move the tag into PACKET_AUXDATA.
const VLAN_RECV: &str = r#"
import socket, struct, sys, time
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3)); s.bind(("eth0", 0))
s.setsockopt(263, 8, 1)   # SOL_PACKET, PACKET_AUXDATA
s.settimeout(0.5)
payload = bytes((i * 7 + 3) % 256 for i in range(1500))
print("ready", flush=True)
end = time.time() + float(sys.argv[1])
while time.time() < end:
    try:
        data, anc, _, _ = s.recvmsg(4096, 256)
    except socket.timeout:
        continue
    vlan = None
    if data[12:14] == b"\x81\x00":
        vlan = struct.unpack("!H", data[14:16])[0] & 0xfff; body = data[16:]
    else:
        body = data[12:]
        for lvl, typ, cdata in anc:
            if lvl == 263 and typ == 8:
                status, _, _, _, _, tci, _ = struct.unpack("IIIHHHH", cdata[:20])
                if status & (1 << 4): vlan = tci & 0xfff
    if body[:2] == b"\x88\xb5":
        print("vlan", vlan, "intact", body[2:] == payload, flush=True); break
"#;

fn transparency() {
    let lab = Lab::up("qt1", "100mbit", "100mbit");
    transparent_with(&lab, "backend = \"pnet\"", &["qosd-datapath"]);
}

/// The same with the TPACKET_V2 ring backend.
fn transparency_ring_backend() {
    let lab = Lab::up("qt7", "100mbit", "100mbit");
    transparent_with(&lab, "backend = \"ring\"", &["qosd-datapath"]);
}

/// The same with AF_XDP (the XDP program in veth's driver, copy mode).
fn transparency_xdp_backend() {
    let lab = Lab::up("qt8", "100mbit", "100mbit");
    transparent_with(&lab, "backend = \"xdp\"", &["qosd-datapath"]);
}

/// The same with a data-path thread per direction (`datapath.threads = 2`)
/// instead of one for both.
fn transparency_two_threads() {
    let lab = Lab::up("qt9", "100mbit", "100mbit");
    transparent_with(&lab, "threads = 2", &["qosd-upload", "qosd-download"]);
}

/// Everything crosses unchanged, both ways, with `datapath` (lines of its
/// section) and the data-path threads named `threads` running.
fn transparent_with(lab: &Lab, datapath: &str, threads: &[&str]) {
    let cfg = format!(
        "{}\n[datapath]\n{datapath}\n",
        lab_config("80 Mbit", "80 Mbit")
    );
    let qosd = lab.qosd(&cfg);

    // ARP and ICMP both families (fresh namespaces: the first ping needs ARP
    // through qosd).
    lab.sh("lan", "ping -c 2 -i 0.2 -W 2 198.18.0.20");
    lab.sh("lan", "ping -6 -c 2 -i 0.2 -W 2 2001:2::20");
    lab.sh("srv", "ping -c 2 -i 0.2 -W 2 198.18.0.10");
    assert!(
        lab.sh("lan", "ip neigh show 198.18.0.20")
            .contains("lladdr"),
        "ARP did not resolve through qosd"
    );
    // Frames crossed both ways: the data path's threads run.
    let pid = qosd.pid().expect("qosd runs");
    let mut names: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("qosd's threads")
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|n| n.trim().to_owned())
        .filter(|n| n.starts_with("qosd-") && n != "qosd-control")
        .collect();
    names.sort();
    let mut want: Vec<String> = threads.iter().map(|t| t.to_string()).collect();
    want.sort();
    assert_eq!(names, want, "data-path threads");

    // An 802.1Q-tagged, full-MTU frame crosses with its tag and payload.
    let srv_mac = lab
        .sh("srv", "cat /sys/class/net/eth0/address")
        .trim()
        .to_owned();
    let listener = lab.spawn("srv", &["python3", "-c", VLAN_RECV, "5"]);
    std::thread::sleep(Duration::from_millis(500));
    let sent = lab.exec("lan", &["python3", "-c", VLAN_SEND, &srv_mac]);
    assert!(
        sent.status.success(),
        "{}",
        String::from_utf8_lossy(&sent.stderr)
    );
    let got = output_of(listener);
    assert!(
        got.contains("vlan 100 intact True"),
        "tagged frame did not cross unchanged: {got:?}"
    );

    // TCP and UDP, both directions of each connection, both families, and
    // connections opened from either side; full-MTU datagrams with DF.
    let srv = lab.spawn(
        "srv",
        &[
            "python3",
            "-c",
            ECHO_SERVER,
            "198.18.0.20",
            "2001:2::20",
            "30",
        ],
    );
    let lan = lab.spawn(
        "lan",
        &[
            "python3",
            "-c",
            ECHO_SERVER,
            "198.18.0.10",
            "2001:2::10",
            "30",
        ],
    );
    std::thread::sleep(Duration::from_millis(700));
    for (node, target, size) in [
        ("lan", "198.18.0.20", "1472"),
        ("lan", "2001:2::20", "1452"),
        ("srv", "198.18.0.10", "1472"),
        ("srv", "2001:2::10", "1452"),
    ] {
        let out = lab.exec(node, &["python3", "-c", ECHO_CLIENT, target, size]);
        assert!(
            out.status.success() && String::from_utf8_lossy(&out.stdout).starts_with("ok"),
            "echo from {node} to {target} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for mut child in [srv, lan] {
        let _ = child.kill();
        let _ = child.wait();
    }
}

fn shapes_each_direction_to_its_rate() {
    let lab = Lab::up("qt2", "40mbit", "80mbit");
    let _qosd = lab.qosd(&lab_config("20 Mbit", "40 Mbit"));
    lab.sh("srv", "iperf3 -s -D -p 5401");
    std::thread::sleep(Duration::from_millis(300));
    let up = iperf_bps(&lab.sh("lan", "iperf3 -c 198.18.0.20 -p 5401 -t 6 -O 1 -J"));
    let down = iperf_bps(&lab.sh("lan", "iperf3 -c 198.18.0.20 -p 5401 -t 6 -O 1 -R -J"));
    eprintln!(
        "shaped upload {:.2} Mbit/s (20 configured), download {:.2} Mbit/s (40 configured)",
        up / 1e6,
        down / 1e6
    );
    // Goodput is below the shaped rate by the TCP/IP/Ethernet headers (~4%).
    assert!((18.0e6..=20.5e6).contains(&up), "upload {up}");
    assert!((36.0e6..=41.0e6).contains(&down), "download {down}");
}

/// Four TCP uploads and four downloads saturate the link while a voice-like
/// stream (20 ms, 172 bytes) measures round trips; the same through the
/// plain kernel bridge in the same run is the baseline.
fn voice_keeps_low_latency_under_load() {
    let lab = Lab::up("qt3", "20mbit", "50mbit");
    lab.sh(
        "srv",
        "iperf3 -s -D -p 5201 && iperf3 -s -D -p 5202 && iperf3 -s -D -p 5301",
    );
    let irtt_srv = lab.voice_server();
    std::thread::sleep(Duration::from_millis(300));

    let measure = |label: &str| {
        let up = lab.iperf_client(5201, 12, &["-P", "4", "-J"]);
        let down = lab.iperf_client(5202, 12, &["-P", "4", "-R", "-J"]);
        let business = lab.iperf_client(5301, 12, &["-J"]);
        std::thread::sleep(Duration::from_secs(3));
        let v = irtt_stats(&output_of(lab.voice_client(8)));
        let (up, down, business) = (
            iperf_bps(&output_of(up)),
            iperf_bps(&output_of(down)),
            iperf_bps(&output_of(business)),
        );
        eprintln!(
            "{label}: voice rtt p50 {:.2} ms p99 {:.2} ms loss {:.2}% ({} sent); uploads {:.1} Mbit/s, downloads {:.1}, business {:.1}",
            v.p50_ms,
            v.p99_ms,
            v.loss_pct,
            v.sent,
            up / 1e6,
            down / 1e6,
            business / 1e6
        );
        (v, business)
    };

    let (with_qosd, business, rings) = {
        let _qosd = lab.qosd(&lab_config("19 Mbit", "47 Mbit"));
        let (v, business) = measure("qosd");
        let m = metrics(&lab);
        let rings = ["upload", "download"].map(|d| {
            let backend = format!(r#"direction="{d}","#);
            let xdp = m.keys().any(|k| {
                k.starts_with("qosd_datapath_backend{")
                    && k.contains(&backend)
                    && k.contains(r#"backend="xdp""#)
            });
            let rang = m
                .get(&format!(
                    r#"qosd_datapath_bell_rings_total{{direction="{d}"}}"#
                ))
                .copied();
            (xdp, rang)
        });
        (v, business, rings)
    };
    lab.kernel_bridge(true);
    let (bridge, _) = measure("kernel bridge");
    lab.kernel_bridge(false);
    drop(irtt_srv);

    assert!(
        with_qosd.sent >= 350,
        "voice stream too short: {with_qosd:?}"
    );
    assert!(
        with_qosd.p99_ms < 20.0,
        "voice p99 {} ms with qosd",
        with_qosd.p99_ms
    );
    assert!(
        with_qosd.loss_pct < 1.0,
        "voice loss {}% with qosd",
        with_qosd.loss_pct
    );
    // The same load through the kernel bridge bloats: ten times qosd's
    // typical round trip, and its tail well above qosd's. The tail ratio is
    // looser because qosd's p99 of 400 samples is its fourth worst, which
    // one scheduling hiccup of this 2-vCPU machine moves from 4 to 12 ms
    // (the p99 ranged 3.5-16 ms over 24 runs of deploy/lab/cpu.sh), while
    // the bridge's ranges 99-302 ms from run to run.
    assert!(
        bridge.p50_ms >= 10.0 * with_qosd.p50_ms.max(0.5),
        "the kernel bridge should be at least 10x worse: p50 {} ms vs {} ms",
        bridge.p50_ms,
        with_qosd.p50_ms
    );
    assert!(
        bridge.p99_ms >= 4.0 * with_qosd.p99_ms.max(1.0),
        "the kernel bridge's tail should be at least 4x worse: p99 {} ms vs {} ms",
        bridge.p99_ms,
        with_qosd.p99_ms
    );
    // On AF_XDP (the lab's default: its ports have no address) the call's
    // frames woke qosd as they arrived, both ways: all but the first few
    // of each direction rang the doorbell.
    for ((xdp, rang), d) in rings.iter().zip(["upload", "download"]) {
        if *xdp {
            let rang = rang.unwrap_or(0.0);
            eprintln!(
                "{d}: {rang} doorbell rings, {} voice frames",
                with_qosd.sent
            );
            assert!(
                rang >= 0.9 * with_qosd.sent as f64,
                "{d}: {rang} doorbell rings for {} voice frames",
                with_qosd.sent
            );
        }
    }
    assert!(
        rings.iter().any(|(xdp, _)| *xdp),
        "the lab ran qosd on AF_XDP"
    );
    // business has min = 30% of 19 Mbit; goodput is ~4% below wire rate.
    assert!(
        business >= 0.3 * 19.0e6 * 0.95,
        "business got {business} bit/s, below its min"
    );
}

fn stop_is_clean_and_restores_interfaces() {
    let prefix = "qt4";
    {
        let lab = Lab::up(prefix, "100mbit", "100mbit");
        // Turn offloads qosd must disable back on, to see them restored.
        lab.sh(
            "gw",
            "ethtool -K lan0 gso on tso on && ethtool -K wan0 gso on",
        );
        let mut qosd = lab.qosd(&lab_config("50 Mbit", "50 Mbit"));
        assert!(
            qosd.log_text().contains("turned off offloads"),
            "{}",
            qosd.log_text()
        );
        let during = lab.sh("gw", "ethtool -k lan0");
        assert!(
            during.contains("generic-segmentation-offload: off"),
            "{during}"
        );
        lab.sh("lan", "ping -c 2 -i 0.2 -W 2 198.18.0.20");

        let pid = qosd.pid().unwrap();
        let (code, took) = qosd.stop();
        assert_eq!(code, Some(0), "qosd exit status; log:\n{}", qosd.log_text());
        assert!(took < Duration::from_secs(1), "stopping took {took:?}");
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "qosd process left behind"
        );
        let after = lab.sh("gw", "ethtool -k lan0");
        assert!(
            after.contains("generic-segmentation-offload: on"),
            "offloads not restored:\n{after}"
        );
        assert!(
            after.contains("tcp-segmentation-offload: on"),
            "offloads not restored:\n{after}"
        );
        assert!(
            lab.sh("gw", "ethtool -k wan0")
                .contains("generic-segmentation-offload: on")
        );
        // No traffic passes once qosd is gone (no hidden bridge was left).
        assert!(
            !lab.exec("lan", &["ping", "-c", "1", "-W", "1", "198.18.0.20"])
                .status
                .success()
        );
    }
    let namespaces = String::from_utf8_lossy(
        &std::process::Command::new("ip")
            .args(["netns", "list"])
            .output()
            .unwrap()
            .stdout,
    )
    .into_owned();
    assert!(
        !namespaces.contains(prefix),
        "namespaces left behind: {namespaces}"
    );
}

/// Fail-open: with lan0 and wan0 in the bypass bridge (what keeps the office
/// online while qosd is down), qosd removes the bridge at start and
/// forwards itself; any other bridge of both is refused.
fn takes_over_from_the_bypass_bridge() {
    let lab = Lab::up("qt5", "100mbit", "100mbit");
    let bridge = |name: &str| {
        lab.sh("gw", &format!("ip link add {name} type bridge && ip link set {name} type bridge stp_state 0 forward_delay 0 && ip link set lan0 master {name} && ip link set wan0 master {name} && ip link set {name} up"));
    };
    // Another bridge: refused with the command that fixes it, exit 2.
    bridge("br9");
    let out = lab.exec(
        "gw",
        &[
            env!("CARGO_BIN_EXE_qosd"),
            "run",
            "--config",
            &write_config(&lab, &lab_config("50 Mbit", "50 Mbit")),
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("both ports of the kernel bridge br9") && err.contains("nomaster"),
        "{err}"
    );
    lab.sh("gw", "ip link del br9");

    // The bypass bridge: the office is online through it...
    bridge("qosd-bypass");
    lab.sh("lan", "ping -c 1 -W 2 198.18.0.20");
    // ...and qosd takes over.
    let qosd = lab.qosd(&lab_config("50 Mbit", "50 Mbit"));
    assert!(
        qosd.log_text()
            .contains("took over from the bypass bridge qosd-bypass"),
        "{}",
        qosd.log_text()
    );
    assert!(
        !lab.sh("gw", "ip -o link show").contains("qosd-bypass"),
        "bridge still there"
    );
    lab.sh("lan", "ping -c 3 -i 0.2 -W 2 198.18.0.20");
    let dup = lab.sh("lan", "ping -c 5 -i 0.2 -W 2 198.18.0.20");
    assert!(!dup.contains("DUP!"), "frames forwarded twice:\n{dup}");
}

fn write_config(lab: &Lab, text: &str) -> String {
    let path = lab.scratch().join("extra.toml");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// Started as root with `daemon.user`, qosd runs as that user with no
/// capability but those it needs to re-open an interface that was
/// re-created (CAP_NET_RAW, CAP_NET_ADMIN; for AF_XDP, the default where
/// it works, also CAP_BPF and CAP_IPC_LOCK), still forwards, and does
/// re-open a re-created interface with AF_XDP as that user.
fn drops_root_after_opening_its_sockets() {
    let lab = Lab::up("qt6", "100mbit", "100mbit");
    lab.sh("gw", "ethtool -K lan0 gso on");
    let cfg = format!(
        "{}\n[daemon]\nuser = \"nobody\"\n",
        lab_config("50 Mbit", "50 Mbit")
    );
    let mut qosd = lab.qosd(&cfg);
    assert!(
        qosd.log_text().contains("dropped privileges"),
        "{}",
        qosd.log_text()
    );
    let pid = qosd.pid().unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_default()
            .to_owned()
    };
    eprintln!(
        "{}\n{}\n{}",
        field("Uid:"),
        field("CapEff:"),
        field("CapPrm:")
    );
    assert!(field("Uid:").contains("65534"), "{}", field("Uid:"));
    // CAP_NET_ADMIN (bit 12) and CAP_NET_RAW (bit 13): to re-open the
    // sockets and set the offloads of an interface that was re-created;
    // CAP_IPC_LOCK (14) and CAP_BPF (39) for AF_XDP's memory and program.
    assert!(
        field("CapEff:").ends_with("0000008000007000"),
        "{}",
        field("CapEff:")
    );
    assert!(
        field("CapPrm:").ends_with("0000008000007000"),
        "{}",
        field("CapPrm:")
    );
    // Every thread, not just the main one.
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let st = std::fs::read_to_string(task.unwrap().path().join("status")).unwrap();
        assert!(
            st.lines()
                .any(|l| l.starts_with("CapEff:") && l.ends_with("0000008000007000")),
            "{st}"
        );
    }
    lab.sh("lan", "ping -c 3 -i 0.2 -W 2 198.18.0.20");
    // A re-created LAN port is opened again with AF_XDP, without root.
    let xdp = r#"qosd_datapath_backend{direction="upload",interface="lan0",backend="xdp"}"#;
    assert_eq!(metrics(&lab).get(xdp), Some(&1.0), "{}", qosd.log_text());
    lab.lab_sh(&["unplug"]);
    lab.lab_sh(&["plug"]);
    lab.sh(
        "lan",
        "for i in $(seq 50); do ping -c 1 -W 0.2 198.18.0.20 >/dev/null && exit 0; done; exit 1",
    );
    assert_eq!(metrics(&lab).get(xdp), Some(&1.0), "{}", qosd.log_text());
    let (code, _) = qosd.stop();
    assert_eq!(code, Some(0), "{}", qosd.log_text());
    assert!(
        lab.sh("gw", "ethtool -k lan0")
            .contains("generic-segmentation-offload: on"),
        "offloads not restored as user nobody"
    );
}
