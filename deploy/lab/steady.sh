#!/usr/bin/env bash
# The steady-download lab (issue 20; run by hand as root, not part of CI's
# pass/fail): the ISP's buffer in front of qosd on a line whose capacity
# does not move. Line 20/50 Mbit/s with a 400 ms modem/ISP buffer and a
# 30 ms base round trip (lab.sh -r: deploy/lab/delayline.py); 4 TCP
# uploads, 4 TCP downloads and a 20 ms call for SECONDS, through, on the
# same namespaces one after the other:
#
#   qosd     qosd at 19/47 Mbit/s (deploy/lab/qosd-lab.toml: the window
#            clamp and the ISP-queue guard on, as qosd ships)
#   noguard  the same without either (link.window_clamp and
#            link.isp_queue_guard false: qosd before issue 20)
#   htb      the classic admin script (deploy/lab/htb.sh) at 19/47
#   bridge   a plain kernel bridge (the ISP's buffer alone)
#
# Prints per gateway the call's idle round trip, then per 5 s window (the
# first one left out: TCP's start) the call's round-trip p99 and its
# one-way p99 up and down (the namespaces share a clock, so irtt's one-way
# delays are exact: the way down is the ISP's download queue plus qosd's),
# and the TCP goodput each way. About a minute per gateway.
#
#   sudo deploy/lab/steady.sh [-t SECONDS] [-o OUTDIR] [-g "qosd noguard htb bridge"] [-c cubic|bbr]
#
# -c: the TCP senders' congestion control, both ways (iperf3 -C; default
# cubic, the default of Linux and Windows). With bbr (BBRv1, which does
# not slow down on a drop) see BENCHMARKS.md, "Downloads from BBR senders".
set -euo pipefail

SECS=35 OUT=steady-results SETUPS="qosd noguard htb bridge"
CC=cubic
while getopts "t:o:g:c:" opt; do
  case $opt in
    t) SECS=$OPTARG ;;
    o) OUT=$OPTARG ;;
    g) SETUPS=$OPTARG ;;
    c) CC=$OPTARG ;;
    *) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 2 ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "steady.sh needs root"; exit 2; }
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
QOSD=${QOSD:-$ROOT/target/release/qosd}
[ -x "$QOSD" ] || (cd "$ROOT" && cargo build --release --quiet)
mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd)
LAB="$HERE/lab.sh"; P=qsteady
QOSD_PID=''
cleanup() {
  set +e
  [ -z "$QOSD_PID" ] || { kill "$QOSD_PID" 2>/dev/null; wait "$QOSD_PID" 2>/dev/null; }
  "$LAB" down -p $P >/dev/null 2>&1
}
trap cleanup EXIT INT TERM
x() { "$LAB" exec -p $P "$@"; }
UP_Q=19 DOWN_Q=47
# shellcheck source=deploy/lab/htb.sh
. "$HERE/htb.sh"

scenario() { # tag
  local tag=$1 pids=()
  x lan irtt client -i 20ms -d 5s -l 172 -q -o - 198.18.0.20:5004 > "$OUT/$tag.idle" 2>/dev/null || true
  date +%s.%N > "$OUT/$tag.start"
  x lan iperf3 -c 198.18.0.20 -p 5201 -t "$SECS" -P 4 -C "$CC" -i 1 -J > "$OUT/$tag.up" 2>&1 & pids+=($!)
  x lan iperf3 -c 198.18.0.20 -p 5202 -t "$SECS" -P 4 -C "$CC" -R -i 1 -J > "$OUT/$tag.down" 2>&1 & pids+=($!)
  x lan irtt client -i 20ms -d "${SECS}s" -l 172 -q -o - 198.18.0.20:5004 > "$OUT/$tag.voice" 2>/dev/null & pids+=($!)
  wait "${pids[@]}" || true
  sleep 2   # the buffers empty before the next gateway
}

echo "== steady line 20/50 Mbit/s, 400 ms buffer, 30 ms base round trip; ${SECS}s of load through: $SETUPS"
"$LAB" up -p $P -u 20mbit -d 50mbit -b 400 -r 30 >/dev/null
x srv sh -c 'iperf3 -s -D -p 5201; iperf3 -s -D -p 5202; irtt server -b 198.18.0.20:5004 >/dev/null 2>&1 &'
sleep 0.5
for setup in $SETUPS; do
  case $setup in
    qosd|noguard)
      guard=true; [ "$setup" = qosd ] || guard=false
      QOSD_LINK__UPLOAD="$UP_Q Mbit" QOSD_LINK__DOWNLOAD="$DOWN_Q Mbit" \
        QOSD_LINK__ISP_QUEUE_GUARD=$guard QOSD_LINK__WINDOW_CLAMP=$guard \
        ip netns exec $P-gw "$QOSD" run --config "$HERE/qosd-lab.toml" 2> "$OUT/$setup.log" &
      QOSD_PID=$!
      for _ in $(seq 100); do grep -q running "$OUT/$setup.log" && break; sleep 0.1; done
      scenario "$setup"
      kill "$QOSD_PID"; wait "$QOSD_PID" 2>/dev/null || true; QOSD_PID='' ;;
    htb) "$LAB" bridge -p $P; htb_on; scenario htb; htb_off; "$LAB" unbridge -p $P ;;
    bridge) "$LAB" bridge -p $P; scenario bridge; "$LAB" unbridge -p $P ;;
    *) echo "unknown gateway $setup (qosd, noguard, htb, bridge)"; exit 2 ;;
  esac
done
"$LAB" down -p $P >/dev/null

python3 - "$OUT" "$SETUPS" "$SECS" <<'PY'
import json, sys
from pathlib import Path

out, setups, secs = Path(sys.argv[1]), sys.argv[2].split(), int(sys.argv[3])


def load(path):
    try:
        text = path.read_text()
        return json.loads(text[text.index("{"):])
    except Exception:
        return {}


def trips(path):
    """(sent, rtt, up, down) of every answered round trip, seconds / ms."""
    return [(r["timestamps"]["client"]["send"]["wall"] / 1e9,
             r["delay"]["rtt"] / 1e6, r["delay"]["send"] / 1e6, r["delay"]["receive"] / 1e6)
            for r in load(path).get("round_trips", []) if r.get("lost") == "false"]


def pct(xs, q):
    xs = sorted(xs)
    return xs[round((len(xs) - 1) * q)] if xs else float("nan")


def goodput(path, a, b):
    """Mean bits/s of the intervals that start in [a, b) s."""
    iv = [i["sum"] for i in load(path).get("intervals", []) if a <= i["sum"]["start"] < b]
    return sum(i["bits_per_second"] for i in iv) / len(iv) if iv else float("nan")


results = {}
print(f"{'gateway':<8} {'window':>8} {'rtt p99':>8} {'+idle':>7} {'up p99':>7} {'down p99':>9} {'up Mbit/s':>10} {'down Mbit/s':>12}")
for g in setups:
    idle = trips(out / f"{g}.idle")
    idle_p50 = pct([t[1] for t in idle], 0.5)
    t0 = float((out / f"{g}.start").read_text())
    voice = trips(out / f"{g}.voice")
    rows = []
    for w in range(5, secs - 4, 5):
        inside = [t for t in voice if t0 + w <= t[0] < t0 + w + 5]
        row = {
            "from": w, "rtt_p99_ms": pct([t[1] for t in inside], 0.99),
            "up_p99_ms": pct([t[2] for t in inside], 0.99),
            "down_p99_ms": pct([t[3] for t in inside], 0.99),
            "up_bps": goodput(out / f"{g}.up", w, w + 5),
            "down_bps": goodput(out / f"{g}.down", w, w + 5),
        }
        rows.append(row)
        print(f"{g:<8} {w:>3}-{w + 5:<3}s {row['rtt_p99_ms']:8.1f} {row['rtt_p99_ms'] - idle_p50:+7.1f} "
              f"{row['up_p99_ms']:7.1f} {row['down_p99_ms']:9.1f} {row['up_bps'] / 1e6:10.1f} {row['down_bps'] / 1e6:12.1f}")
    results[g] = {"idle_rtt_p50_ms": idle_p50, "idle_down_p50_ms": pct([t[3] for t in idle], 0.5), "windows": rows}
    print(f"{g:<8} idle round trip p50 {idle_p50:.1f} ms, one way down p50 {results[g]['idle_down_p50_ms']:.1f} ms")
(out / "results.json").write_text(json.dumps(results, indent=1))
PY
