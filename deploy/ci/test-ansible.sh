#!/usr/bin/env bash
# Static checks of deploy/ansible: ansible-playbook --syntax-check,
# ansible-lint (production profile), and the config template rendered for
# every example office and two reference hosts, each checked by
# `qosd check-config`; the reference host must give exactly qosd's default
# configuration (`check-config --print` identical to config/qosd.toml's).
# The role is run for real against a systemd machine by systemd-checks.sh.
#   test-ansible.sh [QOSD_BINARY]   (default target/release/qosd)
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
QOSD=$(readlink -f "${1:-target/release/qosd}")
[ -x "$QOSD" ] || { echo "test-ansible: no qosd binary at $QOSD"; exit 1; }
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
fails=0
ok() { echo "ok   $*"; }
bad() { echo "FAIL $*"; fails=$((fails + 1)); }
check() { local what=$1; shift; if "$@" >"$OUT/check.out" 2>&1; then ok "$what"; else bad "$what"; sed 's/^/     /' "$OUT/check.out" | tail -20; fi; }

cd "$ROOT/deploy/ansible"
export ANSIBLE_NOCOLOR=1 ANSIBLE_FORCE_COLOR=0 ANSIBLE_LOCAL_TEMP="$OUT/ansible-tmp"
check "ansible-playbook --syntax-check site.yml" ansible-playbook -i inventory/hosts.yml --syntax-check site.yml
check "ansible-lint --profile production" ansible-lint --offline --nocolor --profile production
check "render the config of every host" ansible-playbook -i inventory/hosts.yml -i tests/inventory.yml tests/render.yml -e "qosd_render_dir=$OUT"
check "office-lyon's drop-in allows localhost, its metrics address and the central Prometheus" \
  grep -qx 'IPAddressAllow=localhost 192.0.2.11 10.0.0.5/32' "$OUT/office-lyon.ip-access.conf"
for f in "$OUT"/*.toml; do
  check "qosd check-config $(basename "$f")" "$QOSD" check-config "$f"
done
check "reference-default.toml is equivalent to config/qosd.toml" \
  diff <("$QOSD" check-config --print "$ROOT/config/qosd.toml") <("$QOSD" check-config --print "$OUT/reference-default.toml")
check "office-lyon shapes at 92% of 20/50 Mbit" \
  bash -c "'$QOSD' check-config --print '$OUT/office-lyon.toml' | grep -A2 '^\[link\]' | tr '\n' ' ' | grep -q 'upload = \"18.4 Mbit\" download = \"46 Mbit\"'"
check "office-lyon: only interfaces and rates (and the autorate bounds that follow them) differ from the default (and metrics.listen from group_vars)" \
  bash -c "diff <('$QOSD' check-config --print '$ROOT/config/qosd.toml') <('$QOSD' check-config --print '$OUT/office-lyon.toml') | grep '^[<>]' | grep -v -E '^[<>] (lan|wan|upload|download|upload_min|upload_max|download_min|download_max|listen) = ' | grep -q . && exit 1 || exit 0"

check "office-gap follows its satellite line: autorate on, between its bounds" \
  bash -c "'$QOSD' check-config --print '$OUT/office-gap.toml' | grep -A6 '^\[autorate\]' | tr '\n' ' ' | grep -q 'enabled = true upload_min = \"256 kbit\" upload_max = \"1 Mbit\" download_min = \"1 Mbit\" download_max = \"4 Mbit\"'"
echo
if [ "$fails" -eq 0 ]; then echo "test-ansible: all passed"; else echo "test-ansible: $fails FAILED"; exit 1; fi
