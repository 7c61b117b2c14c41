#!/usr/bin/env bash
# Tests deploy/systemd/bypass (the fail-open bridge) in throwaway network
# namespaces: up/down/status, idempotency, reading the interfaces from a
# valid and from an invalid configuration, refusing foreign bridges, running
# with CAP_NET_ADMIN only (as qosd.service runs it), and how fast traffic
# flows again after qosd is killed. Needs root, iproute2, util-linux
# (setpriv) and a qosd binary (QOSD_BIN, default target/release/qosd).
# Leaves nothing behind: every namespace is deleted on exit.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
BYPASS=$ROOT/deploy/systemd/bypass
QOSD_BIN=${QOSD_BIN:-$ROOT/target/release/qosd}
[ -x "$QOSD_BIN" ] || { echo "no qosd binary at $QOSD_BIN (cargo build --release)"; exit 1; }

P=qbp$$
LAN=$P-lan GW=$P-gw SRV=$P-srv
TMP=$(mktemp -d)
QOSD_PID=
cleanup() {
  if [ -n "$QOSD_PID" ]; then kill -9 "$QOSD_PID" 2>/dev/null || true; wait "$QOSD_PID" 2>/dev/null || true; fi
  for ns in "$LAN" "$GW" "$SRV"; do ip netns del "$ns" 2>/dev/null || true; done
  rm -rf "$TMP"
}
trap cleanup EXIT

fails=0
ok() { echo "ok   $*"; }
bad() { echo "FAIL $*"; fails=$((fails + 1)); }
check() { local what=$1; shift; if "$@" >"$TMP/check.out" 2>&1; then ok "$what"; else bad "$what"; sed 's/^/     /' "$TMP/check.out" | tail -10; fi; }

in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }
gw() { in_ns "$GW" "$@"; }
bypass() { gw "$BYPASS" "$1" --config "$CFG" --qosd "$QOSD_BIN" "${@:2}"; }
# Traffic flows: a reply within 10 s (ping stops at the first). The ports
# come up with the bridge, and the kernel applies carrier changes
# asynchronously (linkwatch, under the RTNL lock): right after the lab
# tests, while the kernel is still tearing down their namespaces, that took
# over 3 s in CI. The fail-open timing itself is measured below, on links
# that are already up, as on a gateway.
pings() { in_ns "$LAN" ping -c 1 -w 10 -i 0.2 -q 198.18.0.20 >/dev/null 2>&1; }
# The ports of a bridge forward once the kernel has seen their carrier
# (STP off): that is the kernel's asynchronous link-state work, which CI
# has seen delayed by many seconds while the lab tests' namespaces are
# torn down. Wait for it (up to 60 s, saying how long it took) before
# asking for replies, and show the ports' state when it does not come.
forwarding() { [ "$(gw cat "/sys/class/net/$1/brport/state" 2>/dev/null)" = 3 ]; }
ports_forward() { # lan wan
  local i
  for i in $(seq 1 600); do
    if forwarding "$1" && forwarding "$2"; then
      [ "$i" -le 10 ] || echo "ports forwarding after ${i}00 ms" >&2
      return 0
    fi
    sleep 0.1
  done
  gw ip -d link show dev "$1" >&2; gw ip -d link show dev "$2" >&2
  gw bridge link show >&2
  return 1
}
flows_after_up() {
  ports_forward "${1:-lan0}" "${2:-wan0}" || return 1
  # The no-traffic check before left the server's address FAILED in the
  # LAN host's neighbour table (CI, 2026-12-05: no reply in 10 s with the
  # ports forwarding): resolve it afresh.
  in_ns "$LAN" ip neigh flush all
  pings && return 0
  # Forwarding ports and still no reply: show what the bridge and the
  # hosts know, for the next person to read.
  gw bridge link show >&2; gw bridge fdb show br qosd-bypass >&2
  in_ns "$LAN" ip neigh show >&2; in_ns "$SRV" ip neigh show >&2
  return 1
}
# No traffic: not one reply to two pings within 1 s.
no_pings() { ! in_ns "$LAN" ping -c 2 -W 1 -i 0.2 -q 198.18.0.20 >/dev/null 2>&1; }
master() { gw ip -o link show dev "$1" | sed -n 's/.* master \([^ ]*\) .*/\1/p'; }
bridged() { [ "$(master "$1")" = qosd-bypass ] && [ "$(master "$2")" = qosd-bypass ]; }
exit_is() { local want=$1 rc=0; shift; "$@" 2>"$TMP/err" >/dev/null || rc=$?; [ "$rc" -eq "$want" ]; }
stp_off() {
  [ "$(gw cat /sys/class/net/qosd-bypass/bridge/stp_state)" = 0 ] &&
    [ "$(gw cat /sys/class/net/qosd-bypass/bridge/forward_delay)" = 0 ]
}
one_bridge() { [ "$(gw ip -o link show type bridge | wc -l)" = 1 ]; }
no_bridge() { ! gw ip link show qosd-bypass >/dev/null 2>&1 && [ -z "$(master lan0)$(master wan0)" ]; }

# [lan host] eth0 -- lan0 [gw] wan0 -- eth0 [server]
for ns in "$LAN" "$GW" "$SRV"; do ip netns add "$ns"; in_ns "$ns" ip link set lo up; done
ip link add eth0 netns "$LAN" type veth peer name lan0 netns "$GW"
ip link add wan0 netns "$GW" type veth peer name eth0 netns "$SRV"
for ns in "$LAN" "$SRV"; do
  in_ns "$ns" ethtool -K eth0 tx off >/dev/null 2>&1 || true
  in_ns "$ns" ip link set eth0 up
done
in_ns "$LAN" ip addr add 198.18.0.10/24 dev eth0
in_ns "$SRV" ip addr add 198.18.0.20/24 dev eth0
# The gateway's ports start down, as after boot: the bypass brings them up.

CFG=$TMP/qosd.toml
cp "$ROOT/config/qosd.toml" "$CFG"

echo "== a valid configuration"
check "no bypass, no traffic" no_pings
check "bypass status says down (exit 3)" exit_is 3 bypass status
check "bypass up" bypass up
check "traffic flows" flows_after_up
check "lan0 and wan0 are ports of qosd-bypass" bridged lan0 wan0
check "STP off, forward delay 0" stp_off
check "bypass up again (idempotent)" bypass up
check "still one bridge" one_bridge
check "traffic flows" pings
check "bypass status says up (exit 0)" exit_is 0 bypass status
gw ip link set wan0 nomaster
check "bypass up repairs a half-detached bridge" bypass up
check "traffic flows" pings
check "bypass down" bypass down
check "bridge gone, ports detached" no_bridge
check "no traffic" no_pings
check "bypass down again (idempotent)" bypass down

echo "== an invalid configuration, interfaces written differently"
gw ip link set lan0 name office0
gw ip link set wan0 name isp0
cat > "$CFG" <<'TOML'
# A broken file: the rate has a typo, so qosd check-config rejects it, but
# the bypass must still come up.
default_category = "browsing"
[link]
upload = "18 Mbt"   # typo
download = "46 Mbit"
[ interfaces ]  # spaces and a comment
"lan" = 'office0'   # literal string, quoted key
wan="isp0"#no spaces
[[category]]
name = "browsing"
lan = "not-this-one"
TOML
check "qosd check-config rejects it" exit_is 2 "$QOSD_BIN" check-config "$CFG"
check "bypass up from the file as written" bypass up
check "office0 and isp0 are bridged" bridged office0 isp0
check "traffic flows" flows_after_up office0 isp0
check "bypass down" bypass down

echo "== dotted keys, environment overrides, missing interfaces"
printf 'interfaces.lan = "nope0"\ninterfaces.wan = "isp0"\n' > "$CFG"
check "QOSD_INTERFACES__LAN overrides the file" gw env QOSD_INTERFACES__LAN=office0 "$BYPASS" up --config "$CFG" --qosd "$QOSD_BIN"
check "traffic flows" pings
check "bypass down" gw env QOSD_INTERFACES__LAN=office0 "$BYPASS" down --config "$CFG" --qosd "$QOSD_BIN"
check "a missing interface is an error (exit 1)" exit_is 1 bypass up
check "... that names it" grep -q 'nope0 (interfaces.lan) does not exist' "$TMP/err"
check "--wait waits for it" exit_is 1 bypass up --wait 2
check "... and says so" grep -q 'waiting up to 2s' "$TMP/err"
gw ip link set office0 name lan0
gw ip link set isp0 name wan0
cp "$ROOT/config/qosd.toml" "$CFG"

echo "== someone else's bridge"
gw ip link add br9 type bridge
gw ip link set lan0 master br9
check "refuses to take lan0 from br9 (exit 1)" exit_is 1 bypass up
check "br9 untouched" test "$(master lan0)" = br9
gw ip link del br9

echo "== with CAP_NET_ADMIN only, as user nobody (as qosd.service runs it)"
as_nobody() {
  gw setpriv --reuid=nobody --regid=nogroup --clear-groups --inh-caps=-all,+net_admin \
    --ambient-caps=-all,+net_admin --bounding-set=-all,+net_admin \
    "$BYPASS" "$1" --config "$CFG" --qosd "$QOSD_BIN"
}
chmod 755 "$TMP"; chmod 644 "$CFG"
check "bypass up as nobody+CAP_NET_ADMIN" as_nobody up
check "traffic flows" pings
check "bypass down as nobody+CAP_NET_ADMIN" as_nobody down

echo "== fail-open after kill -9 (ExecStopPost emulated)"
gw ethtool -K lan0 tx off >/dev/null 2>&1 || true
gw ethtool -K wan0 tx off >/dev/null 2>&1 || true
# ip netns exec execs qosd in place: $! is qosd itself.
ip netns exec "$GW" "$QOSD_BIN" run --config "$CFG" >"$TMP/qosd.log" 2>&1 &
QOSD_PID=$!
for _ in $(seq 3); do pings && break; done
if pings; then
  ok "qosd forwards"
  # 20 pings a second; kill -9 qosd, then do what systemd does on SIGCHLD.
  in_ns "$LAN" ping -i 0.05 -W 1 -c 60 198.18.0.20 >"$TMP/ping" 2>&1 &
  PING=$!
  sleep 1
  t0=$(date +%s%N)
  kill -9 "$QOSD_PID"; wait "$QOSD_PID" 2>/dev/null || true
  check "qosd is gone" bash -c "! kill -0 $QOSD_PID 2>/dev/null"
  QOSD_PID=
  bypass up 2>/dev/null
  t1=$(date +%s%N)
  wait "$PING" || true
  lost=$(sed -n 's/.* \([0-9]*\) received.*/\1/p' "$TMP/ping")
  tail -2 "$TMP/ping" | sed "s/^/     /"
  echo "     bypass up took $(( (t1 - t0) / 1000000 )) ms; $((60 - lost)) of 60 pings (50 ms apart) lost"
  check "no duplicates (only one forwarder at a time)" bash -c "! grep -q duplicates $TMP/ping"
  check "at most 10 pings (0.5 s) lost" test $((60 - lost)) -le 10
  bypass down 2>/dev/null
else
  echo "skip qosd did not forward in this environment: $(tail -3 "$TMP/qosd.log")"
fi

echo
if [ "$fails" -eq 0 ]; then echo "test-bypass: all passed"; else echo "test-bypass: $fails FAILED"; exit 1; fi
