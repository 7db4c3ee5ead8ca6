"""Layer shapes of a network, as the energy model sees them.

`extract_layers` runs one forward pass (batch 1) with hooks on every nn.Conv2d / nn.Linear
(subclasses included, e.g. quantized layers) and records one `LayerShape` per call.
Batch norm is assumed fused into the convolutions, so only conv/linear layers appear;
a Linear layer is a 1x1 convolution with P = Q = 1.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

from hwsim.models.errors import ConfigError


@dataclass(frozen=True)
class LayerShape:
    name: str
    kind: str                  # 'conv' | 'linear'
    in_channels: int           # C
    out_channels: int          # M
    kernel: tuple[int, int]    # (R, S)
    output: tuple[int, int]    # (P, Q)
    input: tuple[int, int]     # (H, W), unpadded
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    groups: int = 1
    weight_bits: int = 8
    act_bits: int = 8

    def __post_init__(self):
        if self.kind not in ("conv", "linear"):
            raise ConfigError(f"layer {self.name!r}: kind must be 'conv' or 'linear', got {self.kind!r}")
        for field in ("in_channels", "out_channels", "groups", "weight_bits", "act_bits"):
            v = getattr(self, field)
            if not isinstance(v, int) or v < 1:
                raise ConfigError(f"layer {self.name!r}: {field} must be a positive integer, got {v!r}")
        if self.in_channels % self.groups or self.out_channels % self.groups:
            raise ConfigError(
                f"layer {self.name!r}: groups={self.groups} must divide in_channels="
                f"{self.in_channels} and out_channels={self.out_channels}")

    # convenience names used by the einsum builder
    @property
    def R(self) -> int:
        return self.kernel[0]

    @property
    def S(self) -> int:
        return self.kernel[1]

    @property
    def P(self) -> int:
        return self.output[0]

    @property
    def Q(self) -> int:
        return self.output[1]

    @property
    def macs(self) -> int:
        """Multiply-accumulates for one image (batch 1)."""
        return (self.out_channels * (self.in_channels // self.groups)
                * self.R * self.S * self.P * self.Q)

    @property
    def n_weights(self) -> int:
        return self.out_channels * (self.in_channels // self.groups) * self.R * self.S

    def key(self) -> str:
        """Stable cache key: everything that changes the mapping, but not the name."""
        return ("{kind}:C{c}:M{m}:R{r}x{s}:P{p}x{q}:H{h}x{w}:st{st0}x{st1}:pad{pd0}x{pd1}"
                ":g{g}:wb{wb}:ab{ab}").format(
            kind=self.kind, c=self.in_channels, m=self.out_channels, r=self.R, s=self.S,
            p=self.P, q=self.Q, h=self.input[0], w=self.input[1], st0=self.stride[0],
            st1=self.stride[1], pd0=self.padding[0], pd1=self.padding[1], g=self.groups,
            wb=self.weight_bits, ab=self.act_bits)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "LayerShape":
        d = dict(d)
        for k in ("kernel", "output", "input", "stride", "padding"):
            if k in d:
                d[k] = tuple(d[k])
        return cls(**d)


def _pair(v) -> tuple[int, int]:
    if isinstance(v, (tuple, list)):
        return int(v[0]), int(v[1])
    return int(v), int(v)


def extract_layers(model, input_shape: Sequence[int] = (3, 32, 32), weight_bits: int = 8,
                   act_bits: int = 8, layer_bits: dict | None = None) -> list[LayerShape]:
    """One LayerShape per nn.Conv2d / nn.Linear call in a batch-1 forward pass.

    `input_shape` is (C, H, W) without the batch dimension. Layers are returned in call
    order and named by their module path (a module called twice gets `#2`, `#3`, ...).
    `layer_bits` {module path: bits} gives those layers another weight word width
    (mixed precision; each width is its own shape in the mapping cache).
    """
    import torch
    from torch import nn

    if len(tuple(input_shape)) != 3:
        raise ConfigError(f"input_shape must be (C, H, W), got {tuple(input_shape)!r}")
    if weight_bits < 1 or act_bits < 1:
        raise ConfigError(f"weight_bits/act_bits must be >= 1, got {weight_bits}/{act_bits}")
    from hwsim.models.quant import check_supported
    check_supported(model, "map")  # e.g. a Conv1d would be left out of the energy silently

    names = {m: n for n, m in model.named_modules()}
    layer_bits = dict(layer_bits or {})
    unknown = sorted(set(layer_bits) - set(names.values()))
    if unknown:
        raise ConfigError(f"layer_bits: no layer named {unknown[0]!r} in the model")
    wbits = lambda mod: int(layer_bits.get(names.get(mod), weight_bits))
    layers: list[LayerShape] = []
    seen: dict[str, int] = {}

    def _name(mod) -> str:
        base = names.get(mod, type(mod).__name__) or type(mod).__name__
        seen[base] = seen.get(base, 0) + 1
        return base if seen[base] == 1 else f"{base}#{seen[base]}"

    def conv_hook(mod, inputs, output):
        x = inputs[0]
        padding = mod.padding
        if isinstance(padding, str):  # 'same' / 'valid': derive from the shapes
            padding = tuple(
                max(0, ((o - 1) * st + d * (k - 1) + 1 - i) // 2)
                for o, st, d, k, i in zip(output.shape[-2:], _pair(mod.stride),
                                          _pair(mod.dilation), _pair(mod.kernel_size),
                                          x.shape[-2:]))
        if _pair(mod.dilation) != (1, 1):
            raise ConfigError(f"layer {names.get(mod)!r}: dilated convolutions are not supported")
        layers.append(LayerShape(
            name=_name(mod), kind="conv",
            in_channels=int(mod.in_channels), out_channels=int(mod.out_channels),
            kernel=_pair(mod.kernel_size), output=(int(output.shape[-2]), int(output.shape[-1])),
            input=(int(x.shape[-2]), int(x.shape[-1])), stride=_pair(mod.stride),
            padding=_pair(padding), groups=int(mod.groups),
            weight_bits=wbits(mod), act_bits=int(act_bits)))

    def linear_hook(mod, inputs, output):
        x = inputs[0]
        # tokens other than the feature dimension act as extra output positions
        positions = int(x.numel() // x.shape[-1]) if x.dim() > 1 else 1
        layers.append(LayerShape(
            name=_name(mod), kind="linear",
            in_channels=int(mod.in_features), out_channels=int(mod.out_features),
            kernel=(1, 1), output=(positions, 1), input=(positions, 1),
            weight_bits=wbits(mod), act_bits=int(act_bits)))

    handles = []
    for mod in model.modules():
        if isinstance(mod, nn.Conv2d):
            handles.append(mod.register_forward_hook(conv_hook))
        elif isinstance(mod, nn.Linear):
            handles.append(mod.register_forward_hook(linear_hook))
    was_training = model.training
    try:
        model.eval()
        try:
            param = next(model.parameters())
            device, dtype = param.device, param.dtype
        except StopIteration:
            device, dtype = torch.device("cpu"), torch.float32
        with torch.no_grad():
            model(torch.zeros((1, *input_shape), device=device, dtype=dtype))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    if not layers:
        raise ConfigError("model has no nn.Conv2d / nn.Linear layers to map")
    return layers


def total_macs(layers: Sequence[LayerShape]) -> int:
    return sum(layer.macs for layer in layers)
