#!/usr/bin/env bash
# Installs, on Debian bookworm, every package libvirt-sdm needs to build and test and that
# is not installed yet. Safe to run again: it installs nothing when nothing is missing.
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
)

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
