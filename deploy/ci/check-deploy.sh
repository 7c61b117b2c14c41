#!/usr/bin/env bash
# The deployment checks, for .ci/run (root, Debian 12). Installs what they
# need (idempotently), then:
#   0. shellcheck on the scripts
#   1. cargo deb: builds qosd and the .deb from Cargo.toml's metadata
#   2. test-bypass.sh: the fail-open bridge script, in network namespaces
#   3. test-ansible.sh: ansible-playbook --syntax-check, ansible-lint
#      (production profile), the config template for every example office
#   4. test-package.sh: the .deb in a throwaway root: files, conffile, user,
#      enabled-not-started, check-config, upgrade, purge, and
#      systemd-analyze verify + security (exposure threshold) on the units
#   5. test-systemd.sh: the .deb under a real systemd (throwaway container):
#      hardened unit runs qosd, fail-open on kill -9/stop/bad config, and the
#      Ansible role run for real
# Nothing of this machine changes except the installed tools: every test
# works in namespaces, overlays or containers that it deletes.
set -euo pipefail
cd "$(dirname "$0")/../.."
CI=deploy/ci
if [ "$(id -u)" != 0 ]; then
  echo "not root: the deploy checks are skipped (they install packages and use namespaces, overlays and containers)"
  exit 0
fi

echo "== deploy: tools"
pkgs=()
command -v systemd-analyze >/dev/null || pkgs+=(systemd)
command -v systemd-nspawn >/dev/null || pkgs+=(systemd-container)
command -v ansible-playbook >/dev/null || pkgs+=(ansible)
command -v ansible-lint >/dev/null || pkgs+=(ansible-lint)
command -v deb-systemd-helper >/dev/null || pkgs+=(init-system-helpers)
command -v adduser >/dev/null || pkgs+=(adduser)
command -v ip >/dev/null || pkgs+=(iproute2)
command -v ethtool >/dev/null || pkgs+=(ethtool)
command -v ping >/dev/null || pkgs+=(iputils-ping)
command -v unshare >/dev/null && command -v setpriv >/dev/null || pkgs+=(util-linux)
command -v ps >/dev/null || pkgs+=(procps)
command -v shellcheck >/dev/null || pkgs+=(shellcheck)
if [ ${#pkgs[@]} -gt 0 ]; then
  echo "installing: ${pkgs[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
fi
if ! cargo deb --version >/dev/null 2>&1; then
  echo "installing: cargo-deb"
  cargo install --locked --quiet cargo-deb --version 3.8.0
fi
systemd-analyze --version | sed -n 1p
ansible-playbook --version | sed -n 1p
ansible-lint --nocolor --version | sed -n 1p
cargo deb --version

echo "== deploy: shellcheck"
shellcheck -S warning deploy/systemd/bypass deploy/debian/postinst deploy/debian/prerm deploy/debian/postrm deploy/ci/*.sh \
  deploy/lab/*.sh fuzz/*.sh .ci/run
echo "ok"

echo "== deploy: cargo deb"
deb=$(cargo deb 2>/dev/null | tail -1)
[ -f "$deb" ] || { echo "cargo deb did not produce a package"; cargo deb; exit 1; }
echo "$deb"
dpkg-deb --info "$deb" | sed -n 's/^ \(Package\|Version\|Depends\):/  \1:/p'

echo "== deploy: fail-open bypass script (network namespaces)"
"$CI/test-bypass.sh"

echo "== deploy: ansible"
"$CI/test-ansible.sh"

echo "== deploy: package in a throwaway root (+ systemd-analyze verify/security)"
"$CI/test-package.sh" "$deb"

echo "== deploy: package under systemd (throwaway container)"
"$CI/test-systemd.sh" "$deb"

echo "== deploy: all checks passed"
