#!/usr/bin/env bash
# Installs what is missing, builds libvirt-sdm with AddressSanitizer and UBSan, and runs
# every test of the default suite. Extra arguments go to `meson test` (e.g. --suite unit).
set -euo pipefail
cd "$(dirname "$0")/.."

tests/setup-deps.sh
build=${SDM_TEST_BUILD:-build/test}
if [ ! -f "$build/build.ninja" ]; then
    meson setup "$build" -Dbuildtype=debug -Db_sanitize=address,undefined
fi
ninja -C "$build"
meson test -C "$build" --print-errorlogs --num-processes 2 "$@"
