# Shared set-up of the time-boxed GPU scripts (sourced by gpu_domains.sh,
# gpu_domains_finish.sh and gpu_ablation.sh, from the repository root, after OUT and LIMIT
# are set): environment, CIFAR copy, `left` (seconds to the LIMIT), `hw` (hwsim's CLI with
# float32 inference on the GPU, bounded by what is left, logging its exit status and time)
# and `pack DIR...` (the folders as $OUT/results.tgz, refreshed while the steps run so that
# a cut-off run still returns them).
DEV=${DEV:-cuda}
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 \
  HWSIM_CACHE="${HWSIM_CACHE:-/tmp/hwsim-cache}"
T0=$(date +%s)
F32="import sys, hwsim.models.evaluate as e; e.GPU_AUTOCAST = None"
left() { echo $(( LIMIT - ($(date +%s) - T0) )); }
hw() {
  local t; t=$(left); [ "$t" -gt 5 ] || { echo "skipped (time): $*"; return 124; }
  timeout "$t" python3 -c "$F32
from hwsim.cli import main; sys.exit(main(sys.argv[1:]))" "$@"
  local rc=$?; echo "rc=$rc at $(( $(date +%s) - T0 )) s: $*"; return $rc
}
if [ ! -f ../shared/data/cifar10-jpeg.tar.gz ]; then
  mkdir -p ../shared/data && cp runs/gpu/cifar10-jpeg.tar.gz ../shared/data/
fi
pack() {
  tar czf "$OUT/results.tgz.tmp" --exclude='*.lock' --exclude='*.json.tmp' "$@" 2>/dev/null
  mv -f "$OUT/results.tgz.tmp" "$OUT/results.tgz"
}
