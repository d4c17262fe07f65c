#!/usr/bin/env bash
# Installs what is missing, builds libvirt-sdm, and runs the demo on a scratch domain.
set -euo pipefail
cd "$(dirname "$0")/.."

tests/setup-deps.sh
build=${SDM_DEMO_BUILD:-build/release}
if [ ! -f "$build/build.ninja" ]; then
    meson setup "$build" -Dbuildtype=release
fi
ninja -C "$build" backend/tools/sdm-local
exec tests/demo/engine-demo.sh "$build/backend/tools/sdm-local" "${1:-/var/tmp/sdm-demo}"
