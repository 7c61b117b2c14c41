#!/usr/bin/env bash
# A throwaway branch office in network namespaces, for trying qosd by hand
# and for the integration tests. Needs root, iproute2, ethtool.
#
#   lab.sh up   [-p PREFIX] [-u UP_LINE] [-d DOWN_LINE] [-b BUFFER_MS] [-r RTT_MS]
#                                 # -r: the Internet path's base round trip,
#                                 # added by delayline.py in place of the
#                                 # ISP's bridge (default 0: none)
#   lab.sh bridge   [-p PREFIX]   # plain kernel bridge lan0<->wan0 ("no qosd")
#   lab.sh unbridge [-p PREFIX]
#   lab.sh down [-p PREFIX]       # remove everything (idempotent)
#   lab.sh unplug [-p PREFIX]     # remove the LAN cable: lan0 and the LAN host's eth0
#   lab.sh plug [-p PREFIX] [offloads]  # put it back (same MACs and addresses);
#                                 # "offloads": leave lan0's offloads on, as a new NIC has them
#   lab.sh carrier [-p PREFIX] on|off   # the modem's port (ISP side of wan0) up/down
#   lab.sh host2 [-p PREFIX]      # a second LAN computer, lan2, 198.18.0.11,
#                                 # its own MAC on the same LAN segment
#   lab.sh exec [-p PREFIX] NODE CMD...   # NODE: lan, lan2, gw, isp, srv
#   lab.sh line [-p PREFIX] [-u UP_LINE] [-d DOWN_LINE] [-b BUFFER_MS]
#                                 # change the ISP line's capacity live (LTE,
#                                 # satellite, an evening on shared DSL);
#                                 # the buffer keeps its size in bytes
#                                 # unless -b sets it anew at the new rate
#
# Topology (one layer-2 segment, addresses in the RFC 2544/5180 benchmarking
# ranges 198.18.0.0/15 and 2001:2::/48):
#
#   [P-lan] eth0 198.18.0.10        LAN host (phones, PCs)
#      |    ([P-lan2] 198.18.0.11: a second computer, with host2)
#      |
#   [P-gw]  lan0 -- qosd (or a kernel bridge) -- wan0     the office gateway
#      |
#   [P-isp] ispa -- br0 -- ispb    the ISP access line: tbf at the line rate
#      |                           with a deep, modem-like buffer each way
#      |                           (with -r, delayline.py instead of br0)
#   [P-srv] eth0 198.18.0.20        a server on the Internet
#
# Offloads are off on every veth, as on a real wire (no GRO/TSO super-frames,
# complete checksums on every frame).
set -euo pipefail

PREFIX=qlab
UP_LINE=20mbit
DOWN_LINE=50mbit
BUFFER_MS=300
RTT_MS=0

usage() { sed -n '2,/^# Topology/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 2; }

cmd=${1:-}; [ -n "$cmd" ] || usage; shift
UP_SET='' DOWN_SET='' BUFFER_SET=''
while getopts "p:u:d:b:r:" opt; do
  case $opt in
    p) PREFIX=$OPTARG ;;
    u) UP_LINE=$OPTARG; UP_SET=1 ;;
    d) DOWN_LINE=$OPTARG; DOWN_SET=1 ;;
    b) BUFFER_MS=$OPTARG; BUFFER_SET=1 ;;
    r) RTT_MS=$OPTARG ;;
    *) usage ;;
  esac
done
shift $((OPTIND - 1))

LAN=$PREFIX-lan GW=$PREFIX-gw ISP=$PREFIX-isp SRV=$PREFIX-srv LAN2=$PREFIX-lan2
in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

quiet_offloads() { # ns dev
  in_ns "$1" ethtool -K "$2" tx off rx off tso off gso off gro off lro off >/dev/null 2>&1 || true
}

# tbf with a buffer of BUFFER_MS at the line rate: the deep FIFO of a modem.
# A rate of "none" leaves the line unlimited (for forwarding-rate tests).
line_shaper() { # ns dev rate
  [ "$3" = none ] && return 0
  in_ns "$1" tc qdisc replace dev "$2" root tbf rate "$3" burst 3000 latency "${BUFFER_MS}ms"
}

# The line's capacity changes while traffic flows (lab.sh line): the rate
# of the tbf changes in place (tc qdisc change keeps the packets queued).
# Its buffer keeps the size in bytes it had, as a modem's or a base
# station's byte buffer does: at a lower rate the same bytes take longer to
# drain (300 ms at 20 Mbit/s is 1 s at 6 Mbit/s), which is what makes a
# capacity drop hurt. With -b the buffer is set anew to BUFFER_MS at the
# new rate instead.
line_change() { # ns dev rate
  local ns=$1 dev=$2 rate=$3 limit
  case $rate in none) echo "lab.sh line: a rate such as 6mbit, not '$rate'" >&2; exit 2 ;; esac
  if [ -n "$BUFFER_SET" ]; then
    in_ns "$ns" tc qdisc change dev "$dev" root tbf rate "$rate" burst 3000 latency "${BUFFER_MS}ms"
  else
    # tc reports the buffer as the latency it means at the current rate:
    # limit (bytes) = rate (bytes/s) x latency + burst.
    limit=$(in_ns "$ns" tc -j qdisc show dev "$dev" | python3 -c '
import json, sys
q = [q for q in json.load(sys.stdin) if q.get("kind") == "tbf" and q.get("root")]
if not q: sys.exit("no tbf on this line (was it set up with a rate of none?)")
o = q[0]["options"]
print(round(o["rate"] * o["lat"] / 1e6 + o["burst"]))') || exit 1
    in_ns "$ns" tc qdisc change dev "$dev" root tbf rate "$rate" burst 3000 limit "$limit"
  fi
}

line() {
  [ -n "$UP_SET$DOWN_SET" ] || { echo "lab.sh line: -u UP_LINE and/or -d DOWN_LINE" >&2; exit 2; }
  [ -z "$UP_SET" ] || line_change "$ISP" ispb "$UP_LINE"
  [ -z "$DOWN_SET" ] || line_change "$ISP" ispa "$DOWN_LINE"
  echo "lab $PREFIX line:$([ -z "$UP_SET" ] || echo " $UP_LINE up")$([ -z "$DOWN_SET" ] || echo " $DOWN_LINE down")"
}

up() {
  down_quiet
  for ns in "$LAN" "$GW" "$ISP" "$SRV"; do
    ip netns add "$ns"
    in_ns "$ns" ip link set lo up
    in_ns "$ns" sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0
  done
  in_ns "$GW" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
  lan_link
  ip link add wan0 netns "$GW" type veth peer name ispa netns "$ISP"
  ip link add ispb netns "$ISP" type veth peer name eth0 netns "$SRV"

  if [ "$RTT_MS" = 0 ]; then
    in_ns "$ISP" ip link add br0 type bridge
    in_ns "$ISP" ip link set br0 type bridge stp_state 0 forward_delay 0
    for dev in ispa ispb; do
      in_ns "$ISP" ip link set "$dev" master br0
    done
  fi

  for pair in "$GW wan0" "$ISP ispa" "$ISP ispb" "$SRV eth0"; do
    set -- $pair
    quiet_offloads "$1" "$2"
    in_ns "$1" ip link set "$2" up
  done
  if [ "$RTT_MS" = 0 ]; then
    in_ns "$ISP" ip link set br0 up
  else
    # Half the round trip each way; down_quiet stops it with the namespace.
    in_ns "$ISP" setsid python3 "$(dirname "$0")/delayline.py" ispa ispb \
      "$(python3 -c "print($RTT_MS / 2)")" </dev/null >/dev/null 2>&1 &
  fi
  # Upload leaves the ISP side toward the server through ispb; download
  # leaves toward the office through ispa.
  line_shaper "$ISP" ispb "$UP_LINE"
  line_shaper "$ISP" ispa "$DOWN_LINE"

  in_ns "$SRV" ip addr add 198.18.0.20/24 dev eth0
  in_ns "$SRV" ip addr add 2001:2::20/64 dev eth0 nodad
  echo "lab $PREFIX up: lan 198.18.0.10 -> gw (lan0|wan0) -> isp ($UP_LINE up / $DOWN_LINE down, ${BUFFER_MS}ms buffer, ${RTT_MS}ms base round trip) -> srv 198.18.0.20"
}

# The LAN cable: the LAN host's eth0 and the gateway's lan0, with fixed MAC
# addresses so that a re-plugged cable (unplug, plug) looks to the other
# hosts like the same NIC, as a re-plugged USB NIC does.
lan_link() { # [offloads]
  ip link add eth0 netns "$LAN" address 02:00:c6:12:00:0a type veth \
    peer name lan0 netns "$GW" address 02:00:c6:12:00:01
  quiet_offloads "$LAN" eth0
  [ "${1:-}" = offloads ] || quiet_offloads "$GW" lan0
  # ARP retries every 100 ms instead of every second (30 tries: the same
  # 3 s as the default's 3 before it gives up), so that the time until
  # traffic flows again after a re-plug measures qosd, not ARP.
  in_ns "$LAN" sysctl -qw net.ipv4.neigh.eth0.retrans_time_ms=100 \
    net.ipv4.neigh.eth0.mcast_solicit=30 net.ipv4.neigh.eth0.ucast_solicit=30
  in_ns "$LAN" ip link set eth0 up
  in_ns "$GW" ip link set lan0 up
  in_ns "$LAN" ip addr add 198.18.0.10/24 dev eth0
  in_ns "$LAN" ip addr add 2001:2::10/64 dev eth0 nodad
}

unplug() {
  in_ns "$GW" ip link del lan0
}

# A second computer on the office LAN: a macvlan of the LAN host's eth0
# moved into its own namespace, so its frames reach qosd's lan0 with their
# own MAC address over the same cable, as through a switch.
host2() {
  ip netns add "$LAN2"
  in_ns "$LAN2" ip link set lo up
  in_ns "$LAN2" sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0
  in_ns "$LAN" ip link add link eth0 name eth1 address 02:00:c6:12:00:0b type macvlan mode bridge
  in_ns "$LAN" ip link set eth1 netns "$LAN2"
  in_ns "$LAN2" ip link set eth1 name eth0
  quiet_offloads "$LAN2" eth0
  in_ns "$LAN2" ip link set eth0 up
  in_ns "$LAN2" ip addr add 198.18.0.11/24 dev eth0
  in_ns "$LAN2" ip addr add 2001:2::11/64 dev eth0 nodad
  echo "lab $PREFIX host2: lan2 198.18.0.11 on the LAN"
}

carrier() { # on|off: the ISP side of wan0, as a modem rebooting
  case ${1:-} in
    on) in_ns "$ISP" ip link set ispa up ;;
    off) in_ns "$ISP" ip link set ispa down ;;
    *) usage ;;
  esac
}

bridge_on() {
  in_ns "$GW" ip link add br0 type bridge 2>/dev/null || true
  in_ns "$GW" ip link set br0 type bridge stp_state 0 forward_delay 0
  in_ns "$GW" ip link set lan0 master br0
  in_ns "$GW" ip link set wan0 master br0
  in_ns "$GW" ip link set br0 up
}

bridge_off() {
  in_ns "$GW" ip link del br0 2>/dev/null || true
}

down_quiet() {
  for ns in "$LAN2" "$LAN" "$GW" "$ISP" "$SRV"; do
    if ip netns pids "$ns" >/dev/null 2>&1; then
      for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
      ip netns del "$ns" 2>/dev/null || true
    fi
  done
}

case $cmd in
  up) up ;;
  bridge) bridge_on ;;
  unbridge) bridge_off ;;
  down) down_quiet; echo "lab $PREFIX down" ;;
  unplug) unplug ;;
  plug) lan_link "${1:-}" ;;
  host2) host2 ;;
  carrier) carrier "${1:-}" ;;
  line) line ;;
  exec)
    node=${1:?node: lan, lan2, gw, isp or srv}; shift
    exec ip netns exec "$PREFIX-$node" "$@" ;;
  *) usage ;;
esac
