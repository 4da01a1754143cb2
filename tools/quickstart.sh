#!/usr/bin/env bash
# The main job on a fresh Debian 12 machine: installs what is missing and builds brigade (release); plans
# GPT-2 XL on one DGX H100 node (or on the cluster described by the file given) and prints the review; then
# measures a small GPT's layers on this machine, plans it for this machine's cores, and trains it with that
# plan through the pipeline on the built-in synthetic task (repeating random 4-token patterns), printing
# every step, the parameters' fingerprint, and the predicted throughput beside the measured one; then runs
# a 2-stage pipeline, and 2 data-parallel replicas, as two threads and as two processes under mpirun and
# shows their fingerprints equal,
# and saves a checkpoint that a second command resumes, ending with the uninterrupted run's fingerprint.
#   tools/quickstart.sh [cluster.json]
#   BRG_BUILD=dir         build directory (default build-release)
#   BRG_PLAN_MODEL=spec   the model planned on the cluster (default gpt2-xl)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cluster=""
if [ $# -ge 1 ]; then cluster=$(cd "$(dirname "$1")" && pwd)/$(basename "$1"); fi
cd "$root"
. tools/deps.sh
brg_install_deps

build=${BRG_BUILD:-build-release}
if [ -d "$build/meson-private" ]; then
    meson setup --reconfigure "$build" -Dbuildtype=release >/dev/null
else
    meson setup "$build" -Dbuildtype=release >/dev/null
fi
ninja -C "$build" >/dev/null
brigade=$build/tools/brigade

# 1. A plan for a real cluster, and its review.
big=${BRG_PLAN_MODEL:-gpt2-xl}
if [ -n "$cluster" ]; then
    where=(--cluster "$cluster")
    place="the cluster described in $cluster"
else
    where=(--preset dgx-h100)
    place="one DGX H100 node (8 H100 SXM5 80GB on NVSwitch; brigade's built-in preset)"
fi
echo "== planning $big on $place, global batch 512 =="
"$brigade" plan --model "$big" "${where[@]}" --global-batch 512 -o "$build/quickstart-plan-$big.json" \
    --report "$build/quickstart-report.md" --trace "$build/quickstart-plan-trace.json"
echo

# 2. A small GPT on this machine: measure its layers, plan it, train it with the plan.
model=gpt:layers=4,hidden=64,heads=4,vocab=64,seq=32
plan=$build/quickstart-plan.json
echo "== measuring every layer of $model on this machine's cores =="
"$brigade" profile --model "$model" -o "$build/quickstart-profile.json" --micro-batch 1,4 --steps 3 | tail -1
echo
echo "== planning $model for this machine (one replica: the runtime runs one pipeline) =="
"$brigade" plan --model "$model" --cpu --global-batch 16 --dp 1 --profile "$build/quickstart-profile.json" -o "$plan"
echo
echo "== training $model with that plan on the synthetic task =="
"$brigade" train --model "$model" --plan "$plan" --steps 300 --lr 2e-3 --log-every 25 \
    --trace "$build/quickstart-trace.json" --stats "$build/quickstart-stats.json"
python3 - "$plan" "$build/quickstart-stats.json" <<'EOF'
import json, sys
plan, stats = (json.load(open(p)) for p in sys.argv[1:3])
predicted = plan["predicted"]["tokens_per_second"]
measured = stats.get("steady_tokens_per_second") or stats["tokens_per_second"]
print("throughput: predicted %.0f tokens/s from the measured layers, trained at %.0f tokens/s (%+.0f%%)"
      % (predicted, measured, 100.0 * (measured / predicted - 1.0)))
EOF
echo
# The fingerprint a run printed last.
fingerprint_of() { sed -n 's/^params fingerprint: //p' <<<"$1"; }
# Two runs' fingerprints, named by $1 and $3: equal, or the quickstart fails. $5 says what equal means.
same_fingerprints() {
    if [ -n "$2" ] && [ "$2" = "$4" ]; then
        echo "fingerprints: $1 $2, $3 $4: $5"
    else
        echo "fingerprints differ: $1 '$2', $3 '$4'" >&2
        exit 1
    fi
}
# 3. The same pipeline as one process per stage, as on a cluster: mpirun, transfers over MPI.
if command -v mpirun >/dev/null 2>&1 && [[ $("$brigade" train --help) == *"mpirun -np N"* ]]; then
    mpi=(mpirun --oversubscribe -np 2)
    if [ "$(id -u)" -eq 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
    # The same run in two threads of one process, then as two processes: bitwise the same parameters.
    threads_then_mpirun() {
        echo "== $model as $1: two threads of one process, then two processes under mpirun =="
        shift
        local out threads
        out=$("$brigade" "$@")
        echo "$out"
        threads=$(fingerprint_of "$out")
        out=$("${mpi[@]}" "$brigade" "$@")
        echo "$out"
        same_fingerprints threads "$threads" mpirun "$(fingerprint_of "$out")" "bitwise the same parameters"
        echo
    }
    threads_then_mpirun "a 2-stage pipeline" train --model "$model" --pp 2 --schedule 1f1b --micro-batch 2 \
        --micro-batches 8 --steps 30 --lr 2e-3 --log-every 10
    threads_then_mpirun "2 data-parallel replicas with ZeRO-1" train --model "$model" --dp 2 --zero 1 --micro-batch 2 \
        --global-batch 16 --steps 30 --lr 2e-3 --log-every 10
fi
# 4. Save and resume: 20 steps and a checkpoint, then a second command resuming it up to 40 steps,
#    against 40 steps without a stop.
ckpt=$build/quickstart-checkpoints
rm -rf "$ckpt"
flags=(train --model "$model" --pp 2 --micro-batch 2 --micro-batches 8 --lr 2e-3 --log-every 10)
echo "== $model: 40 steps in one go, then 20 steps saved to $ckpt and a second command resuming them to 40 =="
whole=$(fingerprint_of "$("$brigade" "${flags[@]}" --steps 40)")
out=$("$brigade" "${flags[@]}" --steps 20 --checkpoint-dir "$ckpt")
tail -2 <<<"$out"
out=$("$brigade" "${flags[@]}" --steps 40 --resume "$ckpt" --checkpoint-dir "$ckpt")
echo "$out"
same_fingerprints uninterrupted "$whole" resumed "$(fingerprint_of "$out")" "bitwise the same run"
echo "checkpoint of step 40 (Hugging Face GPT-2 safetensors, index, config.json): $ckpt/$(cat "$ckpt/latest")"
echo
echo "review of the $big plan: $build/quickstart-report.md, with its pictures beside it (quickstart-report-gantt.svg,"
echo "  -memory.svg, -placement.svg): open it in a Markdown previewer (VS Code, GitHub), or the .svg files in a browser"
echo "predicted timeline of that plan: $build/quickstart-plan-trace.json; measured timeline of the small GPT's last step:"
echo "  $build/quickstart-trace.json (one track per stage) - open them in https://ui.perfetto.dev"
