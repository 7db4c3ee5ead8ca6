#!/usr/bin/env bash
# Issue 21's ResNet-20 ablations on a lent GPU machine: studies/resnet20_ablation.yaml (the
# WCAT paper's Table 1 grad scale x lambda grid, Fig. 6 STE / PWL / MAD, Table 2 8-bit range
# init) with --device cuda, float32 like the committed CPU runs (GPU_AUTOCAST = None). Rows
# whose results are committed are skipped (all 13 are, session 24: run it to redo rows, e.g.
# after deleting their points, or with STUDY= below); it resumes: run it again (same OUTDIR or
# not) and every finished checkpoint / point is skipped. --only lists every method so that the
# report (plotly) waits for a CPU machine: afterwards `hwsim study STUDY` there draws it.
# Energies come from the committed cache arch/cache/energy.json (4- and 8-bit ResNet-20).
# STUDY=studies/resnet20_8bit.yaml runs Fig. 2 on ResNet-20 the same way (default: the
# ablation; any study file whose report can wait for a CPU machine).
# Needs python3 with torch, numpy, scipy, pandas, pyyaml, tqdm, pillow and the CIFAR-10 copy,
# carried as runs/gpu/cifar10-jpeg.tar.gz.
#     LIMIT=SECONDS bash benchmarks/gpu_ablation.sh OUTDIR
set -u
cd "$(dirname "$0")/.."
OUT=${1:-${OUT:-/tmp/gpu_out}}
LIMIT=${LIMIT:-540}        # the study is stopped by then (seconds from the start); it resumes
STUDY=${STUDY:-studies/resnet20_ablation.yaml}
source benchmarks/gpu_lib.sh
command -v nvidia-smi >/dev/null && nvidia-smi -L
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
{ read -r METHODS; read -r RESULTS; } < <(python3 -c "from hwsim.study_spec import load_study
s = load_study('$STUDY'); print(','.join(m.name for m in s.methods), s.out_dir, sep='\n')")
( hw study "$STUDY" --only "$METHODS" --device "$DEV" --no-progress
) >"$OUT/ablation.log" 2>&1 &
S=$!
while kill -0 $S 2>/dev/null; do sleep 20; pack "$RESULTS"; done
wait
pack "$RESULTS"
tail -n 40 "$OUT/ablation.log"
echo "total $(( $(date +%s) - T0 )) s"
