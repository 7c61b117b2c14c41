#!/bin/bash
# Runs inside the container booted by test-systemd.sh, with systemd as
# PID 1 (never on a real machine: it installs qosd and bridges interfaces).
#   systemd-checks.sh --net   (qosd-e2e-net.service, early at every boot)
#       [lanhost] eth0 -- lan0 [gateway] wan0 -- eth0 [srv], 198.18.0.0/24;
#       lan0 and wan0 are left down, as a NIC after boot
#   systemd-checks.sh DIR     (qosd-e2e.service; DIR holds qosd.deb)
#       boot 1: install, run, fail-open, Ansible; then reboots
#       boot 2: qosd enabled: the bypass comes up, qosd takes over; reboots
#       boot 3: qosd disabled: the bypass carries the traffic; powers off
set -uo pipefail
[ -e /share/systemd-checks.sh ] || { echo "systemd-checks.sh: only inside test-systemd.sh's container"; exit 1; }

if [ "${1:-}" = --net ]; then
  set -e
  ip netns add lanhost
  ip netns add srv
  ip link add eth0 netns lanhost type veth peer name lan0
  ip link add wan0 type veth peer name eth0 netns srv
  for ns in lanhost srv; do
    ip netns exec $ns ip link set lo up
    ip netns exec $ns ethtool -K eth0 tx off >/dev/null 2>&1 || true # complete checksums, as on a wire
    ip netns exec $ns ip link set eth0 up
  done
  ip netns exec lanhost ip addr add 198.18.0.10/24 dev eth0
  ip netns exec srv ip addr add 198.18.0.20/24 dev eth0
  exit 0
fi

D=${1:?}
PHASE=$(cat /share/phase 2>/dev/null || echo 1)
systemctl is-system-running --wait >/dev/null 2>&1 || true

fails=0
ok() { echo "ok   $*"; }
bad() { echo "FAIL $*"; fails=$((fails + 1)); }
check() { local what=$1; shift; if "$@" >/tmp/check.out 2>&1; then ok "$what"; else bad "$what"; sed 's/^/     /' /tmp/check.out | tail -15; fi; }
note() { echo "     $*"; }

ms() { date +%s%3N; }
state() { systemctl is-active qosd.service 2>/dev/null; }
main_pid() { systemctl show -p MainPID --value qosd.service; }
nrestarts() { systemctl show -p NRestarts --value qosd.service; }
bridged() { [ -d /sys/class/net/qosd-bypass/bridge ] && [ "$(basename "$(readlink /sys/class/net/lan0/master 2>/dev/null)")" = qosd-bypass ]; }
not_bridged() { ! [ -e /sys/class/net/qosd-bypass ]; }
pings() { ip netns exec lanhost ping -c "${1:-2}" -i 0.2 -W 1 -q 198.18.0.20; }
wait_for() { # TIMEOUT_MS CMD...: polls every 20 ms; prints the time it took
  local limit=$1 t0; shift; t0=$(ms)
  until "$@" >/dev/null 2>&1; do
    [ $(($(ms) - t0)) -lt "$limit" ] || return 1
    sleep 0.02
  done
  echo $(($(ms) - t0))
}
# Pings 20 a second in the background for SECONDS; stop_pinging sets LOST
# to the number lost (each is 50 ms without connectivity).
start_pinging() { ip netns exec lanhost ping -i 0.05 -W 1 -c $(($1 * 20)) 198.18.0.20 >/tmp/ping.out 2>&1 & PING=$!; sleep 0.5; }
stop_pinging() {
  wait "$PING"
  local sent got
  sent=$(sed -n 's/^\([0-9]*\) packets transmitted.*/\1/p' /tmp/ping.out)
  got=$(sed -n 's/.* \([0-9]*\) received.*/\1/p' /tmp/ping.out)
  LOST=$((${sent:-0} - ${got:-0}))
  [ -n "$sent" ] || LOST=999
}

# Ends this boot: records the failures and reboots into the next phase, or
# powers off after the last one with the exit status in /share/e2e.rc.
next_boot() {
  echo $(($(cat /share/fails 2>/dev/null || echo 0) + fails)) >/share/fails
  if [ -n "${1:-}" ]; then
    echo "$1" >/share/phase
    systemctl reboot --no-block
  else
    total=$(cat /share/fails)
    echo
    if [ "$total" -eq 0 ]; then echo "test-systemd: all passed"; else echo "test-systemd: $total FAILED"; fi
    [ "$total" -eq 0 ] && echo 0 >/share/e2e.rc || echo 1 >/share/e2e.rc
    systemctl poweroff --no-block
  fi
  exit 0
}

if [ "$PHASE" = 2 ]; then
  echo "== boot 2: qosd enabled"
  check "qosd-bypass.service ran at boot" test "$(systemctl show -p Result --value qosd-bypass.service) $(systemctl show -p ExecMainStatus --value qosd-bypass.service)" = "success 0"
  check "... before qosd" bash -c '[ "$(systemctl show -p InactiveEnterTimestampMonotonic --value qosd-bypass.service)" -le "$(systemctl show -p ExecMainStartTimestampMonotonic --value qosd.service)" ]'
  check "qosd active" wait_for 10000 bash -c '[ "$(systemctl is-active qosd)" = active ]'
  check "bypass removed" wait_for 5000 not_bridged
  check "traffic flows through qosd" wait_for 5000 pings 1
  check "systemctl disable qosd" systemctl disable qosd.service
  next_boot 3
fi
if [ "$PHASE" = 3 ]; then
  echo "== boot 3: qosd disabled"
  check "qosd not running" test "$(state)" = inactive
  check "the bypass bridges lan0 and wan0" bridged
  check "traffic flows through the bypass" wait_for 5000 pings 1
  next_boot
fi

echo "== boot 1: install (systemd running)"
check "dpkg -i" dpkg -i "$D/qosd.deb"
check "qosd.service enabled" test "$(systemctl is-enabled qosd.service)" = enabled
check "qosd-bypass.service enabled" test "$(systemctl is-enabled qosd-bypass.service)" = enabled
check "qosd not started" test "$(state)" = inactive
check "interfaces untouched (no bridge, lan0 down)" bash -c '! [ -e /sys/class/net/qosd-bypass ] && ! ip link show lan0 | grep -q ",UP"'

echo "== start"
check "systemctl start qosd" systemctl start qosd.service
check "active" wait_for 5000 bash -c '[ "$(systemctl is-active qosd)" = active ]'
check "bypass removed" wait_for 5000 not_bridged
check "traffic flows through qosd" wait_for 5000 pings 1
pid=$(main_pid)
check "runs as user qosd" test "$(ps -o user= -p "$pid")" = qosd
check "effective capabilities: CAP_NET_ADMIN, CAP_NET_RAW, CAP_BPF only" grep -q '^CapEff:.*0000008000003000$' "/proc/$pid/status"
echo "     datapath: $(journalctl -u qosd.service -b --no-pager -o cat | grep -m 2 'datapath backend' | tr '\n' ' ')"
check "NoNewPrivs" grep -q '^NoNewPrivs:.*1$' "/proc/$pid/status"
check "seccomp filter" grep -q '^Seccomp:.*2$' "/proc/$pid/status"
systemd-analyze security qosd.service 2>/dev/null | tail -1 | sed 's/^/     live: /'

echo "== kill -9: the bypass carries the traffic, systemd restarts qosd"
start_pinging 6
restarts=$(nrestarts)
t0=$(ms)
kill -9 "$pid"
if t=$(wait_for 2000 bridged); then ok "bypass up ${t} ms after kill -9"; else bad "bypass not up within 2 s of kill -9"; fi
if t=$(wait_for 8000 bash -c "[ \$(systemctl show -p NRestarts --value qosd) -gt $restarts ] && [ \$(systemctl is-active qosd) = active ] && ! [ -e /sys/class/net/qosd-bypass ]"); then
  ok "qosd restarted and took over from the bypass $(($(ms) - t0)) ms after kill -9"
else
  bad "qosd did not restart and take over"; journalctl -u qosd -n 20 --no-pager | sed 's/^/     /'
fi
stop_pinging
check "traffic kept flowing: $LOST pings of 50 ms lost over kill, bypass and restart (<= 40 = 2 s)" test "$LOST" -le 40
if pings 3 >/tmp/check.out 2>&1; then ok "traffic flows through qosd again"; else
  bad "traffic flows through qosd again"; cat /tmp/check.out /tmp/ping.out; journalctl -u qosd -n 30 --no-pager; ip -d link; ip netns exec lanhost ip neigh; fi

echo "== systemctl stop: the bypass carries the traffic"
start_pinging 3
check "systemctl stop qosd" systemctl stop qosd.service
check "inactive" test "$(state)" = inactive
check "bypass up" bridged
stop_pinging
check "traffic kept flowing: $LOST pings of 50 ms lost" test "$LOST" -le 40
check "traffic flows through the bypass" pings 1
check "qosd-bypass.service is idempotent" systemctl start qosd-bypass.service
check "traffic flows" pings 1

echo "== start again, reload"
check "systemctl start qosd" systemctl start qosd.service
check "bypass removed" wait_for 5000 not_bridged
check "traffic flows through qosd" wait_for 5000 pings 1
pid=$(main_pid)
check "systemctl reload qosd (valid config)" systemctl reload qosd.service
sed -i 's/^upload = "18 Mbit"/upload = "18 Mbt"/' /etc/qosd/qosd.toml
check "systemctl reload qosd refuses a broken config" bash -c '! systemctl reload qosd.service'
check "... and qosd keeps running" test "$(state) $(main_pid)" = "active $pid"

echo "== restart with a broken config: fail-open, no restart loop"
start_pinging 4
restarts=$(nrestarts)
check "systemctl restart qosd fails (Type=notify: qosd exits before READY=1)" bash -c '! systemctl restart qosd.service'
sleep 2.5
check "failed, not restarted (exit status 2 stops Restart=always)" test "$(state) $(nrestarts)" = "failed $restarts"
check "bypass up (interfaces read from the broken file)" bridged
stop_pinging
check "traffic kept flowing: $LOST pings of 50 ms lost" test "$LOST" -le 40
sed -i 's/^upload = "18 Mbt"/upload = "18 Mbit"/' /etc/qosd/qosd.toml
systemctl reset-failed qosd.service
check "fixed: systemctl start qosd" systemctl start qosd.service
check "bypass removed" wait_for 5000 not_bridged
check "traffic flows through qosd" wait_for 5000 pings 1

echo "== qosd hung (SIGSTOP): the watchdog kills it, the bypass takes over"
start_pinging 8
kill -STOP "$(main_pid)"
if t=$(wait_for 6000 bridged); then ok "bypass up ${t} ms after qosd hung (WatchdogSec=2s, TimeoutAbortSec=1s)"; else bad "watchdog did not bring the bypass up"; fi
check "qosd restarted" wait_for 8000 bash -c '[ "$(systemctl is-active qosd)" = active ] && ! [ -e /sys/class/net/qosd-bypass ]'
stop_pinging
check "traffic back: $LOST pings of 50 ms lost over hang, watchdog, bypass and restart (<= 60 = 3 s)" test "$LOST" -le 60

echo "== remove: the bypass stays up"
check "dpkg --remove qosd" dpkg --remove qosd
check "bypass up after removal" bridged
check "traffic flows" pings 1

echo "== the Ansible role, for real (connection local)"
check "dpkg --purge qosd" dpkg --purge qosd
A=/tmp/ansible-e2e
mkdir -p $A/host_vars
cat >$A/hosts.yml <<'YAML'
offices:
  hosts:
    office-e2e:
      ansible_connection: local
      ansible_python_interpreter: /usr/bin/python3
YAML
cat >$A/host_vars/office-e2e.yml <<'YAML'
qosd_lan: lan0
qosd_wan: wan0
qosd_upload: 20 Mbit
qosd_download: 50 Mbit
qosd_package_file: /share/qosd.deb
qosd_ip_allow: [10.0.0.5/32]
YAML
play() { (cd /share/ansible && ANSIBLE_NOCOLOR=1 ansible-playbook -i $A/hosts.yml site.yml) >/tmp/play.out 2>&1; }
recap() { sed -n 's/^office-e2e *: //p' /tmp/play.out | tail -1 | tr -s ' '; }
same_pid() { [ "$(main_pid)" = "$1" ] && [ "$(state)" = active ]; }
if play; then ok "site.yml: install, configure, start ($(recap))"; else bad "site.yml"; tail -30 /tmp/play.out; fi
check "installed" test "$(dpkg-query -W -f='${Status}' qosd)" = "install ok installed"
check "rendered and validated config in place" grep -q '^upload = "18400 kbit"' /etc/qosd/qosd.toml
check "qosd active" test "$(state)" = active
check "IP allow list drop-in applied" test "$(systemctl show -p IPAddressAllow --value qosd.service)" != ""
check "/readyz answers through the allow list" bash -c 'curl -fsS http://127.0.0.1:9477/readyz 2>/dev/null || python3 -c "import urllib.request; urllib.request.urlopen(\"http://127.0.0.1:9477/readyz\")"'
check "bypass removed" wait_for 5000 not_bridged
check "traffic flows through qosd" wait_for 5000 pings 1
pid=$(main_pid)
if play; then ok "second run ($(recap))"; else bad "second run"; tail -30 /tmp/play.out; fi
check "idempotent: changed=0" grep -q 'changed=0' /tmp/play.out
check "... qosd not restarted" same_pid "$pid"
sed -i 's/20 Mbit/10 Mbit/' $A/host_vars/office-e2e.yml
if play; then ok "new measured rate ($(recap))"; else bad "new rate"; tail -30 /tmp/play.out; fi
check "config updated" grep -q '^upload = "9200 kbit"' /etc/qosd/qosd.toml
check "handler restarted qosd" bash -c "! [ \"\$(systemctl show -p MainPID --value qosd)\" = $pid ] && [ \"\$(systemctl is-active qosd)\" = active ]"
check "traffic flows through qosd" wait_for 5000 pings 1
pid=$(main_pid)
cp /etc/qosd/qosd.toml /tmp/good.toml
cat >>$A/host_vars/office-e2e.yml <<'YAML'
qosd_categories:
  - {name: browsing, priority: 3, min: "60%"}
  - {name: bulk, priority: 3, min: "60%"}
YAML
if play; then bad "a config qosd rejects (mins over 100%) fails the play"; else ok "a config qosd rejects (mins over 100%) fails the play"; fi
check "... at the validate step" grep -q 'failed to validate' /tmp/play.out
check "... the running config is untouched" cmp -s /etc/qosd/qosd.toml /tmp/good.toml
check "... and qosd keeps running" same_pid "$pid"

next_boot 2
