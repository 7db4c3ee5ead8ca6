"""Transient bit errors in stored activations (issue 22, item 2; network side).

Storage: each quantized layer's *input* activations are held as `bits`-bit integers (8 by
default, the energy model's activation width) with one scale per layer, calibrated once on a
batch of images as the `percentile` (default 100: max) of |x| at that layer's input:
  - unsigned when the calibration inputs are all >= 0 (after a ReLU): q in [0, 2^b - 1],
    s = range / (2^b - 1);
  - signed otherwise (e.g. the normalised image): two's complement, q in [-Q, Q],
    Q = 2^(b-1) - 1, s = range / Q.
Values outside the calibrated range are clipped (saturating storage).

Faults: at activation bit error rate p every stored bit flips independently with probability
p, afresh on every forward pass (transient: a new pattern per inference batch). As for the
weights (models/faults.py), K ~ Binomial(n_bits, p) and then K distinct positions uniformly,
which is exactly the per-bit Bernoulli model; both are drawn on a seeded torch generator.

Training companion (`add_activation_bfn`): bit-flip noise on the activations in training mode
only, with a per-batch max|x| scale and straight-through gradients (as weight BFN).
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn

from .errors import ConfigError
from .evaluate import (BitErrorResult, StoredWeights, check_ber, hit_rate, on_model_device,
                       t_halfwidth)
from .faultplan import FaultPlan
from .faults import PositionSampler
from .quant import quant_layers

ACT_BITS = 8  # the energy model's activation width
CALIBRATION_IMAGES = 256


@dataclass(frozen=True)
class ActScale:
    """How one layer's input activations are stored: `bits`-bit integers times `scale`,
    two's complement when `signed`, else unsigned."""
    scale: float
    signed: bool
    bits: int = ACT_BITS

    @property
    def lo(self) -> int:
        return -((1 << (self.bits - 1)) - 1) if self.signed else 0

    @property
    def hi(self) -> int:
        return (1 << (self.bits - 1)) - 1 if self.signed else (1 << self.bits) - 1

    def integers(self, x: torch.Tensor) -> torch.Tensor:
        """The stored integers (int32) of activations x."""
        return torch.round(x.float() / self.scale).clamp(self.lo, self.hi).to(torch.int32)

    def values(self, ints: torch.Tensor) -> torch.Tensor:
        return ints.float() * self.scale


def _check_bits(bits) -> int:
    if not isinstance(bits, int) or isinstance(bits, bool) or not 2 <= bits <= 16:
        raise ConfigError(f"activation bits={bits!r}: must be an integer from 2 to 16")
    return bits


def scale_for(x: torch.Tensor, bits: int = ACT_BITS, percentile: float = 100.0) -> ActScale:
    """The ActScale of activations like `x`: range = percentile of |x| (100: max)."""
    _check_bits(bits)
    a = x.detach().float().abs().reshape(-1)
    if percentile >= 100:
        top = float(a.max()) if a.numel() else 0.0
    else:
        top = float(np.percentile(a.cpu().numpy(), percentile))
    signed = bool(a.numel()) and float(x.detach().min()) < 0
    q = (1 << (bits - 1)) - 1 if signed else (1 << bits) - 1
    return ActScale(max(top, 1e-12) / q, signed, bits)


@torch.no_grad()
def calibrate_activations(model: nn.Module, data, bits: int = ACT_BITS,
                          percentile: float = 100.0,
                          images: int = CALIBRATION_IMAGES) -> dict[str, ActScale]:
    """{layer: ActScale} from the inputs every quantized layer sees on the first `images`
    images of `data` (an ImageData or an (x, y) pair), with clean weights and activations."""
    _check_bits(bits)
    if not 0 < percentile <= 100:
        raise ConfigError(f"activation calibration percentile={percentile!r}: must be in "
                          "(0, 100]")
    layers = quant_layers(model)
    if not layers:
        raise ConfigError("the model has no quantized layers: activation faults are modelled "
                          "at the inputs of quantized Conv2d/Linear layers")
    x, _ = on_model_device(data, model)
    seen: dict[str, list[torch.Tensor]] = {n: [] for n, _ in layers}
    hooks = [m.register_forward_pre_hook(
        (lambda name: lambda mod, args: seen[name].append(args[0].detach().float()))(n))
        for n, m in layers]
    model.eval()
    try:
        model(x[:images])
    finally:
        for h in hooks:
            h.remove()
    return {n: scale_for(torch.cat([t.reshape(-1) for t in seen[n]]), bits, percentile)
            for n, _ in layers}


def sample_distinct(n: int, k: int, gen: torch.Generator) -> torch.Tensor:
    """k distinct positions in [0, n), uniformly, in O(k log k): draw k - (distinct so far)
    more uniform positions until k are distinct. The union never exceeds k and the rule looks
    only at set sizes, so by symmetry the final set is a uniform k-subset."""
    dev = gen.device
    if k >= n:
        return torch.arange(n, device=dev)
    got = torch.empty(0, dtype=torch.int64, device=dev)
    while len(got) < k:
        more = torch.randint(0, n, (k - len(got),), generator=gen, device=dev)
        got = torch.unique(torch.cat([got, more]))
    return got


def flip_stored(ints: torch.Tensor, sc: ActScale, p: float,
                gen: torch.Generator | None) -> tuple[torch.Tensor, int]:
    """(copy of the stored integers `ints` with each of their bits flipped independently with
    probability p, number of flipped bits). K ~ Binomial(n_bits, p) and then K distinct bit
    positions are drawn on the CPU generator `gen` (None: torch's global one) and the
    positions moved to the integers' device."""
    n_bits = ints.numel() * sc.bits
    if p <= 0 or n_bits == 0:
        return ints, 0
    g = gen if gen is not None else torch.default_generator
    count = torch.tensor(float(n_bits), dtype=torch.float64)
    k = int(torch.binomial(count, torch.tensor(float(p), dtype=torch.float64), generator=g))
    if k == 0:
        return ints, 0
    pos = sample_distinct(n_bits, k, g).to(ints.device)
    flat = ints.reshape(-1).to(torch.int32, copy=True)
    # only the hit values are touched (k << numel at realistic rates): one pass, not five
    hit, inv = torch.unique(pos // sc.bits, return_inverse=True)
    bit = (pos % sc.bits).to(torch.int32)
    mask = torch.zeros(len(hit), dtype=torch.int32, device=flat.device)
    mask.index_add_(0, inv, torch.bitwise_left_shift(torch.ones_like(bit), bit))
    # distinct positions: the sum of a value's masks is their OR
    mod = 1 << sc.bits
    u = torch.remainder(flat[hit], mod) ^ mask  # two's complement pattern (identity if unsigned)
    if sc.signed:
        u = torch.where(u >= mod // 2, u - mod, u)
    flat[hit] = u
    return flat.reshape(ints.shape), k


class FaultCounter:
    """What the installed activation faults did: bits stored and bits flipped, per layer."""

    def __init__(self):
        self.bits: dict[str, int] = {}
        self.flips: dict[str, int] = {}

    def add(self, name: str, n_bits: int, k: int) -> None:
        self.bits[name] = self.bits.get(name, 0) + n_bits
        self.flips[name] = self.flips.get(name, 0) + k

    @property
    def total_flips(self) -> int:
        return sum(self.flips.values())


def _layer_bers(model: nn.Module, ber) -> dict[str, float]:
    names = [n for n, _ in quant_layers(model)]
    if isinstance(ber, dict):
        unknown = [k for k in ber if k not in names]
        if unknown:
            raise ConfigError(f"activation BER: no quantized layer named {unknown[0]!r}; "
                              f"layers: {', '.join(names)}")
        return {n: check_ber(ber.get(n, 0.0)) for n in names}
    return {n: check_ber(ber) for n in names}


@contextlib.contextmanager
def activation_faults(model: nn.Module, ber, scales: dict[str, ActScale], seed: int = 0):
    """Within the block every quantized layer's inputs are stored as integers (`scales`) and
    each stored bit flips with probability `ber` (a float, or {layer: ber}, unnamed layers
    error-free) afresh on every forward pass, drawn on a CPU torch generator seeded with
    `seed` (the positions then move to the model's device). Yields a FaultCounter. Hooks are removed on exit, so
    the model is unchanged afterwards; ber 0 still quantizes (storage without faults)."""
    bers = _layer_bers(model, ber)
    layers = quant_layers(model)
    missing = [n for n, _ in layers if n not in scales]
    if missing:
        raise ConfigError(f"activation scales: layer {missing[0]!r} is not calibrated "
                          "(calibrate_activations on this model)")
    gen = torch.Generator(device="cpu")
    gen.manual_seed(int(seed))
    counter = FaultCounter()

    def hook_for(name: str):
        sc, p = scales[name], bers[name]

        def hook(mod, args):
            x = args[0]
            ints = sc.integers(x)
            flipped, k = flip_stored(ints, sc, p, gen)
            counter.add(name, ints.numel() * sc.bits, k)
            return (sc.values(flipped).to(x.dtype),) + tuple(args[1:])
        return hook

    handles = [m.register_forward_pre_hook(hook_for(n)) for n, m in layers]
    try:
        yield counter
    finally:
        for h in handles:
            h.remove()


@torch.no_grad()
def evaluate_under_activation_faults(model: nn.Module, data, act_ber, *, weight_ber: float = 0.0,
                                     realizations: int = 10, seed: int = 0,
                                     bits: int = ACT_BITS, percentile: float = 100.0,
                                     scales: dict[str, ActScale] | None = None,
                                     batch_size: int | None = None,
                                     protection=None,
                                     stored: StoredWeights | None = None) -> BitErrorResult:
    """Accuracy over `realizations` passes over `data` with transient activation bit errors at
    `act_ber` (float or {layer: ber}) and, combinable, persistent-per-realization weight bit
    errors at `weight_ber` (drawn as evaluate_under_bit_errors does: K ~ Binomial over all
    stored weight bits, numpy generator seeded with `seed`). Realization r's activation
    faults come from a torch generator seeded with seed * 1_000_003 + r. `scales` default:
    calibrate_activations(model, data, bits, percentile). `clean` is the float-activation,
    fault-free accuracy; ber in the result is the activation BER (a float act_ber).
    `protection` ('none', 'secded', 'msb:K'; models.protection) applies to the weights;
    `stored`: the model's StoredWeights when the caller has them already."""
    if realizations < 1:
        raise ConfigError(f"realizations={realizations!r}: must be >= 1")
    x, y = on_model_device(data, model)
    model.eval()
    clean = float(hit_rate(model, x, y, batch_size))
    scales = scales or calibrate_activations(model, (x, y), bits, percentile)
    stored = StoredWeights(model) if stored is None else stored
    plan = FaultPlan(stored, weight_ber, protection)  # checks weight_ber
    if plan.zero:
        stored = None
    rng = np.random.default_rng(seed)
    positions = stored and PositionSampler(stored.n_bits, rng, seed, stored.ints.device)
    accs, flips = [], []
    for r in range(realizations):
        weights = contextlib.nullcontext()
        if stored is not None:
            weights = stored.installed(stored.flipped(
                plan.positions(plan.draw_counts(rng), positions, rng)))
        with weights, activation_faults(model, act_ber, scales, seed * 1_000_003 + r) as c:
            accs.append(float(hit_rate(model, x, y, batch_size)))
        flips.append(c.total_flips)
    a = np.asarray(accs)
    std = float(a.std(ddof=1)) if len(a) > 1 else 0.0
    ber = float(act_ber) if not isinstance(act_ber, dict) else math.nan
    return BitErrorResult(ber, clean, float(a.mean()), std, t_halfwidth(std, len(a)), len(a),
                          accs, flips)


def add_activation_bfn(model: nn.Module, rate: float, bits: int = ACT_BITS) -> list:
    """Activation bit-flip noise for training (the companion of weight BFN): in training mode
    every quantized layer's input is fake-quantized to `bits` bits with a per-batch max|x|
    scale (straight-through gradient) and its stored bits flip at `rate` (torch's global
    generator, so a training seed fixes them). Eval mode passes inputs through. Returns the
    hook handles (remove() them to detach)."""
    if not 0 <= rate <= 0.5:
        raise ConfigError(f"act_bfn_rate={rate!r}: must be in [0, 0.5]")
    _check_bits(bits)
    if rate == 0:
        return []

    def hook(mod, args):
        x = args[0]
        if not mod.training:
            return None
        sc = scale_for(x, bits)
        ints = sc.integers(x)
        flipped, _ = flip_stored(ints, sc, rate, None)
        target = sc.values(flipped).to(x.dtype)
        return (x + (target - x).detach(),) + tuple(args[1:])
    return [m.register_forward_pre_hook(hook) for _, m in quant_layers(model)]
