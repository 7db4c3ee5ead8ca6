"""Uniform symmetric signed b-bit weight quantizers (paper eqs. 3-5) and quantized layers.

W_int = round(Q/a * clip(W, -a, a)), W_hat = a/Q * W_int, Q = 2^(b-1)-1, one range a per
layer. Quantizers are chosen by name from QUANTIZERS; a new one is one decorated class that
defines `range(w)` and, if its gradients differ from plain STE, `fake_quant(w)`.
"""
from __future__ import annotations

import inspect
import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .errors import ConfigError
from .faults import PositionSampler, flip_positions, sample_flip_count
from .registry import Registry

QUANTIZERS: Registry = Registry("quantizer")


def qmax(bits: int) -> int:
    return (1 << (bits - 1)) - 1


def round_ste(x: torch.Tensor) -> torch.Tensor:
    return x + (x.round() - x).detach()


def grad_scale(x: torch.Tensor, g: float) -> torch.Tensor:
    """Value x, gradient g * dL/dx (LSQ's trick)."""
    return (x - x * g).detach() + x * g


class Quantizer(nn.Module):
    """Base: a per-layer range a and straight-through rounding."""

    def __init__(self, bits: int = 4):
        super().__init__()
        if not isinstance(bits, int) or not 2 <= bits <= 8:
            raise ConfigError(f"bits={bits!r}: weight bits must be an integer from 2 to 8")
        self.bits = bits
        self.q = qmax(bits)

    def range(self, w: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def init_from(self, w: torch.Tensor) -> None:
        """Called once with the layer's weights when the layer is quantized."""

    def fake_quant(self, w: torch.Tensor) -> torch.Tensor:
        a = self.range(w).clamp_min(1e-12)
        scale = a / self.q
        return round_ste(torch.maximum(torch.minimum(w, a), -a) / scale) * scale

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return self.fake_quant(w)

    @torch.no_grad()
    def integers(self, w: torch.Tensor, on_device: bool = False):
        """The stored integers (int16, values in [-Q, Q]) and the scale a/Q: a Python float,
        or with on_device a 0-d tensor on w's device (no host synchronization on a GPU)."""
        a = self.range(w).clamp_min(1e-12)
        a = a.to(w.dtype) if on_device else float(a)
        scale = a / self.q
        ints = torch.round(w.clamp(-a, a) / scale).to(torch.int16)
        return ints, scale

    def penalty(self) -> torch.Tensor | float:
        return 0.0

    @classmethod
    def post_step(cls, layers: list["QuantLayer"]) -> None:
        """Hook run after every optimizer step with all quantized layers of the model."""

    def extra_repr(self) -> str:
        return f"bits={self.bits}"


@QUANTIZERS.register("normal")
class MaxAbsQuantizer(Quantizer):
    """a = max|W_l|, recomputed every step; nothing is clipped."""

    def range(self, w):
        return w.detach().abs().max()


@QUANTIZERS.register("plclip")
class PLClipQuantizer(Quantizer):
    """Per-layer clipping (Stutz et al. 2022, as in the paper's App. B.5/D): after every step,
    layer l is clipped to +/- c * max|W_l| / max_l' max|W_l'| and quantized with that range."""

    def __init__(self, bits: int = 4, c: float = 0.1):
        super().__init__(bits)
        if not c > 0:
            raise ConfigError(f"plclip c={c!r}: must be > 0")
        self.c = float(c)
        self.register_buffer("a", torch.tensor(1.0))

    def range(self, w):
        return self.a

    @classmethod
    @torch.no_grad()
    def post_step(cls, layers):
        layers = [l for l in layers if isinstance(l.quantizer, cls)]
        if not layers:
            return
        maxes = [l.weight.abs().max() for l in layers]
        top = torch.stack(maxes).max().clamp_min(1e-12)
        for layer, m in zip(layers, maxes):
            a = layer.quantizer.c * m / top
            layer.quantizer.a.copy_(a)
            layer.weight.clamp_(-a, a)

    def extra_repr(self):
        return f"bits={self.bits}, c={self.c}"


@QUANTIZERS.register("lsq")
class LSQQuantizer(Quantizer):
    """Learned step size (Esser et al. 2019): step s, gradient scale 1/sqrt(N*Qp),
    init 2*mean|W|/sqrt(Qp); its range is s*Qp."""

    def __init__(self, bits: int = 4):
        super().__init__(bits)
        self.s = nn.Parameter(torch.tensor(1.0))
        self.register_buffer("numel", torch.tensor(1))

    def init_from(self, w):
        with torch.no_grad():
            self.s.fill_(float(2 * w.abs().mean() / math.sqrt(self.q)))
            self.numel.fill_(w.numel())

    def range(self, w):
        return self.s * self.q

    def fake_quant(self, w):
        s = grad_scale(self.s, 1.0 / math.sqrt(int(self.numel) * self.q)).clamp_min(1e-12)
        return round_ste(torch.clamp(w / s, -self.q, self.q)) * s


class _WcatQuant(torch.autograd.Function):
    """Forward: eqs. (3)-(4). Backward: the range gets eq. (5) (-1 below -a, 0 inside, +1
    above) summed over the layer, scaled by 1/sqrt(N_l) (Sec. 3.2; `inv_sqrt` False: by 1).
    The weights get dQ/dw by `estimator` (see WCATQuantizer.ESTIMATORS): 'ste' passes the
    gradient straight through everywhere (Sec. 3.3), 'pwl' zeroes it for clipped weights,
    'mad' scales it by a/|w| there."""

    @staticmethod
    def forward(ctx, w, a, q, inv_sqrt=True, estimator="ste"):
        a = a.clamp_min(1e-12)
        ctx.save_for_backward(w, a)
        ctx.inv_sqrt, ctx.estimator = inv_sqrt, estimator
        scale = a / q
        return torch.round(torch.maximum(torch.minimum(w, a), -a) / scale) * scale

    @staticmethod
    def backward(ctx, grad):
        w, a = ctx.saved_tensors
        side = (w > a).to(grad.dtype) - (w < -a).to(grad.dtype)
        grad_a = (grad * side).sum()
        if ctx.inv_sqrt:
            grad_a = grad_a / math.sqrt(w.numel())
        if ctx.estimator == "pwl":
            grad = grad * (side == 0).to(grad.dtype)
        elif ctx.estimator == "mad":  # a / max(|w|, a): exactly 1 inside, a/|w| outside
            grad = grad * (a / torch.maximum(w.abs(), a)).to(grad.dtype)
        return grad, grad_a.reshape(a.shape), None, None, None


def expected_flip_moments(bits: int, p: float) -> tuple[np.ndarray, np.ndarray]:
    """For every integer v in [-Q, Q]: E[f(v) - v] and E[(f(v) - v)^2] when each of its b
    two's-complement bits flips independently with probability p (exact, all 2^b masks)."""
    q, n = qmax(bits), 1 << bits
    v = np.arange(-q, q + 1)
    u = np.mod(v, n)
    m1, m2 = np.zeros(len(v)), np.zeros(len(v))
    for mask in range(n):
        k = bin(mask).count("1")
        prob = p ** k * (1 - p) ** (bits - k)
        fu = u ^ mask
        fv = np.where(fu >= n // 2, fu - n, fu)
        m1 += prob * (fv - v)
        m2 += prob * (fv - v) ** 2
    return m1, m2


def expected_mse(w: torch.Tensor, a: float, bits: int, p: float = 0.0,
                 weights: torch.Tensor | None = None) -> float:
    """E||W - W_hat_tilde||^2 / N for range a under bit error rate p (eq. 10; p=0 is eq. 9).
    `weights` (same length as w, summing to 1): a weighted mean instead, e.g. a density's
    quadrature weights on a grid w (models.clipping)."""
    q = qmax(bits)
    scale = a / q
    x = w.detach().double().reshape(-1)
    vi = torch.round(x.clamp(-a, a) / scale)
    d = x - vi * scale
    mean = (lambda t: t.mean()) if weights is None else \
        (lambda t: (t * weights.double().reshape(-1)).sum())
    if p == 0:
        return float(mean(d ** 2))
    m1, m2 = (torch.from_numpy(m) for m in expected_flip_moments(bits, p))
    idx = (vi + q).long()
    return float(mean(d ** 2 - 2 * d * scale * m1[idx] + scale ** 2 * m2[idx]))


def best_range(w: torch.Tensor, bits: int, p: float = 0.0, grid: int = 200) -> float:
    """Brute-force search (Sec. 3.5) of a in (0, max|W|] minimizing expected_mse."""
    top = float(w.detach().abs().max())
    cands = np.linspace(top / grid, top, grid)
    errs = [expected_mse(w, a, bits, p) for a in cands]
    return float(cands[int(np.argmin(errs))])


@QUANTIZERS.register("wcat")
class WCATQuantizer(Quantizer):
    """Learned per-layer range a_l with an L2 penalty (lambda/2) a_l^2 (its gradient lambda*a_l:
    weight decay lambda on the range, the paper's lambda; `weight_decay_a`).

    Options (the paper's ablations; defaults are the WCAT of Sec. 3 and of every checkpoint
    written before they existed):
    - init: 'max' (max|W_l|), 'mse' (clean MSE-optimal range, eq. 9: best_range with p = 0),
      'ber_mse' (expected MSE under bit errors at `init_ber`, eq. 10 / Alg. 1; Table 2).
    - grad_scale: scale of the eq. (5) range gradient, 'inv_sqrt_n' (1/sqrt(N_l), Sec. 3.2)
      or 1 (unscaled; Table 1's other column).
    - estimator: weight gradient dQ/dw (Sec. 4.6 / Fig. 6), as defined by Sakr et al. 2022,
      "Optimal Clipping and Magnitude-aware Differentiation for Improved Quantization-aware
      Training" (ICML, arXiv:2206.06501), Sec. 4.1-4.2 and Fig. 3, with clipping scalar s = a:
      'ste' = 1 everywhere (clipped weights too: WCAT's Sec. 3.3 choice), 'pwl' = 1 on
      [-a, a] and 0 outside, 'mad' = 1 on [-a, a] and a/|w| outside (Prop. 4.3: clipping is
      the attenuation alpha*w with alpha = a/|w|, differentiated with alpha held constant).
      The range gradient is eq. (5) for all three (d(alpha*w)/da = sign(w) for clipped w).
    - clamp_weights: True clamps the float weights into [-a_l, a_l] after every optimizer step,
      as PLClip does (WCAT itself clips only the stored copy). Not one of the paper's
      options: the probe of studies/results/resnet20_cifar10/sensitivity/ (does the in-place
      clamp make PLClip's stored weights fill their range, and so its flips cheaper?)."""

    INITS = ("max", "mse", "ber_mse")
    GRAD_SCALES = ("inv_sqrt_n", "1")
    ESTIMATORS = ("ste", "pwl", "mad")
    # options added after checkpoints existed, with the value those checkpoints trained with:
    # a recipe that states one of these drops it (canonical_params), so it reads as before
    LATER_DEFAULTS = {"grad_scale": "inv_sqrt_n", "estimator": "ste", "clamp_weights": False}

    def __init__(self, bits: int = 4, weight_decay_a: float = 0.01, init: str = "max",
                 init_ber: float = 0.01, grad_scale="inv_sqrt_n", estimator: str = "ste",
                 clamp_weights: bool = False):
        super().__init__(bits)
        if init not in self.INITS:
            raise ConfigError(f"wcat init={init!r}; valid: {', '.join(self.INITS)}")
        if not isinstance(weight_decay_a, (int, float)) or isinstance(weight_decay_a, bool) \
                or not weight_decay_a >= 0:
            raise ConfigError(f"wcat weight_decay_a={weight_decay_a!r}: must be a number >= 0")
        gs = _grad_scale_name(grad_scale)
        if gs not in self.GRAD_SCALES:
            raise ConfigError(f"wcat grad_scale={grad_scale!r}; valid: 1, inv_sqrt_n")
        if estimator not in self.ESTIMATORS:
            raise ConfigError(f"wcat estimator={estimator!r}; valid: "
                              f"{', '.join(self.ESTIMATORS)}")
        if not isinstance(clamp_weights, bool):
            raise ConfigError(f"wcat clamp_weights={clamp_weights!r}: must be true or false")
        self.lam, self.init, self.init_ber = float(weight_decay_a), init, float(init_ber)
        self.grad_scale, self.estimator, self.clamp_weights = gs, estimator, clamp_weights
        self.a = nn.Parameter(torch.tensor(1.0))

    def init_from(self, w):
        if self.init == "max":
            a = float(w.abs().max())
        else:
            a = best_range(w, self.bits, self.init_ber if self.init == "ber_mse" else 0.0)
        with torch.no_grad():
            self.a.fill_(a)

    def range(self, w):
        return self.a

    def fake_quant(self, w):
        return _WcatQuant.apply(w, self.a, self.q, self.grad_scale == "inv_sqrt_n",
                                self.estimator)

    def penalty(self):
        return 0.5 * self.lam * self.a ** 2

    @classmethod
    def post_step(cls, layers):
        with torch.no_grad():
            for layer in layers:
                q = layer.quantizer
                if isinstance(q, cls) and q.clamp_weights:
                    a = q.a.detach().clamp_min(1e-12)  # as integers() stores it
                    layer.weight.clamp_(-a, a)

    def extra_repr(self):
        return (f"bits={self.bits}, lambda={self.lam}, init={self.init}, "
                f"grad_scale={self.grad_scale}, estimator={self.estimator}"
                + (", clamp_weights=True" if self.clamp_weights else ""))


def _grad_scale_name(v) -> str | None:
    """'inv_sqrt_n' or '1' for the accepted spellings (1, 1.0, '1', 'inv_sqrt_n')."""
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)) and v == 1 or v == "1":
        return "1"
    return v if isinstance(v, str) else None


def canonical_params(name: str | None, params: dict | None) -> dict:
    """A quantizer's params as recorded in recipes: options added after checkpoints existed
    (the class's LATER_DEFAULTS) are dropped when they hold that default, so a recipe that
    states e.g. estimator: ste equals one written before the option existed."""
    params = dict(params or {})
    cls = QUANTIZERS.get(name) if name in QUANTIZERS else None
    for key, default in getattr(cls, "LATER_DEFAULTS", {}).items():
        if key in params and params[key] == default:
            del params[key]
    return params


def resolved_params(name: str | None, params: dict | None) -> dict:
    """A quantizer's params with every default its class fills in (all but `bits`), so two
    recipes that differ only in stating a default compare equal; {} for float or unknown."""
    cls = QUANTIZERS.get(name) if name in QUANTIZERS else None
    if cls is None:
        return dict(params or {})
    defaults = {k: p.default for k, p in inspect.signature(cls.__init__).parameters.items()
                if k not in ("self", "bits") and p.default is not inspect.Parameter.empty}
    return {**defaults, **(params or {})}


def create_quantizer(name: str, bits: int = 4, **params) -> Quantizer:
    cls = QUANTIZERS.get(name)
    try:
        return cls(bits=bits, **params)
    except TypeError as e:
        raise ConfigError(f"quantizer {name!r}: bad parameter ({e})") from None


class QuantLayer:
    """Mixin for Conv2d/Linear: weights pass through the quantizer; optional bit-flip
    noise training (BFN, Sec. 3.4); an override hook used by fault evaluation."""

    quantizer: Quantizer
    bfn_rate: float
    weight_override: torch.Tensor | None
    weight_delta: torch.Tensor | None  # added straight through (models.adversarial)
    bfn_sampler: str | None = None  # where BFN draws flip positions (bfn_noise's `where`)

    def _setup(self, quantizer: Quantizer, bfn_rate: float):
        self.quantizer = quantizer
        self.bfn_rate = float(bfn_rate)
        self.weight_override = None
        self.weight_delta = None

    def effective_weight(self) -> torch.Tensor:
        if self.weight_override is not None:
            return self.weight_override
        w_hat = self.quantizer(self.weight)
        if getattr(self, "weight_delta", None) is not None:
            w_hat = w_hat + self.weight_delta
        if self.training and self.bfn_rate > 0:
            # one fresh realization per forward; backward straight through (dW~/dW = 1)
            w_hat = w_hat + bfn_noise(self.quantizer, self.weight, self.bfn_rate,
                                      self.bfn_sampler).detach()
        return w_hat


@torch.no_grad()
def bfn_noise(quantizer: Quantizer, w: torch.Tensor, p: float,
              where: str | None = None) -> torch.Tensor:
    """One bit-flip realization of w's stored integers at rate p, as a weight change
    ((flipped - stored) * scale, w's dtype and device). Its seed comes from torch's global
    generator (torch.manual_seed fixes it), the flip count from numpy; the positions are
    drawn where `where` says (faults.PositionSampler): by default by numpy for a CPU tensor
    (the draws of every CPU result here) and by a torch generator on the GPU for a GPU
    tensor, so that nothing leaves the device and nothing waits for it."""
    seed = int(torch.randint(0, 2 ** 62, (1,)))
    rng = np.random.default_rng(seed)
    sampler = PositionSampler(w.numel() * quantizer.bits, rng, seed, w.device, where)
    ints, scale = quantizer.integers(w, on_device=sampler.where == "device")
    positions = sampler(sample_flip_count(sampler.n_bits, p, rng))
    return (flip_positions(ints, quantizer.bits, positions) - ints).to(w.dtype) * scale


class QConv2d(QuantLayer, nn.Conv2d):
    def forward(self, x):
        return self._conv_forward(x, self.effective_weight(), self.bias)


class QLinear(QuantLayer, nn.Linear):
    def forward(self, x):
        return F.linear(x, self.effective_weight(), self.bias)


def _make_quant(module: nn.Module, quantizer: Quantizer, bfn_rate: float) -> nn.Module:
    if isinstance(module, nn.Conv2d):
        new = QConv2d(module.in_channels, module.out_channels, module.kernel_size,
                      stride=module.stride, padding=module.padding, dilation=module.dilation,
                      groups=module.groups, bias=module.bias is not None,
                      padding_mode=module.padding_mode)
    else:
        new = QLinear(module.in_features, module.out_features, bias=module.bias is not None)
    new.load_state_dict(module.state_dict())
    new._setup(quantizer, bfn_rate)
    return new


# layers whose own parameters stay float (never stored as integers, never flipped)
FLOAT_PARAM_LAYERS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.PReLU)


def unsupported_layers(model: nn.Module) -> list[tuple[str, str]]:
    """(name, type) of every layer holding parameters of its own that is neither a
    Conv2d/Linear (quantized) nor a normalisation layer (kept float), e.g. Conv1d,
    ConvTranspose2d, Embedding, MultiheadAttention."""
    ok = (nn.Conv2d, nn.Linear, Quantizer) + FLOAT_PARAM_LAYERS
    return [(n or "(model)", type(m).__name__) for n, m in model.named_modules()
            if not isinstance(m, ok) and next(m.parameters(recurse=False), None) is not None]


def check_supported(model: nn.Module, what: str = "quantize") -> None:
    """ConfigError naming every weight-holding layer that cannot be quantized or mapped."""
    bad = unsupported_layers(model)
    if bad:
        names = ", ".join(f"{n} ({t})" for n, t in bad[:5]) + (" ..." if len(bad) > 5 else "")
        raise ConfigError(f"cannot {what} {len(bad)} layer(s) holding weights: {names}; "
                          "supported: nn.Conv2d (grouped/depthwise included) and nn.Linear "
                          "(normalisation layers stay float)")


def resolve_layer_bits(model: nn.Module, bits, layer_bits=None) -> dict[str, int]:
    """Weight bits of every (not yet quantized) Conv2d/Linear, by module path. bits: an int
    (all layers), a {layer: bits} dict naming every layer, or a callable(name, module) ->
    bits (None: 4); layer_bits: {layer: bits} overrides. Unknown names are a ConfigError."""
    names = [n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))
             and not isinstance(m, QuantLayer)]
    modules = dict(model.named_modules())
    listed = lambda: ", ".join(names[:8]) + (" ..." if len(names) > 8 else "")
    for what, d in (("bits", bits), ("layer_bits", layer_bits)):
        unknown = [k for k in d if k not in names] if isinstance(d, dict) else []
        if unknown:
            raise ConfigError(f"{what}: no Conv2d/Linear layer named {unknown[0]!r}; layers: "
                              f"{listed()}")
    if isinstance(bits, dict):
        missing = [n for n in names if n not in bits and n not in (layer_bits or {})]
        if missing:
            raise ConfigError(f"bits: layer {missing[0]!r} has no width; a bits dict names "
                              "every layer (or pass bits=int and layer_bits={layer: bits})")
        out = {n: bits.get(n) for n in names}
    elif callable(bits):
        out = {n: bits(n, modules[n]) for n in names}
        out = {n: 4 if b is None else b for n, b in out.items()}
    else:
        out = {n: bits for n in names}
    out.update(layer_bits or {})
    for n, b in out.items():
        if b != bits and not (isinstance(b, int) and not isinstance(b, bool) and 2 <= b <= 8):
            raise ConfigError(f"bits of layer {n!r}: {b!r}: weight bits must be an integer "
                              "from 2 to 8")
    return out


def quantize_model(model: nn.Module, quantizer: str, bits=4, bfn_rate: float = 0.0,
                   layer_bits: dict | None = None, **params) -> nn.Module:
    """Replace every Conv2d/Linear (in place) by its quantized twin, one range per layer;
    per-layer widths through `bits`/`layer_bits` (resolve_layer_bits)."""
    return quantize_layers(model, quantizer, bits, bfn_rate, layer_bits, params)


def quantize_layers(model: nn.Module, quantizer: str, bits, bfn_rate: float,
                    layer_bits: dict | None, params: dict, init: bool = True) -> nn.Module:
    """quantize_model with the quantizer's params as one dict (so no param name can collide
    with `init`); init=False skips each quantizer's init from the weights, leaving
    placeholder ranges: for a model whose state dict is loaded next (build_model), where eq.
    10's init would cost seconds per layer for nothing."""
    if not 0 <= bfn_rate <= 0.5:
        raise ConfigError(f"bfn_rate={bfn_rate!r}: must be in [0, 0.5]")
    check_supported(model)
    widths = resolve_layer_bits(model, bits, layer_bits)
    for b in set(widths.values()):
        create_quantizer(quantizer, b, **params)  # every width checked before any change
    for full, child in [(n, m) for n, m in model.named_modules() if n in widths]:
        parent = model.get_submodule(full.rpartition(".")[0])
        q = create_quantizer(quantizer, widths[full], **params)
        if init:
            q.init_from(child.weight.detach())
        setattr(parent, full.rpartition(".")[2], _make_quant(child, q, bfn_rate))
    post_step(model)
    return model


def layer_widths(model: nn.Module) -> dict[str, int]:
    """{layer: weight bits} of every quantized layer (quant_layers order)."""
    return {n: m.quantizer.bits for n, m in quant_layers(model)}


def split_widths(model: nn.Module) -> tuple[int, dict[str, int]]:
    """(default bits, {layer: bits} of the layers that differ): the default is the width most
    layers use (ties: the smaller); a uniform model gives (bits, {})."""
    widths = layer_widths(model)
    if not widths:
        return 8, {}
    counts = {b: list(widths.values()).count(b) for b in set(widths.values())}
    default = min(counts, key=lambda b: (-counts[b], b))
    return default, {n: b for n, b in widths.items() if b != default}


def quant_layers(model: nn.Module) -> list[tuple[str, QuantLayer]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, QuantLayer)]


def post_step(model: nn.Module) -> None:
    layers = [m for _, m in quant_layers(model)]
    for cls in {type(l.quantizer) for l in layers}:
        cls.post_step(layers)


def quant_penalty(model: nn.Module) -> torch.Tensor | float:
    return sum((m.quantizer.penalty() for _, m in quant_layers(model)), 0.0)
