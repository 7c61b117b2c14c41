#!/usr/bin/env bash
# Forwarding rate of qosd against the kernel bridge (issue 18; run by hand
# as root; not part of CI's pass/fail). trafgen (netsniff-ng) blasts UDP
# frames from a sender through the gateway to a receiver; every case runs in
# the same run on the same veth pairs: a plain kernel bridge, then qosd
# unshaped (its default configuration, with the link at 10 Gbit so the
# shaper never limits) with each backend. For every case, frame size and
# flow mode it prints the packets/s the sender offered and the receiver got,
# the ratio to the bridge, and qosd's CPU use, as a markdown table (stdout;
# progress on stderr).
#
#   sudo deploy/lab/forwarding.sh [-r REPS] [-s SECS] [-b "BACKENDS"] [-p PREFIX] [-n]
#
#   -r REPS      measurements per case, frame size and flow mode; the
#                median is reported (default 3)
#   -s SECS      measuring window of each, after 1 s of warm-up (default 5)
#   -b BACKENDS  qosd backends to compare, space-separated (default
#                "pnet ring auto xdp"); one qosd does not know, or that
#                fails to start, shows as n/a with the first line of its error
#   -p PREFIX    namespace prefix (default qfwd)
#   -n           do not pin qosd to CPU 1
#
# The qosd under test is $ROOT/target/release/qosd (built if missing), or
# $QOSD: QOSD=/path/to/qosd sudo -E deploy/lab/forwarding.sh. Needs trafgen
# (apt-get install netsniff-ng), iproute2, ethtool, taskset, curl or python3.
#
# Topology (addresses in the benchmarking range 198.18.0.0/15, offloads off
# on every veth as on a real wire, MTU 1500):
#
#   [P-src] src0 198.18.0.10 --- gwa [P-gw] gwb --- dst0 198.18.0.20 [P-dst]
#                                 bridge br0, or qosd (lan gwa, wan gwb)
#
# Frames: "64 B" is a 64-byte Ethernet frame (14 Ethernet + 20 IPv4 + 8 UDP
# + 22 bytes of payload); "1514 B" a 1514-byte frame carrying a 1500-byte
# IPv4 packet (the MTU). Both without the 4-byte FCS, which veth does not
# have. Flow modes: "one" is one UDP flow (fixed addresses and ports);
# "new" is a new flow on every frame: the UDP source port counts through
# 1024-65535 and the source address through 198.18.1.1-251, together, so no
# 5-tuple repeats within 16 million frames (a source port alone repeats
# every 64 512 frames, which fits in qosd's flow table). IPv4 and UDP
# checksums are correct (trafgen computes them, again for every changed
# frame). The receiver's stack takes each frame to its closed UDP port 9
# and answers nothing (ICMP is off in its namespace).
#
# Measure: trafgen (one process, pinned to CPU 0, one sendto(2) per frame
# as fast as it goes) starts; after 1 s of warm-up, the window of SECS
# seconds reads dst0's rx_packets (delivered), src0's tx_packets +
# tx_dropped (offered: every frame the sender put on the wire; tx_dropped
# counts those the gateway's input queue refused) and qosd's CPU time
# (utime + stime of all its threads, from /proc/PID/stat, as % of one
# core; it includes the receiver's softirq work done in qosd's sends).
# qosd is started anew, and waited for on its /readyz, for every
# measurement, so a "new" run does not leave it a full flow table for the
# next. The bridge is a plain one: STP off, both MACs in its table, bridged
# frames kept out of iptables (br_netfilter). A measurement waits until
# other processes (a build, another test) use under 10 % of a core, and is
# taken again (twice at most) when they used more during its window; the
# progress lines show how much ("others").
#
# Caveat: on 2 cores the bridge forwards inside the sender's own softirq
# (one CPU does everything: trafgen, the bridge and the receiver), while
# qosd runs on the other CPU and only gwa's receive (the copy into
# qosd's socket) stays with the sender. Pinning trafgen to CPU 0 and qosd
# to CPU 1 (taskset; -n to not pin qosd) keeps the comparison fair and
# repeatable: without pinning, the scheduler may put qosd on the sender's
# CPU. So the bridge's figure is what one CPU forwards while it also sends,
# not the bridge's capacity on a CPU of its own, and "x bridge" can exceed 1.
# So the bridge is measured a second time as "bridge-cpu1": receive packet
# steering (RPS) on gwa hands every frame to CPU 1, where the bridge (and
# the receiver's stack) then run, as qosd does; "x bridge-cpu1" compares
# with that.
set -eu

REPS=3 SECS=5 BACKENDS="pnet ring auto xdp" P=qfwd PIN=1
while getopts "r:s:b:p:n" o; do
  case $o in
    r) REPS=$OPTARG ;;
    s) SECS=$OPTARG ;;
    b) BACKENDS=$OPTARG ;;
    p) P=$OPTARG ;;
    n) PIN= ;;
    *) sed -n '2,/^set -eu/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 2 ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "forwarding.sh needs root" >&2; exit 2; }
command -v trafgen >/dev/null || { echo "forwarding.sh needs trafgen: apt-get install netsniff-ng" >&2; exit 2; }
[ "$(nproc)" -ge 2 ] || { echo "forwarding.sh needs 2 CPUs (trafgen on CPU 0, qosd on CPU 1)" >&2; exit 2; }
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
QOSD=${QOSD:-$ROOT/target/release/qosd}
[ -x "$QOSD" ] || (cd "$ROOT" && cargo build --release --quiet)

SRC=$P-src GW=$P-gw DST=$P-dst
TMP=$(mktemp -d)
QOSD_PID='' TG_PID=''
log() { echo "$*" >&2; }

stop_pid() { # pid [signal]: stop it and wait (it is a child of this shell)
  kill -"${2:-TERM}" "$1" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}
stop_trafgen() { # its own process group: the parent and its worker
  [ -n "$TG_PID" ] || return 0
  kill -INT -- -"$TG_PID" 2>/dev/null || true
  stop_pid "$TG_PID" INT
  kill -KILL -- -"$TG_PID" 2>/dev/null || true
  TG_PID=
}
stop_qosd() {
  [ -n "$QOSD_PID" ] || return 0
  stop_pid "$QOSD_PID"
  QOSD_PID=
}
down() {
  for ns in "$SRC" "$GW" "$DST"; do ip netns del "$ns" 2>/dev/null || true; done
}
cleanup() {
  trap - EXIT INT TERM
  stop_trafgen
  stop_qosd
  down
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'log "forwarding.sh: interrupted"; exit 130' INT
trap 'log "forwarding.sh: terminated"; exit 143' TERM

in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

up() {
  local ns dev pair
  down
  for ns in "$SRC" "$GW" "$DST"; do
    ip netns add "$ns"
    in_ns "$ns" ip link set lo up
    # No IPv6: no router solicitations or MLD reports among the counted frames.
    in_ns "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
  done
  ip link add src0 netns "$SRC" type veth peer name gwa netns "$GW"
  ip link add gwb netns "$GW" type veth peer name dst0 netns "$DST"
  for pair in "$SRC src0" "$GW gwa" "$GW gwb" "$DST dst0"; do
    read -r ns dev <<< "$pair"
    in_ns "$ns" ethtool -K "$dev" tx off rx off tso off gso off gro off lro off >/dev/null 2>&1 || true
    in_ns "$ns" ip link set "$dev" up
  done
  in_ns "$SRC" ip addr add 198.18.0.10/24 dev src0
  in_ns "$DST" ip addr add 198.18.0.20/24 dev dst0
  SRC_MAC=$(in_ns "$SRC" cat /sys/class/net/src0/address)
  DST_MAC=$(in_ns "$DST" cat /sys/class/net/dst0/address)
  in_ns "$SRC" ip neigh replace 198.18.0.20 lladdr "$DST_MAC" dev src0 nud permanent
  in_ns "$DST" ip neigh replace 198.18.0.10 lladdr "$SRC_MAC" dev dst0 nud permanent
  # The receiver answers no frame: no ICMP port unreachable (its UDP port
  # is closed) flowing back through the gateway.
  in_ns "$DST" sysctl -qw net.ipv4.icmp_msgs_per_sec=0 net.ipv4.icmp_msgs_burst=0
}

bridge_on() {
  in_ns "$GW" ip link add br0 type bridge stp_state 0 forward_delay 0
  in_ns "$GW" ip link set gwa master br0
  in_ns "$GW" ip link set gwb master br0
  in_ns "$GW" ip link set br0 up
  # A plain bridge: bridged frames do not go through iptables' hooks
  # (br_netfilter's default, when built in, is to send them there).
  in_ns "$GW" sysctl -qw net.bridge.bridge-nf-call-iptables=0 net.bridge.bridge-nf-call-ip6tables=0 \
    net.bridge.bridge-nf-call-arptables=0 2>/dev/null || true
  # As a bridge that has heard both ends (no flooding of unknown unicast).
  in_ns "$GW" bridge fdb replace "$DST_MAC" dev gwb master static
  in_ns "$GW" bridge fdb replace "$SRC_MAC" dev gwa master static
}
bridge_off() {
  in_ns "$GW" ip link del br0 2>/dev/null || true
  in_ns "$GW" sh -c 'echo 0 > /sys/class/net/gwa/queues/rx-0/rps_cpus' 2>/dev/null || true
}
# The bridge on a CPU of its own: gwa's frames are steered to CPU 1.
bridge_cpu1_on() {
  bridge_on
  in_ns "$GW" sh -c 'echo 2 > /sys/class/net/gwa/queues/rx-0/rps_cpus'
}

# trafgen's packet for a frame size (64 or 1514) and flow mode (one or new).
trafgen_cfg() { # frame flows file
  local payload=$(($1 - 14 - 20 - 8)) sa sp
  if [ "$2" = one ]; then
    sa="sa=198.18.0.10" sp="sp=40000"
  else
    sa="sa=198.18.1.0, sa[3]=dinc(1, 251)" sp="sp=dinc(1024, 65535)"
  fi
  cat > "$3" <<EOF
{
  eth(da=$DST_MAC, sa=$SRC_MAC, type=0x0800),
  ipv4($sa, da=198.18.0.20, ttl=64),
  udp($sp, dp=9),
  fill(0x00, $payload)
}
EOF
}

# The default configuration of the qosd under test, with the lab's
# interfaces and a link so fast that the shaper never limits.
write_config() {
  QOSD_INTERFACES__LAN=gwa QOSD_INTERFACES__WAN=gwb \
    QOSD_LINK__UPLOAD="10 Gbit" QOSD_LINK__DOWNLOAD="10 Gbit" \
    "$QOSD" check-config --print > "$TMP/qosd.toml" ||
    { log "forwarding.sh: $QOSD check-config --print failed"; exit 1; }
  METRICS=$(awk '/^\[/ {s = $0} s == "[metrics]" && $1 == "listen" {gsub(/"/, "", $3); print $3}' "$TMP/qosd.toml")
  [ -n "$METRICS" ] || { log "no metrics.listen in qosd's configuration"; exit 1; }
}

http_ok() { # url, from the gateway's namespace
  if command -v curl >/dev/null; then
    in_ns "$GW" curl -sf -m 1 -o /dev/null "$1"
  else
    in_ns "$GW" python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=1)' "$1" 2>/dev/null
  fi
}

# The first line of qosd's error, without colours, time stamp and level.
first_error() { # log
  local line
  line=$(sed 's/\x1b\[[0-9;]*m//g' "$1" | grep -m1 -E 'ERROR|error' || sed 's/\x1b\[[0-9;]*m//g' "$1" | grep -m1 . || true)
  line=$(echo "$line" | sed -E "s/^[0-9TZ:.-]+ +//; s/^ERROR +//; s|$TMP/||")
  echo "${line:-exited without a message}"
}

# Starts qosd with a backend and waits until /readyz says it forwards (15 s
# at most). Fails with the first line of its error in $TMP/error.
start_qosd() { # backend
  local pin=()
  [ -z "$PIN" ] || pin=(taskset -c 1)
  NO_COLOR=1 RUST_LOG=info QOSD_DATAPATH__BACKEND="$1" \
    "${pin[@]}" ip netns exec "$GW" "$QOSD" run --config "$TMP/qosd.toml" \
    </dev/null >/dev/null 2> "$TMP/qosd-$1.log" &
  QOSD_PID=$!
  for _ in $(seq 150); do
    if ! kill -0 "$QOSD_PID" 2>/dev/null; then
      wait "$QOSD_PID" 2>/dev/null || true; QOSD_PID=
      first_error "$TMP/qosd-$1.log" > "$TMP/error"; return 1
    fi
    http_ok "http://$METRICS/readyz" && return 0
    nap 0.1
  done
  stop_qosd
  echo "not ready within 15 s: $(first_error "$TMP/qosd-$1.log")" > "$TMP/error"
  return 1
}

counter() { in_ns "$1" cat "/sys/class/net/$2/statistics/$3"; }
ticks() { # CPU time (utime + stime, all threads) of the given processes
  local pid t=0
  for pid in "$@"; do
    t=$((t + $(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null || echo 0)))
  done
  echo $t
}
HZ=$(getconf CLK_TCK)
# CPU time of every other process (utime + stime, and that of their
# children that ended): not this script (nor its helpers), qosd, trafgen or
# the kernel's softirq threads. A build or another test shows here.
others() {
  local skip
  skip=" $$ $QOSD_PID $([ -z "$TG_PID" ] || pgrep -d ' ' -g "$TG_PID") $(pgrep -d ' ' '^ksoftirqd/') "
  cat /proc/[0-9]*/stat 2>/dev/null | awk -v skip="$skip" \
    '{pid = $1; sub(/^.*\) /, ""); if (!index(skip, " " pid " ")) t += $12 + $13 + $14 + $15} END {print t + 0}'
}
pct() { # ticks t_end t_start: % of one core
  awk -v c="$1" -v t="$2 $3" -v hz="$HZ" 'BEGIN {split(t, a, " "); printf "%.0f\n", c / hz / (a[1] - a[2]) * 100}'
}
# Waits (2 minutes at most) until other processes (a build, another test)
# leave the machine alone: a measurement needs both CPUs.
wait_quiet() {
  local l c0 c1 s0 s1
  for _ in $(seq 120); do
    c0=$(others); s0=$(date +%s.%N); nap 1; c1=$(others); s1=$(date +%s.%N)
    l=$(pct $((c1 - c0)) "$s1" "$s0")
    [ "$l" -ge "$BUSY_MAX" ] || return 0
    log "   other processes use $l % of a core; waiting for the machine to be quiet"
    nap 1
  done
  log "   still busy; measuring anyway"
}
BUSY_MAX=10

# An interruptible sleep (a trapped TERM does not wait for it to end).
nap() { sleep "$1" & wait $!; }

# One measurement: sets M to "offered_pps delivered_pps qosd_cpu_percent".
measure() { # frame flows
  local cfg=$TMP/tg-$1-$2.cfg t0 t1 o0 o1 d0 d1 c0 c1 u0 u1
  trafgen_cfg "$1" "$2" "$cfg"
  # One trafgen process on CPU 0, in a process group of its own. -t 0:
  # one sendto(2) per frame, as fast as it goes, instead of trafgen's
  # TX_RING (the ring's zero-copy frames are copied anyway at veth's first
  # hop, it is no faster here, and trafgen exits when the kernel holds
  # ring frames past a flush). Long options: this trafgen's -A does not
  # parse. No IRQ affinity or system socket memory changes, no CPU
  # statistics at exit. (trafgen's -q is not "quiet" but the qdisc path;
  # the default, bypassing the qdisc, is kept.)
  ip netns exec "$SRC" setsid taskset -c 0 trafgen -o src0 -c "$cfg" --cpus 1 -t 0 \
    --notouch-irq --no-sock-mem --no-cpu-stats </dev/null > "$TMP/trafgen.log" 2>&1 &
  TG_PID=$!
  nap 1
  kill -0 "$TG_PID" 2>/dev/null || { log "trafgen failed: $(cat "$TMP/trafgen.log")"; exit 1; }
  # The same sequence at both ends: each counter's window lasts t1 - t0.
  u0=$(others); c0=$(ticks $QOSD_PID); t0=$(date +%s.%N)
  o0=$(( $(counter "$SRC" src0 tx_packets) + $(counter "$SRC" src0 tx_dropped) ))
  d0=$(counter "$DST" dst0 rx_packets)
  nap "$SECS"
  u1=$(others); c1=$(ticks $QOSD_PID); t1=$(date +%s.%N)
  o1=$(( $(counter "$SRC" src0 tx_packets) + $(counter "$SRC" src0 tx_dropped) ))
  d1=$(counter "$DST" dst0 rx_packets)
  kill -0 "$TG_PID" 2>/dev/null || { log "trafgen stopped during the window: $(tail -n 3 "$TMP/trafgen.log")"; exit 1; }
  # CPU time of everything else over the window, % of one core.
  OTHER=$(pct $((u1 - u0)) "$t1" "$t0")
  stop_trafgen
  M=$(awk -v t="$t1 - $t0" -v o=$((o1 - o0)) -v d=$((d1 - d0)) -v c=$((c1 - c0)) -v hz="$HZ" -v q="$QOSD_PID" \
    'BEGIN {split(t, a, " - "); w = a[1] - a[2];
            printf "%.0f %.0f %s\n", o / w, d / w, q == "" ? "-" : sprintf("%.1f", c / hz / w * 100)}')
}

median() { # values... ("-" stays "-")
  [ "$1" = - ] && { echo -; return; }
  printf '%s\n' "$@" | sort -g | awk '{v[NR] = $1} END {m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; print m}'
}

FRAMES="64 1514" FLOWS="one new" CASES="bridge bridge-cpu1 $BACKENDS"
declare -A OFF DEL CPU NA
up
write_config
log "forwarding.sh: $REPS x ${SECS}s per case, frame size and flow mode; cases: $CASES; qosd $QOSD"
# One measurement of a case (bridge or a backend); sets M, or fails with
# the error in $TMP/error when qosd does not start. A measurement during
# which other processes used more than BUSY_MAX % of a core is taken again
# (twice at most).
case_measure() { # case frame flows
  local try
  for try in 1 2 3; do
    wait_quiet
    if [ "$1" = bridge ]; then
      bridge_on
    elif [ "$1" = bridge-cpu1 ]; then
      bridge_cpu1_on
    else
      start_qosd "$1" || return 1
    fi
    measure "$2" "$3"
    case $1 in bridge*) bridge_off ;; *) stop_qosd ;; esac
    [ "$OTHER" -ge "$BUSY_MAX" ] || return 0
    log "   other processes used $OTHER % of a core during the window$([ $try = 3 ] && echo "; kept" || echo "; again")"
  done
}

for rep in $(seq 1 "$REPS"); do
  for case in $CASES; do
    [ -z "${NA[$case]:-}" ] || continue
    for frame in $FRAMES; do
      for flows in $FLOWS; do
        k="$case $frame $flows"
        if ! case_measure "$case" "$frame" "$flows"; then
          NA[$case]=$(cat "$TMP/error")
          log "   rep $rep: $case: n/a: ${NA[$case]}"
          break 2
        fi
        read -r o d c <<< "$M"
        OFF[$k]="${OFF[$k]:-} $o" DEL[$k]="${DEL[$k]:-} $d" CPU[$k]="${CPU[$k]:-} $c"
        log "   rep $rep: $case ${frame} B $flows: offered $((o / 1000)) kpps, delivered $((d / 1000)) kpps, qosd cpu $c %, others $OTHER %"
      done
    done
  done
done

echo "| case | frame | flows | offered kpps | delivered kpps | x bridge | x bridge-cpu1 | qosd cpu % |"
echo "|---|---|---|---:|---:|---:|---:|---:|"
for case in $CASES; do
  for frame in $FRAMES; do
    for flows in $FLOWS; do
      k="$case $frame $flows"
      if [ -n "${NA[$case]:-}" ]; then
        echo "| $case | $frame B | $flows | n/a | n/a | n/a | n/a | n/a |"
        continue
      fi
      # shellcheck disable=SC2086 # the lists are words
      o=$(median ${OFF[$k]}) d=$(median ${DEL[$k]}) c=$(median ${CPU[$k]}) \
        b=$(median ${DEL["bridge $frame $flows"]}) b1=$(median ${DEL["bridge-cpu1 $frame $flows"]})
      awk -v cs="$case" -v f="$frame" -v fl="$flows" -v o="$o" -v d="$d" -v b="$b" -v b1="$b1" -v c="$c" \
        'BEGIN {printf "| %s | %s B | %s | %.0f | %.0f | %s | %s | %s |\n", cs, f, fl, o / 1000, d / 1000,
                (b > 0 ? sprintf("%.2f", d / b) : "-"), (b1 > 0 ? sprintf("%.2f", d / b1) : "-"), c}'
    done
  done
done
for case in $BACKENDS; do
  [ -z "${NA[$case]:-}" ] || echo "n/a $case: ${NA[$case]}"
done
