#!/usr/bin/env bash
# Issue 22's heavy steps on a lent GPU machine, in float32 (GPU_AUTOCAST = None, like the CPU
# runs, so the new rows sit beside the committed CPU rows of the same studies):
#  A. studies/resnet20_domains_act.yaml --only wcat+bfn+abfn: trains WCAT+BFN with activation
#     bit-flip noise (10 epochs, the committed wcat+bfn recipe + act_bfn) and sweeps it with
#     every weight and activation memory in the low-voltage domain;
#  B. (beside A, same GPU) studies/resnet20_domains.yaml (SECDED and MSB-2 scenarios), the
#     0.40 / 0.42 V activation points of normal and wcat+bfn, then per-layer voltages
#     (`hwsim optimize-voltages`) for the ResNet-20 normal and WCAT+BFN checkpoints.
# The reports are drawn afterwards on a CPU machine by `hwsim study FILE` (every point is then
# found done; plotly and accelforge are not needed here: the energies come from the committed
# cache arch/cache/energy.json).
# Needs python3 with torch, numpy, scipy, pandas, pyyaml, tqdm, pillow and the CIFAR-10 copy,
# carried as runs/gpu/cifar10-jpeg.tar.gz.
#     LIMIT=SECONDS bash benchmarks/gpu_domains.sh OUTDIR
set -u
cd "$(dirname "$0")/.."
OUT=${1:-${OUT:-/tmp/gpu_out}}
LIMIT=${LIMIT:-480}        # every step ends by then (seconds from the start)
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-6}  # two processes share the machine's cores
source benchmarks/gpu_lib.sh
DIRS=(studies/results/resnet20_domains studies/results/resnet20_domains_act
      studies/results/resnet20_voltages)
command -v nvidia-smi >/dev/null && nvidia-smi -L
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
mkdir -p studies/results/resnet20_voltages
python3 -c "from hwsim.models.data import load_cifar10; tr, te = load_cifar10('../shared/data/cifar10-jpeg.tar.gz'); print('decoded', len(tr), len(te))"
echo "decode done at $(( $(date +%s) - T0 )) s"

( hw study studies/resnet20_domains_act.yaml --only wcat+bfn+abfn --device "$DEV" --no-progress
) >"$OUT/a.log" 2>&1 &
A=$!
(
  hw study studies/resnet20_domains.yaml --only normal,wcat+bfn --device "$DEV" --no-progress
  hw study studies/resnet20_domains_act.yaml --only normal,wcat+bfn --device "$DEV" --no-progress
  for m in normal wcat_bfn; do
    hw optimize-voltages --checkpoint studies/results/resnet20_cifar10/checkpoints/$m.pt \
      --arch arch/eyeriss_sram.yaml --max-drop 1.0 --seed 0 --device "$DEV" --no-progress \
      --out studies/results/resnet20_voltages/$m.yaml
  done
) >"$OUT/b.log" 2>&1 &
B=$!
while kill -0 $A 2>/dev/null || kill -0 $B 2>/dev/null; do sleep 20; pack "${DIRS[@]}"; done
wait
pack "${DIRS[@]}"
cp studies/results/resnet20_domains_act/checkpoints/*.log "$OUT/" 2>/dev/null
tail -n 40 "$OUT/a.log" "$OUT/b.log"
echo "total $(( $(date +%s) - T0 )) s"
