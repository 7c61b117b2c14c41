#!/bin/bash
# Runs inside the throwaway root made by test-package.sh (never on a real
# machine: it installs, upgrades and purges the qosd package).
#   package-checks.sh DIR   (DIR holds qosd.deb, qosd-v2.deb, expected-qosd.toml)
set -uo pipefail
D=${1:?}
MAX_EXPOSURE=${MAX_EXPOSURE:-1.8}
LOG=/tmp/invoke-rc.log
fails=0
ok() { echo "ok   $*"; }
bad() { echo "FAIL $*"; fails=$((fails + 1)); }
check() { local what=$1; shift; if "$@" >/tmp/check.out 2>&1; then ok "$what"; else bad "$what"; sed 's/^/     /' /tmp/check.out | tail -15; fi; }

[ -e /pkgtest ] || { echo "package-checks.sh: only inside test-package.sh's throwaway root"; exit 1; }

# Start from a machine without qosd (the CI host may have it installed).
if dpkg-query -W qosd >/dev/null 2>&1; then dpkg --purge qosd >/dev/null; fi
if getent passwd qosd >/dev/null; then deluser --quiet --system qosd >/dev/null; fi
if getent group qosd >/dev/null; then delgroup --quiet --system qosd >/dev/null; fi

# Let the maintainer scripts believe systemd runs, record what they ask
# deb-systemd-invoke to do, and refuse it (exit 101).
mkdir -p /run/systemd/system
cat >/usr/sbin/policy-rc.d <<'EOF'
#!/bin/sh
echo "$*" >>/tmp/invoke-rc.log
exit 101
EOF
chmod 755 /usr/sbin/policy-rc.d
: >"$LOG"

conffiles() { dpkg-query -W -f='${Conffiles}\n' qosd; }
enabled() { # unit: enabled according to systemctl (offline) and the wants/ link
  [ "$(systemctl --root=/ is-enabled "$1" 2>/dev/null)" = enabled ] &&
    [ -L "/etc/systemd/system/multi-user.target.wants/$1" ]
}
nothing_started() { ! grep -Eq ' (start|restart|try-restart|reload)' "$LOG"; }
system_user() {
  local IFS=: uid gid home shell
  read -r _ _ uid gid _ home shell < <(getent passwd qosd) || return 1
  [ "$uid" -lt 1000 ] && [ "$home" = /nonexistent ] && [ ! -e /nonexistent ] &&
    case $shell in */nologin | */false) true ;; *) false ;; esac &&
    [ "$(getent group qosd | cut -d: -f3)" = "$gid" ]
}

echo "== install"
if dpkg -i "$D/qosd.deb" >/tmp/dpkg.out 2>&1; then ok "dpkg -i"; else bad "dpkg -i"; cat /tmp/dpkg.out; fi
check "installed" test "$(dpkg-query -W -f='${Status}' qosd)" = "install ok installed"
check "says it is not started and what to set" grep -q "enabled, but NOT started" /tmp/dpkg.out
for f in /usr/bin/qosd /usr/lib/qosd/bypass; do check "$f (executable)" test -x "$f"; done
for f in /usr/lib/systemd/system/qosd.service /usr/lib/systemd/system/qosd-bypass.service \
  /usr/share/doc/qosd/README.md /usr/share/doc/qosd/README.deploy.md; do
  check "$f" test -f "$f"
done
check "/etc/qosd/qosd.toml is config/qosd.toml" cmp -s /etc/qosd/qosd.toml "$D/expected-qosd.toml"
check "/etc/qosd/qosd.toml is a conffile" bash -c "dpkg-query -W -f='\${Conffiles}\n' qosd | grep -q '^ /etc/qosd/qosd.toml [0-9a-f]\{32\}\$'"
check "qosd system user and group" system_user
check "qosd.service enabled" enabled qosd.service
check "qosd-bypass.service enabled" enabled qosd-bypass.service
check "nothing started (no start request to deb-systemd-invoke)" nothing_started
check "qosd check-config /etc/qosd/qosd.toml exits 0" qosd check-config /etc/qosd/qosd.toml
check "... also as user qosd" setpriv --reuid=qosd --regid=qosd --clear-groups qosd check-config /etc/qosd/qosd.toml
check "the bypass reads the installed config" bash -c "/usr/lib/qosd/bypass status 2>&1 | grep -q 'qosd-bypass does not bridge lan0 and wan0'"

echo "== systemd-analyze on the installed units"
# verify also loads the units these depend on and may warn about other
# packages' units: only messages about qosd's own units count.
systemd-analyze verify /usr/lib/systemd/system/qosd.service /usr/lib/systemd/system/qosd-bypass.service >/tmp/verify.out 2>&1
rc=$?
if [ "$rc" = 0 ] && ! grep -q 'qosd' /tmp/verify.out; then
  ok "systemd-analyze verify qosd.service qosd-bypass.service: no errors or warnings"
else
  bad "systemd-analyze verify (exit $rc)"
fi
sed 's/^/     /' /tmp/verify.out
for unit in qosd.service qosd-bypass.service; do
  score=$(systemd-analyze security --offline=true "/usr/lib/systemd/system/$unit" 2>/dev/null |
    sed -n 's/.*Overall exposure level for .*: \([0-9.]*\) \(.*\)/\1 \2/p')
  echo "     systemd-analyze security $unit: ${score:-?}"
  check "$unit exposure <= $MAX_EXPOSURE" \
    systemd-analyze security --offline=true --threshold="$(echo "$MAX_EXPOSURE" | awk '{print $1 * 10}')" \
    "/usr/lib/systemd/system/$unit"
done

echo "== upgrade: the admin's edits survive"
sed -i 's/^upload = "18 Mbit"/upload = "9 Mbit"/' /etc/qosd/qosd.toml
: >"$LOG"
if dpkg -i "$D/qosd.deb" >/tmp/dpkg.out 2>&1; then ok "reinstall the same version"; else bad "reinstall"; cat /tmp/dpkg.out; fi
check "edit kept" grep -q '^upload = "9 Mbit"' /etc/qosd/qosd.toml
check "no first-install message on upgrade" bash -c '! grep -q "NOT started" /tmp/dpkg.out'
check "upgrade asks to restart qosd only if it runs (try-restart)" grep -q '^qosd.service try-restart' "$LOG"
check "... and starts nothing" bash -c "! grep -Eq ' (start|restart)\$' $LOG"
if dpkg -i --force-confdef --force-confold "$D/qosd-v2.deb" >/tmp/dpkg.out 2>&1; then ok "upgrade to a version whose qosd.toml changed (--force-confold)"; else bad "upgrade v2"; cat /tmp/dpkg.out; fi
check "edit kept" grep -q '^upload = "9 Mbit"' /etc/qosd/qosd.toml
check "the new default is beside it as qosd.toml.dpkg-dist" grep -q 'added by the next package version' /etc/qosd/qosd.toml.dpkg-dist
check "still valid" qosd check-config /etc/qosd/qosd.toml
check "still enabled" enabled qosd.service

echo "== remove and purge"
: >"$LOG"
check "dpkg --remove" dpkg --remove qosd
check "remove stops qosd (its ExecStopPost brings the bypass up)" grep -q '^qosd.service stop' "$LOG"
check "binary gone" test ! -e /usr/bin/qosd
check "conffile kept after remove" test -f /etc/qosd/qosd.toml
check "dpkg --purge" dpkg --purge qosd
check "conffile gone after purge" test ! -e /etc/qosd/qosd.toml
check "wants/ links gone after purge" test ! -e /etc/systemd/system/multi-user.target.wants/qosd.service
check "system user kept (Debian policy)" getent passwd qosd

echo
if [ "$fails" -eq 0 ]; then echo "test-package: all passed"; else echo "test-package: $fails FAILED"; exit 1; fi
