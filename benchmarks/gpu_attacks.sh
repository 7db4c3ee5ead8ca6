#!/usr/bin/env bash
# Issue 21's ResNet-20 attack runs on a lent GPU machine, float32 like the CPU runs
# (GPU_AUTOCAST = None): first the BFA table with the paper's protocol
# (studies/results/resnet20_bfa_protocol/run.sh: attack batch 64, 10 seeds, <= 10.1% with the
# < 11% counts), then stealthy T-BFA with the authors' protocol
# (studies/results/resnet20_tbfa/run.sh). Both skip every checkpoint / pair whose JSON
# exists, so a cut-off run resumes on the next machine; the finished JSONs come back in
# $OUT/results.tgz (unpack at the repository root, then `python summarize.py` in each folder).
# Needs python3 with torch, numpy, scipy, pandas, pyyaml, tqdm, pillow and the CIFAR-10 copy,
# carried as runs/gpu/cifar10-jpeg.tar.gz.
#     LIMIT=SECONDS bash benchmarks/gpu_attacks.sh OUTDIR
set -u
cd "$(dirname "$0")/.."
OUT=${1:-${OUT:-/tmp/gpu_out}}
LIMIT=${LIMIT:-540}
source benchmarks/gpu_lib.sh
command -v nvidia-smi >/dev/null && nvidia-smi -L
cat > "$OUT/hwsim" <<PY
#!/usr/bin/env bash
exec timeout \$(( $LIMIT - (\$(date +%s) - $T0) )) python3 -c "$F32
from hwsim.cli import main; sys.exit(main(sys.argv[1:]))" "\$@"
PY
chmod +x "$OUT/hwsim"
dirs="studies/results/resnet20_bfa_protocol studies/results/resnet20_tbfa"
( HWSIM="$OUT/hwsim" DEVICE="$DEV" bash studies/results/resnet20_bfa_protocol/run.sh &&
  HWSIM="$OUT/hwsim" DEVICE="$DEV" bash studies/results/resnet20_tbfa/run.sh
) >"$OUT/attacks.log" 2>&1 &
S=$!
while kill -0 $S 2>/dev/null; do sleep 20; pack $dirs; done
wait
pack $dirs
tail -n 20 "$OUT/attacks.log"
echo "total $(( $(date +%s) - T0 )) s"
