#!/bin/bash
# Stealthy T-BFA (paper App. F / Table 4) on the committed ResNet-20 checkpoints
# (studies/resnet20_cifar10.yaml; CIFAR-10 (JPEG q75 copy)). Pairs: the first three of
# numpy.random.default_rng(0).choice over the 90 ordered class pairs (no hand-picking);
# 3 attack seeds (0, 1, 2) per pair, attack batch 128, ASR target 0.99, budget 500 flips.
# Resumable: a pair whose JSON exists is skipped. Then: python summarize.py > table.md
set -euo pipefail
cd "$(dirname "$0")/../../.."
here=studies/results/resnet20_tbfa
hwsim=${HWSIM:-.venv/bin/hwsim}
for m in normal wcat wcat_bfn; do
  for pair in "bird horse" "dog airplane" "ship bird"; do
    set -- $pair
    out=$here/$m.$1-$2.json
    [ -f "$out" ] && continue
    "$hwsim" attack tbfa --checkpoint studies/results/resnet20_cifar10/checkpoints/$m.pt \
      --source "$1" --target "$2" --seeds 3 --seed 0 --threads "${THREADS:-2}" --json \
      --no-progress > "$out.tmp"
    mv "$out.tmp" "$out"
  done
done
