#!/usr/bin/env bash
# Soak (run by hand as root; .ci/run runs a 2-minute version): qosd in the
# lab office for MINUTES under everything at once, then a verdict.
#
#   sudo deploy/lab/soak.sh [-m MINUTES] [-o OUTDIR] [-p PREFIX] [-f FLOWS_PER_S]
#
#   -m  length of the run in minutes (default 30)
#   -o  keep the samples there: samples.csv (every 10 s: RSS, CPU, counters),
#       voice.csv, flaps.csv, reloads.csv, load.csv, reconcile.csv,
#       summary.txt, qosd.log, metrics-end.txt
#   -p  lab prefix (default qsk); -f spoofed new flows per second (3000)
#   QOSD=/path/to/qosd picks the binary (default target/release/qosd).
#
# Load (20/50 Mbit line, qosd at 19/47, flows.max_flows = 4096 so that the
# flood evicts all the time): bulk TCP up and down (iperf3 -P 2, ports 5201
# and 5202), a business upload (5301), a spoofed-flow flood from the LAN
# host (raw frames, a new 5-tuple each), and a voice-like stream (irtt, 20 ms,
# 172 bytes, UDP 5004). Generators run in loops of short tests that tolerate
# failures: an unplugged cable kills the LAN host's sockets.
#
# Each minute: at +0 an interface flap (even minutes the LAN cable is
# unplugged for 2 s and re-plugged, odd minutes the modem's port loses
# carrier for 2 s), then /readyz must answer 200 again within 5 s; a voice
# window from +5 s to +55 s; a configuration reload every 10 s at +5, +15,
# ... (SIGHUP and an edit of the file, in turn); RSS and the metrics every
# 10 s at +0, +10, ...
#
# Checks, at the end (exit 0 only if all pass; the table says which failed):
#   rss        median RSS of the last tenth of the run < 5% above the median
#              of the second tenth (after warm-up: the flow table full, the
#              receive rings touched; not before 60 s in short runs)
#   reconcile  load stopped and qosd still (backlog 0, counters not moving):
#              per direction, frames received = transmitted + dropped (every
#              reason) + queued, exactly, and the same in bytes
#   counters   no counter ever went back, across every socket re-open
#   voice      every window measured; median p99 of the last third of the
#              windows <= the first third's + 5 ms
#   reloads    success count = reloads triggered, no failure, the log shows
#              each SIGHUP and each file change
#   flaps      each flap seen (/readyz 503) and ready again within 5 s; lan0
#              re-opened 2 sockets per unplug, wan0 none
#   flows      the table never above max_flows, evictions going on
#   load       every generator completed most of its tests; the flood ran
#   qosd       still running at the end, no panic in its log, stops cleanly
set -euo pipefail
export LC_ALL=C

MINUTES=30 OUT='' P=qsk FLOOD_RATE=3000
usage() { sed -n '2,/^set /{/^#/p}' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
while getopts "m:o:p:f:h" opt; do
  case $opt in
    m) MINUTES=$OPTARG ;;
    o) OUT=$OPTARG ;;
    p) P=$OPTARG ;;
    f) FLOOD_RATE=$OPTARG ;;
    *) usage ;;
  esac
done
[[ $MINUTES =~ ^[1-9][0-9]*$ ]] || { echo "-m takes whole minutes (1 or more)"; exit 2; }
[[ $FLOOD_RATE =~ ^[0-9]+$ ]] || { echo "-f takes a number of flows per second"; exit 2; }
[ "$(id -u)" = 0 ] || { echo "soak.sh needs root (network namespaces)"; exit 2; }
for tool in ip tc iperf3 irtt ethtool python3 timeout; do
  command -v $tool >/dev/null || { echo "missing $tool: apt-get install iproute2 iperf3 irtt ethtool python3"; exit 2; }
done
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
QOSD=${QOSD:-$ROOT/target/release/qosd}
if [ ! -x "$QOSD" ]; then
  echo "building qosd (cargo build --release)..."
  (cd "$ROOT" && cargo build --release --quiet)
fi
if [ -n "$OUT" ]; then mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd); fi
LAB="$HERE/lab.sh"
TMP=$(mktemp -d)
mkdir "$TMP/cfg" "$TMP/gen"
CFG="$TMP/cfg/qosd.toml"
PY="$TMP/soak.py"
MAX_FLOWS=4096
GEN_SECS=20          # length of one iperf3 test
READY_LIMIT_MS=5000  # ready again after a flap within this
QOSD_PID='' FLOOD_PID='' VOICE_PID='' IRTT_PID=''
GEN_PIDS=()
T0=0 T_END=0

now_ms() { local t=${EPOCHREALTIME//[.,]/}; echo $((t / 1000)); }
sleep_until() { # epoch ms
  local d=$(($1 - $(now_ms)))
  if [ "$d" -gt 0 ]; then sleep "$(printf '%d.%03d' $((d / 1000)) $((d % 1000)))"; fi
}
alive() { [ -n "$QOSD_PID" ] && [ -r "/proc/$QOSD_PID/stat" ] && [ "$(awk '{print $3}' "/proc/$QOSD_PID/stat")" != Z ]; }

# Kills what this script started: the generator loops (by pid), every
# process in the lab's LAN and server namespaces (the load), qosd.
stop_load() {
  local pid ns
  for pid in "${GEN_PIDS[@]}" $FLOOD_PID $VOICE_PID $IRTT_PID; do kill "$pid" 2>/dev/null || true; done
  for pid in "${GEN_PIDS[@]}" $FLOOD_PID $VOICE_PID $IRTT_PID; do wait "$pid" 2>/dev/null || true; done
  for ns in "$P-lan" "$P-srv"; do
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
  done
  GEN_PIDS=() FLOOD_PID='' VOICE_PID='' IRTT_PID=''
}
save_out() {
  [ -n "$OUT" ] || return 0
  local f
  for f in samples.csv voice.csv flaps.csv reloads.csv load.csv reconcile.csv summary.txt qosd.log metrics-end.txt; do
    if [ -f "$TMP/$f" ]; then cp "$TMP/$f" "$OUT/"; fi
  done
}
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stop_load
  if alive; then kill "$QOSD_PID" 2>/dev/null || true; fi
  if [ -n "$QOSD_PID" ]; then wait "$QOSD_PID" 2>/dev/null || true; fi
  "$LAB" down -p "$P" >/dev/null 2>&1 || true
  save_out
  rm -rf "$TMP"
  exit "$rc"
}
trap cleanup EXIT
trap 'echo "interrupted"; exit 130' INT
trap 'echo "terminated"; exit 143' TERM

# HTTP/1.0 GET on qosd's metrics listener in the gateway (bash, no client).
http_get() { # path
  ip netns exec "$P-gw" timeout 3 bash -c \
    'exec 3<>/dev/tcp/127.0.0.1/9477 || exit 1; printf "GET %s HTTP/1.0\r\n\r\n" "$1" >&3; cat <&3' _ "$1" 2>/dev/null
}
ready_code() { local r; r=$(http_get /readyz) || true; awk 'NR == 1 {print $2}' <<<"$r"; }

cat > "$PY" <<'PY'
import json, math, os, re, statistics, sys

LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$')
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')

def parse(path):
    """[(name, {labels}, value)] from a saved HTTP response (or [] if none)."""
    try:
        text = open(path, encoding="utf-8", errors="replace").read()
    except OSError:
        return []
    if not text.startswith("HTTP/1.") or " 200 " not in text.split("\r\n", 1)[0]:
        return []
    out = []
    for line in text.split("\r\n\r\n", 1)[-1].splitlines():
        m = LINE.match(line)
        if m and not line.startswith("#"):
            out.append((m.group(1), dict(LABEL.findall(m.group(3) or "")), float(m.group(4))))
    return out

def total(ms, name, **want):
    return sum(v for n, l, v in ms if n == name and all(l.get(k) == w for k, w in want.items()))

DIRS = (("up", "upload", "lan0", "wan0"), ("down", "download", "wan0", "lan0"))
FIELDS = []
for short, _, _, _ in DIRS:
    FIELDS += [f"{short}_{k}" for k in ("rx_f", "rx_b", "tx_f", "tx_b", "drop_f", "drop_b", "backlog_f", "backlog_b", "kdrop")]
FIELDS += ["flows", "flows_created", "evictions", "reopens_lan", "reopens_wan", "reloads_ok", "reloads_fail", "ready"]
COUNTERS = [f for f in FIELDS if not f.endswith(("backlog_f", "backlog_b")) and f not in ("flows", "ready")]

def values(ms):
    v = {}
    for short, d, rx, tx in DIRS:
        v[f"{short}_rx_f"] = total(ms, "qosd_interface_received_frames_total", interface=rx)
        v[f"{short}_rx_b"] = total(ms, "qosd_interface_received_bytes_total", interface=rx)
        v[f"{short}_tx_f"] = total(ms, "qosd_interface_transmitted_frames_total", interface=tx)
        v[f"{short}_tx_b"] = total(ms, "qosd_interface_transmitted_bytes_total", interface=tx)
        v[f"{short}_drop_f"] = total(ms, "qosd_dropped_packets_total", direction=d)
        v[f"{short}_drop_b"] = total(ms, "qosd_dropped_bytes_total", direction=d)
        v[f"{short}_backlog_f"] = total(ms, "qosd_category_backlog_packets", direction=d)
        v[f"{short}_backlog_b"] = total(ms, "qosd_category_backlog_bytes", direction=d)
        v[f"{short}_kdrop"] = total(ms, "qosd_datapath_errors_total", interface=rx, kind="kernel_queue_drop")
    v["flows"] = total(ms, "qosd_flows")
    v["flows_created"] = total(ms, "qosd_flows_created_total")
    v["evictions"] = total(ms, "qosd_flow_evictions_total")
    v["reopens_lan"] = total(ms, "qosd_interface_reopens_total", interface="lan0")
    v["reopens_wan"] = total(ms, "qosd_interface_reopens_total", interface="wan0")
    v["reloads_ok"] = total(ms, "qosd_config_reloads_total", result="success")
    v["reloads_fail"] = total(ms, "qosd_config_reloads_total", result="failure")
    v["ready"] = total(ms, "qosd_ready")
    return v

def fmt(x):
    return "%d" % x if x == int(x) else "%g" % x

def cmd_header():
    print(",".join(FIELDS))

def cmd_scrape(path):
    ms = parse(path)
    print(",".join(fmt(values(ms)[f]) for f in FIELDS) if ms else "," * (len(FIELDS) - 1))

def cmd_still(path):
    """Prints the counters; exit 0 only if the scrape worked and nothing is queued."""
    ms = parse(path)
    if not ms:
        print("no scrape"); sys.exit(1)
    v = values(ms)
    print(" ".join(fmt(v[f]) for f in COUNTERS))
    sys.exit(0 if v["up_backlog_f"] == 0 and v["down_backlog_f"] == 0 else 1)

def pct(xs, q):
    xs = sorted(xs)
    return xs[round((len(xs) - 1) * q)] if xs else math.inf

def rows(path):
    import csv
    try:
        with open(path) as f:
            return list(csv.DictReader(f))
    except OSError:
        return []

def num(x):
    try:
        return float(x)
    except (TypeError, ValueError):
        return None

def cmd_report(tmp):
    facts = dict(l.rstrip("\n").split("=", 1) for l in open(f"{tmp}/facts") if "=" in l)
    minutes = int(facts["minutes"])
    checks = []  # (name, measured, limit, ok)
    out = []
    say = out.append

    # RSS every 10 s.
    samples = rows(f"{tmp}/samples.csv")
    ticks = [r for r in samples if r["tag"] == "tick"]
    series = [(float(r["t_s"]), int(r["rss_kb"])) for r in ticks if num(r["rss_kb"])]
    rss = [v for _, v in series]
    n = len(rss)
    say(f"== RSS of qosd, kB, every 10 s ({n} samples)")
    # Baseline: the second tenth of the run, but not before 60 s (the
    # receive rings and the flow table fill in the first ~40 s); against
    # the last tenth (at least 10 s, 2 samples).
    run = minutes * 60
    span = max(run / 10, 10)
    warm = max(run / 10, 60)
    early = [v for t, v in series if warm <= t < warm + span]
    late = [v for t, v in series if t >= run - span]
    if early and late:
        m1, m2 = statistics.median(early), statistics.median(late)
        growth = (m2 / m1 - 1) * 100
        say(f"   min {min(rss)}  median {statistics.median(rss):.0f}  max {max(rss)};  first {rss[0]}  last {rss[-1]}")
        say(f"   median of {warm:.0f}-{warm + span:.0f} s ({len(early)} samples) {m1:.0f} -> of the last {span:.0f} s ({len(late)}) {m2:.0f}: {growth:+.2f}%")
        checks.append(("rss flat", f"{m1:.0f} -> {m2:.0f} kB ({growth:+.2f}%), max {max(rss)}", "< +5%", growth < 5))
    else:
        checks.append(("rss flat", f"{n} samples", ">= 2 samples", False))

    # CPU of qosd over the run.
    cpu = [(num(r["t_s"]), num(r["cpu_ticks"])) for r in ticks if num(r["cpu_ticks"])]
    if len(cpu) >= 2 and cpu[-1][0] > cpu[0][0]:
        hz = float(facts.get("clk_tck", 100))
        share = (cpu[-1][1] - cpu[0][1]) / hz / (cpu[-1][0] - cpu[0][0]) * 100
        say(f"== qosd CPU over the run: {share:.1f}% of one core")

    # Counters never go back (they are per direction thread, not per socket).
    back = []
    prev = None
    scrapes_failed = 0
    for r in samples:
        if not num(r.get("up_rx_f")) and r.get("up_rx_f") != "0":
            scrapes_failed += 1
            continue
        if prev:
            for f in COUNTERS:
                if float(r[f]) < float(prev[f]):
                    back.append(f"{f} {prev[f]} -> {r[f]} at {r['t_s']} s")
        prev = r
    checks.append(("metrics answered", f"{len(samples) - scrapes_failed}/{len(samples)} scrapes", "all", scrapes_failed == 0))
    checks.append(("counters monotonic", f"{len(COUNTERS)} counters x {len(samples)} samples" + (f": {back[:3]}" if back else ""), "never back", not back))

    # Flaps.
    flaps = rows(f"{tmp}/flaps.csv")
    say(f"== interface flaps ({len(flaps)})")
    say("   min  kind      503 after ms  ready after ms  lan0 reopens  qosd lan0 rx frames (before -> after)  kernel lan0 rx_packets (before -> after)")
    bad_flaps = []
    for f in flaps:
        say(f"   {f['minute']:>3}  {f['kind']:<8} {f['noticed_ms']:>13} {f['ready_ms']:>15}  {f['reopens_before']:>5} -> {f['reopens_after']:<5} {f['rx_before']:>14} -> {f['rx_after']:<14}        {f['krx_before']:>10} -> {f['krx_after']}")
        if int(f["noticed_ms"]) < 0 or not 0 <= int(f["ready_ms"]) <= int(facts["ready_limit_ms"]):
            bad_flaps.append(f["minute"])
        if num(f["rx_after"]) is None or num(f["rx_before"]) is None or float(f["rx_after"]) < float(f["rx_before"]):
            bad_flaps.append(f["minute"] + " (rx went back)")
    unplugs = sum(1 for f in flaps if f["kind"] == "unplug")
    ready = [int(f["ready_ms"]) for f in flaps if int(f["ready_ms"]) >= 0]
    checks.append(("flaps", f"{len(flaps)} ({unplugs} unplug, {len(flaps) - unplugs} carrier); ready after max {max(ready) if ready else '-'} ms" + (f"; failed: {bad_flaps}" if bad_flaps else ""),
                   f"{minutes}, each 503 then 200 within {facts['ready_limit_ms']} ms", len(flaps) == minutes and not bad_flaps))

    end = values(parse(f"{tmp}/metrics-end.txt"))
    checks.append(("reopens", f"lan0 {fmt(end['reopens_lan'])}, wan0 {fmt(end['reopens_wan'])}", f"lan0 {2 * unplugs} (2 per unplug), wan0 0",
                   end["reopens_lan"] == 2 * unplugs and end["reopens_wan"] == 0))

    # Reloads.
    hups, edits = int(facts["hups"]), int(facts["edits"])
    want = hups + edits
    ok = end["reloads_ok"] - float(facts.get("reloads_ok_start", 0))
    say(f"== reloads: {want} triggered ({hups} SIGHUP, {edits} file edits); qosd counted {fmt(ok)} success, {fmt(end['reloads_fail'])} failure;"
        f" its log: {facts['log_hup']} (SIGHUP), {facts['log_file']} (file changed)")
    checks.append(("reloads", f"{fmt(ok)} ok / {fmt(end['reloads_fail'])} failed of {want} (log: {facts['log_hup']} SIGHUP + {facts['log_file']} file)",
                   f"{minutes * 6} ok, 0 failed",
                   ok == want == minutes * 6 and end["reloads_fail"] == 0 and int(facts["log_hup"]) == hups and int(facts["log_file"]) == edits))

    # Flow table.
    flows = [num(r["flows"]) for r in samples if num(r.get("flows")) is not None]
    checks.append(("flow table", f"max {fmt(max(flows)) if flows else '-'} flows, {fmt(end['flows_created'])} created, {fmt(end['evictions'])} evicted",
                   f"<= {facts['max_flows']}, evictions > 0", bool(flows) and max(flows) <= int(facts["max_flows"]) and end["evictions"] > 0))

    # Voice windows.
    say("== voice windows (irtt 20 ms, 172 bytes; +5 s to +54 s after each flap)")
    say("   min  after    p50 ms  p99 ms  loss %  sent")
    voice = []
    with open(f"{tmp}/voice.csv", "w") as vf:
        vf.write("minute,after_flap,p50_ms,p99_ms,loss_pct,sent\n")
        for m in range(minutes):
            kind = "unplug" if m % 2 == 0 else "carrier"
            try:
                v = json.load(open(f"{tmp}/voice-{m}.json"))
                rtts = [r["delay"]["rtt"] / 1e6 for r in v.get("round_trips", []) if "rtt" in r.get("delay", {})]
                st = v["stats"]
                w = (m, kind, pct(rtts, 0.5), pct(rtts, 0.99), st["packet_loss_percent"], st["packets_sent"])
            except (OSError, ValueError, KeyError, TypeError):
                w = (m, kind, math.inf, math.inf, 100.0, 0)
                try:
                    err = open(f"{tmp}/voice-{m}.err").read().strip().splitlines()[:1]
                except OSError:
                    err = []
                say(f"   window {m}: no result from irtt" + (f": {err[0]}" if err else ""))
            voice.append(w)
            vf.write("%d,%s,%.3f,%.3f,%.3f,%d\n" % w)
            say("   %3d  %-7s %7.2f %7.2f %7.2f  %5d" % w)
    if voice:
        k = max(1, len(voice) // 3)
        first = statistics.median(w[3] for w in voice[:k])
        last = statistics.median(w[3] for w in voice[-k:])
        p99s = [w[3] for w in voice]
        losses = [w[4] for w in voice]
        missing = [w[0] for w in voice if w[5] == 0]
        say(f"   p99 over the windows: min {min(p99s):.2f} median {statistics.median(p99s):.2f} max {max(p99s):.2f} ms;"
            f" loss median {statistics.median(losses):.2f}% max {max(losses):.2f}%")
        checks.append(("voice p99 steady", f"first third {first:.2f} ms -> last third {last:.2f} ms (medians of {k} windows)" + (f"; windows without data: {missing}" if missing else ""),
                       "last <= first + 5 ms, every window measured", last <= first + 5.0 and not missing))

    # Load.
    load = rows(f"{tmp}/load.csv")
    say("== load")
    load_ok, done = True, []
    for name in ("bulk-up", "bulk-down", "business-up"):
        runs = [r for r in load if r["generator"] == name]
        good = [float(r["mbit_s"]) for r in runs if r["rc"] == "0" and num(r["mbit_s"]) is not None]
        say(f"   {name:<12} {len(runs)} tests of <= {facts['gen_secs']} s, {len(good)} completed, median {statistics.median(good) if good else 0:.1f} Mbit/s")
        load_ok &= len(runs) > 0 and len(good) * 2 >= len(runs)
        done.append(f"{name} {len(good)}/{len(runs)}")
    say(f"   flood        {facts['flood']} (target {facts['flood_rate']} new flows/s)")
    words = facts["flood"].split()
    flood_sent = int(words[0]) if words and words[0].isdigit() else 0
    checks.append(("load ran", ", ".join(done) + f" tests; flood {flood_sent} frames", "each >= half its tests; flood sent", load_ok and flood_sent > 0))

    # Reconciliation.
    say("== reconciliation (load stopped, qosd still: " + facts["still"] + ")")
    say("   direction  unit     received = transmitted + dropped + queued   difference   dropped by reason")
    rec_ok = facts["still"].startswith("yes")
    with open(f"{tmp}/reconcile.csv", "w") as rf:
        rf.write("direction,unit,received,transmitted,dropped,queued,difference\n")
        ms = parse(f"{tmp}/metrics-end.txt")
        for short, d, rx, tx in DIRS:
            for unit, suffix, dname in (("frames", "f", "qosd_dropped_packets_total"), ("bytes", "b", "qosd_dropped_bytes_total")):
                r_, t_, dr, q = (end[f"{short}_{x}_{suffix}"] for x in ("rx", "tx", "drop", "backlog"))
                diff = r_ - (t_ + dr + q)
                reasons = ", ".join(f"{l['reason']} {fmt(v)}" for nm, l, v in ms if nm == dname and l.get("direction") == d and v)
                say(f"   {d:<9}  {unit:<6} {fmt(r_):>12} = {fmt(t_):>12} + {fmt(dr):>9} + {fmt(q):>3}   {fmt(diff):>10}   {reasons or '-'}")
                rf.write(f"{d},{unit},{fmt(r_)},{fmt(t_)},{fmt(dr)},{fmt(q)},{fmt(diff)}\n")
                rec_ok &= diff == 0 and r_ > 0
    up_k, down_k = fmt(end["up_kdrop"]), fmt(end["down_kdrop"])
    say(f"   (frames the kernel dropped before qosd read them, not in 'received': lan0 {up_k}, wan0 {down_k})")
    checks.append(("no unaccounted frame", "upload and download, frames and bytes: " + ("exact" if rec_ok else "MISMATCH (see above)"), "received = transmitted + dropped + queued", rec_ok))

    checks.append(("qosd running at end", facts["alive"], "yes", facts["alive"] == "yes"))
    checks.append(("no panic in the log", f"{facts['panics']} 'panicked' lines", "0", facts["panics"] == "0"))
    checks.append(("clean stop", f"exit {facts['stop_rc']} after SIGTERM", "exit 0", facts["stop_rc"] == "0"))

    say("")
    say(f"== soak summary: {minutes} min, {facts['started']} -> {facts['ended']}, {facts['command']}")
    w1 = max(len(c[0]) for c in checks)
    w2 = min(90, max(len(c[1]) for c in checks))
    w3 = min(60, max(len(c[2]) for c in checks))
    say(f"   {'check':<{w1}}  {'measured':<{w2}}  {'limit':<{w3}}  result")
    for name, measured, limit, good in checks:
        say(f"   {name:<{w1}}  {measured:<{w2}}  {limit:<{w3}}  {'ok' if good else 'FAILED'}")
    failed = [c[0] for c in checks if not c[3]]
    say("== soak: " + ("all checks passed" if not failed else "FAILED: " + ", ".join(failed)))
    text = "\n".join(out) + "\n"
    sys.stdout.write(text)
    open(f"{tmp}/summary.txt", "w").write(text)
    sys.exit(1 if failed else 0)

if __name__ == "__main__":
    {"header": cmd_header, "scrape": cmd_scrape, "still": cmd_still, "report": cmd_report}[sys.argv[1]](*sys.argv[2:])
PY

# The spoofed-flow flood: raw frames from the LAN host, each from a new
# source (198.18.128.0/17) and port pair, half TCP SYN, half UDP, paced at
# RATE a second until the deadline; re-opens its socket when eth0 comes back.
cat > "$TMP/flood.py" <<'PY'
import random, socket, struct, sys, time
rate, until, dst = int(sys.argv[1]), float(sys.argv[2]), bytes.fromhex(sys.argv[3].replace(":", ""))
server = socket.inet_aton("198.18.0.20")
def csum(b):
    t = sum(struct.unpack("!%dH" % (len(b) // 2), b)); t = (t >> 16) + (t & 0xffff); t += t >> 16
    return (~t) & 0xffff
rnd = random.Random(14)
def frame(src, i):
    sip = struct.pack("!I", 0xC6128000 | rnd.randrange(0x8000))
    sp, dp = rnd.randrange(1024, 65535), rnd.randrange(1, 65535)
    if i % 2:
        l4, proto = struct.pack("!HHHH", sp, dp, 26, 0) + b"x" * 18, 17
    else:
        l4, proto = struct.pack("!HHIIBBHHH", sp, dp, rnd.getrandbits(32), 0, 0x50, 0x02, 65535, 0, 0), 6
    h = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), 0, 0, 64, proto, 0, sip, server)
    f = dst + src + b"\x08\x00" + h[:10] + struct.pack("!H", csum(h)) + h[12:] + l4
    return f.ljust(60, b"\0")
s, sent, errors, opens, i = None, 0, 0, 0, 0
batch = max(1, rate // 100)
next_t = time.monotonic()
while time.time() < until:
    if s is None:
        try:
            src = bytes.fromhex(open("/sys/class/net/eth0/address").read().strip().replace(":", ""))
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW); s.bind(("eth0", 0)); opens += 1
        except OSError:
            s = None; time.sleep(0.2); next_t = time.monotonic(); continue
    for _ in range(batch):
        try:
            s.send(frame(src, i)); sent += 1; i += 1
        except OSError:
            errors += 1; s.close(); s = None; break
    next_t += batch / rate
    d = next_t - time.monotonic()
    if d > 0: time.sleep(d)
    elif d < -1: next_t = time.monotonic()
print(f"{sent} frames sent, {opens} socket opens, {errors} send errors")
PY

# One generator: iperf3 tests of GEN_SECS in a loop until the end of the
# run, each against a one-test server started for it (a test cut by an
# unplugged cable cannot leave a server busy). Appends to load.csv.
gen_loop() { # name port [iperf3 args]
  local name=$1 port=$2 i=0 left dur rc srv mbit
  shift 2
  while :; do
    left=$(((T_END - $(now_ms)) / 1000 - 2))
    [ "$left" -ge 5 ] || break
    dur=$((left < GEN_SECS ? left : GEN_SECS))
    ip netns exec "$P-srv" timeout $((dur + 15)) iperf3 -s -1 -p "$port" >/dev/null 2>&1 &
    srv=$!
    sleep 0.5
    rc=0
    ip netns exec "$P-lan" timeout $((dur + 10)) iperf3 -c 198.18.0.20 -p "$port" -t "$dur" -J "$@" \
      > "$TMP/gen/$name.json" 2>/dev/null || rc=$?
    kill "$srv" 2>/dev/null || true
    wait "$srv" 2>/dev/null || true
    mbit=$(python3 -c 'import json,sys; print("%.2f" % (json.load(open(sys.argv[1]))["end"]["sum_received"]["bits_per_second"] / 1e6))' \
      "$TMP/gen/$name.json" 2>/dev/null) || mbit=
    echo "$name,$i,$((($(now_ms) - T0) / 1000)),$dur,$rc,$mbit" >> "$TMP/load.csv"
    i=$((i + 1))
    # A test started while the cable is out fails at once (even with
    # status 0 and no result): wait a little before the next.
    if [ "$rc" != 0 ] || [ -z "$mbit" ]; then sleep 1; fi
  done
}

# A sample: RSS and CPU ticks of qosd, the kernel's lan0 rx_packets, and
# the metrics (one row of samples.csv; tag: tick or flap).
sample() { # tag
  local t rss=0 ticks=0 klan row
  t=$(printf '%.1f' "$(($(now_ms) - T0))e-3")
  if alive; then
    rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$QOSD_PID/status")
    ticks=$(awk '{print $14 + $15}' "/proc/$QOSD_PID/stat")
  fi
  klan=$(ip netns exec "$P-gw" cat /sys/class/net/lan0/statistics/rx_packets 2>/dev/null) || klan=
  http_get /metrics > "$TMP/m.txt" || true
  row=$(python3 "$PY" scrape "$TMP/m.txt")
  echo "$1,$t,$rss,$ticks,$klan,$row" >> "$TMP/samples.csv"
  LAST_ROW="$t,$rss,$ticks,$klan,$row"
}
field() { # name row -> value (row as in samples.csv without the tag)
  local names vals i
  IFS=, read -r -a names <<<"t_s,rss_kb,cpu_ticks,k_lan0_rx,$HEADER"
  IFS=, read -r -a vals <<<"$2"
  for i in "${!names[@]}"; do
    if [ "${names[$i]}" = "$1" ]; then echo "${vals[$i]:-}"; return; fi
  done
}

# An interface flap at the start of minute $1; appends to flaps.csv.
flap() { # minute
  local m=$1 kind t0 t1 noticed=-1 ready=-1 before after
  before=$LAST_ROW
  if ((m % 2 == 0)); then kind=unplug; "$LAB" unplug -p "$P"; else kind=carrier; "$LAB" carrier -p "$P" off; fi
  t0=$(now_ms)
  while (($(now_ms) - t0 < 2000)); do
    if [ "$noticed" -lt 0 ] && [ "$(ready_code)" = 503 ]; then noticed=$(($(now_ms) - t0)); fi
    sleep 0.1
  done
  if [ $kind = unplug ]; then "$LAB" plug -p "$P"; else "$LAB" carrier -p "$P" on; fi
  t1=$(now_ms)
  while (($(now_ms) - t1 < 2 * READY_LIMIT_MS)); do
    if [ "$(ready_code)" = 200 ]; then ready=$(($(now_ms) - t1)); break; fi
    sleep 0.05
  done
  sample flap
  after=$LAST_ROW
  echo "$m,$kind,$(((t0 - T0) / 1000)),$noticed,$ready,$(field reopens_lan "$before"),$(field reopens_lan "$after"),$(field up_rx_f "$before"),$(field up_rx_f "$after"),$(field k_lan0_rx "$before"),$(field k_lan0_rx "$after")" >> "$TMP/flaps.csv"
  printf '   %s: %s, 503 after %s ms, ready after %s ms\n' "$(date +%T)" "$kind" "$noticed" "$ready"
}

# A reload: SIGHUP and an edit of the file (bulk's weight 5 <-> 10,
# written beside it and renamed over it, as editors do), in turn.
RELOADS=0 HUPS=0 EDITS=0
reload() {
  local how
  if ((RELOADS % 2 == 0)); then
    how=SIGHUP; kill -HUP "$QOSD_PID"; HUPS=$((HUPS + 1))
  else
    how=edit; EDITS=$((EDITS + 1))
    if ((EDITS % 2)); then cp "$TMP/cfg-b.toml" "$TMP/cfg/.qosd.toml.new"; else cp "$TMP/cfg-a.toml" "$TMP/cfg/.qosd.toml.new"; fi
    mv -f "$TMP/cfg/.qosd.toml.new" "$CFG"
  fi
  RELOADS=$((RELOADS + 1))
  echo "$RELOADS,$((($(now_ms) - T0) / 1000)),$how" >> "$TMP/reloads.csv"
}

# ---------------------------------------------------------------------------
STARTED=$(date -u +%FT%TZ)
COMMAND="soak.sh -m $MINUTES -p $P -f $FLOOD_RATE${OUT:+ -o $OUT} (qosd: $QOSD)"
echo "== soak: $MINUTES min; lab $P (20/50 Mbit, qosd 19/47, max_flows $MAX_FLOWS); flood $FLOOD_RATE flows/s; $QOSD"
"$LAB" up -p "$P" -u 20mbit -d 50mbit -b 300 >/dev/null
{ cat "$HERE/qosd-lab.toml"; printf '\n[flows]\nmax_flows = %d\n' "$MAX_FLOWS"; } > "$TMP/cfg-a.toml"
sed 's/^weight = 5$/weight = 10/' "$TMP/cfg-a.toml" > "$TMP/cfg-b.toml"
cmp -s "$TMP/cfg-a.toml" "$TMP/cfg-b.toml" && { echo "cannot make the edited config (bulk weight = 5 not found)"; exit 1; }
cp "$TMP/cfg-a.toml" "$CFG"
HEADER=$(python3 "$PY" header)
echo "tag,t_s,rss_kb,cpu_ticks,k_lan0_rx,$HEADER" > "$TMP/samples.csv"
echo "minute,kind,t_s,noticed_ms,ready_ms,reopens_before,reopens_after,rx_before,rx_after,krx_before,krx_after" > "$TMP/flaps.csv"
echo "n,t_s,how" > "$TMP/reloads.csv"
echo "generator,n,t_s,secs,rc,mbit_s" > "$TMP/load.csv"

RUST_LOG=info ip netns exec "$P-gw" "$QOSD" run --config "$CFG" 2> "$TMP/qosd.log" &
QOSD_PID=$!
for _ in $(seq 1 100); do
  [ "$(ready_code)" = 200 ] && break
  alive || { cat "$TMP/qosd.log"; echo "qosd exited at start"; exit 1; }
  sleep 0.1
done
[ "$(ready_code)" = 200 ] || { cat "$TMP/qosd.log"; echo "qosd not ready 10 s after start"; exit 1; }
SRV_MAC=$(ip netns exec "$P-srv" cat /sys/class/net/eth0/address)
ip netns exec "$P-srv" irtt server -b 198.18.0.20:5004 >/dev/null 2>&1 &
IRTT_PID=$!
ip netns exec "$P-lan" ping -c 1 -W 2 198.18.0.20 >/dev/null || { echo "no forwarding through qosd at start"; exit 1; }

T0=$(($(now_ms) + 2000))
T_END=$((T0 + MINUTES * 60000))
gen_loop bulk-up 5201 -P 2 &
GEN_PIDS+=($!)
gen_loop bulk-down 5202 -P 2 -R &
GEN_PIDS+=($!)
gen_loop business-up 5301 &
GEN_PIDS+=($!)
ip netns exec "$P-lan" python3 "$TMP/flood.py" "$FLOOD_RATE" "$((T_END / 1000))" "$SRV_MAC" > "$TMP/flood.out" 2>&1 &
FLOOD_PID=$!

echo "== running until $(date -d "@$((T_END / 1000))" +%T) (flap each minute, reload every 10 s, samples every 10 s)"
LAST_ROW=
DIED=
for m in $(seq 0 $((MINUTES - 1))); do
  base=$((T0 + m * 60000))
  for k in 0 1 2 3 4 5; do
    sleep_until $((base + k * 10000))
    sample tick
    alive || { DIED=$((m * 60 + k * 10)); break 2; }
    [ "$k" = 0 ] && flap "$m"
    sleep_until $((base + k * 10000 + 5000))
    reload
    if [ "$k" = 0 ]; then
      ip netns exec "$P-lan" timeout 56 irtt client -i 20ms -d 49s --wait=500ms -l 172 -q -o - 198.18.0.20:5004 \
        > "$TMP/voice-$m.json" 2> "$TMP/voice-$m.err" &
      VOICE_PID=$!
    fi
  done
  wait "$VOICE_PID" 2>/dev/null || true
  VOICE_PID=
done
if [ -z "$DIED" ]; then
  sleep_until "$T_END"
  sample tick
fi
[ -n "$DIED" ] && echo "qosd is gone (found at ${DIED} s): stopping early"

echo "== stopping the load, waiting until qosd is still"
for _ in $(seq 1 30); do
  busy=0
  for pid in "${GEN_PIDS[@]}" $FLOOD_PID; do kill -0 "$pid" 2>/dev/null && busy=1; done
  [ $busy = 0 ] && break
  sleep 1
done
FLOOD=$(cat "$TMP/flood.out" 2>/dev/null || true)
stop_load
STILL=no
prev=
for i in $(seq 1 60); do
  http_get /metrics > "$TMP/metrics-end.txt" || true
  cur=$(python3 "$PY" still "$TMP/metrics-end.txt") && [ "$cur" = "$prev" ] && { STILL="yes, after ${i} s"; break; }
  prev=$cur
  sleep 1
done

ALIVE=no
alive && ALIVE=yes
STOP_RC=not-running
if [ $ALIVE = yes ]; then
  kill -TERM "$QOSD_PID"
  for _ in $(seq 1 100); do alive || break; sleep 0.1; done
  alive && kill -9 "$QOSD_PID"
  STOP_RC=0
  wait "$QOSD_PID" || STOP_RC=$?
  QOSD_PID=
fi
{
  echo "minutes=$MINUTES"
  echo "started=$STARTED"
  echo "ended=$(date -u +%FT%TZ)"
  echo "command=$COMMAND"
  echo "clk_tck=$(getconf CLK_TCK)"
  echo "ready_limit_ms=$READY_LIMIT_MS"
  echo "max_flows=$MAX_FLOWS"
  echo "gen_secs=$GEN_SECS"
  echo "flood_rate=$FLOOD_RATE"
  echo "flood=${FLOOD:-none}"
  echo "hups=$HUPS"
  echo "edits=$EDITS"
  echo "log_hup=$(grep -c 'configuration reloaded from .*(SIGHUP)' "$TMP/qosd.log" || true)"
  echo "log_file=$(grep -c 'configuration reloaded from .*(file changed)' "$TMP/qosd.log" || true)"
  echo "panics=$(grep -c 'panicked' "$TMP/qosd.log" || true)"
  echo "alive=$ALIVE${DIED:+ (gone at ${DIED} s)}"
  echo "stop_rc=$STOP_RC"
  echo "still=$STILL"
} > "$TMP/facts"
rc=0
python3 "$PY" report "$TMP" || rc=$?
exit "$rc"
