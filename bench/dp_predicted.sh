#!/usr/bin/env bash
# Data parallelism, predicted against measured: for three models, brigade profile measures this
# machine's layer times, brigade plan --cpu --dp D --profile plans with D replicas, and the plan runs
# under mpirun (one process per rank). Prints the plan's predicted tokens/s beside the measured steady
# tokens/s (steps after the first, best of three runs) and their ratio. Asserts nothing.
#   bench/dp_predicted.sh [build-dir] [replicas]
set -euo pipefail
build=${1:-build-release}
dp=${2:-$(nproc)}
brigade=$build/tools/brigade
[ -x "$brigade" ] || { echo "dp_predicted: no $brigade (build first)" >&2; exit 1; }
if [ "$(id -u)" -eq 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
models=("gpt:layers=4,hidden=128,heads=4,vocab=256,seq=64 16"
        "gpt:layers=6,hidden=256,heads=8,vocab=512,seq=64 16"
        "mlp:layers=8,hidden=512,vocab=256,seq=32 32")
printf "%-46s %-26s %12s %12s %7s  %s\n" "model (global batch)" "plan" "predicted" "measured" "ratio" "all-reduce (predicted)"
for entry in "${models[@]}"; do
    read -r model batch <<<"$entry"
    "$brigade" profile --model "$model" -o "$tmp/prof.json" --micro-batch 1,4,8,16 --steps 7 >/dev/null
    "$brigade" plan --model "$model" --cpu --dp "$dp" --global-batch "$batch" --profile "$tmp/prof.json" \
        -o "$tmp/plan.json" >/dev/null
    best=0
    for round in 1 2 3; do
        mpirun --oversubscribe -np "$dp" "$brigade" train --model "$model" --plan "$tmp/plan.json" --steps 20 \
            --threads 1 --stats "$tmp/stats.json" >/dev/null
        best=$(python3 -c 'import json,sys; s=json.load(open(sys.argv[1]))["steady_tokens_per_second"]; print(max(s, float(sys.argv[2])))' \
            "$tmp/stats.json" "$best")
    done
    python3 - "$tmp/plan.json" "$best" "$model ($batch)" <<'EOF'
import json, sys
plan = json.load(open(sys.argv[1]))
pred = plan["predicted"]
measured = float(sys.argv[2])
desc = "p %d x d %d, b %d x m %d%s" % (plan["pipeline_stages"], plan["data_parallel"], plan["micro_batch"],
                                        plan["micro_batches"], ", ZeRO-1" if plan.get("zero") else "")
print("%-46s %-26s %12.1f %12.1f %7.3f  %.2f ms" % (sys.argv[3], desc, pred["tokens_per_second"], measured,
                                                    measured / pred["tokens_per_second"],
                                                    pred["allreduce_seconds"] * 1e3))
EOF
done
