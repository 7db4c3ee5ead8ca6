#!/usr/bin/env bash
# Every check that needs a CUDA GPU, in one run: tests/test_device.py (GPU vs CPU agreement of
# training, sweeps and attacks; its tests that need hwsim's optional pieces such as accelforge
# or plotly skip where those are missing), then benchmarks/bench_eval.py --device cuda
# (Monte Carlo realizations/s against a plain loop measured in the same run) and
# benchmarks/bench_bfn.py --device cuda (BFN training step, flips drawn on the host vs the GPU).
#
# Needs only python3 with torch, numpy, scipy, pandas, scikit-learn and pytest: no .venv and
# no `pip install` (the project is put on PYTHONPATH; tqdm is stubbed where it is missing).
#
#     bash benchmarks/gpu_check.sh [bench_eval.py options, e.g. --realizations 50]
#     PYTHON=/path/to/python bash benchmarks/gpu_check.sh
set -u
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

if ! "$PY" -c "import tqdm" 2>/dev/null; then  # models/ draws progress bars with tqdm
  stub=$(mktemp -d)
  mkdir "$stub/tqdm"
  cat > "$stub/tqdm/__init__.py" <<'EOF'
class tqdm:
    """Stand-in without output (gpu_check.sh): iterable, update, set_postfix, close."""

    def __init__(self, iterable=None, *args, **kwargs):
        self.iterable = iterable

    def __iter__(self):
        return iter(self.iterable)

    def update(self, *args, **kwargs):
        pass

    def set_postfix(self, *args, **kwargs):
        pass

    def close(self):
        pass
EOF
  export PYTHONPATH="$stub:$PYTHONPATH"
  echo "gpu_check: tqdm not installed, using a silent stand-in"
fi

"$PY" -c "import torch; print('torch', torch.__version__, '| CUDA', torch.version.cuda, '|',
torch.cuda.get_device_name() if torch.cuda.is_available() else 'NO CUDA GPU VISIBLE')"

echo "== tests/test_device.py"
"$PY" -m pytest -q -rs -p no:cacheprovider tests/test_device.py
tests=$?

echo "== benchmarks/bench_eval.py --device cuda $*"
"$PY" benchmarks/bench_eval.py --device cuda "$@"
bench=$?

echo "== benchmarks/bench_bfn.py --device cuda"
"$PY" benchmarks/bench_bfn.py --device cuda
bfn=$?

echo "gpu_check: tests exit status $tests, benchmark exit status $bench, bench_bfn $bfn"
[ "$tests" -eq 0 ] && [ "$bench" -eq 0 ] && [ "$bfn" -eq 0 ]
