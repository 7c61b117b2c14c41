#!/usr/bin/env bash
# qosd's CPU use under the office load (run by hand as root; not part of
# CI's pass/fail): the same load as bench.sh's scenario (4+4 bulk TCP
# flows, a business flow each way, a voice stream) through qosd alone,
# REPS times. Prints, per run, qosd's CPU (% of one core; usr%: of it in
# user space, the rest is the kernel's, which on veth includes the peers'
# receive processing that qosd's sends trigger), the frames it
# received per second (both directions: what the LAN host and the ISP side
# sent it), CPU per frame (µs), its context switches per second (wake-ups
# of its threads) and the voice round trip.
#
#   sudo deploy/lab/cpu.sh [-r REPS] [-b auto|xdp|ring|pnet] [-n] [-i]   (default auto)
#
# -n: no call in the office: the latency probe runs on UDP 5005 (browsing,
# not voice), so qosd coalesces departures all the time (see datapath.rs,
# COALESCE); by default it is a voice stream (UDP 5004, every 20 ms): with
# AF_XDP (auto) each of its frames wakes qosd as it arrives (the XDP
# program's doorbell, engine/bells.rs), with the other backends every
# departure wakes qosd around each of its frames' due times
# (engine/cadence.rs).
#
# -i: qosd's CPU alone, as on a gateway whose neighbours are other machines.
# On veth, a frame qosd sends is received by the peer's stack (the LAN
# host's or the ISP side's TCP, the ISP's shaper) inside qosd's send, on
# qosd's CPU and in its account. With -i qosd runs on CPU 1, everything else
# (iperf3, irtt) on CPU 0, and receive packet steering hands the peers'
# receive work to CPU 0, as a NIC hands a frame to the wire: what is left in
# qosd's account is its own work and its system calls up to the device.
#
# For comparing two builds: QOSD=/path/to/other/qosd sudo -E deploy/lab/cpu.sh
set -eu
REPS=3 BACKEND=auto VPORT=5004 PIN_QOSD=() PIN_REST=()
while getopts "r:b:ni" o; do
  case $o in
    r) REPS=$OPTARG ;;
    b) BACKEND=$OPTARG ;;
    n) VPORT=5005 ;;
    i) PIN_QOSD=(taskset -c 1) PIN_REST=(taskset -c 0) ;;
    *) sed -n '2,26p' "$0"; exit 2 ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "cpu.sh needs root"; exit 2; }
if [ ${#PIN_QOSD[@]} -gt 0 ] && [ "$(nproc)" -lt 2 ]; then
  echo "cpu.sh -i needs 2 CPUs (qosd on CPU 1, the rest on CPU 0)"; exit 2
fi
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
QOSD=${QOSD:-$ROOT/target/release/qosd}
[ -x "$QOSD" ] || (cd "$ROOT" && cargo build --release --quiet)
LAB="$HERE/lab.sh"; P=qcpu
TMP=$(mktemp -d)
QOSD_PID=
cleanup() {
  if [ -n "$QOSD_PID" ]; then kill "$QOSD_PID" 2>/dev/null; wait "$QOSD_PID" 2>/dev/null || true; fi
  "$LAB" down -p $P >/dev/null 2>&1 || true
  rm -rf "$TMP"
}
trap cleanup EXIT INT TERM
x() { ${PIN_REST[@]+"${PIN_REST[@]}"} "$LAB" exec -p $P "$@"; }
switches() { cat /proc/"$QOSD_PID"/task/*/status | awk '/ctxt_switches/ {s += $2} END {print s}'; }
ticks() { awk '{print $14 + $15}' /proc/"$QOSD_PID"/stat; }
uticks() { awk '{print $14}' /proc/"$QOSD_PID"/stat; }
# Frames sent towards qosd: by the LAN host and by the ISP's side of wan0.
frames() {
  echo $(( $(x lan cat /sys/class/net/eth0/statistics/tx_packets) + \
    $(ip netns exec $P-isp cat /sys/class/net/ispa/statistics/tx_packets) ))
}

"$LAB" up -p $P -u 20mbit -d 50mbit -b 300 >/dev/null
x srv sh -c 'for p in 5201 5202 5301 5302; do iperf3 -s -D -p $p; done; irtt server -b 198.18.0.20:5004 >/dev/null 2>&1 & irtt server -b 198.18.0.20:5005 >/dev/null 2>&1 &'
if [ ${#PIN_QOSD[@]} -gt 0 ]; then
  # The peers that receive qosd's frames: the LAN host's eth0, the ISP's ispa.
  x lan sh -c 'echo 1 > /sys/class/net/eth0/queues/rx-0/rps_cpus'
  x isp sh -c 'echo 1 > /sys/class/net/ispa/queues/rx-0/rps_cpus'
fi
echo "backend $BACKEND, latency probe on UDP $VPORT${PIN_QOSD:+, qosd alone on CPU 1 (-i)}"
echo "run  cpu%  usr%  kframes/s  us/frame  switches/s  voice p50/p99 ms  loss%"
for rep in $(seq 1 "$REPS"); do
  QOSD_LINK__UPLOAD="19 Mbit" QOSD_LINK__DOWNLOAD="47 Mbit" QOSD_DATAPATH__BACKEND="$BACKEND" \
    ${PIN_QOSD[@]+"${PIN_QOSD[@]}"} ip netns exec $P-gw "$QOSD" run --config "$HERE/qosd-lab.toml" 2> "$TMP/qosd.log" &
  QOSD_PID=$!
  sleep 1.5
  pids=()
  x lan iperf3 -c 198.18.0.20 -p 5201 -t 18 -P 4 >/dev/null 2>&1 & pids+=($!)
  x lan iperf3 -c 198.18.0.20 -p 5202 -t 18 -P 4 -R >/dev/null 2>&1 & pids+=($!)
  x lan iperf3 -c 198.18.0.20 -p 5301 -t 18 >/dev/null 2>&1 & pids+=($!)
  x lan iperf3 -c 198.18.0.20 -p 5302 -t 18 -R >/dev/null 2>&1 & pids+=($!)
  sleep 2
  x lan irtt client -i 20ms -d 14s -l 172 -q -o - 198.18.0.20:$VPORT > "$TMP/voice.json" 2>/dev/null & pids+=($!)
  sleep 1
  t0=$(ticks); u0=$(uticks); c0=$(switches); f0=$(frames); s0=$(date +%s.%N)
  sleep 10
  t1=$(ticks); u1=$(uticks); c1=$(switches); f1=$(frames); s1=$(date +%s.%N)
  wait "${pids[@]}" || true
  kill "$QOSD_PID"; wait "$QOSD_PID" 2>/dev/null || true; QOSD_PID=
  python3 - "$TMP/voice.json" "$t0" "$t1" "$c0" "$c1" "$s0" "$s1" "$(getconf CLK_TCK)" "$rep" "$f0" "$f1" "$u0" "$u1" <<'PY'
import json, sys
f, t0, t1, c0, c1, s0, s1, hz, rep, f0, f1, u0, u1 = sys.argv[1:]
secs = float(s1) - float(s0)
v = json.load(open(f))
r = sorted(x["delay"]["rtt"] / 1e6 for x in v["round_trips"] if "rtt" in x.get("delay", {}))
cpu = (float(t1) - float(t0)) / float(hz) / secs * 100
sw = (int(c1) - int(c0)) / secs
fps = (int(f1) - int(f0)) / secs
us = cpu / 100 / fps * 1e6 if fps else 0
usr = (float(u1) - float(u0)) / float(hz) / secs * 100
print(f"{rep:>3}  {cpu:4.1f}  {usr:4.1f}  {fps / 1000:9.1f}  {us:8.2f}  {sw:10.0f}  {r[len(r) // 2]:6.2f} / {r[int(len(r) * 0.99)]:5.2f}  {v['stats']['packet_loss_percent']:5.2f}")
PY
done
