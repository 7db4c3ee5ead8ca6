"""Random bit errors in stored b-bit two's-complement weight integers (paper eq. 8).

Flips are sampled in O(number of flips): K ~ Binomial(n_bits, p), then K distinct bit
positions uniformly at random. Conditioned on K this is exactly the per-bit Bernoulli(p)
model, because under i.i.d. Bernoulli flips every set of K positions is equally likely.
"""
from __future__ import annotations

import numpy as np
import torch

from .errors import ConfigError


def to_unsigned(ints: torch.Tensor, bits: int) -> torch.Tensor:
    """Signed integers -> their b-bit two's-complement bit patterns (0 .. 2^b-1)."""
    return torch.remainder(ints.to(torch.int32), 1 << bits)


def from_unsigned(u: torch.Tensor, bits: int) -> torch.Tensor:
    """b-bit patterns -> signed integers (patterns >= 2^(b-1) are negative)."""
    u = u.to(torch.int32)
    return torch.where(u >= (1 << (bits - 1)), u - (1 << bits), u)


def check_ber(ber: float) -> float:
    """A bit error rate as a float; ConfigError unless it is a number in [0, 0.5]."""
    if not (isinstance(ber, (int, float)) and 0 <= ber <= 0.5):
        raise ConfigError(f"bit error rate {ber!r} must be in [0, 0.5]")
    return float(ber)


def sample_flip_count(n_bits: int, p: float, rng: np.random.Generator) -> int:
    return int(rng.binomial(n_bits, p)) if p > 0 else 0


def sample_positions(n_bits: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """k distinct positions in [0, n_bits), uniformly. numpy's choice without replacement
    uses Floyd-style set sampling when k << n_bits, so this is O(k)."""
    if k == 0:
        return np.empty(0, dtype=np.int64)
    if k >= n_bits:
        return np.arange(n_bits, dtype=np.int64)
    return rng.choice(n_bits, size=k, replace=False).astype(np.int64)


def sample_positions_on(n_bits: int, k: int, gen: torch.Generator) -> torch.Tensor:
    """k distinct positions in [0, n_bits), uniformly: the first k entries of a uniformly
    random permutation, drawn on `gen`'s device, so a GPU draws them itself (no host work, no
    copy, no synchronization). O(n_bits) work, a fraction of a millisecond per million bits
    on a GPU."""
    dev = gen.device
    if k == 0:
        return torch.empty(0, dtype=torch.int64, device=dev)
    if k >= n_bits:
        return torch.arange(n_bits, device=dev)
    return torch.randperm(n_bits, generator=gen, device=dev)[:k]


SAMPLERS = ("host", "device")


class PositionSampler:
    """Where the flip positions of a realization are drawn (the flip count K is always drawn
    by the caller's numpy generator):

    - 'host': numpy's `rng`, the draws every CPU result in this project was computed with
      (the default on the CPU; results stay bit-identical);
    - 'device': a torch generator on `device` seeded with `seed` (the default on a GPU: the
      positions never leave it). Forced on the CPU it runs the same code, for tests.
    """

    def __init__(self, n_bits: int, rng: np.random.Generator, seed: int, device,
                 where: str | None = None):
        device = torch.device(device)
        self.where = where or ("host" if device.type == "cpu" else "device")
        if self.where not in SAMPLERS:
            raise ConfigError(f"flip sampler {where!r}: valid: {', '.join(SAMPLERS)}")
        self.n_bits, self.rng = n_bits, rng
        if self.where == "device":
            self.gen = torch.Generator(device=device)
            self.gen.manual_seed(int(seed))

    def __call__(self, k: int, n: int | None = None):
        """k distinct positions in [0, n) (default n: n_bits); per-layer fault plans draw
        every layer's positions from this one sampler (one stream, one device generator)."""
        n = self.n_bits if n is None else n
        if self.where == "host":
            return sample_positions(n, k, self.rng)
        return sample_positions_on(n, k, self.gen)


class MixedWidths:
    """Bit positions over integers of per-layer widths (mixed precision): layer l holds
    sizes[l] integers of widths[l] bits, its bits follow all bits of the layers before it,
    and its integer i's bit j is position start_l + i * widths[l] + j. With one width this is
    the uniform numbering i * bits + j. n_bits = sum(sizes[l] * widths[l])."""

    def __init__(self, sizes, widths, device="cpu"):
        self.sizes, self.widths = [int(n) for n in sizes], [int(b) for b in widths]
        counts = [n * b for n, b in zip(self.sizes, self.widths)]
        self.n_bits = sum(counts)
        t = lambda v: torch.tensor(v, dtype=torch.int64, device=device)
        self.bit_starts = t([sum(counts[:l]) for l in range(len(counts))])
        self.int_starts = t([sum(self.sizes[:l]) for l in range(len(self.sizes))])
        self.width_of_layer = t(self.widths)
        # per integer: its width (the two's-complement modulus of its pattern)
        self.per_int = torch.repeat_interleave(self.width_of_layer, t(self.sizes)).to(torch.int32)

    def split(self, pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Positions -> (integer index, bit index within that integer)."""
        layer = torch.searchsorted(self.bit_starts, pos, right=True) - 1
        local, b = pos - self.bit_starts[layer], self.width_of_layer[layer]
        return self.int_starts[layer] + local // b, local % b

    def to_unsigned(self, flat: torch.Tensor) -> torch.Tensor:
        """Flat signed integers -> their patterns, each in its own width (int32)."""
        return torch.remainder(flat.to(torch.int32), torch.bitwise_left_shift(1, self.per_int))

    def from_unsigned(self, u: torch.Tensor) -> torch.Tensor:
        """Patterns -> signed integers, each in its own width (inverse of to_unsigned)."""
        w = self.per_int
        return torch.where(u >= torch.bitwise_left_shift(1, w - 1),
                           u - torch.bitwise_left_shift(1, w), u)

    def to(self, device) -> "MixedWidths":
        """The same numbering with its index tensors on `device`."""
        return MixedWidths(self.sizes, self.widths, device)


def flip_positions(ints: torch.Tensor, bits, positions) -> torch.Tensor:
    """Return a copy of the flat signed-integer tensor `ints` with the given bit positions
    flipped; position i is bit (i % bits) of integer (i // bits). `bits` may be a
    MixedWidths (per-layer widths, its numbering)."""
    flat = ints.reshape(-1)
    if len(positions) == 0:
        return flat.clone().reshape(ints.shape)
    pos = torch.as_tensor(positions).to(flat.device)  # numpy (host draws) or a device tensor
    if isinstance(bits, MixedWidths):
        return _flip_mixed(flat, bits, pos).to(ints.dtype).reshape(ints.shape)
    idx, bit = pos // bits, pos % bits
    # distinct positions -> distinct (idx, bit) pairs, so summing the bit masks of one
    # integer equals OR-ing them; XOR with that mask flips each chosen bit once
    mask = torch.zeros(flat.numel(), dtype=torch.int32, device=flat.device)
    mask.index_put_((idx,), torch.bitwise_left_shift(torch.ones_like(bit, dtype=torch.int32),
                                                     bit.to(torch.int32)), accumulate=True)
    u = to_unsigned(flat, bits) ^ mask
    return from_unsigned(u, bits).to(ints.dtype).reshape(ints.shape)


def _flip_mixed(flat: torch.Tensor, widths: MixedWidths, pos: torch.Tensor) -> torch.Tensor:
    if widths.per_int.device != flat.device:
        widths = widths.to(flat.device)
    idx, bit = widths.split(pos)
    mask = torch.zeros(flat.numel(), dtype=torch.int32, device=flat.device)
    mask.index_put_((idx,), torch.bitwise_left_shift(torch.ones_like(bit, dtype=torch.int32),
                                                     bit.to(torch.int32)), accumulate=True)
    return widths.from_unsigned(widths.to_unsigned(flat) ^ mask)


def flip_random_bits(ints: torch.Tensor, bits: int, p: float,
                     rng: np.random.Generator) -> tuple[torch.Tensor, int]:
    """Each of the `bits` bits of every integer flips independently with probability p.
    Returns (flipped copy, number of flips)."""
    n_bits = ints.numel() * bits
    k = sample_flip_count(n_bits, p, rng)
    return flip_positions(ints, bits, sample_positions(n_bits, k, rng)), k


def flip_bits_bernoulli_naive(ints: torch.Tensor, bits: int, p: float,
                              gen: torch.Generator | None = None) -> torch.Tensor:
    """Reference sampler: one Bernoulli draw per bit (O(number of bits)); for tests/benchmarks."""
    u = to_unsigned(ints.reshape(-1), bits)
    mask = torch.zeros_like(u)
    for j in range(bits):
        hit = torch.rand(u.shape, generator=gen) < p
        mask |= hit.to(torch.int32) << j
    return from_unsigned(u ^ mask, bits).to(ints.dtype).reshape(ints.shape)
