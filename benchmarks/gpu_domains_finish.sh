#!/usr/bin/env bash
# Second, short GPU call of issue 22 (after benchmarks/gpu_domains.sh ran out of time; same
# float32 inference): finishes wcat+bfn+abfn's training (resumes its checkpoint by the study's
# recipe), sweeps it with every weight and activation memory in the domain from the cheap high
# voltages down (the same rows `hwsim study studies/resnet20_domains_act.yaml` writes: label,
# seed, realizations and CI target are the study's), and runs studies/resnet20_domains.yaml's
# SECDED / MSB-2 scenarios beside it (energies from the committed cache, no CACTI needed).
#     LIMIT=SECONDS bash benchmarks/gpu_domains_finish.sh OUTDIR
set -u
cd "$(dirname "$0")/.."
OUT=${1:-${OUT:-/tmp/gpu_out}}
LIMIT=${LIMIT:-100}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-6}  # two processes share the machine's cores
source benchmarks/gpu_lib.sh
DIRS=(studies/results/resnet20_domains studies/results/resnet20_domains_act)
STUDY=studies/resnet20_domains_act.yaml
CK=studies/results/resnet20_domains_act/checkpoints/wcat_bfn_abfn.pt
(
  timeout "$(left)" python3 -c "$F32
from hwsim.study_spec import load_study
from hwsim.study import train_config, checkpoint_path
from hwsim.models.train import train
s = load_study('$STUDY'); m = [m for m in s.methods if m.name == 'wcat+bfn+abfn'][0]
train(train_config(s, m), checkpoint_path(s, m), resume=True, progress=False, device='$DEV')
print('trained')"
  for lo_hi in 0.44:0.5 0.42:0.42 0.4:0.4; do
    hw sweep --checkpoint $CK --arch arch/eyeriss_sram_domains.yaml --vmin ${lo_hi%:*} \
      --vmax ${lo_hi#*:} --step 0.02 --realizations 6 --ci-target 0.005 --seed 0 \
      --label wcat+bfn+abfn --domains weights,pe_weights,activations --device "$DEV" \
      --no-progress --resume --out studies/results/resnet20_domains_act/results.csv
  done
) >"$OUT/a.log" 2>&1 &
A=$!
( hw study studies/resnet20_domains.yaml --only normal,wcat+bfn --device "$DEV" --no-progress
) >"$OUT/b.log" 2>&1 &
B=$!
while kill -0 $A 2>/dev/null || kill -0 $B 2>/dev/null; do sleep 8; pack "${DIRS[@]}"; done
wait
pack "${DIRS[@]}"
cp $CK.log "$OUT/" 2>/dev/null
tail -n 30 "$OUT/a.log" "$OUT/b.log"
echo "total $(( $(date +%s) - T0 )) s"
