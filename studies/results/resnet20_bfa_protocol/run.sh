#!/bin/bash
# BFA with the paper's protocol (App. B.4, Sec. 4.3; issue 21) on the committed ResNet-20
# checkpoints (studies/resnet20_cifar10.yaml; CIFAR-10 (JPEG q75 copy)): attack batch 64,
# seeds 0..9 (SEED=10 runs seeds 10..19 into M.s10.json, which summarize.py merges with
# M.json), 500-flip budget, stop rule le10.1 (<= 10.1%, the authors'
# code), which also records the < 11% count of the same runs (n_flips_lt11).
# Resumable: a method whose JSON exists is skipped, and a method interrupted part-way
# continues from its finished seeds (M.json.partial.json, `--out`). METHODS="wcat plclip"
# picks checkpoints (two 1-thread jobs on different methods can share 2 cores).
# DEVICE=cuda: on a GPU (benchmarks/gpu_attacks.sh). Then: python summarize.py > table.md
set -euo pipefail
cd "$(dirname "$0")/../../.."
here=studies/results/resnet20_bfa_protocol
hwsim=${HWSIM:-.venv/bin/hwsim}
for m in ${METHODS:-normal normal_bfn wcat wcat_bfn plclip plclip_bfn lsq lsq_bfn}; do
  out=$here/$m$( [ "${SEED:-0}" = 0 ] || echo ".s$SEED").json
  [ -f "$out" ] && continue
  "$hwsim" attack bfa --checkpoint studies/results/resnet20_cifar10/checkpoints/$m.pt \
    --seeds "${SEEDS:-10}" --seed "${SEED:-0}" --stop-rule le10.1 --threads "${THREADS:-2}" \
    --out "$out" --no-progress ${DEVICE:+--device $DEVICE} > /dev/null
done
