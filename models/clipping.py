"""Optimal clipping range under bit errors (the WCAT paper's App. A, Fig. 10).

alpha*(p) = argmin_a E||W - W_hat_tilde(a)||^2 (eq. 10, models.quant.expected_mse) for a
b-bit symmetric quantizer with range a whose stored integers flip each bit with probability p:

- `optimal_alpha(DISTRIBUTIONS[name], bits, p)`: W drawn from a known density (N(0,1),
  U(-1,1), Laplace(0,1), von Mises(0, kappa=4)), the expectation over W by midpoint
  quadrature on a fine grid;
- `optimal_range(w, bits, p)`: W a given sample (e.g. a network's weights);
- `shared_range_mc(model, test, ...)`: a network's accuracy and loss by Monte Carlo when every
  layer l is quantized with range alpha * std(W_l) (one shared alpha) and its stored integers
  take random bit errors; the same flips for every alpha (common random numbers).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from scipy import optimize, stats

from .errors import ConfigError
from .evaluate import on_model_device
from .faults import check_ber, from_unsigned, to_unsigned
from .quant import expected_mse, qmax


@dataclass(frozen=True)
class Distribution:
    """A weight density: pdf on a numpy grid, the interval holding (almost) all its mass,
    its standard deviation and the largest range searched."""
    name: str
    label: str
    pdf: object
    support: tuple[float, float]
    std: float
    a_max: float


DISTRIBUTIONS = {d.name: d for d in (
    Distribution("normal", "N(0,1)", stats.norm.pdf, (-9.0, 9.0), 1.0, 8.0),
    Distribution("uniform", "U(-1,1)", lambda x: np.full_like(x, 0.5), (-1.0, 1.0),
                 1 / np.sqrt(3), 1.0),
    Distribution("laplace", "Laplace(0,1)", stats.laplace.pdf, (-30.0, 30.0), np.sqrt(2), 20.0),
    Distribution("vonmises", "von Mises(0,4)", lambda x: stats.vonmises.pdf(x, 4.0),
                 (-np.pi, np.pi), float(stats.vonmises.std(4.0)), np.pi),
)}


def quadrature(dist: Distribution, points: int = 60001) -> tuple[torch.Tensor, torch.Tensor]:
    """(grid, weights summing to 1): the midpoint rule for E[f(W)] under `dist`."""
    lo, hi = dist.support
    edges = np.linspace(lo, hi, points + 1)
    x = (edges[:-1] + edges[1:]) / 2
    w = dist.pdf(x)
    return torch.from_numpy(x), torch.from_numpy(w / w.sum())


def _argmin_range(mse, a_max: float, grid: int) -> tuple[float, float]:
    """(a, mse(a)) minimizing mse on (0, a_max]: a grid search, refined between the grid
    neighbours of the best point (bounded Brent, tolerance 1e-5 * a_max)."""
    cands = np.linspace(a_max / grid, a_max, grid)
    errs = np.array([mse(a) for a in cands])
    i = int(np.argmin(errs))
    lo, hi = cands[max(i - 1, 0)], cands[min(i + 1, grid - 1)]
    if hi > lo:
        r = optimize.minimize_scalar(mse, bounds=(lo, hi), method="bounded",
                                     options={"xatol": 1e-5 * a_max})
        if r.fun <= errs[i]:
            return float(r.x), float(r.fun)
    return float(cands[i]), float(errs[i])


def optimal_alpha(dist: Distribution, bits: int, p: float, grid: int = 80,
                  points: int = 60001) -> tuple[float, float]:
    """(alpha*, its expected MSE) of eq. 10 for weights distributed as `dist`."""
    _check(bits, p)
    x, w = quadrature(dist, points)
    return _argmin_range(lambda a: expected_mse(x, a, bits, p, weights=w), dist.a_max, grid)


def optimal_range(w: torch.Tensor, bits: int, p: float, grid: int = 80) -> tuple[float, float]:
    """(a*, its expected MSE) of eq. 10 for the sample `w`, searched in (0, max|w|]."""
    _check(bits, p)
    return _argmin_range(lambda a: expected_mse(w, a, bits, p), float(w.abs().max()), grid)


def _check(bits: int, p: float) -> None:
    if not isinstance(bits, int) or not 2 <= bits <= 8:
        raise ConfigError(f"bits={bits!r}: must be an integer from 2 to 8")
    check_ber(p)


def _weight_layers(model: nn.Module) -> list[nn.Module]:
    layers = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    if not layers:
        raise ConfigError("the network has no Linear or Conv2d layer to quantize")
    return layers


def pooled_normalized_weights(model: nn.Module) -> torch.Tensor:
    """All layers' weights, each divided by its layer's standard deviation (the sample whose
    eq. 10 optimum predicts the shared alpha of shared_range_mc)."""
    return torch.cat([(m.weight / m.weight.std()).detach().reshape(-1).double()
                      for m in _weight_layers(model)])


def flip_masks(sizes: list[int], bits: int, p: float, rng: np.random.Generator) -> list:
    """Per layer, an XOR mask per stored integer: each of its `bits` bits set with prob. p."""
    weights = 1 << np.arange(bits)
    return [torch.from_numpy(((rng.random((n, bits)) < p) * weights).sum(1)) for n in sizes]


@torch.no_grad()
def shared_range_mc(model: nn.Module, test_data, bits: int, bers, alphas, realizations: int,
                    seed: int = 0) -> list[dict]:
    """Monte Carlo of a float network quantized to `bits` with one shared range alpha (in
    units of each layer's weight std) under random bit errors of the stored integers.
    Returns one row per (ber, alpha): accuracy mean/std and mean cross-entropy over the
    realizations (1 realization at BER 0). Realization r at BER p draws its flips from numpy
    seed (seed, round(p * 1e15), r): the same for every alpha and whatever the other BERs."""
    _check(bits, 0.0)
    if realizations < 1:
        raise ConfigError(f"realizations={realizations!r}: must be >= 1")
    for b in bers:
        _check(bits, float(b))
    alphas = [float(a) for a in alphas]
    if not alphas or min(alphas) <= 0:
        raise ConfigError(f"alphas {alphas}: need at least one, all > 0")
    net = copy.deepcopy(model).eval()
    layers = _weight_layers(net)
    floats = [m.weight.detach().clone() for m in layers]
    x, y = on_model_device(test_data, net)
    q = qmax(bits)
    rows = []
    for ber in bers:
        n_real = realizations if ber > 0 else 1
        masks = [flip_masks([w.numel() for w in floats], bits, float(ber),
                            np.random.default_rng([seed, round(float(ber) * 1e15), r]))
                 for r in range(n_real)]
        for alpha in alphas:
            accs, losses = [], []
            scales = [alpha * float(w.std()) / q for w in floats]
            ints = [torch.round(w.clamp(-s * q, s * q) / s).to(torch.int64)
                    for w, s in zip(floats, scales)]
            for mask in masks:
                for m, v, k, s, w in zip(layers, ints, mask, scales, floats):
                    u = to_unsigned(v.reshape(-1), bits) ^ k
                    m.weight.copy_((from_unsigned(u, bits).double() * s).reshape(w.shape))
                logits = net(x)
                accs.append(float((logits.argmax(1) == y).float().mean()))
                losses.append(float(F.cross_entropy(logits, y)))
            rows.append({"ber": float(ber), "alpha": alpha, "realizations": n_real,
                         "acc_mean": float(np.mean(accs)),
                         "acc_std": float(np.std(accs, ddof=1)) if n_real > 1 else 0.0,
                         "loss_mean": float(np.mean(losses))})
    return rows
