#!/bin/bash
# The probe of README.md: is PLClip's in-place clamp what makes it more robust than WCAT here?
# WCAT+BFN with its float weights clamped into the range after every step (wcat
# clamp_weights: true), the recipe of studies/resnet20_cifar10.yaml otherwise exactly (10
# epochs fine-tuned from its float.pt, lr 0.01 cosine, batch 128, SGD Nesterov 0.9, weight
# decay 5e-4, p_o 5e-3, lambda 0.01, seed 0, float32); then paired at BER 1% against the
# study's PLClip+BFN and WCAT+BFN (20 realizations, seed 0, all 10,000 test images: the same
# flipped bits for both of a pair). Resumable: rerun the same command.
#   bash studies/results/resnet20_cifar10/sensitivity/clamp.sh
set -euo pipefail
cd "$(dirname "$0")/../../../.."
here=studies/results/resnet20_cifar10/sensitivity
ck=studies/results/resnet20_cifar10/checkpoints
read -ra hw <<< "${HWSIM:-.venv/bin/hwsim}"
"${hw[@]}" train --model resnet20 --data cifar10 --data-root ../shared/data/cifar10-jpeg.tar.gz \
  --quantizer wcat --bits 4 --bfn-rate 0.005 --param weight_decay_a=0.01 \
  --param clamp_weights=true --epochs 10 --batch-size 128 --lr 0.01 --momentum 0.9 \
  --weight-decay 5e-4 --seed 0 --init-from "$ck/float.pt" --threads 2 --precision fp32 \
  --no-progress --out "$here/wcat_bfn_clamp.pt" --resume
for other in plclip_bfn wcat_bfn; do
  out=$here/$other-vs-wcat_bfn_clamp.ber0.01.json
  [ -s "$out" ] && continue
  "${hw[@]}" eval --checkpoint "$ck/$other.pt" --paired-with "$here/wcat_bfn_clamp.pt" \
    --ber 0.01 --realizations 20 --seed 0 --threads 2 --json > "$out.tmp"
  mv "$out.tmp" "$out"
done
