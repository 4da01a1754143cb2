#!/usr/bin/env bash
# Builds the safetensors fuzz target with clang (libFuzzer, AddressSanitizer, UndefinedBehaviorSanitizer)
# and runs it on the corpus in tests/fixtures/safetensors (new finds go to fuzz/corpus, not committed).
#   fuzz/run.sh [seconds]       (default 600)
# Needs clang and libclang-rt-14-dev (apt-get install clang libclang-rt-14-dev).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=${BRG_FUZZ_BUILD:-$root/build-fuzz}
mkdir -p "$out" "$root/fuzz/corpus"
clang -std=c17 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    -I"$root/include" -I"$root/engine" -I"$root" \
    "$root/fuzz/fuzz_safetensors.c" "$root/engine/io/safetensors.c" "$root/engine/status.c" \
    $(pkg-config --cflags --libs jansson) -o "$out/fuzz_safetensors"
"$out/fuzz_safetensors" -max_total_time="${1:-600}" -max_len=4096 -print_final_stats=1 \
    "$root/fuzz/corpus" "$root/tests/fixtures/safetensors"
