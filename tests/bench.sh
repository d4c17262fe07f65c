#!/usr/bin/env bash
# Installs what is missing, builds an optimised libvirt-sdm, and runs every benchmark
# (tests/bench/: engine_bench, then sdmd_bench against the optimised sdmd), printing one
# table. Arguments go to every benchmark (--dir DIR, --quick). Needs root (sanlock
# daemons). Exit status: 0 if every target was met, 3 if one was missed, else the failure
# of the first benchmark that failed.
set -euo pipefail
cd "$(dirname "$0")/.."

tests/setup-deps.sh
build=${SDM_BENCH_BUILD:-build/release}
if [ ! -f "$build/build.ninja" ]; then
    meson setup "$build" -Dbuildtype=release
fi
ninja -C "$build" tests/bench/engine_bench tests/bench/sdmd_bench backend/daemon/sdmd

table=$(mktemp)
trap 'rm -f "$table"' EXIT
status=0
for bench in engine_bench sdmd_bench; do
    rc=0
    SDM_SDMD="$build/backend/daemon/sdmd" "$build/tests/bench/$bench" "$@" >>"$table" || rc=$?
    if [ "$rc" -ne 0 ] && { [ "$status" -eq 0 ] || [ "$status" -eq 3 ]; }; then
        status=$rc
    fi
done
# libvirt backend (issue 4): tests/bench/libvirt_bench.py, python-libvirt against a private
# libvirtd running the optimised loader and shim, our pool next to a stock dir pool. A
# Python script (Debian's /usr/bin/python3, for python3-libvirt): nothing to compile.
ninja -C "$build" backend/libvirt/libvirt_storage_backend_fs.so \
    backend/libvirt/libsdm-libvirt-shim.so
rc=0
SDM_SDMD="$build/backend/daemon/sdmd" \
    SDM_LIBVIRT_LOADER="$build/backend/libvirt/libvirt_storage_backend_fs.so" \
    SDM_LIBVIRT_SHIM="$build/backend/libvirt/libsdm-libvirt-shim.so" \
    SDM_PRIVATE_LIBVIRTD=tests/libvirt/private-libvirtd.sh \
    /usr/bin/python3 tests/bench/libvirt_bench.py "$@" >>"$table" || rc=$?
if [ "$rc" -ne 0 ] && { [ "$status" -eq 0 ] || [ "$status" -eq 3 ]; }; then
    status=$rc
fi

# One header for the merged table.
awk '!/^\| (benchmark|---) \|/ || !seen[$0]++' "$table"
exit "$status"
