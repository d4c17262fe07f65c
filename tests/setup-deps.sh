#!/usr/bin/env bash
# Installs, on Debian bookworm or trixie, every package libvirt-sdm needs to build, test and
# package and that is not installed yet. Safe to run again: it installs nothing when nothing
# is missing. tests/release/make-chroot.sh runs it inside the roots it makes.
set -euo pipefail

packages=(
    meson ninja-build pkg-config g++ gettext
    libglib2.0-dev libxml2-dev libgtest-dev libgmock-dev googletest
    qemu-utils
    sanlock libsanlock-dev
    libvirt-daemon libvirt-clients libvirt-dev dpkg-dev binutils python3-libvirt libxml2-utils
    fuse3 libfuse3-dev
    # libvirt API consumers (tests/libvirt/python_test, virt_install_test; libvirt_bench)
    virtinst qemu-system-x86 libvirt-daemon-driver-qemu python3-gi
    # the Debian packages (debian/) and the roots of other releases (tests/release/)
    build-essential debhelper lowdown lintian fakeroot mmdebstrap git
)
# From trixie on, libvirt's drivers (with their modular daemons, virtstoraged...) are
# packages of their own; bookworm's libvirt-daemon holds them all.
if [ "$(. /etc/os-release && echo "$VERSION_CODENAME")" != bookworm ]; then
    packages+=(libvirt-daemon-driver-storage libvirt-daemon-driver-secret)
fi

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=""
[ "$(id -u)" -eq 0 ] || sudo=sudo
echo "setup-deps: installing ${missing[*]}" >&2
$sudo apt-get update -q
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
