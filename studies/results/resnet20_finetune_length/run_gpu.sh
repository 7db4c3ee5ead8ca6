#!/usr/bin/env bash
# ResNet-20 fine-tuning length probe, run once on the device tool's GPU (see README.md here).
# The recipe of studies/resnet20_cifar10.yaml (4-bit, lr 0.01 cosine, batch 128, wd 5e-4,
# BFN p=0.005, WCAT lambda=0.01, seed 0, from the committed float baseline), but:
#   wcat+bfn 10 epochs (the study's length: a GPU re-run of its CPU run),
#   wcat+bfn 40 epochs and normal 40 epochs (4x longer),
# then every checkpoint, and the study's CPU-trained normal/wcat+bfn, at BER 0.1% and 1%,
# 50 realizations, seed 0. Usage (repo root): OUT=folder [PY=python3] bash run_gpu.sh
set -u
OUT=${OUT:?set OUT to the output folder}
PY=${PY:-python3}
DATA=../shared/data/cifar10-jpeg.tar.gz
STUDY=studies/results/resnet20_cifar10/checkpoints
hw=("$PY" -m hwsim.cli)
common=(--model resnet20 --data cifar10 --data-root "$DATA" --bits 4 --batch-size 128
        --lr 0.01 --weight-decay 0.0005 --seed 0 --init-from "$STUDY/float.pt"
        --device cuda --threads 4 --no-progress)
wcat=(--quantizer wcat --param weight_decay_a=0.01 --bfn-rate 0.005)

# decode the JPEG copy once (the parallel runs below then share the cache)
"$PY" -c "from hwsim.models.data import load_dataset; load_dataset('cifar10', '$DATA')"
start=$(date +%s)
timeout 470 "${hw[@]}" train "${common[@]}" "${wcat[@]}" --epochs 10 --out "$OUT/wcat_bfn_e10.pt" &
timeout 470 "${hw[@]}" train "${common[@]}" "${wcat[@]}" --epochs 40 --out "$OUT/wcat_bfn_e40.pt" &
timeout 470 "${hw[@]}" train "${common[@]}" --quantizer normal --epochs 40 --out "$OUT/normal_e40.pt" &
wait
echo "training wall: $(( $(date +%s) - start )) s"

for ck in "$OUT/wcat_bfn_e10.pt" "$OUT/wcat_bfn_e40.pt" "$OUT/normal_e40.pt" \
          "$STUDY/wcat_bfn.pt" "$STUDY/normal.pt"; do
  for ber in 0.001 0.01; do
    "${hw[@]}" eval --checkpoint "$ck" --ber "$ber" --realizations 50 --seed 0 --device cuda --json \
      | "$PY" -c "import json, sys; print(json.dumps(json.load(sys.stdin)))" >> "$OUT/evals.jsonl" &
  done
  wait
done
echo "total wall: $(( $(date +%s) - start )) s"
