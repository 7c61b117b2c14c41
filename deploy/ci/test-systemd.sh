#!/usr/bin/env bash
# End-to-end test of the package under a real systemd: boots a throwaway
# container (systemd-nspawn, private network, root = an overlay of this
# machine's /), installs the .deb there and runs deploy/ci/systemd-checks.sh
# in it: install leaves qosd stopped, qosd runs under the hardened unit and
# forwards, fail-open (kill -9, stop, bad config, reload) keeps traffic
# flowing between two network namespaces inside the container, the Ansible
# role installs, configures and restarts qosd there for real, and after a
# reboot the bypass comes up and qosd takes over (or, disabled, does not).
#
#   test-systemd.sh target/debian/qosd_*.deb
#
# Needs root, systemd-container, overlayfs. Nothing of this machine changes:
# the container's writes go to a temporary overlay layer, deleted on exit.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
DEB=$(readlink -f "${1:?usage: test-systemd.sh PATH/TO/qosd.deb}")
[ "$(id -u)" = 0 ] || { echo "test-systemd: needs root"; exit 1; }
command -v systemd-nspawn >/dev/null || { echo "test-systemd: needs systemd-nspawn (apt-get install systemd-container)"; exit 1; }

WORK=$(mktemp -d /var/tmp/qosd-e2e.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/upper" "$WORK/work" "$WORK/root" "$WORK/share"
cp "$DEB" "$WORK/share/qosd.deb"
cp "$ROOT/deploy/ci/systemd-checks.sh" "$WORK/share/"
cp -r "$ROOT/deploy/ansible" "$WORK/share/ansible"

unshare --mount --propagation private -- /bin/sh -ec '
W=$1
mount -t overlay qosd-e2e -o "lowerdir=/,upperdir=$W/upper,workdir=$W/work" "$W/root"
R=$W/root
# A fresh machine: its own machine id, no qosd, a unit that runs the checks
# once the boot is done and then powers the container off.
rm -f "$R/etc/machine-id"; : >"$R/etc/machine-id"
mkdir -p "$R/etc/systemd/system/multi-user.target.wants"
# The office network appears early at every boot (before qosd-bypass).
cat >"$R/etc/systemd/system/qosd-e2e-net.service" <<EOF
[Unit]
Description=qosd end-to-end test network
DefaultDependencies=no
After=local-fs.target
Before=qosd-bypass.service qosd.service
[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/bash /share/systemd-checks.sh --net
[Install]
WantedBy=multi-user.target
EOF
cat >"$R/etc/systemd/system/qosd-e2e.service" <<EOF
[Unit]
Description=qosd end-to-end checks
[Service]
Type=simple
ExecStart=/bin/bash -c "/bin/bash /share/systemd-checks.sh /share >>/share/e2e.log 2>&1 || { echo 1 >/share/e2e.rc; systemctl poweroff; }"
[Install]
WantedBy=multi-user.target
EOF
ln -s /etc/systemd/system/qosd-e2e-net.service "$R/etc/systemd/system/multi-user.target.wants/"
ln -s /etc/systemd/system/qosd-e2e.service "$R/etc/systemd/system/multi-user.target.wants/"
# A real machine has no policy-rc.d (container images often ship one that
# forbids starting services).
rm -f "$R/usr/sbin/policy-rc.d"
# Do not start services of this machine that would do real work.
for u in ssh.service cron.service; do ln -sf /dev/null "$R/etc/systemd/system/$u"; done
# Three boots (the checks reboot the container between phases; nspawn exits
# on a reboot and is started again on the same root).
for boot in 1 2 3 4; do
  timeout 300 systemd-nspawn --quiet --directory="$R" --boot --private-network \
    --capability=CAP_BPF \
    --register=no --keep-unit --link-journal=no --bind="$W/share:/share" \
    >>"$W/console.log" 2>&1 || true
  [ ! -f "$W/share/e2e.rc" ] || break
done
' qosd-e2e "$WORK"

if [ ! -f "$WORK/share/e2e.rc" ]; then
  echo "test-systemd: the container did not run the checks; its console:"
  tail -40 "$WORK/console.log"
  exit 1
fi
cat "$WORK/share/e2e.log"
exit "$(cat "$WORK/share/e2e.rc")"
