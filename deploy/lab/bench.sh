#!/usr/bin/env bash
# Lab benchmark (run by hand as root; not part of CI's pass/fail):
#
#  1. The office-under-load scenario, on the same namespaces in one run,
#     through three gateways: no shaping (plain kernel bridge; the ISP's
#     deep buffer), the classic admin script (kernel HTB at 95% of the rates,
#     u32 port filters, pfifo leaves) and qosd. Several repetitions,
#     medians reported: voice round trip p50/p99, jitter, loss, per-category
#     throughput up and down, qosd's CPU use.
#  2. The highest forwarding rate of qosd (unshaped) and of the kernel
#     bridge on the same veth pairs, with no line limit: 1500-byte frames
#     (Mbit/s) and 64-byte frames (packets/s).
#
#   sudo deploy/lab/bench.sh [-r REPS] [-t SECONDS] [-o OUTDIR] [-b pnet|ring]
#
# Writes OUTDIR/results.json, OUTDIR/voice-<setup>.txt (every voice round
# trip, ms) and prints the tables BENCHMARKS.md shows; plot with
# deploy/lab/plot_latency.py OUTDIR.
set -euo pipefail

REPS=3 SECS=20 OUT=bench-results BACKEND=pnet
while getopts "r:t:o:b:" opt; do
  case $opt in
    r) REPS=$OPTARG ;;
    t) SECS=$OPTARG ;;
    o) OUT=$OPTARG ;;
    b) BACKEND=$OPTARG ;;
    *) sed -n '2,20p' "$0"; exit 2 ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "bench.sh needs root"; exit 2; }
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
QOSD=${QOSD:-$ROOT/target/release/qosd}
[ -x "$QOSD" ] || (cd "$ROOT" && cargo build --release --quiet)
mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd)
LAB="$HERE/lab.sh"; P=qbench
QOSD_PID=
cleanup() {
  [ -n "$QOSD_PID" ] && kill "$QOSD_PID" 2>/dev/null && wait "$QOSD_PID" 2>/dev/null || true
  "$LAB" down -p $P >/dev/null 2>&1 || true
}
trap cleanup EXIT INT TERM
x() { "$LAB" exec -p $P "$@"; }

UP=20 DOWN=50                 # the line, Mbit/s
UP_Q=19 DOWN_Q=47             # qosd and HTB shape at 95%/94%

# qosd with the lab configuration at the given rates (Mbit/s) and backend.
run_qosd() { # up down log
  QOSD_LINK__UPLOAD="$1 Mbit" QOSD_LINK__DOWNLOAD="$2 Mbit" QOSD_DATAPATH__BACKEND="$BACKEND" \
    ip netns exec $P-gw "$QOSD" run --config "$HERE/qosd-lab.toml" 2> "$3" &
  QOSD_PID=$!
}

# The classic admin script (htb_on, htb_off).
# shellcheck source=deploy/lab/htb.sh
. "$HERE/htb.sh"

cpu_ticks() { awk '{print $14 + $15}' /proc/$1/stat; }

# Runs "$@" and writes qosd's CPU ticks and the wall clock before and after
# it to the file $1 (read by bench_report.py).
with_cpu() {
  local file=$1 t0 s0; shift
  t0=$(cpu_ticks $QOSD_PID); s0=$(date +%s.%N)
  "$@"
  echo "$t0 $(cpu_ticks $QOSD_PID) $s0 $(date +%s.%N) $(getconf CLK_TCK)" > "$file"
}

# One run of the office under load; writes $OUT/<setup>-<rep>.*
scenario() {
  local tag=$1 pids=()
  x lan iperf3 -c 198.18.0.20 -p 5201 -t $((SECS + 4)) -P 4 -J > "$OUT/$tag.bulk-up" 2> "$OUT/$tag.bulk-up.err" & pids+=($!)
  x lan iperf3 -c 198.18.0.20 -p 5202 -t $((SECS + 4)) -P 4 -R -J > "$OUT/$tag.bulk-down" 2> "$OUT/$tag.bulk-down.err" & pids+=($!)
  x lan iperf3 -c 198.18.0.20 -p 5301 -t $((SECS + 4)) -J > "$OUT/$tag.biz-up" 2> "$OUT/$tag.biz-up.err" & pids+=($!)
  x lan iperf3 -c 198.18.0.20 -p 5302 -t $((SECS + 4)) -R -J > "$OUT/$tag.biz-down" 2> "$OUT/$tag.biz-down.err" & pids+=($!)
  sleep 2
  x lan irtt client -i 20ms -d "${SECS}s" -l 172 -q -o - 198.18.0.20:5004 > "$OUT/$tag.voice" 2>/dev/null || true
  wait "${pids[@]}" || true
}

idle_rtt() {
  x lan irtt client -i 20ms -d 5s -l 172 -q -o - 198.18.0.20:5004 > "$OUT/$1.idle" 2>/dev/null || true
}

echo "== office under load: $REPS repetitions x (bridge, htb, qosd), ${SECS}s each, line ${UP}/${DOWN} Mbit, 300 ms modem buffer"
"$LAB" up -p $P -u ${UP}mbit -d ${DOWN}mbit -b 300 >/dev/null
x srv sh -c 'for p in 5201 5202 5301 5302; do iperf3 -s -D -p $p; done; irtt server -b 198.18.0.20:5004 >/dev/null 2>&1 &'
sleep 0.5
for rep in $(seq 1 "$REPS"); do
  "$LAB" bridge -p $P
  [ "$rep" = 1 ] && idle_rtt bridge
  echo "   rep $rep: bridge"; scenario bridge-$rep
  echo "   rep $rep: htb";    htb_on; scenario htb-$rep; htb_off
  "$LAB" unbridge -p $P
  echo "   rep $rep: qosd"
  run_qosd $UP_Q $DOWN_Q "$OUT/qosd-$rep.log"
  sleep 1.5
  [ "$rep" = 1 ] && idle_rtt qosd
  with_cpu "$OUT/qosd-$rep.cpu" scenario qosd-$rep
  kill $QOSD_PID; wait $QOSD_PID 2>/dev/null || true; QOSD_PID=
done
"$LAB" down -p $P >/dev/null

echo "== forwarding rate: no line limit, kernel bridge vs qosd unshaped"
"$LAB" up -p $P -u none -d none >/dev/null
x srv sh -c 'iperf3 -s -D -p 5401'
sleep 0.5
fwd() { # tag
  local tag=$1
  for rep in $(seq 1 "$REPS"); do
    x lan iperf3 -c 198.18.0.20 -p 5401 -t 5 -J > "$OUT/$tag-tcp-$rep" 2> "$OUT/$tag-tcp-$rep.err" || true
    x lan iperf3 -c 198.18.0.20 -p 5401 -u -b 0 -l 1472 -t 5 -J > "$OUT/$tag-udp1500-$rep" 2> "$OUT/$tag-udp1500-$rep.err" || true
    x lan iperf3 -c 198.18.0.20 -p 5401 -u -b 0 -l 18 -t 5 -J > "$OUT/$tag-udp64-$rep" 2> "$OUT/$tag-udp64-$rep.err" || true
  done
}
"$LAB" bridge -p $P; fwd bridge; "$LAB" unbridge -p $P
for be in pnet ring; do
  BACKEND=$be run_qosd 100000 100000 "$OUT/qosd-unshaped-$be.log"
  sleep 1.5
  with_cpu "$OUT/qosd-unshaped-$be.cpu" fwd qosd-$be
  kill $QOSD_PID; wait $QOSD_PID 2>/dev/null || true; QOSD_PID=
done
"$LAB" down -p $P >/dev/null

python3 "$HERE/bench_report.py" "$OUT" "$REPS"
