#!/bin/bash
# Issue 21 item 3's targets for the 300-epoch WCAT+BFN (wcat_bfn.pt), once it has its 300
# epochs: paired at BER 1% (20 realizations, seed 0, all 10,000 test images) against the
# ResNet-20 study's PLClip+BFN and against its own 10-epoch fine-tune, then the table:
#   bash final_eval.sh            (~15 min on 2 CPU cores in float32)
# Each JSON is written whole or not at all; a finished one is not evaluated again.
# PRECISION=bf16 evaluates in bf16 (~1.7x; say so beside the results); ALLOW_PARTIAL=1
# evaluates a checkpoint still being trained (its JSON records epochs_trained).
set -euo pipefail
cd "$(dirname "$0")/../../.."
here=studies/results/resnet20_scratch
study=studies/results/resnet20_cifar10/checkpoints
read -ra hwsim <<< "${HWSIM:-.venv/bin/hwsim}"
python=${PYTHON:-.venv/bin/python}
last=$(tail -n 1 "$here/wcat_bfn.pt.log" | sed -n 's/^{"epoch": \([0-9]*\),.*/\1/p')
if [ "${last:-0}" != 300 ] && [ -z "${ALLOW_PARTIAL:-}" ]; then
  echo "final_eval.sh: wcat_bfn.pt has ${last:-0} of 300 epochs; finish it (bash run.sh" \
       "wcat_bfn) or set ALLOW_PARTIAL=1" >&2
  exit 2
fi
mkdir -p "$here/final"
for pair in plclip_bfn wcat_bfn; do
  out="$here/final/${pair}-vs-scratch_wcat_bfn.ber0.01.json"
  [ -s "$out" ] && continue
  "${hwsim[@]}" eval --checkpoint "$study/$pair.pt" --paired-with "$here/wcat_bfn.pt" \
    --ber 0.01 --realizations 20 --seed 0 --threads "${THREADS:-2}" \
    --precision "${PRECISION:-auto}" --json > "$out.tmp"
  mv "$out.tmp" "$out"
done
"$python" "$here/final_table.py" "$here"/final/*-vs-scratch_wcat_bfn.ber0.01.json \
  > "$here/final/table.md"
cat "$here/final/table.md"
