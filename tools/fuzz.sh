#!/usr/bin/env bash
# Builds brigade's fuzz targets (tests/fuzz, docs/fuzzing.md) with clang, libFuzzer, AddressSanitizer and
# UndefinedBehaviorSanitizer, and runs one target or every target in turn.
#   tools/fuzz.sh [TARGET|all] [SECONDS]     (default: all, 600 seconds each)
#   tools/fuzz.sh list                       the targets
# A target starts from its seed corpus, tests/fuzz/corpus/TARGET/; the inputs it finds go to
# $BRG_FUZZ_BUILD/scratch/TARGET/ (not committed). An input that crashes (or leaks, or times out) is
# minimized and added to the seed corpus as crash-<hash>, so that the replay test of the ordinary build
# runs it from then on; fix the cause, then commit it. Exit status 0 only when no target failed.
#   BRG_FUZZ_BUILD=dir   build directory (default build-fuzz)
#   BRG_FUZZ_JOBS=n      ninja jobs (default 1: the fuzzers leave the other cores alone)
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root" || exit 1
targets=(cluster plan plan_check profile hwloc_xml model cli data_bin safetensors)
target=${1:-all}
seconds=${2:-600}
if [ "$target" = list ]; then
    printf '%s\n' "${targets[@]}"
    exit 0
fi
if [ "$target" != all ] && [[ " ${targets[*]} " != *" $target "* ]]; then
    echo "fuzz: unknown target '$target' (targets: ${targets[*]})" >&2
    exit 2
fi
case $seconds in '' | *[!0-9]*) echo "fuzz: SECONDS must be a whole number, not '$seconds'" >&2; exit 2 ;; esac

. tools/deps.sh
BRG_EXTRA_PACKAGES="clang libclang-rt-14-dev ${BRG_EXTRA_PACKAGES:-}" brg_install_deps ||
    { echo "fuzz: installing clang and libFuzzer failed" >&2; exit 1; }

build=${BRG_FUZZ_BUILD:-build-fuzz}
# Shared libraries cannot resolve the sanitizer runtimes, which only the programs link: b_lundef=false.
opts=(-Dfuzzing=true -Db_sanitize=address,undefined -Db_lundef=false -Dbuildtype=debugoptimized
      -Dtests=false -Dbench=false -Dcuda=disabled)
if [ -d "$build/meson-private" ]; then
    meson setup --reconfigure "$build" "${opts[@]}" >/dev/null || exit 1
else
    CC=clang meson setup "$build" "${opts[@]}" >/dev/null || exit 1
fi
ninja -C "$build" -j "${BRG_FUZZ_JOBS:-1}" $(printf 'tests/fuzz/fuzz_%s ' "${targets[@]}") >/dev/null ||
    { echo "fuzz: build failed (ninja -C $build shows why)" >&2; exit 1; }

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export OPENBLAS_NUM_THREADS=1

# Minimizes every artifact libFuzzer left in $1 into the corpus $2 (crash-<sha1 of the minimized input>).
# Slow inputs (over 10 s, libFuzzer's slow-unit-*) are no crash: they stay in $1/slow/ and are listed.
keep_crashes() {
    local artifacts=$1 corpus=$2 exe=$3 a
    for a in "$artifacts"/*; do
        [ -f "$a" ] || continue
        case $(basename "$a") in *.kept) continue ;; esac
        local small="$a.min"
        "$exe" -minimize_crash=1 -max_total_time=60 -exact_artifact_path="$small" "$a" >/dev/null 2>&1 || true
        [ -s "$small" ] || cp "$a" "$small"
        local name="crash-$(sha1sum "$small" | cut -c1-16)"
        cp "$small" "$corpus/$name"
        echo "fuzz: $(basename "$a") minimized into $corpus/$name"
        mv "$a" "$a.kept" && rm -f "$small"
    done
}

run_target() {
    local t=$1 exe="$build/tests/fuzz/fuzz_$1" corpus="tests/fuzz/corpus/$1"
    local scratch="$build/scratch/$t" artifacts="$build/artifacts/$t" log="$build/fuzz-$t.log"
    mkdir -p "$scratch" "$artifacts"
    local dict=()
    [ -f "tests/fuzz/$t.dict" ] && dict=(-dict="tests/fuzz/$t.dict")
    echo "fuzz: $t for $seconds s (log: $log)"
    # New inputs go to the first directory (scratch), never into the committed corpus. -timeout stays above
    # the hwloc probe's own 30 s limit; -close_fd_mask=3 silences the targets' messages, not the reports.
    "$exe" "$scratch" "$corpus" "${dict[@]}" -max_total_time="$seconds" -timeout=60 -rss_limit_mb=4096 \
        -close_fd_mask=3 -print_final_stats=1 -artifact_prefix="$artifacts/" >"$log" 2>&1
    local rc=$?
    # The figures of the run: the last status line, the final stats, and the corpus it kept.
    grep -E '^#[0-9]+' "$log" | tail -1
    grep -E '^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)' "$log" | tr '\n' ' '
    echo "corpus $(ls "$scratch" | wc -l) new + $(ls "$corpus" | wc -l) seeds"
    local slow
    mkdir -p "$artifacts/slow"
    for slow in "$artifacts"/slow-unit-*; do
        [ -f "$slow" ] || continue
        mv "$slow" "$artifacts/slow/" && echo "fuzz: slow input (no crash): $artifacts/slow/$(basename "$slow")"
    done
    if [ $rc -ne 0 ] || ls "$artifacts" | grep -v '^slow$' | grep -qv '\.kept$'; then
        grep -E 'ERROR: |SUMMARY: |fuzz target: |==[0-9]+==' "$log" | head -5
        keep_crashes "$artifacts" "$corpus" "$exe"
        return 1
    fi
    return 0
}

failed=()
for t in "${targets[@]}"; do
    [ "$target" = all ] || [ "$target" = "$t" ] || continue
    run_target "$t" || failed+=("$t")
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz: failed: ${failed[*]} (their inputs are in tests/fuzz/corpus; meson test --suite fuzz replays them)" >&2
    exit 1
fi
echo "fuzz: no crash"
