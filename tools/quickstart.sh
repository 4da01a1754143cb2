#!/usr/bin/env bash
# The main job on a fresh Debian 12 machine: installs what is missing, builds brigade (release), and
# trains a small GPT through a 2-stage pipeline on the built-in synthetic task, printing every step, the
# parameters' fingerprint and where the timeline went.
#   BRG_BUILD=dir   build directory (default build-release)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
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

model=gpt:layers=4,hidden=64,heads=4,vocab=64,seq=32
trace=$build/quickstart-trace.json
echo "== training $model through a 2-stage 1F1B pipeline on the synthetic task (repeating random 4-token patterns) =="
"$brigade" train --model "$model" --pp 2 --schedule 1f1b --micro-batches 4 --micro-batch 4 --steps 300 --lr 2e-3 \
    --log-every 25 --trace "$trace" --stats "$build/quickstart-stats.json"
echo "per-step figures: $build/quickstart-stats.json"
echo "timeline of the last step (one track per stage): $trace - open it in https://ui.perfetto.dev"
