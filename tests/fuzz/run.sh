#!/usr/bin/env bash
# Builds every libFuzzer target (tests/fuzz/*_fuzz.*) in a clang build directory and runs
# each for a fixed budget, then prints per target: executions, coverage and crashes found.
#
#   tests/fuzz/run.sh [SECONDS]        # default 60 s per target, or $SDM_FUZZ_SECONDS
#
# SDM_FUZZ_BUILD: the build directory (default build/fuzz; set up on first use with
# CC=clang CXX=clang++ -Dfuzz=true -Db_lundef=false). SDM_FUZZ_TARGETS: the targets to run
# (default: every one the build has; pool_ns needs the libvirt backend).
#
# A target's dictionary, tests/fuzz/<target>.dict, is used when there is one.
#
# Opt-in: installs clang and libFuzzer's runtime (Debian: clang, libclang-rt-dev) if they
# are missing; the default build needs neither. Each target starts from its seed corpus
# (tests/fuzz/corpus/<target>/, read only) plus what earlier runs found (kept in the build
# directory). libFuzzer stops a target at its first crash, whose input it saves in
# <build>/fuzz-artifacts/<target>/; once the bug is fixed, copy the input into tests/fuzz/corpus/<target>/, where the default suite replays it
# (tests/fuzz/replay_test.cc), and run again. Exits 1 when any target found a crash.
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
seconds=${1:-${SDM_FUZZ_SECONDS:-60}}
build=${SDM_FUZZ_BUILD:-$src/build/fuzz}

libfuzzer_works() {
    local probe
    probe=$(mktemp -d)
    echo 'extern "C" int LLVMFuzzerTestOneInput(const unsigned char *, unsigned long) { return 0; }' \
        >"$probe/probe.cc"
    clang++ -fsanitize=fuzzer "$probe/probe.cc" -o "$probe/probe" >/dev/null 2>&1
    local rc=$?
    rm -rf "$probe"
    return $rc
}
if ! command -v clang++ >/dev/null || ! libfuzzer_works; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    echo "run.sh: installing clang and libFuzzer (clang, libclang-rt-dev)" >&2
    $sudo apt-get update -q
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends \
        clang libclang-rt-dev
    libfuzzer_works || { echo "run.sh: clang++ -fsanitize=fuzzer still fails" >&2; exit 1; }
fi

if [ ! -f "$build/build.ninja" ]; then
    CC=clang CXX=clang++ meson setup "$build" "$src" -Dfuzz=true -Db_lundef=false >/dev/null
fi
# Reconfigures first if a meson.build changed, so that the target list below is current.
ninja -C "$build" build.ninja >/dev/null
if [ -n "${SDM_FUZZ_TARGETS:-}" ]; then
    read -r -a targets <<<"$SDM_FUZZ_TARGETS"
else
    targets=()
    for t in metadata dbus pool_ns; do
        ninja -C "$build" -t query "tests/fuzz/${t}_fuzz" >/dev/null 2>&1 && targets+=("$t")
    done
fi
[ ${#targets[@]} -gt 0 ] || { echo "run.sh: $build has no fuzz targets" >&2; exit 1; }
# shellcheck disable=SC2046
ninja -C "$build" -j2 $(printf 'tests/fuzz/%s_fuzz ' "${targets[@]}") >/dev/null

# UBSan reports would otherwise be printed and forgotten: make them crashes.
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
# A number from a libFuzzer status line: field NAME LINE.
field() { sed -nE "s/.* $1: ([0-9]+).*/\\1/p" <<<"$2"; }
summary=()
crashed=0
for t in "${targets[@]}"; do
    exe=$build/tests/fuzz/${t}_fuzz
    work=$build/fuzz-corpus/$t
    artifacts=$build/fuzz-artifacts/$t
    log=$build/fuzz-logs/$t.log
    mkdir -p "$work" "$artifacts" "$(dirname "$log")"
    touch "$artifacts/.started"
    echo "== $t: ${seconds} s (log: $log)"
    dict=()
    [ ! -f "$src/tests/fuzz/$t.dict" ] || dict=(-dict="$src/tests/fuzz/$t.dict")
    "$exe" -max_total_time="$seconds" -timeout=10 -artifact_prefix="$artifacts/" \
        -print_final_stats=1 "${dict[@]}" "$work" "$src/tests/fuzz/corpus/$t" >"$log" 2>&1 ||
        true
    found=$(find "$artifacts" -type f -newer "$artifacts/.started" \( -name 'crash-*' -o \
            -name 'leak-*' -o -name 'timeout-*' -o -name 'oom-*' \) | wc -l)
    # libFuzzer's status lines: "#EXECS  KIND  cov: C ft: F corp: N/SIZE ..."; none when a
    # seed crashes it.
    last=$(grep -E '^#[0-9]+[[:space:]].* cov: ' "$log" | tail -1 || true)
    execs=$(sed -nE 's/^stat::number_of_executed_units: *([0-9]+)/\1/p' "$log" | tail -1)
    if [ -z "$execs" ] && [ "$found" -eq 0 ]; then
        echo "run.sh: $t did not run; see $log" >&2
        tail -20 "$log" >&2
        crashed=1
        continue
    fi
    cov=$(field cov "$last")
    ft=$(field ft "$last")
    corp=$(field corp "$last")
    [ "$found" -eq 0 ] || crashed=1
    summary+=("$(printf '%-9s %6ss %12s %12s %8s %8s %8s' "$t" "$seconds" "${execs:--}" \
                "${cov:--}" "${ft:--}" "${corp:--}" "$found")")
    while read -r input; do
        echo "   crash input: $input (reproduce: $exe $input)"
    done < <(find "$artifacts" -type f -newer "$artifacts/.started")
done

echo
printf '%-9s %7s %12s %12s %8s %8s %8s\n' target budget executions "coverage" features \
    corpus crashes
printf '%s\n' "${summary[@]}"
exit $crashed
