"""Where bit errors land in the stored weights: one bit error rate for the whole memory or
one per quantized layer, and a protection scheme (models/protection.py).

`FaultPlan` cuts the memory into groups of independent fault units, each hit with its
group's probability q: with a float BER and no protection one group, every stored bit (the
draws every earlier result was computed with: K ~ Binomial(n_bits, p), then K uniform
distinct positions); otherwise one group per layer with p > 0 (its bits, its unprotected
bits, or its SECDED words). A realization draws the hit count per group, the hit units
uniformly within the group, and turns them into flipped bit positions (StoredWeights
numbering). Given the counts the units are uniform, so stratifying on counts stays exact.

Per-layer rates: a mapping {layer name as in quant_layers(model): ber}; unnamed layers are
error-free. A mapping giving every layer the same rate is that float (same draws).
"""
from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import torch

from .errors import ConfigError
from .faults import check_ber, sample_flip_count
from .protection import Protection


def layer_bers(names: list[str], ber) -> float | list[float]:
    """A float BER checked, or a per-layer mapping as a list in `names` order (0 where a
    layer is not named). Unknown names and bad values: ConfigError naming them."""
    if not isinstance(ber, Mapping):
        return check_ber(ber)
    unknown = [k for k in ber if k not in names]
    if unknown:
        raise ConfigError(f"bit error rate for unknown layer(s) {', '.join(map(repr, unknown))}: "
                          f"valid layer names: {', '.join(names)}")
    out = []
    for n in names:
        try:
            out.append(check_ber(ber.get(n, 0.0)))
        except ConfigError as e:
            raise ConfigError(f"layer {n!r}: {e}") from None
    return out


class FaultPlan:
    """The fault groups of `stored` (a StoredWeights) at `ber` (float or {layer: ber}) under
    `protection` (a Protection or its spec string; default none). See the module docstring.

    ns, qs: units and hit probability per group; whole: the single whole-memory group."""

    def __init__(self, stored, ber, protection=None):
        self.protection = Protection.parse(protection)
        per = layer_bers(stored.names, ber)
        self.label = dict(ber) if isinstance(ber, Mapping) else ber  # for results, as given
        self.desc = "BER per layer" if isinstance(ber, Mapping) else f"BER {ber:.2g}"
        if isinstance(per, list) and len(set(per)) == 1:
            per = per[0]  # the same rate everywhere is the float form
        self.whole = not isinstance(per, list) and self.protection.kind == "none"
        if self.whole:
            self.ber, self.groups = per, []
            self.ns, self.qs = [stored.n_bits], [per]
        else:
            bers = per if isinstance(per, list) else [per] * len(stored.sizes)
            self.ber = None
            self.groups = self.protection.groups(stored, bers)
            self.ns, self.qs = [g.n for g in self.groups], [g.q for g in self.groups]
        self.n_bits = stored.n_bits

    @property
    def zero(self) -> bool:
        """No unit can be hit: the clean accuracy is exact."""
        return self.ber == 0 if self.whole else not self.groups

    def p_any(self) -> float:
        """P(at least one unit is hit)."""
        if self.whole:
            return -math.expm1(self.n_bits * math.log1p(-self.ber))
        return -math.expm1(sum(n * math.log1p(-q) for n, q in zip(self.ns, self.qs)))

    def expected_hits(self) -> float:
        """Expected number of hit units (flipped bits unless SECDED: words with >= 2 errors)."""
        if self.whole:
            return self.n_bits * self.ber
        return float(sum(n * q for n, q in zip(self.ns, self.qs)))

    def expected_flips(self) -> float:
        """Expected number of stored weight bits that read wrong (after decoding)."""
        if self.whole:
            return self.n_bits * self.ber
        return float(sum(g.expected_flips() for g in self.groups))

    def draw_counts(self, rng: np.random.Generator):
        """Hit counts of one realization: an int (whole) or one per group."""
        if self.whole:
            return sample_flip_count(self.n_bits, self.ber, rng)
        return rng.binomial(self.ns, self.qs) if self.groups else np.zeros(0, np.int64)

    def positions(self, counts, sampler, rng: np.random.Generator):
        """Flipped bit positions (numpy array or device tensor) for these hit counts;
        `sampler`: a faults.PositionSampler (it draws the hit units), `rng` the numpy
        generator of everything else (SECDED word patterns)."""
        if self.whole:
            return sampler(int(counts))
        parts = [g.realize(sampler(int(k), g.n), rng)
                 for g, k in zip(self.groups, counts) if k > 0]
        if not parts:
            return np.empty(0, dtype=np.int64)
        if any(isinstance(p, torch.Tensor) for p in parts):
            dev = next(p.device for p in parts if isinstance(p, torch.Tensor))
            return torch.cat([torch.as_tensor(p, device=dev) for p in parts])
        return np.concatenate(parts)
