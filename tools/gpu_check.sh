#!/usr/bin/env bash
# The one GPU check: on a machine with an NVIDIA GPU (and, where no package registry is reachable, the
# packages staged by ../shared/gpu/stage.sh: `source .device/env.sh` first), builds brigade with CUDA,
# runs the gpu test suite, benchmarks gpt2-small (seq 1024) in bf16 and fp32 at two micro-batch sizes,
# a 2- and a 4-stage pipeline on the one GPU, profiles the kernels' time (nsys, else ncu), and PyTorch on
# the same model, batch and dtype.
#
#   tools/gpu_check.sh OUTDIR
#
# Writes OUTDIR/summary.txt (every figure: tokens/s, MFU, peak memory, test counts, brigade/PyTorch
# ratios) and OUTDIR/log.txt (everything the phases printed), and the JSON figures of each benchmark.
# Every phase prints its time; a phase that fails or runs past its limit is marked so and the later
# phases run all the same. Exit status 0 when every phase passed. Budget: under 8 minutes on an H100/H200.
#   BRG_GPU_BUILD=dir   build directory (default build-gpu; kept between runs, so a rerun only relinks)
set -uo pipefail
if [ $# -ne 1 ] || [ "${1:0:1}" = "-" ]; then
    echo "usage: tools/gpu_check.sh OUTDIR" >&2
    exit 2
fi
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=$(mkdir -p "$1" && cd "$1" && pwd) || { echo "gpu_check: cannot create '$1'" >&2; exit 2; }
cd "$root" || exit 2
build=${BRG_GPU_BUILD:-build-gpu}
log=$out/log.txt
summary=$out/summary.txt
: >"$log"
: >"$out/phases.tsv"
start_all=$(date +%s.%N)
failed=0

say() { echo "$*" | tee -a "$log"; }

# phase NAME LIMIT_SECONDS COMMAND...: runs COMMAND with its output in the log, bounded in time.
phase() {
    local name=$1 limit=$2
    shift 2
    local t0 t1 rc status
    t0=$(date +%s.%N)
    say "=== $name (limit ${limit}s): $*"
    timeout --kill-after=10 "$limit" "$@" >>"$log" 2>&1
    rc=$?
    t1=$(date +%s.%N)
    status=ok
    if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then status="timed out"
    elif [ $rc -eq 77 ]; then status="skipped (no GPU)"
    elif [ $rc -ne 0 ]; then status="failed (exit $rc)"; fi
    [ "$status" = ok ] || failed=$((failed + 1))
    local secs
    secs=$(python3 -c "print('%.1f' % ($t1 - $t0))")
    say "=== $name: $status in ${secs}s"
    printf '%s\t%s\t%s\n' "$name" "$status" "$secs" >>"$out/phases.tsv"
    return $rc
}

say "gpu_check: $(date -u +%FT%TZ) in $root"
phase device 30 nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
nproc_all=$(nproc)

# Release build with the tests: the gpu suite checks every kernel against the CPU reference there; the
# sanitized build is the CPU machines' (tools/check.sh).
if [ -d "$build/meson-private" ]; then
    phase configure 120 meson setup --reconfigure "$build" -Dbuildtype=release -Dcuda=enabled -Dwerror=false
else
    phase configure 120 meson setup "$build" -Dbuildtype=release -Dcuda=enabled -Dwerror=false
fi
phase build 300 ninja -C "$build" -j "$nproc_all"
bin=$build/tools/brigade
# A suite that skips (exit 77: no usable GPU) fails this check: here a GPU is the point.
phase gpu-suite 180 bash -c 'meson test -C "$0" --suite gpu --print-errorlogs --num-processes 1; rc=$?
    if grep -q "exit status 77" "$0/meson-logs/testlog.txt"; then echo "gpu suite skipped: no usable GPU"; exit 77; fi
    exit $rc' "$build"
cp "$build/meson-logs/testlog.txt" "$out/gpu-testlog.txt" 2>/dev/null

model=gpt2-small:vocab=50304
# brigade bench NAME ARGS...: one benchmark, its figures in OUTDIR/NAME.json.
bench() {
    local name=$1
    shift
    phase "$name" 120 "$bin" bench --model "$model" --device cuda --steps 10 --warmup 2 --json "$out/$name.json" "$@"
}
bench brigade-bf16-b8 --dtype bf16 --micro-batch 8
bench brigade-bf16-b16 --dtype bf16 --micro-batch 16
bench brigade-fp32-b4 --dtype fp32 --micro-batch 4
bench brigade-fp32-b8 --dtype fp32 --micro-batch 8
bench brigade-bf16-pp2 --dtype bf16 --micro-batch 8 --micro-batches 8 --pp 2 --schedule 1f1b
bench brigade-bf16-pp4 --dtype bf16 --micro-batch 8 --micro-batches 8 --pp 4 --schedule 1f1b
# The bf16 attention on the SIMT kernels instead of the tensor cores: what the tensor cores bring.
phase brigade-bf16-b16-simt 120 env BRG_CUDA_ATTENTION=simt "$bin" bench --model "$model" --device cuda --steps 10 \
    --warmup 2 --json "$out/brigade-bf16-b16-simt.json" --dtype bf16 --micro-batch 16

# Where the time goes: every kernel's GPU time over a warm-up step and a timed one of the bf16 b8 benchmark,
# from Nsight Systems when it is there, else Nsight Compute with the one duration metric (one replay pass).
profile_args=(bench --model "$model" --device cuda --dtype bf16 --micro-batch 8 --steps 1 --warmup 1)
if command -v nsys >/dev/null; then
    phase profile 150 bash -c 'nsys profile --force-overwrite true -o "$0/profile" "$@" &&
        nsys stats --force-export true --report cuda_gpu_kern_sum --format csv --output "$0/kernels" \
            "$0/profile.nsys-rep"' "$out" "$bin" "${profile_args[@]}"
elif command -v ncu >/dev/null; then
    phase profile 180 bash -c 'ncu --metrics gpu__time_duration.sum --print-units base --csv --page raw "$@" >"$0/kernels_ncu.csv"' \
        "$out" "$bin" "${profile_args[@]}"
else
    say "=== profile: neither nsys nor ncu is on the PATH"
fi

torch_bench() {
    local name=$1 limit=$2
    shift 2
    phase "$name" "$limit" env PYTHONUNBUFFERED=1 python3 bench/torch_gpt2.py --vocab 50304 --seq 1024 --steps 10 \
        --json "$out/$name.json" "$@"
}
torch_bench torch-bf16-b16 120 --dtype bf16 --micro-batch 16
torch_bench torch-fp32-b8 120 --dtype fp32 --micro-batch 8
# torch.compile only when it compiles within about a minute (the limit includes the timed steps).
torch_bench torch-compile-bf16-b16 90 --dtype bf16 --micro-batch 16 --compile

end_all=$(date +%s.%N)
python3 - "$out" "$start_all" "$end_all" "$failed" >"$summary" <<'PY'
import json, os, re, sys
out, t0, t1, failed = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
def load(name):
    try:
        with open(os.path.join(out, name + ".json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None
print("brigade GPU check (%.0f s in all; %d phase(s) failed)" % (t1 - t0, failed))
print()
print("phases:")
with open(os.path.join(out, "phases.tsv")) as f:
    for line in f:
        name, status, secs = line.rstrip("\n").split("\t")
        print("  %-24s %-18s %8s s" % (name, status, secs))
print()
counts = "no CUnit summary (see log.txt)"
try:
    text = open(os.path.join(out, "gpu-testlog.txt")).read()
    m = re.search(r"^\s*tests\s+(\d+)\s+(\d+)\s+(\S+)\s+(\d+)", text, re.M)
    a = re.search(r"^\s*asserts\s+(\d+)\s+(\d+)\s+(\S+)\s+(\d+)", text, re.M)
    if m:
        counts = "tests %s run, %s passed, %s failed" % (m.group(2), m.group(3), m.group(4))
        if a:
            counts += "; asserts %s passed, %s failed" % (a.group(3), a.group(4))
    if "exit status 77" in text:
        counts += " (SKIPPED: no usable GPU)"
except OSError:
    pass
print("gpu suite: " + counts)
print()
print("%-24s %6s %5s %4s %12s %9s %7s %10s %10s" % ("benchmark", "dtype", "b", "pp", "tokens/s", "TFLOP/s", "MFU",
                                                   "peak GiB", "loss"))
rows = ["brigade-bf16-b8", "brigade-bf16-b16", "brigade-fp32-b4", "brigade-fp32-b8", "brigade-bf16-pp2",
        "brigade-bf16-pp4", "brigade-bf16-b16-simt", "torch-bf16-b16", "torch-fp32-b8", "torch-compile-bf16-b16"]
for name in rows:
    f = load(name)
    if not f:
        print("%-24s (no figures: the phase failed)" % name)
        continue
    mfu = f.get("mfu")
    print("%-24s %6s %5d %4s %12.0f %9.1f %7s %10.2f %4.2f->%.2f" % (
        name, f.get("dtype"), f.get("micro_batch", 0), f.get("pp", "-"), f["tokens_per_second"], f["tflops"],
        "%.1f%%" % (100 * mfu) if mfu is not None else "-", f.get("peak_bytes", 0) / 2**30,
        f.get("loss_first") or 0, f.get("loss_last") or 0))
print()
# The kernels' GPU time, grouped by kernel (template arguments dropped), from nsys's or ncu's CSV.
import csv, glob
times = {}
def add(name, ns):
    base = re.sub(r"^void\s+", "", re.split(r"[<(]", name.strip(), 1)[0].strip()) or name
    times[base] = times.get(base, 0.0) + ns
for path in glob.glob(os.path.join(out, "kernels*cuda_gpu_kern_sum*.csv")):
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            try:
                add(row.get("Name", ""), float(row.get("Total Time (ns)", "nan")))
            except ValueError:
                pass
ncu = os.path.join(out, "kernels_ncu.csv")
if not times and os.path.exists(ncu):
    with open(ncu, newline="") as f:
        lines = [l for l in f if l.startswith('"')]  # the CSV rows; ncu's own messages are not quoted
    for row in csv.DictReader(lines):
        try:
            value = float(row.get("gpu__time_duration.sum", "nan").replace(",", ""))
        except ValueError:
            continue  # the units row
        if value == value:
            add(row.get("Kernel Name", ""), value)
if times:
    total = sum(times.values())
    unit = 1e6  # nanoseconds (nsys's Total Time (ns); ncu with --print-units base) to milliseconds
    print("where the GPU time goes (bf16 b8, a warm-up step and a timed one; %.1f ms of kernels):" % (total / unit))
    for name, ns in sorted(times.items(), key=lambda kv: -kv[1])[:15]:
        print("  %-60s %9.2f ms %5.1f%%" % (name[:60], ns / unit, 100.0 * ns / total))
else:
    print("where the GPU time goes: no kernel profile (see log.txt)")
print()
print("brigade / PyTorch (same model, batch, dtype, GPU):")
for ours, theirs in [("brigade-bf16-b16", "torch-bf16-b16"), ("brigade-bf16-b16", "torch-compile-bf16-b16"),
                     ("brigade-fp32-b8", "torch-fp32-b8")]:
    a, b = load(ours), load(theirs)
    if a and b:
        print("  %-18s / %-24s %.2f" % (ours, theirs, a["tokens_per_second"] / b["tokens_per_second"]))
    else:
        print("  %-18s / %-24s (missing)" % (ours, theirs))
PY
cat "$summary" | tee -a "$log"
[ $failed -eq 0 ]
