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
