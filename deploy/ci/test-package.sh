#!/usr/bin/env bash
# Installs the qosd .deb into a throwaway root and checks it, running the
# real maintainer scripts with dpkg:
#
#   test-package.sh target/debian/qosd_*.deb
#
# The throwaway root is an overlay of this machine's / (read-only lower
# layer) with a temporary upper layer, chrooted into inside a private mount
# namespace: dpkg, adduser and deb-systemd-helper run for real, every change
# lands in the temporary layer, and nothing of this machine changes. A
# policy-rc.d records (and refuses) every start/stop/restart the maintainer
# scripts ask for, with /run/systemd/system present so that they take the
# "systemd is running" branches.
#
# Checks: files, the conffile, the qosd system user, units enabled and not
# started, qosd check-config on the installed config (as root and as qosd),
# systemd-analyze verify and security on the installed units, an upgrade
# that keeps the admin's edits (also when the packaged file changed), and
# remove/purge. Needs root, util-linux (unshare), overlayfs, dpkg, adduser,
# systemd (systemd-analyze), init-system-helpers.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD

DEB=${1:?usage: test-package.sh PATH/TO/qosd.deb}
DEB=$(readlink -f "$DEB")
# The lowest systemd-analyze security exposure score the unit may have
# (deploy/README.md records the value this corresponds to).
MAX_EXPOSURE=${MAX_EXPOSURE:-2.1}

[ "$(id -u)" = 0 ] || { echo "test-package: needs root"; exit 1; }

WORK=$(mktemp -d /var/tmp/qosd-pkgtest.XXXXXX)
cleanup() { rm -rf "$WORK"; }
trap cleanup EXIT
mkdir -p "$WORK/upper" "$WORK/work" "$WORK/root"

# A second version of the package whose shipped qosd.toml changed, to test
# an upgrade where both the admin and the package changed the conffile.
mkdir "$WORK/v2"
dpkg-deb -R "$DEB" "$WORK/v2/tree"
version=$(dpkg-deb -f "$DEB" Version)
sed -i "s/^Version: .*/Version: ${version}+pkgtest1/" "$WORK/v2/tree/DEBIAN/control"
printf '\n# (a comment added by the next package version)\n' >>"$WORK/v2/tree/etc/qosd/qosd.toml"
(cd "$WORK/v2/tree" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | xargs -0 md5sum >DEBIAN/md5sums)
dpkg-deb --root-owner-group -b "$WORK/v2/tree" "$WORK/qosd-v2.deb" >/dev/null

cp "$DEB" "$WORK/qosd.deb"
cp "$ROOT/config/qosd.toml" "$WORK/expected-qosd.toml"
cp "$ROOT/deploy/ci/package-checks.sh" "$WORK/package-checks.sh"

# Inside a private mount namespace: overlay, bind mounts, chroot. All mounts
# vanish with the namespace.
unshare --mount --propagation private -- /bin/sh -ec '
W=$1; MAX=$2
mount -t overlay qosd-pkgtest -o "lowerdir=/,upperdir=$W/upper,workdir=$W/work" "$W/root"
R=$W/root
mount -t proc proc "$R/proc"
mount --rbind /sys "$R/sys"
mount --rbind /dev "$R/dev"
mount -t tmpfs tmpfs "$R/run"
mount -t tmpfs tmpfs "$R/tmp"
mkdir -p "$R/pkgtest"
mount --bind "$W" "$R/pkgtest"
exec chroot "$R" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
  MAX_EXPOSURE="$MAX" /bin/bash /pkgtest/package-checks.sh /pkgtest
' qosd-pkgtest "$WORK" "$MAX_EXPOSURE"
