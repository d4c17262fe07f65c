#!/usr/bin/env bash
# The loader's ABI guard across releases, with the real binaries: the loader and shim built
# on the host (Debian 12, libvirt 9.0) go into the libvirtd of ROOT (Debian 13, libvirt
# 11.3), and the ones built in ROOT into the host's libvirtd. Each libvirtd must start, log
# one line saying that the storage-domain backend is not loaded and why (the running
# libvirt against the one the module was built for), leave the shim unloaded, and serve a
# stock dir pool as usual.
#
#   abi_cross_test.sh ROOT HOST_BUILD ROOT_BUILD     (meson build directories inside the tree)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
tree=$(cd "$here/../.." && pwd)
private_libvirtd=$tree/tests/libvirt/private-libvirtd.sh

# Runs inside whichever system's libvirtd is under test (the host's or ROOT's).
if [ "${1:-}" = --inside ]; then
    loader=$2 shim=$3 built_for=$4 work=$5
    fail() {
        echo "FAIL ($(. /etc/os-release && echo "Debian $VERSION_ID")): $*" >&2
        tail -20 "$work/libvirtd.log" >&2 || true
        "$private_libvirtd" stop "$work" || true
        exit 1
    }
    running=$(dpkg-query -W -f='${Version}' libvirt-daemon)
    uri=$("$private_libvirtd" start "$work" "$loader" "$shim") || fail "libvirtd did not start"
    line=$(grep 'libvirt-sdm: ' "$work/libvirtd.log" || true)
    [ "$(echo "$line" | grep -c .)" = 1 ] || fail "expected one libvirt-sdm line in the log, got: '$line'"
    case $line in
    *"not loading the storage-domain backend: libvirt ${running%%-*} is running, the shim was built for ${built_for%%-*}"*) ;;
    *) fail "the log line does not name both libvirt versions: $line" ;;
    esac
    pid=$(cat "$work/libvirtd.pid")
    ! grep -q 'libsdm-libvirt-shim' "/proc/$pid/maps" || fail "libvirtd loaded the foreign shim"
    v() { virsh -q -c "$uri" "$@"; }
    v pool-define-as stock dir --target "$work/stock" >/dev/null &&
        v pool-build stock >/dev/null && v pool-start stock >/dev/null &&
        v vol-create-as stock v1 1M >/dev/null || fail "the stock dir pool does not work"
    [ -f "$work/stock/v1" ] || fail "vol-create-as made no $work/stock/v1"
    "$private_libvirtd" stop "$work"
    echo "ok: $line"
    exit 0
fi

root=$(realpath "${1:?usage: abi_cross_test.sh ROOT HOST_BUILD ROOT_BUILD}")
host_build=$(realpath "${2:?HOST_BUILD missing}")
root_build=$(realpath "${3:?ROOT_BUILD missing}")
[ "$(id -u)" = 0 ] || { echo "SKIP: needs root"; exit 77; }
module() { echo "$1/backend/libvirt/$2"; }
# The libvirt build each module was made for, as its loader recorded it.
built_for() { sed -n 's/^#define SDM_LIBVIRT_PACKAGE_VERSION "\(.*\)"/\1/p' "$1/backend/libvirt/abi/good/libvirt-abi.h"; }
work=$(mktemp -d "$tree/build/abi-cross.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/host" "$work/root"

"$0" --inside "$(module "$root_build" libvirt_storage_backend_fs.so)" \
    "$(module "$root_build" libsdm-libvirt-shim.so)" "$(built_for "$root_build")" "$work/host"
"$here/in-root.sh" "$root" "$0" --inside "$(module "$host_build" libvirt_storage_backend_fs.so)" \
    "$(module "$host_build" libsdm-libvirt-shim.so)" "$(built_for "$host_build")" "$work/root"
echo "PASS: each release's libvirtd refuses the other's module and keeps serving stock pools"
