"""Accuracy, clean and under random bit errors in the stored weight integers.

Evaluation never mutates the trained model: each realization starts from the clean stored
integers captured once, and the faulty weights are installed as per-layer overrides that are
removed afterwards.
"""
from __future__ import annotations

import contextlib
import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn as nn
from scipy import stats
from tqdm import tqdm

from .device import autocast, autotuned, get_inference_precision, model_device
from .errors import ConfigError
from .faultplan import FaultPlan
from .faults import MixedWidths, PositionSampler, check_ber, flip_positions  # check_ber: re-exported
from .quant import quant_layers


def use_channels_last(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """On CPU, channels-last convolutions are ~1.2-1.3x faster for 32x32 images (measured,
    benchmarks/bench_train.py); tiny 8x8 inputs gain nothing. Converts model and batch
    (values unchanged)."""
    if x.dim() == 4 and x.shape[-1] >= 16:
        model.to(memory_format=torch.channels_last)
        return x.contiguous(memory_format=torch.channels_last)
    return x


# Inference batch: on 2 CPU cores ResNet-20 runs 10,000 32x32 images 2.08x faster in batches
# of 128 than of 1000 (activations stay in cache; benchmarks/bench_eval.py).
EVAL_BATCH = 128
# On a GPU large batches fill it: ResNet-20 on an H200 runs 10,000 images 4.2x faster in
# batches of 5000 than of 1000 (10,000: 4.5x, at twice the memory; bench_eval.py).
GPU_EVAL_BATCH = 5000


# On a GPU inference runs under float16 autocast (float32 accumulation): ResNet-20 Monte Carlo
# on an H200 runs 54 instead of 38 realizations/s, and with the same flips the accuracies on
# 4,000 CIFAR-10 images differ by at most 2 images (mean 1e-5; no overflow at BER 5%). There
# float32 convolutions use TF32 (a float16-sized mantissa) anyway. None: float32.
GPU_AUTOCAST: torch.dtype | None = torch.float16


_DTYPE_NAMES = {torch.float16: "fp16", torch.bfloat16: "bf16"}
_NAME_DTYPES = {v: k for k, v in _DTYPE_NAMES.items()}


def precision_name(device) -> str:
    """What inference on `device` computes in under the process's precision: 'fp32', 'bf16'
    or 'fp16' ('auto' resolved: float32 on the CPU, GPU_AUTOCAST on a GPU)."""
    name = get_inference_precision()
    if name == "auto":
        gpu = torch.device(device).type == "cuda" and GPU_AUTOCAST is not None
        return _DTYPE_NAMES.get(GPU_AUTOCAST, "fp32") if gpu else "fp32"
    return name


def run_context(model: nn.Module) -> dict:
    """Where and how `model` is evaluated now: {'device': 'cpu' | 'cuda' | ...,
    'precision': precision_name}; results rows record it (hwsim.sweep.point_row)."""
    dev = model_device(model)
    return {"device": dev.type, "precision": precision_name(dev)}


def inference_precision(device):
    """The autocast context of inference on `device` under the process's precision."""
    dtype = _NAME_DTYPES.get(precision_name(device))
    return contextlib.nullcontext() if dtype is None else autocast(device, dtype)


def eval_batch_size(device) -> int:
    """The inference batch for tensors on `device`: EVAL_BATCH on the CPU, else GPU_EVAL_BATCH."""
    return EVAL_BATCH if torch.device(device).type == "cpu" else GPU_EVAL_BATCH


def on_model_device(data, model: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """(images, labels) of an ImageData or an (x, y) pair, moved once to the model's device
    (a no-op on the CPU), so repeated passes over them copy nothing."""
    x, y = data.tensors() if hasattr(data, "tensors") else data
    dev = model_device(model)
    return x.to(dev), y.to(dev)


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
    """Predicted classes of `x` (default batch: eval_batch_size of x's device; under the
    process's inference precision: by default float32 on the CPU, GPU_AUTOCAST on a GPU)."""
    model.eval()
    batch_size = batch_size or eval_batch_size(x.device)
    x = use_channels_last(model, x)
    with autotuned(x.device), inference_precision(x.device):
        return torch.cat([model(x[i:i + batch_size]).argmax(1)
                          for i in range(0, len(x), batch_size)])


def hit_rate(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
             batch_size: int | None = None) -> torch.Tensor:
    """Accuracy as a 0-d float32 tensor left on the model's device: a GPU keeps computing
    while the caller queues the next realization (float() it, or stack many, when needed)."""
    return (predict(model, x, batch_size) == y).float().mean()


@torch.no_grad()
def accuracy(model: nn.Module, data, batch_size: int | None = None) -> float:
    x, y = on_model_device(data, model)
    return float(hit_rate(model, x, y, batch_size))


class StoredWeights:
    """The clean stored integers of every quantized layer, flattened into one vector, so a
    realization draws K ~ Binomial(sum_l N_l * b_l, p) once for the whole memory.

    `layer_bits`: each layer's width. `bits`: the width when all layers share one (the
    plain numbering i * bits + j), else None and `widths` (faults.MixedWidths) numbers the
    bits layer by layer; `coding` is whichever of the two flip_positions takes."""

    def __init__(self, model: nn.Module):
        named = quant_layers(model)
        self.names, self.layers = [n for n, _ in named], [m for _, m in named]
        if not self.layers:
            raise ConfigError("the model has no quantized layers: bit errors need stored "
                              "integers (train with a quantizer)")
        self.layer_bits = [m.quantizer.bits for m in self.layers]
        self.bits = self.layer_bits[0] if len(set(self.layer_bits)) == 1 else None
        ints, self.scales, self.shapes = [], [], []
        with torch.no_grad():
            for m in self.layers:
                i, s = m.quantizer.integers(m.weight)
                ints.append(i.reshape(-1))
                self.scales.append(s)
                self.shapes.append(m.weight.shape)
        self.sizes = [t.numel() for t in ints]
        self.ints = torch.cat(ints)
        self.widths = MixedWidths(self.sizes, self.layer_bits, self.ints.device)
        self.n_bits = self.widths.n_bits  # = ints.numel() * bits when uniform
        self.coding = self.bits if self.bits is not None else self.widths

    def weights(self, ints: torch.Tensor) -> list[torch.Tensor]:
        parts = torch.split(ints, self.sizes)
        out = []
        for p, sh, s, m in zip(parts, self.shapes, self.scales, self.layers):
            w = p.float().reshape(sh) * s
            if w.dim() == 4 and not m.weight.is_contiguous():  # follow the layer's layout
                w = w.contiguous(memory_format=torch.channels_last)
            out.append(w)
        return out

    def flipped(self, positions) -> list[torch.Tensor]:
        """The weights with these bit positions flipped (numpy array or tensor)."""
        return self.weights(flip_positions(self.ints, self.coding, positions))

    @contextlib.contextmanager
    def installed(self, weights: list[torch.Tensor]):
        try:
            for m, w in zip(self.layers, weights):
                m.weight_override = w
            yield
        finally:
            for m in self.layers:
                m.weight_override = None


def t_halfwidth(std: float, n: int) -> float:
    """Half-width of the 95% confidence interval of a mean of n samples with std `std`."""
    if n < 2:
        return float("inf")
    return float(stats.t.ppf(0.975, n - 1) * std / math.sqrt(n))


@dataclass
class BitErrorResult:
    ber: float | dict  # as given: one rate, or {layer name: rate}
    clean: float
    mean: float
    std: float
    ci95: float  # half-width
    realizations: int
    accuracies: list[float] = field(default_factory=list)
    flips: list[int] = field(default_factory=list)
    layout: tuple = ()  # (weights, bits) per quantized layer: equal layouts + seed = same flips

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in
                ("ber", "clean", "mean", "std", "ci95", "realizations")}


@dataclass
class PairedDifference:
    """b - a over realizations that share their bit-error patterns (common random numbers:
    the part of the pattern-to-pattern spread that both sides share cancels)."""
    mean: float
    std: float
    ci95: float  # half-width (t)
    realizations: int
    wilcoxon_p: float  # two-sided signed-rank test of a zero median difference
    same_patterns: bool  # both sides saw the very same flipped bit positions
    differences: list[float] = field(default_factory=list)  # b - a, realization by realization

    def as_dict(self) -> dict:
        return dict(self.__dict__)

    @property
    def b_ahead(self) -> int:
        return sum(d > 0 for d in self.differences)

    @property
    def a_ahead(self) -> int:
        return sum(d < 0 for d in self.differences)


def paired_difference(a: BitErrorResult, b: BitErrorResult) -> PairedDifference:
    """Compare two evaluations made with the same seed, rate and realization count
    (evaluate_under_bit_errors): the per-realization differences b - a. Two networks with
    the same quantized layer sizes and widths get the same flip positions from one seed
    (`same_patterns`); otherwise the pairs still share their random draws, and the test
    stays valid, but less of the spread cancels."""
    if a.realizations != b.realizations or a.ber != b.ber:
        raise ConfigError(f"paired comparison needs the same rate and realizations: "
                          f"{a.ber!r} x {a.realizations} vs {b.ber!r} x {b.realizations}")
    d = np.asarray(b.accuracies) - np.asarray(a.accuracies)
    std = float(d.std(ddof=1)) if len(d) > 1 else 0.0
    p = float(stats.wilcoxon(d).pvalue) if np.any(d != 0) else 1.0
    return PairedDifference(float(d.mean()), std, t_halfwidth(std, len(d)), len(d), p,
                            bool(a.layout) and a.layout == b.layout and a.flips == b.flips,
                            d.tolist())


@torch.no_grad()
def evaluate_under_bit_errors(model: nn.Module, data, ber, realizations: int = 50,
                              seed: int = 0, progress: bool = False,
                              batch_size: int | None = None,
                              sampler: str | None = None, protection=None) -> BitErrorResult:
    """Plain Monte Carlo: accuracy over `realizations` independent bit-error patterns.
    `ber`: one bit error rate for every stored bit, or {layer name (quant_layers): ber}
    (unnamed layers error-free; models.faultplan). `protection`: 'none' (default), 'secded'
    or 'msb:K' (models.protection). `sampler`: where flip positions are drawn, 'host' or
    'device' (default: host on the CPU, device on a GPU; see faults.PositionSampler).
    `flips` holds each realization's number of weight bits read wrong."""
    if not isinstance(ber, Mapping):
        check_ber(ber)
    if realizations < 1:
        raise ConfigError(f"realizations={realizations!r}: must be >= 1")
    x, y = on_model_device(data, model)
    model.eval()
    stored = StoredWeights(model)
    plan = FaultPlan(stored, ber, protection)
    clean = float(hit_rate(model, x, y, batch_size))
    rng = np.random.default_rng(seed)
    positions = PositionSampler(stored.n_bits, rng, seed, stored.ints.device, sampler)
    accs, flips = [], []
    for _ in tqdm(range(realizations), desc=plan.desc, disable=not progress, leave=False, file=sys.stderr):
        pos = plan.positions(plan.draw_counts(rng), positions, rng)
        with stored.installed(stored.flipped(pos)):
            accs.append(hit_rate(model, x, y, batch_size))
        flips.append(len(pos))
    accs = torch.stack(accs).tolist()  # one device-to-host copy for all realizations
    a = np.asarray(accs)
    std = float(a.std(ddof=1)) if len(a) > 1 else 0.0
    return BitErrorResult(plan.label, clean, float(a.mean()), std, t_halfwidth(std, len(a)),
                          len(a), accs, flips, tuple(zip(stored.sizes, stored.layer_bits)))
