#!/usr/bin/env bash
# Continue a from-scratch ResNet-20 run of studies/results/resnet20_scratch (issue 21 item 3,
# the paper's 300-epoch recipe) on a lent GPU for LIMIT seconds (default 540), then copy its
# checkpoint and per-epoch log to OUTDIR. The run resumes from the committed checkpoint
# (optimizer, schedule, random state) and a cut-off epoch is redone on the next resume.
# Here, before the device call: `bash benchmarks/gpu_tree.sh aside studies/results/resnet20_scratch`
# (the device takes 64 MiB), then call it with carry ["runs/gpu"]; afterwards copy OUTDIR's
# checkpoint and its .log into studies/results/resnet20_scratch/ and `gpu_tree.sh back`.
# EPOCHS=N continues the N-epoch budget run (METHOD.eN.pt) instead of the 300-epoch one.
# wcat_bfn has its 300 epochs (session 20); float and normal are the ones left.
#     LIMIT=540 bash benchmarks/gpu_scratch.sh OUTDIR [METHOD: float (default), normal, wcat_bfn]
set -u
cd "$(dirname "$0")/.."
OUT=${1:-${OUT:-/tmp/gpu_out}}
M=${2:-float}
F=$M$( [ "${EPOCHS:-300}" = 300 ] || echo ".e$EPOCHS").pt  # run.sh's checkpoint name
LIMIT=${LIMIT:-540}
source benchmarks/gpu_lib.sh
command -v nvidia-smi >/dev/null && nvidia-smi -L
# timeout on the training process itself (not on run.sh's shell, which would leave it running)
HWSIM="timeout $LIMIT python3 -m hwsim.cli" DEVICE=$DEV \
  bash studies/results/resnet20_scratch/run.sh "$M"
echo "rc=$? (124: stopped at LIMIT, resumable) after $(( $(date +%s) - T0 )) s"
cp "studies/results/resnet20_scratch/$F" "studies/results/resnet20_scratch/$F.log" "$OUT/"
tail -n 3 "studies/results/resnet20_scratch/$F.log"
