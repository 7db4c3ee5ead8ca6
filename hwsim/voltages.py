"""Per-layer weight-memory voltages (issue 22, item 4): each layer's weights sit in their own
bank at their own voltage V_l; the weight-domain energy is sum_l sum_d E_dl g_d(V_l) with E_dl
the layer's nominal energy in weight-holding domain d and g_d = hwsim.domains.Domain.factor,
the one energy law (dynamic (V/Vn)^2 plus the domain's leakage share; with no leakage share
it is sum_l E_l (V_l / V_nom)^2). LayerEnergies holds E_dl and the domains.

`optimize` finds an assignment with accuracy >= clean - max_drop:
  1. sensitivity: accuracy with only layer l faulty at BER eps(V), V descending over the grid,
     few realizations; a layer's descent stops once its drop exceeds max_drop. Where the
     layer's P(any flip) < BOUND_SHARE x max_drop that probability (an upper bound on the
     drop) is used instead of a Monte Carlo estimate. With sens_images = n (--sens-images)
     this step runs on n test images drawn by the seed, against their own clean accuracy
     (cheaper; steps 3 and 4 always use the whole test set);
  2. search (greedy): the predicted drop of an assignment is the sum of the per-layer drops
     (sens_model 'measured': each made monotone in V: the largest drop seen at or above V,
     and >= 0; 'flips': each layer's drop taken as c_l x its expected flipped bits
     n_l eps(V), c_l = sum of its Monte Carlo drops / sum of their expected flips, one
     damage-per-flip coefficient fitted to all its points, which keeps one lucky noisy point
     from sending a layer low: see flip_model); starting with
     every layer at the top of the grid, repeatedly take the single-layer move to a lower
     voltage with the most energy saved per point of predicted drop that keeps the sum within
     the budget;
  3. Monte Carlo verification of the joint assignment (per-layer BER dict, `realizations`,
     95% CI). Accepted when the verified mean drop <= max_drop. The budget (predicted drop
     allowed) is then calibrated by verification: halved after a failure (tighten and
     repeat), doubled after a pass while nothing failed, else bisected between the largest
     passing and smallest failing budget; MAX_TRIES searches, the cheapest passing one kept;
  4. the best uniform voltage: the lowest grid voltage whose
     sweep point (same estimator and seeds as `hwsim sweep`) keeps mean >= clean - max_drop.
     Found by bisection over the grid (accuracy taken as non-decreasing in V).
     The result is whichever verified assignment has less weight-domain energy (the uniform
     one when the search does not beat it), with the saving against the uniform one.
Seeds: a uniform assignment at V is evaluated exactly as the sweep point at V (float BER,
seed sweep.point_seed(seed, V)), so it equals that point; a non-uniform one uses
assignment_seed (a CRC of its voltages mixed into point_seed).
"""
from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field

import numpy as np
import torch

from hwsim.models.errors import ConfigError
from hwsim.models.estimate import estimate_accuracy
from hwsim.models.evaluate import StoredWeights, accuracy, on_model_device
from hwsim.models.quant import quant_layers

from .ber import BerModel
from .domain_energy import domain_layer_energy, domains_of
from .domains import Domain
from .energy import NetworkEnergy
from .sweep import point_seed, voltage_grid

MAX_TRIES = 6  # verified searches per optimisation (budget doubled / halved / bisected)
SENS_SEED_STRIDE = 7919
BOUND_SHARE = 0.02  # sensitivity points with P(any flip) below this x max_drop: bound only


def parse_grid(text: str) -> list[float]:
    """'VMIN:VMAX:STEP' -> the voltage grid (sweep.voltage_grid; every voltage checked)."""
    parts = str(text).split(":")
    try:
        lo, hi, step = (float(p) for p in parts)
    except ValueError:
        raise ConfigError(f"--grid {text!r}: expected VMIN:VMAX:STEP in volts, e.g. "
                          "0.36:0.80:0.01") from None
    return voltage_grid(lo, hi, step)


@dataclass(frozen=True)
class LayerEnergies:
    """Nominal energy (uJ/inference) of each layer's weights in each weight-holding voltage
    domain (`per_domain[i]` = {layer: uJ} of `domains[i]`), priced by the domains' own law
    (Domain.factor), so a leakage share changes sweeps, pricing and this search alike."""
    domains: tuple
    per_domain: tuple

    @classmethod
    def of(cls, energies, v_nominal: float) -> "LayerEnergies":
        """`energies` as is, or {layer: uJ} as one leakage-free domain at v_nominal."""
        if isinstance(energies, cls):
            return energies
        return cls((Domain("weights", ("weights",), ("weight",), float(v_nominal)),),
                   (dict(energies),))

    @property
    def names(self) -> list[str]:
        return list(self.per_domain[0])

    def nominal(self) -> dict[str, float]:
        """{layer: nominal energy summed over the domains}."""
        return {n: sum(e[n] for e in self.per_domain) for n in self.names}

    def layer(self, name: str, voltage: float) -> float:
        """Energy of layer `name`'s weights with its bank at `voltage`."""
        return sum(e[name] * d.factor(voltage) for d, e in zip(self.domains, self.per_domain))

    def total(self, volts: dict[str, float]) -> float:
        """The weight-domain energy of the assignment {layer: V}."""
        return sum(self.layer(n, volts[n]) for n in self.names)


def layer_energies(energy: NetworkEnergy, names: list[str]) -> LayerEnergies:
    """LayerEnergies of the weight-holding domains of `energy` (hwsim.domain_energy); a
    module called several times (energy names 'x#2', 'x#3') sums its calls."""
    doms = tuple(d for d in domains_of(energy) if "weight" in d.holds)
    if not doms:
        raise ConfigError(f"arch file {energy.arch_file!r}: no voltage domain holds weights; "
                          "per-layer weight voltages need one (hwsim.domains)")
    per = []
    for d in doms:
        out = {n: 0.0 for n in names}
        for layer, e in zip(energy.layers, domain_layer_energy(energy, d)):
            base = layer.name.split("#")[0]
            if base not in out:
                raise ConfigError(f"energy layer {layer.name!r} is not a quantized layer of "
                                  f"the model; layers: {', '.join(names)}")
            out[base] += e
        per.append(out)
    return LayerEnergies(doms, tuple(per))


def domain_energy(volts: dict[str, float], energies, v_nominal: float) -> float:
    """The weight-domain energy of an assignment (uJ): LayerEnergies.total, `energies` a
    LayerEnergies or {layer: nominal uJ} (one leakage-free domain at v_nominal)."""
    return LayerEnergies.of(energies, v_nominal).total(volts)


def assignment_seed(seed: int, volts: dict[str, float]) -> int:
    """The evaluation seed of an assignment: the sweep's point_seed when uniform (so it
    equals the sweep point), else point_seed at its lowest voltage XOR a CRC of the voltages."""
    vs = set(round(v, 6) for v in volts.values())
    if len(vs) == 1:
        return point_seed(seed, vs.pop())
    text = ",".join(f"{n}={round(v, 6)}" for n, v in sorted(volts.items()))
    return point_seed(seed, min(vs)) ^ zlib.crc32(text.encode())


class Evaluator:
    """Accuracy of a quantized model (already on its device) under per-layer weight BERs.
    `estimate`: the estimator (default models.estimate.estimate_accuracy, which takes a float
    BER or a {layer: BER} dict); injectable for tests."""

    def __init__(self, model, test, ber_model: BerModel, *, estimate=None):
        self.model, self.ber_model = model, ber_model
        self.xy = on_model_device(test, model)
        self.stored = StoredWeights(model)
        self.clean = accuracy(model, self.xy)
        self.layers = [n for n, _ in quant_layers(model)]
        self.estimate = estimate or estimate_accuracy
        self.calls = 0

    def subset(self, n: int, seed: int = 0) -> "Evaluator":
        """An Evaluator on `n` test images drawn without replacement by `seed` (the cheaper
        sensitivity step, --sens-images); its drops are against its own clean accuracy."""
        total = len(self.xy[1])
        if not (isinstance(n, int) and 1 <= n <= total):
            raise ConfigError(f"sens-images {n!r}: must be an integer in 1..{total} (the "
                              "test set's size)")
        if n == total:
            return self
        g = torch.Generator().manual_seed(seed)
        idx = torch.randperm(total, generator=g)[:n].sort().values.to(self.xy[1].device)
        return Evaluator(self.model, (self.xy[0][idx], self.xy[1][idx]), self.ber_model,
                         estimate=self.estimate)

    def __call__(self, volts: dict[str, float], seed: int, realizations: int,
                 ci_target: float | None = None, faulty=None):
        """Estimate at voltages {layer: V}; `faulty`: only these layers get bit errors
        (sensitivity), default all. A uniform all-layer assignment runs as a sweep point."""
        self.calls += 1
        faulty = self.layers if faulty is None else faulty
        bers = {n: self.ber_model.ber(volts[n]) for n in faulty}
        if len(faulty) == len(self.layers) and len(set(bers.values())) == 1:
            ber = next(iter(bers.values()))  # uniform: exactly the sweep's float-BER call
        else:
            ber = bers
        return self.estimate(self.model, self.xy, ber, max_realizations=realizations,
                             ci_target=ci_target, seed=seed, stored=self.stored,
                             clean=self.clean, progress=False)


def sensitivity(ev: Evaluator, grid: list[float], max_drop: float, realizations: int,
                seed: int = 0, log=None, done: dict | None = None,
                on_layer=None) -> dict[str, dict[float, float]]:
    """{layer: {V: accuracy drop (fraction) with only that layer faulty at eps(V)}}, V from
    the top of the grid down, stopping below the first V whose drop exceeds max_drop.
    `done`: layers measured before (kept as they are: each layer's draws are seeded by its
    index, so resuming gives what an uninterrupted run would); `on_layer(name, drops)` after
    each newly measured layer."""
    top = max(grid)
    out = {}
    for i, name in enumerate(ev.layers):
        if done and name in done:
            out[name] = done[name]
            continue
        drops, n_bits = {}, ev.stored.sizes[i] * ev.stored.layer_bits[i]
        for v in sorted(grid, reverse=True):
            # |E[acc] - clean| <= P(any flip in the layer): below BOUND_SHARE of the budget
            # that bound is the (conservative) drop, at no cost
            p_any = -math.expm1(n_bits * math.log1p(-ev.ber_model.ber(v)))
            if p_any < BOUND_SHARE * max_drop:
                drops[v] = p_any
                continue
            volts = dict.fromkeys(ev.layers, top) | {name: v}
            est = ev(volts, point_seed(seed, v) + SENS_SEED_STRIDE * (i + 1), realizations,
                     faulty=[name])
            drops[v] = ev.clean - est.mean
            if drops[v] > max_drop:
                break
        out[name] = drops
        if on_layer:
            on_layer(name, drops)
        if log:
            low = min(v for v, d in drops.items() if d <= max_drop) if any(
                d <= max_drop for d in drops.values()) else None
            log(f"sensitivity {name}: lowest V within the budget alone: {low}")
    return out


def monotone(drops: dict[float, float]) -> dict[float, float]:
    """Drops made non-negative and non-increasing in V (the largest drop at or above V)."""
    out, worst = {}, 0.0
    for v in sorted(drops, reverse=True):
        worst = max(worst, drops[v])
        out[v] = worst
    return out


SENS_MODELS = ("measured", "flips")


def flip_model(drops: dict[float, float], n_bits: int, ber_model: BerModel,
               max_drop: float) -> dict[float, float]:
    """One layer's drops as c x n_bits eps(V) at the voltages of `drops` (module docstring,
    step 2), c fitted on the points sensitivity() estimated by Monte Carlo (those with
    P(any flip) >= BOUND_SHARE x max_drop): c = max(sum d, 0) / sum(expected flips), the
    least-squares slope when a point's variance grows with its expected flips. No Monte Carlo
    point: the measured (bound) drops as they are."""
    lam = {v: n_bits * ber_model.ber(v) for v in drops}
    mc = [v for v in drops
          if -math.expm1(n_bits * math.log1p(-ber_model.ber(v))) >= BOUND_SHARE * max_drop]
    if not mc:
        return dict(drops)
    c = max(sum(drops[v] for v in mc), 0.0) / sum(lam[v] for v in mc)
    return {v: c * lam[v] for v in drops}


def drop_per_ber(sens: dict[str, dict[float, float]], bits: dict[str, int],
                 ber_model: BerModel, max_drop: float) -> dict[str, float]:
    """{layer: k_l}, the flips model's accuracy drop (fraction) per unit bit error rate of each
    layer (flip_model's c_l x the layer's stored bits)."""
    out = {}
    for name, drops in sens.items():
        fit = flip_model(drops, bits[name], ber_model, max_drop)
        v = min(fit)
        out[name] = fit[v] / ber_model.ber(v)
    return out


CEILING_STEP = 0.0005  # V: the continuous optimum's voltage grid


def _ceiling_grid(v_nominal: float) -> np.ndarray:
    """The CEILING_STEP voltage grid from 0.2 V to v_nominal."""
    return np.round(np.arange(0.2, v_nominal + 1e-9, CEILING_STEP), 6)


def continuous_optimum(k: dict[str, float], law: "LayerEnergies", ber_model: BerModel,
                       v_nominal: float, target: float) -> tuple[float, dict[str, float]]:
    """(weight-domain energy, {layer: V}) minimising law.total subject to the flips model's
    drop sum_l k_l eps(V_l) <= target, voltages on a CEILING_STEP grid from 0.2 V to
    v_nominal: each layer at the argmin of E_l(V) + mu k_l eps(V), mu the smallest Lagrange
    multiplier within target (geometric bisection)."""
    fine = _ceiling_grid(v_nominal)
    eps = np.array([ber_model.ber(float(v)) for v in fine])
    energy = {n: np.array([law.layer(n, float(v)) for v in fine]) for n in k}

    def choose(mu):
        return {n: int(np.argmin(energy[n] + mu * k[n] * eps)) for n in k}
    lo, hi = 1e-12, 1e12
    for _ in range(200):
        mid = (lo * hi) ** 0.5
        if sum(k[n] * eps[i] for n, i in choose(mid).items()) > target:
            lo = mid
        else:
            hi = mid
    idx = choose(hi)
    return (float(sum(energy[n][i] for n, i in idx.items())),
            {n: float(fine[i]) for n, i in idx.items()})


def flips_ceiling(k: dict[str, float], law: "LayerEnergies", ber_model: BerModel,
                  v_nominal: float, max_drop: float) -> dict | None:
    """How much per-layer voltages can save at all under the flips model: the continuous
    per-layer optimum against the continuous uniform voltage, both spending the whole
    `max_drop` (fraction) by the model. An order of magnitude for a designer, not a bound
    (the model's drops are fitted, not exact). None when no voltage meets max_drop."""
    fine = _ceiling_grid(v_nominal)
    ok = [float(v) for v in fine if sum(k.values()) * ber_model.ber(float(v)) <= max_drop]
    if not ok:
        return None
    vu = min(ok)
    e_uni = law.total(dict.fromkeys(k, vu))
    e_opt, volts = continuous_optimum(k, law, ber_model, v_nominal, max_drop)
    return {"saving_vs_uniform": 1 - e_opt / e_uni if e_uni else 0.0,
            "uniform_voltage": vu, "uniform_energy_uJ": e_uni, "energy_uJ": e_opt,
            "layer_voltages": [min(volts.values()), max(volts.values())]}


def greedy(sens: dict[str, dict[float, float]], energies: dict[str, float], v_nominal: float,
           budget: float) -> dict[str, float]:
    """The greedy search (module docstring, step 2) within a predicted-drop `budget`;
    `energies`: LayerEnergies or {layer: nominal uJ}."""
    law = LayerEnergies.of(energies, v_nominal)
    curves = {n: monotone(d) for n, d in sens.items()}
    volts = {n: max(c) for n, c in curves.items()}
    total = sum(curves[n][volts[n]] for n in curves)
    if total > budget:
        return volts
    while True:
        best = None
        for n, c in curves.items():
            here = c[volts[n]]
            for v in c:
                if v >= volts[n] or total - here + c[v] > budget:
                    continue
                de = law.layer(n, volts[n]) - law.layer(n, v)
                score = (de / max(c[v] - here, 1e-9), de)
                if best is None or score > best[0]:
                    best = (score, n, v)
        if best is None:
            return volts
        _, n, v = best
        total += curves[n][v] - curves[n][volts[n]]
        volts[n] = v


@dataclass
class Point:
    """A verified assignment: {layer: V}, its weight-domain energy and accuracy estimate."""
    volts: dict[str, float]
    energy_uJ: float
    est: object
    seed: int

    def accuracy(self) -> dict:
        e = self.est
        return {"clean": e.clean, "mean": e.mean, "ci95": e.ci95, "std": e.std,
                "realizations": e.realizations, "estimator": e.estimator, "seed": self.seed}


def verify(ev: Evaluator, volts, energies, v_nominal, seed, realizations, ci_target) -> Point:
    s = assignment_seed(seed, volts)
    est = ev(volts, s, realizations, ci_target)
    return Point(dict(volts), domain_energy(volts, energies, v_nominal), est, s)


def best_uniform(ev: Evaluator, grid, energies, v_nominal, max_drop, seed, realizations,
                 ci_target, known: dict | None = None, seen: dict | None = None) -> Point:
    """The lowest grid voltage whose uniform point keeps the mean within max_drop of clean,
    by bisection over the grid (accuracy taken as non-decreasing in V; ~log2(len(grid)) + 2
    sweep points); the top of the grid when even that fails. `known`: {V: Estimate} verified
    before with the same seed and settings (reused, not evaluated); `seen` collects every
    uniform point's {V: Estimate}."""
    vs = sorted(grid)
    pts = {}
    known = {round(float(v), 6): e for v, e in (known or {}).items()}

    def point(i):
        if i not in pts:
            volts = dict.fromkeys(ev.layers, vs[i])
            e = known.get(round(vs[i], 6))
            pts[i] = Point(volts, domain_energy(volts, energies, v_nominal), e,
                           assignment_seed(seed, volts)) if e is not None else verify(
                ev, volts, energies, v_nominal, seed, realizations, ci_target)
            if seen is not None:
                seen[round(vs[i], 6)] = pts[i].est
        return pts[i]
    ok = lambda i: ev.clean - point(i).est.mean <= max_drop
    lo, hi = 0, len(vs) - 1
    if not ok(hi) or ok(lo):
        return point(hi) if not ok(lo) else point(lo)
    while hi - lo > 1:  # vs[lo] fails, vs[hi] passes
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if ok(mid) else (mid, hi)
    return point(hi)


@dataclass
class Result:
    """What `optimize` found (module docstring)."""
    chosen: Point
    uniform: Point
    source: str  # 'greedy' or 'uniform'
    attempts: list[dict] = field(default_factory=list)
    sensitivity: dict = field(default_factory=dict)
    ceiling: dict | None = None  # flips_ceiling of the sensitivity
    uniform_points: dict = field(default_factory=dict)  # {V: Estimate} of best_uniform

    @property
    def saving(self) -> float:
        """1 - E(chosen) / E(best uniform), weight domain."""
        return 1.0 - self.chosen.energy_uJ / self.uniform.energy_uJ if self.uniform.energy_uJ else 0.0


def optimize(ev: Evaluator, energies: dict[str, float], v_nominal: float, grid: list[float],
             max_drop: float, *, seed: int = 0, realizations: int = 50,
             sens_realizations: int = 10, ci_target: float | None = None, log=None,
             sens_ev: Evaluator | None = None, sens_model: str = "measured",
             sens: dict | None = None, uniform_known: dict | None = None) -> Result:
    """Steps 1-4 of the module docstring; max_drop is a fraction (0.01 = 1 point).
    `sens_ev`: the Evaluator of step 1 (default `ev`; e.g. ev.subset(n)); `sens`: step 1's
    result from an earlier run (then step 1 is skipped); `sens_model`: SENS_MODELS."""
    if not max_drop > 0:
        raise ConfigError(f"max-drop {max_drop * 100!r} points: must be > 0")
    if sens_model not in SENS_MODELS:
        raise ConfigError(f"sens-model {sens_model!r}: valid: {', '.join(SENS_MODELS)}")
    energies = LayerEnergies.of(energies, v_nominal)
    if sens is None:
        sens = sensitivity(sens_ev or ev, grid, max_drop, sens_realizations, seed, log)
    curves = sens
    bits = dict(zip(ev.layers, (n * b for n, b in zip(ev.stored.sizes, ev.stored.layer_bits))))
    if sens_model == "flips":
        curves = {n: flip_model(d, bits[n], ev.ber_model, max_drop) for n, d in sens.items()}
    ceiling = flips_ceiling(drop_per_ber(sens, bits, ev.ber_model, max_drop), energies,
                            ev.ber_model, v_nominal, max_drop)
    if log and ceiling:
        log(f"ceiling (flips model, continuous voltages): per-layer voltages can save about "
            f"{ceiling['saving_vs_uniform'] * 100:.1f}% against one uniform voltage here")
    uniform_points: dict = {}
    uniform = best_uniform(ev, grid, energies, v_nominal, max_drop, seed, realizations,
                           ci_target, uniform_known, uniform_points)
    attempts, found, seen = [], None, {}
    passed = failed = None  # the largest passing and smallest failing budget so far
    budget = max_drop
    for _ in range(MAX_TRIES):
        volts = greedy(curves, energies, v_nominal, budget)
        key = tuple(sorted(volts.items()))
        if key not in seen:
            seen[key] = verify(ev, volts, energies, v_nominal, seed, realizations, ci_target)
        p = seen[key]
        ok = ev.clean - p.est.mean <= max_drop
        attempts.append({"budget_points": budget * 100, "energy_uJ": p.energy_uJ,
                         "acc_mean": p.est.mean, "acc_ci95": p.est.ci95, "passed": ok})
        if log:
            log(f"greedy budget {budget * 100:.3g} pts: E={p.energy_uJ:.4g} uJ, acc "
                f"{p.est.mean * 100:.2f} +/- {p.est.ci95 * 100:.2f}% -> "
                f"{'pass' if ok else 'fail'}")
        if ok:
            if found is None or p.energy_uJ < found.energy_uJ:
                found = p
            passed = budget
        else:
            failed = budget
        if failed is None:
            budget = passed * 2
        elif passed is None:
            budget = failed / 2
        else:
            budget = (passed + failed) / 2
    if found is not None and found.energy_uJ < uniform.energy_uJ:
        return Result(found, uniform, "greedy", attempts, sens, ceiling, uniform_points)
    return Result(uniform, uniform, "uniform", attempts, sens, ceiling, uniform_points)
