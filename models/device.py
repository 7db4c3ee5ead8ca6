"""Where training and evaluation run: 'cpu' (the default), 'cuda[:N]', or 'auto'.

Only an execution choice: checkpoints are always saved with CPU tensors, and every random
draw that shapes training (shuffling, crops, bit-flip noise positions) comes from CPU
generators, so a GPU run follows the same recipe. It is not bit-identical to a CPU run
(cuDNN picks its own convolution algorithms); compare accuracies, not bits.
"""
from __future__ import annotations

import torch

from .errors import ConfigError


def resolve_device(name: str | None) -> torch.device:
    name = (name or "cpu").strip().lower()
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


def model_device(model: torch.nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def cpu_state(model: torch.nn.Module) -> dict:
    """state_dict with CPU tensors: checkpoints load anywhere, whatever trained them."""
    return {k: v.detach().cpu() for k, v in model.state_dict().items()}
