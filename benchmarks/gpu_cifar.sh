#!/usr/bin/env bash
# The CIFAR pipeline's heavy steps on a lent GPU machine (issue 20 item 5, issue 18 results):
#  1. the ResNet-20 WCAT+BFN transient sweep of studies/resnet20_cifar10.yaml (same grid and
#     Monte Carlo settings as the committed CPU run) with --device cuda, timed;
#  2. studies/resnet20_chips.yaml (4 methods x 50 persistent chips x 22 voltages), --only so
#     that no plotly is needed there; the report is drawn afterwards on a CPU machine by
#     `hwsim study studies/resnet20_chips.yaml` (it finds every point done).
# Needs python3 with torch, numpy, scipy, pandas, scikit-learn, pyyaml, tqdm, pillow (the GPU
# image has them), the project on PYTHONPATH, and the CIFAR-10 copy: carried as
# runs/gpu/cifar10-jpeg.tar.gz and put where the study files expect it (../shared/data/).
#     bash benchmarks/gpu_cifar.sh OUTDIR
set -u
cd "$(dirname "$0")/.."
OUT=${1:-${OUT:-/tmp/gpu_out}}
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HWSIM_CACHE="${HWSIM_CACHE:-/tmp/hwsim-cache}"
nvidia-smi -L
python3 -c "import torch; print('torch', torch.__version__)"
if [ ! -f ../shared/data/cifar10-jpeg.tar.gz ]; then
  mkdir -p ../shared/data && cp runs/gpu/cifar10-jpeg.tar.gz ../shared/data/
fi
t0=$(date +%s%N)
python3 -c "from hwsim.models.data import load_cifar10; tr, te = load_cifar10('../shared/data/cifar10-jpeg.tar.gz'); print('decoded', len(tr), len(te))"
echo "decode: $(( ($(date +%s%N) - t0) / 1000000 )) ms"

echo "== 1. transient sweep, ResNet-20 WCAT+BFN, --device cuda"
t0=$(date +%s%N)
python3 -m hwsim.cli sweep --checkpoint studies/results/resnet20_cifar10/checkpoints/wcat_bfn.pt \
  --vmin 0.38 --vmax 0.8 --step 0.02 --realizations 20 --ci-target 0.01 --label wcat+bfn \
  --device cuda --out "$OUT/gpu_sweep_wcat_bfn.csv" --no-progress
echo "sweep wall: $(( ($(date +%s%N) - t0) / 1000000 )) ms"

echo "== 2. persistent chips study, ResNet-20, --device cuda"
t0=$(date +%s%N)
python3 -m hwsim.cli study studies/resnet20_chips.yaml --only normal,plclip,wcat,wcat+bfn \
  --device cuda --no-progress
echo "chips study wall: $(( ($(date +%s%N) - t0) / 1000000 )) ms"
cp -r studies/results/resnet20_chips "$OUT/"
find "$OUT" -name '*.lock' -delete
