#!/usr/bin/env bash
# Makes a Debian root from Debian's package registry with mmdebstrap, for building and
# testing libvirt-sdm on a release other than the host's (tests/release/README.md).
#
#   make-chroot.sh dev RELEASE DIR      a root directory with everything tests/setup-deps.sh
#                                       installs (run inside it, so the list is the same as
#                                       the host's), kept: running it again only installs
#                                       what the list gained
#   make-chroot.sh base RELEASE TARBALL a minimal root (apt, no libvirt), as a tarball: what
#                                       tests/release/package_test.sh unpacks as a fresh
#                                       machine to install the built packages into
#
# Both have deb and deb-src entries for RELEASE, RELEASE-updates and RELEASE-security (so
# `apt-get source libvirt` finds the installed version) and a policy-rc.d that keeps
# package scripts from starting services: the tests start the daemons they need. Run as
# root; tests/release/in-root.sh runs commands inside a root.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
tree=$(cd "$here/../.." && pwd)

kind=${1:-}
release=${2:-}
target=${3:-}
if [ -z "$target" ] || { [ "$kind" != dev ] && [ "$kind" != base ]; }; then
    echo "usage: make-chroot.sh dev|base RELEASE DIR|TARBALL" >&2
    exit 2
fi
[ "$(id -u)" = 0 ] || { echo "make-chroot.sh: needs root (chroot, mounts)" >&2; exit 1; }
command -v mmdebstrap >/dev/null ||
    { echo "make-chroot.sh: mmdebstrap is missing; run tests/setup-deps.sh" >&2; exit 1; }

mirror=${SDM_DEBIAN_MIRROR:-http://deb.debian.org/debian}
security=${SDM_DEBIAN_SECURITY:-http://deb.debian.org/debian-security}
sources=()
for type in deb deb-src; do
    sources+=("$type $mirror $release main" "$type $mirror $release-updates main"
              "$type $security $release-security main")
done
# No service starts inside a root (there is no init); the tests start what they need.
policy_hook='printf "#!/bin/sh\nexit 101\n" >"$1/usr/sbin/policy-rc.d"; chmod 755 "$1/usr/sbin/policy-rc.d"'

if [ "$kind" = base ]; then
    mkdir -p "$(dirname "$target")"
    mmdebstrap --variant=minbase --include=ca-certificates \
        --customize-hook="$policy_hook" "$release" "$target.tmp.tar" "${sources[@]}"
    mv "$target.tmp.tar" "$target"
    exit 0
fi

stamp=$target/.libvirt-sdm-root
if [ ! -f "$stamp" ]; then
    rm -rf "$target"
    mkdir -p "$(dirname "$target")"
    # The tree's tools need these before setup-deps.sh can run inside.
    mmdebstrap --variant=minbase --include=ca-certificates,sudo,gcc,dpkg-dev \
        --customize-hook="$policy_hook" "$release" "$target.tmp" "${sources[@]}"
    echo "$release" >"$target.tmp/.libvirt-sdm-root"
    mv "$target.tmp" "$target"
fi
[ "$(cat "$stamp")" = "$release" ] ||
    { echo "make-chroot.sh: $target holds a $(cat "$stamp") root, not $release" >&2; exit 1; }
# setup-deps.sh installs only what is missing: a no-op when the root is up to date.
"$here/in-root.sh" "$target" "$tree/tests/setup-deps.sh"
