#!/usr/bin/env bash
# Installs what is missing, builds libvirt-sdm, and runs the main demo: private sanlock, sdmd
# and libvirtd, a storage domain driven through virsh (tests/demo/libvirt-demo.sh).
#   tests/demo.sh [DEMO_DIR]          the virsh demo (default /var/tmp/sdm-demo)
#   tests/demo.sh --engine [DIR]      the engine alone, through sdm-local
set -euo pipefail
cd "$(dirname "$0")/.."

tests/setup-deps.sh
build=${SDM_DEMO_BUILD:-build/release}
if [ ! -f "$build/build.ninja" ]; then
    meson setup "$build" -Dbuildtype=release
fi
if [ "${1:-}" = --engine ]; then
    ninja -C "$build" backend/tools/sdm-local
    exec tests/demo/engine-demo.sh "$build/backend/tools/sdm-local" "${2:-/var/tmp/sdm-engine-demo}"
fi
ninja -C "$build" backend/daemon/sdmd backend/cli/sdm \
    backend/libvirt/libvirt_storage_backend_fs.so backend/libvirt/libsdm-libvirt-shim.so
exec tests/demo/libvirt-demo.sh "$build" "${1:-/var/tmp/sdm-demo}"
