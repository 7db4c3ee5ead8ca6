#!/bin/bash
# ResNet-20 / CIFAR-10 (JPEG q75 copy) trained from scratch with the WCAT paper's recipe
# (App. B.2; issue 21 item 3): SGD Nesterov 0.9, weight decay 5e-4, batch 128, cosine from lr
# 0.1 over EPOCHS (default 300), seed 0. One checkpoint per method, written after every epoch
# with its optimizer, schedule and random state, so a killed run continues where it stopped:
# rerun the same command (on any machine; DEVICE=cuda on a GPU). Each epoch's test accuracy
# is a JSON line in <checkpoint>.log (the accuracy-vs-epochs record).
#   bash run.sh [float|normal|wcat_bfn ...]     (default: float)
# EPOCHS=N (not 300) trains the same recipe with a budget of N epochs into <method>.eN.pt:
# final accuracy vs budget, `python budget.py` (a cosine schedule's accuracy part-way through
# a long run is not what a shorter run reaches).
# On a lent GPU (no .venv there): HWSIM="python3 -m hwsim.cli" DEVICE=cuda, under `timeout`
# (a cut-off epoch is redone on the next resume; the checkpoint is replaced atomically).
# PRECISION=bf16 runs the forward pass under bfloat16 autocast (`hwsim train --precision`;
# 1.5-1.8x on a CPU with AVX512-BF16, weights and evaluation float32; see README.md);
# PRECISION=fp32 as before. Default: bf16, except on a CPU without native bfloat16 (AVX2
# only: bf16 emulated, 11x slower), where fp32. Each epoch's log line records bf16 when used.
set -euo pipefail
cd "$(dirname "$0")/../../.."
here=studies/results/resnet20_scratch
if [ -z "${PRECISION:-}" ]; then
  PRECISION=bf16
  if [ "${DEVICE:-cpu}" = cpu ] && ! "${PYTHON:-.venv/bin/python}" -c \
      "import sys; from hwsim.models.device import cpu_bf16_native; sys.exit(not cpu_bf16_native())"
  then PRECISION=fp32; echo "run.sh: no native bfloat16 on this CPU: PRECISION=fp32" >&2; fi
fi
read -ra hwsim <<< "${HWSIM:-.venv/bin/hwsim}"  # a path or a command line
for m in "${@:-float}"; do
  case $m in
    float) q=(--quantizer float); [ "${DEVICE:-cpu}" != cpu ] || q+=(--compile) ;;
    normal) q=(--quantizer normal --bits 4) ;;
    wcat_bfn) q=(--quantizer wcat --bits 4 --bfn-rate 0.005 --param weight_decay_a=0.01) ;;
    *) echo "run.sh: unknown method $m (valid: float, normal, wcat_bfn)" >&2; exit 2 ;;
  esac
  "${hwsim[@]}" train --model resnet20 --data cifar10 --data-root ../shared/data/cifar10-jpeg.tar.gz \
    "${q[@]}" --epochs "${EPOCHS:-300}" --batch-size 128 --lr 0.1 --momentum 0.9 \
    --weight-decay 5e-4 --seed 0 --threads "${THREADS:-2}" ${DEVICE:+--device $DEVICE} \
    --precision "$PRECISION" \
    --no-progress --out "$here/$m$( [ "${EPOCHS:-300}" = 300 ] || echo ".e$EPOCHS").pt" --resume
done
