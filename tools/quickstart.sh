#!/usr/bin/env bash
# The main job on a fresh Debian 12 machine: installs what is missing, builds brigade (release), and
# trains a small GPT on the built-in synthetic task, printing every step and the parameters' fingerprint.
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

model=gpt:layers=2,hidden=64,heads=4,vocab=64,seq=32
echo "== training $model on the synthetic task (repeating random 4-token patterns) =="
"$brigade" train --model "$model" --steps 300 --micro-batch 8 --lr 3e-3 --log-every 25 --stats "$build/quickstart-stats.json"
echo "per-step figures: $build/quickstart-stats.json"
