"""Accuracy under random bit errors with variance reduction (used by the voltage sweep).

The number of flipped bits K is Binomial(n, p) with n = (stored weights) x (bits). Stratify on
K: accuracy = sum_k P(K=k) E[acc | K=k]. K = 0 is the clean accuracy (computed once, no
noise); K = 1..k_max are strata of their own; K > k_max is a last stratum sampled from the
conditional binomial tail. Given K = k the k positions are uniform, so each stratum is sampled
exactly. When flips are plentiful (n p large) strata buy nothing and we do plain Monte Carlo.
When even one flip is very unlikely (P(K > 0) < 1e-5) the clean accuracy is returned with
that probability as the (deterministic) error bound.
Realizations are spent in rounds (proportional/Neyman allocation) until the 95% CI half-width
reaches `ci_target` (plain MC: after at least `min_realizations`; stratified: after the pilot
of two per stratum, the strata cut to half the budget so that the pilot fits it: a budget of 2
is the one stratum K > 0) or the budget is used. The estimate is unbiased; its variance is the usual
stratified sum_k w_k^2 s_k^2 / n_k.
Per-layer rates or protection (models.faultplan): K is the total number of hit fault units
(bits; SECDED: words with >= 2 raw errors), a sum of independent binomials, one per layer;
the strata are on that total with exact weights (_strata_groups), K = 0 is exactly clean.
"""
from __future__ import annotations

import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from scipy import stats
from tqdm import tqdm

from .errors import ConfigError
from .evaluate import (StoredWeights, check_ber, hit_rate, on_model_device, run_context,
                       t_halfwidth)
from .faultplan import FaultPlan
from .faults import PositionSampler

PLAIN_MC_ABOVE = 6.0  # expected flips above which stratifying on K gains nothing
TAIL_TABLE_MAX = 4000
NEGLIGIBLE = 1e-5  # below this P(any flip) the clean accuracy is within 1e-5 of the truth


@dataclass
class Estimate:
    ber: float | dict  # as given: one rate, or {layer name: rate}
    clean: float
    mean: float
    std: float  # spread of accuracy across realizations (mixture std)
    ci95: float  # half-width of the 95% CI of `mean`
    realizations: int
    estimator: str  # 'exact' | 'bound' | 'stratified' | 'mc'
    expected_flips: float
    device: str = ""  # where it was computed ('cpu', 'cuda'; '' not recorded) ...
    precision: str = ""  # ... and in what (models.evaluate.precision_name)

    def as_dict(self) -> dict:
        return dict(self.__dict__)


class _Stratum:
    def __init__(self, weight: float, draw_k):
        self.weight, self.draw_k, self.values = weight, draw_k, []
        self.pending: list[torch.Tensor] = []  # accuracies not yet fetched from the device

    def settle(self) -> None:
        """Fetch the pending accuracies: one device-to-host copy per round of realizations."""
        if self.pending:
            self.values += torch.stack(self.pending).tolist()
            self.pending = []

    @property
    def n(self):
        return len(self.values) + len(self.pending)

    def mean(self):
        return float(np.mean(self.values)) if self.values else 0.0

    def var(self):
        return float(np.var(self.values, ddof=1)) if self.n > 1 else 0.0


def _tail_sampler(n: int, p: float, kmax: int, rng: np.random.Generator):
    """Sampler of K ~ Binomial(n, p) conditioned on K > kmax."""
    tail = float(stats.binom.sf(kmax, n, p))
    if tail > 0.2:  # rejection is cheap
        def draw():
            while True:
                k = int(rng.binomial(n, p))
                if k > kmax:
                    return k
        return draw
    ks = np.arange(kmax + 1, min(n, kmax + TAIL_TABLE_MAX) + 1)
    pmf = stats.binom.pmf(ks, n, p)
    pmf = pmf / pmf.sum()  # mass beyond the table is < 1e-300 relative for these p
    return lambda: int(rng.choice(ks, p=pmf))


def _strata(n: int, p: float, rng: np.random.Generator, force_mc: bool,
            max_strata: int = 13):
    lam = n * p
    if force_mc or lam > PLAIN_MC_ABOVE:
        return "mc", 0.0, [_Stratum(1.0, lambda: int(rng.binomial(n, p)))]
    w0 = float(stats.binom.pmf(0, n, p))
    rest = tail = 1.0 - w0
    strata, k = [], 0
    # explicit strata K = 1, 2, ... until the remaining tail holds < 1% of the non-clean
    # mass, K = 12, or max_strata - 1 of them (the tail stratum K > k is the last)
    while k < min(n, 12, max_strata - 1):
        k += 1
        strata.append(_Stratum(float(stats.binom.pmf(k, n, p)), (lambda kk: lambda: kk)(k)))
        tail = float(stats.binom.sf(k, n, p))
        if tail <= 0.01 * rest:
            break
    if tail > 0:
        strata.append(_Stratum(tail, _tail_sampler(n, p, k, rng)))
    return "stratified", w0, strata


GROUP_TAIL = 400  # table of the total count beyond k_max (stratified: <= 6 expected hits)


def _strata_groups(ns, qs, rng: np.random.Generator, force_mc: bool, max_strata: int = 13):
    """_strata for a sum of independent Binomial(n_g, q_g) hit counts (one per fault group,
    models.faultplan): strata on the total K as above, weights P(K = k) from the exact
    convolution of the group pmfs; within a stratum the per-group counts are drawn from
    their exact conditional law given the total, group by group:
    P(K_g = j | rest) ~ pmf_g(j) * P(K_{g+1} + ... = rest - j)."""
    ns, qs = np.asarray(ns, np.int64), np.asarray(qs, float)
    if force_mc or float(ns @ qs) > PLAIN_MC_ABOVE:
        return "mc", 0.0, [_Stratum(1.0, lambda: rng.binomial(ns, qs))]
    size = int(min(ns.sum(), 12 + GROUP_TAIL)) + 1
    pmfs = [stats.binom.pmf(np.arange(size), n, q) for n, q in zip(ns, qs)]
    suffix = [np.eye(1, size)[0]]  # suffix[i]: pmf of the sum of groups G-i .. G-1
    for pg in reversed(pmfs):
        suffix.append(np.convolve(pg, suffix[-1])[:size])
    suffix.reverse()  # suffix[g]: groups g..G-1; suffix[0]: the total

    def given(total: int) -> np.ndarray:
        counts, rest = np.zeros(len(ns), np.int64), total
        for g in range(len(ns) - 1):
            j = np.arange(min(rest, ns[g]) + 1)
            w = pmfs[g][j] * suffix[g + 1][rest - j]
            counts[g] = rng.choice(j, p=w / w.sum())
            rest -= counts[g]
        counts[-1] = rest
        return counts

    total = suffix[0]
    w0 = float(total[0])
    rest = 1.0 - w0
    tail = float(total[1:].sum())
    strata, k = [], 0
    while k < min(size - 1, 12, max_strata - 1):
        k += 1
        strata.append(_Stratum(float(total[k]), (lambda kk: lambda: given(kk))(k)))
        tail = float(total[k + 1:].sum())
        if tail <= 0.01 * rest:
            break
    if tail > 0:
        ks = np.arange(k + 1, size)
        pk = total[k + 1:] / total[k + 1:].sum()
        strata.append(_Stratum(tail, lambda: given(int(rng.choice(ks, p=pk)))))
    return "stratified", w0, strata


@torch.no_grad()
def estimate_accuracy(model, data, ber, *, max_realizations: int = 50,
                      min_realizations: int = 10, ci_target: float | None = None,
                      seed: int = 0, stored: StoredWeights | None = None,
                      clean: float | None = None, force_mc: bool = False,
                      progress: bool = False, batch_size: int | None = None,
                      sampler: str | None = None, protection=None) -> Estimate:
    """Accuracy of `model` at bit error rate `ber` (see the module docstring). `ber`: one
    rate for every stored bit, or {layer name (quant_layers): rate} with unnamed layers
    error-free (models.faultplan; strata on the total hit count, _strata_groups).
    `protection`: 'none' (default), 'secded' or 'msb:K' (models.protection; under SECDED a
    hit is a word with >= 2 raw errors, so K = 0 is exactly clean). `sampler`: where flip
    positions are drawn, 'host' or 'device' (default: host on the CPU, device on a GPU;
    faults.PositionSampler); either way K and the strata come from `seed`'s numpy
    generator. `expected_flips`: expected weight bits read wrong (after decoding)."""
    if not isinstance(ber, Mapping):
        check_ber(ber)
    if max_realizations < 2:
        raise ConfigError(f"realizations={max_realizations!r}: need at least 2 for a CI")
    if ci_target is not None and not ci_target > 0:
        raise ConfigError(f"ci_target={ci_target!r}: must be > 0")
    x, y = on_model_device(data, model)
    model.eval()
    stored = stored or StoredWeights(model)
    plan = FaultPlan(stored, ber, protection)
    if clean is None:
        clean = float(hit_rate(model, x, y, batch_size))
    n_bits, where = stored.n_bits, run_context(model)
    if plan.zero:
        return Estimate(plan.label if isinstance(plan.label, dict) else 0.0, clean, clean,
                        0.0, 0.0, 0, "exact", 0.0, **where)
    p_any = plan.p_any()  # P(K > 0)
    if p_any < NEGLIGIBLE and not force_mc:
        # flips are this rare: accuracy is clean except with probability p_any, so
        # |E[acc] - clean| <= p_any; report that bound as the interval, spend nothing
        return Estimate(plan.label, clean, clean, 0.0, p_any, 0, "bound",
                        plan.expected_flips(), **where)
    rng = np.random.default_rng(seed)
    cap = max(1, max_realizations // 2)  # the pilot (2 per stratum) fits the budget
    kind, w0, strata = (_strata(n_bits, plan.ber, rng, force_mc, cap) if plan.whole else
                        _strata_groups(plan.ns, plan.qs, rng, force_mc, cap))
    positions = PositionSampler(n_bits, rng, seed, stored.ints.device, sampler)

    def run_one(s: _Stratum):
        pos = plan.positions(s.draw_k(), positions, rng)
        with stored.installed(stored.flipped(pos)):
            s.pending.append(hit_rate(model, x, y, batch_size))

    def summary():
        for s in strata:
            s.settle()
        used = sum(s.n for s in strata)
        mean = w0 * clean + sum(s.weight * s.mean() for s in strata)
        if kind == "mc":
            sd = math.sqrt(strata[0].var())
            return mean, sd, t_halfwidth(sd, used), used
        var_est = sum(s.weight ** 2 * s.var() / s.n for s in strata if s.n)
        mix = w0 * (clean - mean) ** 2 + sum(
            s.weight * (s.var() + (s.mean() - mean) ** 2) for s in strata)
        return mean, math.sqrt(max(mix, 0.0)), 1.96 * math.sqrt(var_est), used

    bar = tqdm(total=max_realizations, desc=plan.desc, leave=False,
               disable=not progress, file=sys.stderr)
    # pilot: 2 per stratum (a variance needs two), then rounds allocated by w_k * s_k
    for s in strata:
        for _ in range(2 if kind == "stratified" else min(min_realizations, max_realizations)):
            run_one(s)
            bar.update()
    while True:
        mean, sd, half, used = summary()
        if used >= max_realizations:
            break
        # plain MC needs min_realizations before its sample std can be trusted; a stratified
        # CI is already sound after the pilot, and where flips are rare (P(K>0) ~ 1%) the
        # pilot alone meets the target, so those points cost 2-4 passes instead of 10
        enough = used >= (min_realizations if kind == "mc" else 2 * len(strata))
        if ci_target is not None and enough and half <= ci_target:
            break
        step = min(max(len(strata), 5), max_realizations - used)
        score = np.array([s.weight * max(math.sqrt(s.var()), 1e-3) for s in strata])
        for i in rng.choice(len(strata), size=step, p=score / score.sum()):
            run_one(strata[i])
            bar.update()
    bar.close()
    mean, sd, half, used = summary()
    return Estimate(plan.label, clean, mean, sd, half, used, kind, plan.expected_flips(),
                    **where)
