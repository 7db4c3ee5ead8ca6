"""Where training and evaluation run: 'cpu' (the default), 'cuda[:N]', or 'auto'.

Only an execution choice: checkpoints are always saved with CPU tensors, and every random
draw that shapes training (shuffling, crops, bit-flip noise positions) comes from CPU
generators, so a GPU run follows the same recipe. It is not bit-identical to a CPU run
(cuDNN picks its own convolution algorithms); compare accuracies, not bits. Evaluation on a
GPU (eval, sweep, study, attacks) runs large batches and draws the flip positions of its
bit-error realizations on the device (models.faults.PositionSampler): other patterns than
the CPU's from the same seed, the same distribution.
"""
from __future__ import annotations

import contextlib
import functools
import sys

import torch

from .errors import ConfigError


def check_device_name(name) -> str:
    """The normalized device name ('cpu', 'auto', 'cuda', 'cuda:N') without looking for a
    GPU: study files are checked on any machine, the device is resolved when the run starts."""
    text = (name if isinstance(name, str) else "").strip().lower()
    index = text[5:] if text.startswith("cuda:") else "0"
    if text not in ("cpu", "auto", "cuda") and not (text.startswith("cuda:") and index.isdigit()):
        hint = "expected cuda or cuda:N" if text.startswith("cuda") else \
            "valid: cpu, cuda, cuda:N, auto"
        raise ConfigError(f"device {name!r}: {hint}")
    return text


def resolve_device(name: str | None) -> torch.device:
    """The torch device for a name (None: cpu); a ConfigError when it is not valid here."""
    name = check_device_name(name or "cpu")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        try:
            dev = torch.device(name)
        except RuntimeError:
            raise ConfigError(f"device {name!r}: expected cuda or cuda:N") from None
        if not torch.cuda.is_available():
            raise ConfigError(f"device {name!r}: this torch sees no CUDA GPU "
                              f"(torch {torch.__version__}); use cpu or auto")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(f"device {name!r}: only {torch.cuda.device_count()} CUDA "
                              f"device(s) visible")
        return dev
    raise ConfigError(f"device {name!r}: valid: cpu, cuda, cuda:N, auto")


@contextlib.contextmanager
def autotuned(device):
    """On a CUDA device, cuDNN times its convolution algorithms once per input shape and keeps
    the fastest (an evaluation runs the same few shapes thousands of times); the global
    setting is restored afterwards. A no-op on the CPU."""
    if torch.device(device).type != "cuda":
        yield
        return
    old = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = old


def model_device(model: torch.nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def cpu_state(model: torch.nn.Module) -> dict:
    """state_dict with CPU tensors: checkpoints load anywhere, whatever trained them."""
    return {k: v.detach().cpu() for k, v in model.state_dict().items()}


# Precision, like the device an execution choice (not part of any recipe or result key).
# Training: the forward pass in float32, or under bfloat16 autocast (weights, optimizer and
# loss stay float32): on 2 CPU cores with AVX512-BF16 ResNet-20 steps 1.5-1.8x faster
# (benchmarks/bench_train.py), with the same clean accuracy and accuracy under bit errors
# within Monte Carlo error (studies/results/resnet20_scratch/bf16_check/).
TRAIN_PRECISIONS = {"fp32": None, "bf16": torch.bfloat16}


def forward_precision(device, precision: str):
    """The autocast context of a training forward pass ('fp32': none)."""
    return autocast(device, TRAIN_PRECISIONS[precision])


def autocast(device, dtype: torch.dtype | None):
    """torch.autocast on `device`'s type in `dtype` (None: disabled). bfloat16 on a CPU
    without native bfloat16 (AVX512-BF16 or AMX) is emulated and much slower than float32:
    one note on stderr per process says so."""
    kind = torch.device(device).type
    if dtype == torch.bfloat16 and kind == "cpu" and not cpu_bf16_native():
        _note_slow_bf16()
    return torch.autocast(kind, dtype=dtype, enabled=dtype is not None)


@functools.cache  # the hardware does not change: one check per process, not one per step
def cpu_bf16_native() -> bool:
    """Whether this CPU computes bfloat16 natively (oneDNN's check; True when unknown)."""
    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    try:
        return bool(check()) if check is not None else True
    except RuntimeError:
        return True


_noted_slow_bf16 = False


def _note_slow_bf16() -> None:
    global _noted_slow_bf16
    if not _noted_slow_bf16:
        _noted_slow_bf16 = True
        print(f"note: precision bf16 on a CPU without native bfloat16 "
              f"({torch.backends.cpu.get_cpu_capability()}): emulated, ~10x slower than fp32 "
              f"(ResNet-20 training step 3.3 vs 0.29 s on a 2-core AVX2 AMD EPYC, "
              f"benchmarks/bench_train.py); use --precision fp32", file=sys.stderr)


# Inference, set for the process (`--precision` of hwsim eval / sweep / study; Ray tasks get
# the submitting process's; models.evaluate.inference_precision applies it):
#   auto  float32 on the CPU, float16 autocast on a GPU (evaluate.GPU_AUTOCAST; the default);
#   fp32  float32 everywhere;
#   bf16  bfloat16 autocast everywhere. On 2 CPU cores with AVX512-BF16, ResNet-20 inference
#         runs ~2x faster, and under the same flips its accuracies on 10,000 CIFAR-10 images
#         stay within 0.15 points of float32 (benchmarks/bench_eval.py --precision).
INFERENCE_PRECISIONS = ("auto", "fp32", "bf16")
_inference = "auto"


def set_inference_precision(name: str) -> str:
    """Set this process's inference precision (INFERENCE_PRECISIONS); returns the old one."""
    global _inference
    if name not in INFERENCE_PRECISIONS:
        raise ConfigError(f"precision {name!r}: valid: {', '.join(INFERENCE_PRECISIONS)}")
    old, _inference = _inference, name
    return old


def get_inference_precision() -> str:
    return _inference


@contextlib.contextmanager
def precision_scope(name: str):
    """`with precision_scope("bf16"): ...` evaluates under `name`, then restores the old one."""
    old = set_inference_precision(name)
    try:
        yield
    finally:
        set_inference_precision(old)
