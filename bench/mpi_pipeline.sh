#!/usr/bin/env bash
# A 2-stage 1F1B pipeline, m = 8, three ways in one run: two threads of one process (in-process
# transport), two processes under mpirun over shared memory, and over TCP alone. Prints the steady
# tokens/s of each (steps after the first), best of two rounds taken in turn. Asserts nothing.
#   bench/mpi_pipeline.sh [build-dir] [model]
set -euo pipefail
build=${1:-build-release}
model=${2:-gpt:layers=8,hidden=256,heads=8,vocab=512,seq=128}
brigade=$build/tools/brigade
[ -x "$brigade" ] || { echo "mpi_pipeline: no $brigade (build first)" >&2; exit 1; }
if [ "$(id -u)" -eq 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
flags=(train --model "$model" --pp 2 --schedule 1f1b --micro-batch 4 --micro-batches 8 --steps 12 --threads 1)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
steady() { python3 -c 'import json,sys; print("%.1f %s" % (json.load(open(sys.argv[1]))["steady_tokens_per_second"], json.load(open(sys.argv[1]))["params_fingerprint"]))' "$1"; }
declare -A best fp
for round in 1 2; do
    for how in threads mpi-shm mpi-tcp; do
        case $how in
            threads) "$brigade" "${flags[@]}" --stats "$tmp/$how.json" >/dev/null ;;
            mpi-shm) mpirun --oversubscribe -np 2 "$brigade" "${flags[@]}" --stats "$tmp/$how.json" >/dev/null ;;
            mpi-tcp) mpirun --oversubscribe -np 2 --mca btl tcp,self "$brigade" "${flags[@]}" --stats "$tmp/$how.json" >/dev/null ;;
        esac
        read -r tps f < <(steady "$tmp/$how.json")
        fp[$how]=$f
        if [ -z "${best[$how]:-}" ] || python3 -c "import sys; sys.exit(0 if $tps > ${best[$how]} else 1)"; then best[$how]=$tps; fi
    done
done
echo "2-stage 1F1B, m=8, micro-batch 4, $model, one kernel thread per stage ($(nproc) cores)"
printf "%-34s %14s  %s\n" "hosting" "tokens/s" "fingerprint"
printf "%-34s %14s  %s\n" "threads (in-process transport)" "${best[threads]}" "${fp[threads]}"
printf "%-34s %14s  %s\n" "2 processes, MPI shared memory" "${best[mpi-shm]}" "${fp[mpi-shm]}"
printf "%-34s %14s  %s\n" "2 processes, MPI TCP (btl tcp,self)" "${best[mpi-tcp]}" "${fp[mpi-tcp]}"
