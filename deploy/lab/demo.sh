#!/usr/bin/env bash
# The office-under-load scenario in a throwaway lab, once through a plain
# kernel bridge (what the office has without qosd: the ISP modem's deep
# buffer) and once through qosd, printed side by side.
#
#   sudo deploy/lab/demo.sh [-u UP_LINE] [-d DOWN_LINE] [-t SECONDS]
#
# Traffic (real tools): 4 TCP uploads and 4 TCP downloads (iperf3, bulk),
# one business TCP upload and one download (iperf3), and a voice-like
# stream: 172-byte UDP packets every 20 ms, round trips measured by irtt.
# Needs root, iproute2, iperf3, irtt, ethtool, python3. Everything is
# removed on exit, also on Ctrl-C.
set -euo pipefail

UP_LINE=20mbit DOWN_LINE=50mbit SECS=15
while getopts "u:d:t:" opt; do
  case $opt in
    u) UP_LINE=$OPTARG ;;
    d) DOWN_LINE=$OPTARG ;;
    t) SECS=$OPTARG ;;
    *) sed -n '2,13p' "$0"; exit 2 ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "demo.sh needs root (network namespaces)"; exit 2; }
for tool in ip tc iperf3 irtt ethtool python3; do
  command -v $tool >/dev/null || { echo "missing $tool: apt-get install iproute2 iperf3 irtt ethtool python3"; exit 2; }
done

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
QOSD=${QOSD:-$ROOT/target/release/qosd}
if [ ! -x "$QOSD" ]; then
  echo "building qosd (cargo build --release)..."
  (cd "$ROOT" && cargo build --release --quiet)
fi
P=qdemo
LAB="$HERE/lab.sh"
WORK=$(mktemp -d)
QOSD_PID=
cleanup() {
  [ -n "$QOSD_PID" ] && kill "$QOSD_PID" 2>/dev/null && wait "$QOSD_PID" 2>/dev/null || true
  "$LAB" down -p $P >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

# qosd shapes at ~95% of the upload line and ~94% of the download line.
mbit() { echo "$1" | sed 's/mbit//I'; }
UP_Q=$(( $(mbit "$UP_LINE") * 95 / 100 ))
DOWN_Q=$(( $(mbit "$DOWN_LINE") * 94 / 100 ))

"$LAB" up -p $P -u "$UP_LINE" -d "$DOWN_LINE" -b 300
x() { "$LAB" exec -p $P "$@"; }
x srv sh -c 'for p in 5201 5202 5301 5302; do iperf3 -s -D -p $p; done'
x srv sh -c 'irtt server -b 198.18.0.20:5004 >/dev/null 2>&1 &'
sleep 0.5

# One run of the scenario; writes $WORK/<label>.*
scenario() {
  local label=$1 pids=()
  x lan iperf3 -c 198.18.0.20 -p 5201 -t $((SECS + 4)) -P 4 -J > "$WORK/$label.bulk-up" 2>&1 & pids+=($!)
  x lan iperf3 -c 198.18.0.20 -p 5202 -t $((SECS + 4)) -P 4 -R -J > "$WORK/$label.bulk-down" 2>&1 & pids+=($!)
  x lan iperf3 -c 198.18.0.20 -p 5301 -t $((SECS + 4)) -J > "$WORK/$label.biz-up" 2>&1 & pids+=($!)
  x lan iperf3 -c 198.18.0.20 -p 5302 -t $((SECS + 4)) -R -J > "$WORK/$label.biz-down" 2>&1 & pids+=($!)
  sleep 2
  x lan irtt client -i 20ms -d "${SECS}s" -l 172 -q -o - 198.18.0.20:5004 > "$WORK/$label.voice" 2>/dev/null || true
  wait "${pids[@]}" || true
}

echo "== without qosd: plain kernel bridge, the modem's ${UP_LINE}/${DOWN_LINE} line with a 300 ms buffer"
"$LAB" bridge -p $P
scenario bridge
"$LAB" unbridge -p $P

echo "== with qosd: shaping at $UP_Q/$DOWN_Q Mbit"
QOSD_LINK__UPLOAD="$UP_Q Mbit" QOSD_LINK__DOWNLOAD="$DOWN_Q Mbit" \
  ip netns exec $P-gw "$QOSD" run --config "$HERE/qosd-lab.toml" 2> "$WORK/qosd.log" &
QOSD_PID=$!
sleep 1
scenario qosd
kill "$QOSD_PID"; wait "$QOSD_PID" 2>/dev/null || true; QOSD_PID=

python3 - "$WORK" <<'EOF'
import json, sys
w = sys.argv[1]
def voice(label):
    d = json.load(open(f"{w}/{label}.voice"))
    rt = sorted(r["delay"]["rtt"] / 1e6 for r in d["round_trips"] if r["lost"] == "false")
    q = lambda p: rt[min(len(rt) - 1, int(round((len(rt) - 1) * p)))] if rt else float("nan")
    jitter = d["stats"]["ipdv_round_trip"].get("mean", 0) / 1e6
    return q(0.5), q(0.99), jitter, d["stats"]["packet_loss_percent"]
def mbit(label, what):
    try:
        return json.load(open(f"{w}/{label}.{what}"))["end"]["sum_received"]["bits_per_second"] / 1e6
    except Exception:
        return float("nan")
rows = [("voice round trip p50 (ms)", 0), ("voice round trip p99 (ms)", 1), ("voice jitter (ms)", 2), ("voice loss (%)", 3)]
v = {l: voice(l) for l in ("bridge", "qosd")}
print()
print(f"{'':34} {'without qosd':>14} {'with qosd':>12}")
for name, i in rows:
    print(f"{name:34} {v['bridge'][i]:>14.2f} {v['qosd'][i]:>12.2f}")
for what, name in (("biz-up", "business upload"), ("biz-down", "business download"), ("bulk-up", "bulk upload (4 TCP)"), ("bulk-down", "bulk download (4 TCP)")):
    print(f"{name + ' (Mbit/s)':34} {mbit('bridge', what):>14.2f} {mbit('qosd', what):>12.2f}")
EOF
