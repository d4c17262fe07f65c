#!/usr/bin/env bash
# Installs what is missing, builds an optimised libvirt-sdm, and runs every benchmark,
# printing one table. Arguments go to the benchmark (--dir DIR, --quick).
set -euo pipefail
cd "$(dirname "$0")/.."

tests/setup-deps.sh
build=${SDM_BENCH_BUILD:-build/release}
if [ ! -f "$build/build.ninja" ]; then
    meson setup "$build" -Dbuildtype=release
fi
ninja -C "$build" tests/bench/engine_bench
"$build/tests/bench/engine_bench" "$@"
