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
import sys
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import yaml

from hwsim.models.checkpoint import method_name
from hwsim.models.device import resolve_device
from hwsim.models.errors import ConfigError
from hwsim.models.estimate import Estimate, estimate_accuracy
from hwsim.models.evaluate import StoredWeights, accuracy, on_model_device
from hwsim.models.quant import quant_layers

from .ber import V_NOMINAL, BerModel, check_voltage
from .domain_energy import domain_layer_energy, domains_of, price
from .domains import Domain, warn_arch
from .energy import NetworkEnergy
from .files import read_json, read_partial, read_yaml, write_partial, write_text_atomic
from .sweep import (append_rows, checkpoint_test_data, energy_sidecar, file_sha256,
                    load_quantized, model_energy, point_row, point_seed, read_rows,
                    update_sidecar, voltage_grid)

FORMAT = "hwsim-voltage-assignment/1"
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


def _eval_setup(checkpoint, data, data_root, device, with_test: bool = True):
    """(model on `device`, config, test data, or None when not `with_test`)."""
    if not Path(checkpoint).is_file():
        raise ConfigError(f"checkpoint {str(checkpoint)!r} does not exist")
    model, config = load_quantized(checkpoint, "per-layer voltages need")
    test = checkpoint_test_data(config, data, data_root) if with_test else None
    model.to(resolve_device(device))
    return model, config, test


def optimize_voltages(checkpoint: str, arch: str, max_drop_points: float, grid: list[float],
                      *, out: str | Path | None = None, seed: int = 0, realizations: int = 50,
                      sens_realizations: int = 10, ci_target: float | None = None,
                      sens_images: int | None = None, act_bits: int = 8,
                      ber_model: BerModel | None = None,
                      data_root: str | None = None, data=None, device: str = "cpu",
                      command: str = "", progress: bool = True, estimate=None,
                      sens_model: str = "measured",
                      sensitivity_from: str | Path | None = None) -> dict:
    """Optimise `checkpoint`'s per-layer voltages on `arch` (module docstring) and return the
    assignment document; written atomically as YAML to `out` when given.
    `sensitivity_from`: an assignment this command wrote for the same checkpoint, grid and
    BER model with at least this max drop: its per-layer sensitivity is reused (step 1
    skipped; the recorded sensitivity_images carried over)."""
    ber_model = ber_model or BerModel()
    if sens_model not in SENS_MODELS:
        raise ConfigError(f"sens-model {sens_model!r}: valid: {', '.join(SENS_MODELS)}")
    model, config, test = _eval_setup(checkpoint, data, data_root, device)
    ev = Evaluator(model, test, ber_model, estimate=estimate)
    recorded, sens_n, known = None, None, None
    verification = {"seed": seed, "realizations": realizations, "ci_target": ci_target,
                    "images": len(ev.xy[1])}
    if sensitivity_from is not None:
        if sens_images is not None:
            raise ConfigError("--sens-images with --sensitivity-from: the sensitivity is "
                              "reused, not measured")
        recorded, sens_n = recorded_sensitivity(sensitivity_from, checkpoint, grid,
                                                max_drop_points, ber_model, ev.layers)
        known = recorded_uniform_points(sensitivity_from, verification)
        sens_n = sens_n or len(ev.xy[1])  # files from before --sens-images: all images
        sens_ev = ev
    else:
        sens_ev = ev if sens_images is None else ev.subset(sens_images, seed)  # checked first
        sens_n = len(sens_ev.xy[1])
    energy = model_energy(arch, model, config["quantizer"]["bits"], act_bits,
                          progress=progress)
    vn = energy.v_nominal
    for v in grid:
        check_voltage(v, "--grid voltage", vn)
    warn_arch(arch, (), ber_model)  # once per run (hwsim.domains)
    law = layer_energies(energy, ev.layers)
    energies = law.nominal()
    log = (lambda s: print(s, file=sys.stderr)) if progress else None
    partial = None
    if recorded is None and out is not None and max_drop_points > 0:
        partial = partial_sensitivity_file(out)
        recorded = resumable_sensitivity(
            sens_ev, grid, max_drop_points / 100, sens_realizations, seed, log, partial,
            {"checkpoint_sha256": file_sha256(checkpoint), "grid": [min(grid), max(grid),
             len(grid)], "ber_model": vars(ber_model) | {}, "max_drop_points": max_drop_points,
             "sensitivity_images": sens_n, "sens_realizations": sens_realizations, "seed": seed})
    res = optimize(ev, law, vn, grid, max_drop_points / 100, seed=seed,
                   realizations=realizations, sens_realizations=sens_realizations,
                   ci_target=ci_target, log=log, sens_ev=sens_ev, sens_model=sens_model,
                   sens=recorded, uniform_known=known)
    doc = {
        "format": FORMAT, "checkpoint": str(checkpoint),
        "checkpoint_sha256": file_sha256(checkpoint), "method": method_name(config),
        "arch": str(arch), "v_nominal": vn, "ber_model": vars(ber_model) | {},
        "max_drop_points": max_drop_points, "grid": [min(grid), max(grid), len(grid)],
        "seed": seed, "command": command, "search": "greedy (additive per-layer drops)",
        "sensitivity_images": sens_n, "sensitivity_model": sens_model,
        **({"sensitivity_from": str(sensitivity_from)} if sensitivity_from else {}),
        "result_from": res.source,
        "layers": {n: {"voltage": res.chosen.volts[n], "ber": ber_model.ber(res.chosen.volts[n]),
                       "energy_nominal_uJ": energies[n],
                       "energy_uJ": law.layer(n, res.chosen.volts[n])}
                   for n in ev.layers},
        "energy_weight_domain_uJ": res.chosen.energy_uJ,
        "energy_weight_domain_nominal_uJ": sum(energies.values()),
        "accuracy": res.chosen.accuracy(),
        "uniform": {"voltage": next(iter(res.uniform.volts.values())),
                    "energy_weight_domain_uJ": res.uniform.energy_uJ,
                    "accuracy": res.uniform.accuracy()},
        "saving_vs_uniform": res.saving,
        "ceiling_flips_model": res.ceiling,
        "verification": verification,
        "uniform_points": {v: e.as_dict() for v, e in sorted(res.uniform_points.items())},
        "attempts": res.attempts,
        "sensitivity_drop_points": {n: {float(v): d * 100 for v, d in s.items()}
                                    for n, s in res.sensitivity.items()},
    }
    if out is not None:
        write_text_atomic(out, yaml.safe_dump(_plain(doc), sort_keys=False))
    if partial is not None:
        partial.unlink(missing_ok=True)
    return doc


def partial_sensitivity_file(out: str | Path) -> Path:
    """Where optimize-voltages keeps the layers measured so far while it writes `out`."""
    return Path(f"{out}.sensitivity.partial.json")


def resumable_sensitivity(sens_ev: Evaluator, grid, max_drop: float, realizations: int,
                          seed: int, log, partial: Path, settings: dict) -> dict:
    """sensitivity() with every measured layer saved to `partial` (JSON, atomically), and the
    layers already there reused when it was written with the same `settings` (checkpoint
    sha256, grid, BER model, max drop, images, realizations, seed); otherwise, or when it is
    not such a file, measured again."""
    def parse(layers: dict) -> dict:
        return {str(n): {float(v): float(d) for v, d in pts.items()}
                for n, pts in layers.items() if n in sens_ev.layers}
    done = read_partial(partial, settings, "layers", parse, log, what="layers")

    def save(name, drops):
        done[name] = drops
        write_partial(partial, settings, "layers", {
            n: {repr(float(v)): d for v, d in pts.items()} for n, pts in done.items()})
    return sensitivity(sens_ev, grid, max_drop, realizations, seed, log, done, save)


def recorded_sensitivity(path, checkpoint, grid, max_drop_points, ber_model, layers):
    """({layer: {V: drop fraction}}, test images it used) recorded in the assignment file
    `path`; ConfigError unless it was measured on the same checkpoint (sha256), grid and BER
    model, for the same layers, with a max drop >= `max_drop_points` (a layer's descent
    stops past the max drop, so a larger one needs points that were never measured)."""
    p, doc, rec = _section(path, "sensitivity_drop_points", "no sensitivity_drop_points (write "
                           "one with `hwsim optimize-voltages --out`)")
    want = {"checkpoint_sha256": file_sha256(checkpoint),
            "grid": [min(grid), max(grid), len(grid)], "ber_model": vars(ber_model) | {}}
    for key, value in want.items():
        got = doc.get(key)
        if key == "grid" and isinstance(got, list) and len(got) == 3:
            same = all(math.isclose(float(a), float(b), abs_tol=1e-9) for a, b in zip(got, value))
        else:
            same = got == value
        if not same:
            raise ConfigError(f"{p}: {key} {got!r} differs from this run's {value!r}; its "
                              "sensitivity does not apply")
    if not float(doc.get("max_drop_points", 0)) >= max_drop_points:
        raise ConfigError(f"{p}: measured for max drop {doc.get('max_drop_points')!r} points, "
                          f"less than {max_drop_points:g}; measure again")
    check_layers({str(n): 0 for n in rec}, layers, str(p), checkpoint)
    try:
        sens = {str(n): {float(v): float(d) / 100 for v, d in pts.items()}
                for n, pts in rec.items()}
    except (AttributeError, TypeError, ValueError):
        raise ConfigError(f"{p}: sensitivity_drop_points must map layer -> {{V: points}}") \
            from None
    return {n: sens[n] for n in layers}, doc.get("sensitivity_images")


def recorded_uniform_points(path, verification: dict) -> dict | None:
    """{V: Estimate} of the uniform points an assignment file recorded, when it was verified
    with the same seed, realizations, CI target and test-set size (`verification`; the
    checkpoint, grid and BER model are checked by recorded_sensitivity); else None."""
    doc = read_yaml(Path(path), "assignment")
    if not isinstance(doc, dict) or doc.get("verification") != verification \
            or not isinstance(doc.get("uniform_points"), dict):
        return None
    pts = doc["uniform_points"]
    fields = set(Estimate.__dataclass_fields__)
    recorded = {"device", "precision"}  # optional: files written before they were recorded
    numbers = ("clean", "mean", "std", "ci95", "realizations", "expected_flips")
    try:
        out = {float(v): Estimate(**{k: e[k] for k in fields if k in e or k not in recorded})
               for v, e in pts.items()}
        if not all(isinstance(getattr(e, k), (int, float)) and not isinstance(
                getattr(e, k), bool) for e in out.values() for k in numbers):
            raise TypeError
        return out
    except (KeyError, TypeError, ValueError):
        raise ConfigError(f"{path}: uniform_points must map V -> an accuracy estimate "
                          f"({', '.join(sorted(fields))})") from None


def _section(path, key: str, missing: str) -> tuple[Path, dict, dict]:
    """(path, document, its non-empty mapping `key`) of an assignment YAML (safe YAML);
    ConfigError '{path}: {missing}' when there is no such mapping."""
    p = Path(path)
    doc = read_yaml(p, "assignment")
    part = doc.get(key) if isinstance(doc, dict) else None
    if not isinstance(part, dict) or not part:
        raise ConfigError(f"{p}: {missing}")
    return p, doc, part


def _plain(obj):
    """Numbers as plain floats/ints (numpy scalars dumped by safe_dump would fail)."""
    if isinstance(obj, dict):
        return {str(k) if not isinstance(k, float) else k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, bool) or obj is None or isinstance(obj, str):
        return obj
    if isinstance(obj, int):
        return int(obj)
    return float(obj)


def read_assignment(path: str | Path) -> dict[str, float]:
    """{layer: V} of an assignment YAML (`layers: {name: {voltage: V}}` or `{name: V}`);
    safe YAML only, each voltage checked (check_voltage)."""
    return _read_assignment(path)[0]


def _read_assignment(path: str | Path) -> tuple[dict[str, float], dict]:
    """({layer: V}, the whole document) of an assignment YAML (read_assignment)."""
    p, doc, layers = _section(path, "layers", "expected a mapping `layers: {layer: {voltage: "
                              "V}}` (as `hwsim optimize-voltages --out` writes)")
    vn = doc.get("v_nominal", V_NOMINAL)
    vn = check_voltage(vn, f"{p}: v_nominal", v_nominal=None)
    out = {}
    for name, entry in layers.items():
        v = entry.get("voltage") if isinstance(entry, dict) else entry
        out[str(name)] = check_voltage(v, f"{p}: layers.{name}.voltage", vn)
    return out, doc


def check_layers(volts: dict[str, float], layers: list[str], where: str, checkpoint) -> None:
    """ConfigError unless `volts` names exactly the quantized layers of the checkpoint."""
    unknown = [n for n in volts if n not in layers]
    missing = [n for n in layers if n not in volts]
    if unknown or missing:
        what = (f"layer {unknown[0]!r} is not a quantized layer of {checkpoint}" if unknown
                else f"layer {missing[0]!r} of {checkpoint} has no voltage")
        raise ConfigError(f"{where}: {what}; its layers: {', '.join(layers)}")


def _volts_of(assignment) -> tuple[dict[str, float], str, dict]:
    """({layer: V}, where to name in errors, the document) of a YAML path or a dict."""
    if isinstance(assignment, dict):
        return dict(assignment), "assignment", {}
    volts, doc = _read_assignment(assignment)
    return volts, str(assignment), doc


def _assignment_setup(assignment, checkpoint, arch, act_bits, data, data_root, device,
                      progress, with_test: bool = True):
    """(volts, where, model, config, test or None, energy or None without `arch`): the
    assignment read, its layers checked against the checkpoint and its voltages against the
    arch's nominal supply (evaluate_assignment, assignment_point)."""
    volts, where, _ = _volts_of(assignment)
    model, config, test = _eval_setup(checkpoint, data, data_root, device, with_test)
    check_layers(volts, [n for n, _ in quant_layers(model)], where, checkpoint)
    energy = None if arch is None else model_energy(
        arch, model, config["quantizer"]["bits"], act_bits, progress=progress)
    vn = V_NOMINAL if energy is None else energy.v_nominal
    for n, v in volts.items():
        check_voltage(v, f"{where}: voltage of layer {n!r}", vn)
    return volts, where, model, config, test, energy


def assignment_warning(assignment, checkpoint) -> str | None:
    """A line when the assignment file records another checkpoint (sha256) than
    `checkpoint`: it was optimised for other weights (still evaluable)."""
    _, where, doc = _volts_of(assignment)
    sha = doc.get("checkpoint_sha256")
    if sha and sha != file_sha256(checkpoint):
        return (f"{where} was optimised for {doc.get('checkpoint', 'another checkpoint')} "
                f"(sha256 {str(sha)[:12]}), not {checkpoint}")
    return None


def evaluate_assignment(assignment, checkpoint: str, *, seed: int = 0, realizations: int = 50,
                        ci_target: float | None = None, ber_model: BerModel | None = None,
                        data_root: str | None = None, data=None, device: str = "cpu",
                        estimate=None, arch: str | None = None, act_bits: int = 8,
                        progress: bool = False):
    """Accuracy estimate (models.estimate.Estimate) of `checkpoint` with its layers at the
    voltages of `assignment` (a YAML path or a {layer: V} dict), seeded as `optimize`
    verifies (assignment_seed; a uniform assignment equals the sweep point). With `arch`:
    (Estimate, {energy_weight_domain_uJ, energy_weight_domain_nominal_uJ}) priced as
    `optimize` prices it (each weight domain's own law)."""
    volts, where, model, config, test, energy = _assignment_setup(
        assignment, checkpoint, arch, act_bits, data, data_root, device, progress)
    law = None
    if energy is not None:
        law = layer_energies(energy, [n for n, _ in quant_layers(model)])
        warn_arch(arch, (), ber_model)
    ev = Evaluator(model, test, ber_model or BerModel(), estimate=estimate)
    est = ev(volts, assignment_seed(seed, volts), realizations, ci_target)
    if law is None:
        return est
    return est, {"energy_weight_domain_uJ": law.total(volts),
                 "energy_weight_domain_nominal_uJ": sum(law.nominal().values())}


PER_LAYER = "per-layer"  # the tag of an assignment's results label ('wcat+bfn [per-layer]')


def assignment_energy_columns(energy: NetworkEnergy, volts: dict[str, float]) -> dict:
    """The energy columns of a results row (hwsim.sweep.point_row) with each layer's weights
    at its own voltage in every weight-holding domain (the others at nominal), priced by
    hwsim.domain_energy.price (each domain's own law)."""
    doms = [d for d in domains_of(energy) if "weight" in d.holds]
    per = {layer.name: volts[layer.name.split("#")[0]] for layer in energy.layers}
    p = price(energy, {d.name: per for d in doms})
    return {"energy_uJ": p["total_uJ"],
            "energy_weight_mem_uJ": sum(p["domains"][d.name]["uJ"] for d in doms),
            "energy_nominal_uJ": energy.total_uJ, "domains": "+".join(d.name for d in doms),
            "protection": "none", "saving_vs_nominal": p["saving_vs_nominal"],
            "saving_vs_errorfree": p["saving_vs_errorfree"]}


def assignment_point(checkpoint: str, assignment, arch: str, out: str | Path, *,
                     label: str | None = None, seed: int = 0, realizations: int = 50,
                     ci_target: float | None = None, ber_model: BerModel | None = None,
                     act_bits: int = 8, data_root: str | None = None, data=None,
                     device: str = "cpu", progress: bool = False, resume: bool = True) -> dict:
    """One results row of `checkpoint` at the per-layer voltages of `assignment` (a YAML
    path or {layer: V}), merged into the results CSV `out` as `hwsim sweep` writes it, so
    reports and Pareto fronts show it beside the uniform sweeps. Label '<method>
    [per-layer]' unless given; `voltage` holds the lowest layer voltage and `ber` its rate;
    accuracy seeded as `optimize` verifies (evaluate_assignment). A row already in `out`
    (same checkpoint and label) is returned as it is when `resume` and its energy and lowest
    voltage match the assignment's; an error when they do not (the assignment changed), or
    without `resume` (as `hwsim sweep` without --resume)."""
    ber_model = ber_model or BerModel()
    volts, where, model, config, _, energy = _assignment_setup(  # test set: only if needed
        assignment, checkpoint, arch, act_bits, data, data_root, device, progress, False)
    out = Path(out)
    # the arch has a weight domain and the layers match
    layer_energies(energy, [n for n, _ in quant_layers(model)])
    label = label or f"{method_name(config)} [{PER_LAYER}]"
    columns = assignment_energy_columns(energy, volts)
    vmin = min(volts.values())
    rows = read_rows(out)
    same = rows[(rows["checkpoint"].astype(str) == str(checkpoint)) & (rows["label"] == label)]
    if len(same):
        if not resume:
            raise ConfigError(f"{out} already holds {label!r} of {checkpoint}; pass --resume "
                              "to keep it, or choose another --out or --label")
        row = same.iloc[-1].to_dict()
        if not _same_assignment(out, label, row, volts, columns["energy_uJ"]):
            raise ConfigError(f"{out} holds a point {label!r} of {checkpoint} at other "
                              f"voltages than {where} (the assignment changed); remove that "
                              "row or give another label")
        return row
    warn_arch(arch, (), ber_model)
    ev = Evaluator(model, checkpoint_test_data(config, data, data_root), ber_model)
    est = ev(volts, assignment_seed(seed, volts), realizations, ci_target)
    row = point_row(config, label, vmin, ber_model.ber(vmin), ev.clean, est, energy, seed,
                    len(ev.xy[1]), str(checkpoint), file_sha256(checkpoint),
                    energy_columns=columns)
    update_sidecar(out, label, energy, {"assignment": _rounded(volts)})
    append_rows(out, [row])
    return row


def _rounded(volts: dict[str, float]) -> dict[str, float]:
    return {k: round(float(v), 6) for k, v in sorted(volts.items())}


def _same_assignment(out: Path, label: str, row: dict, volts: dict[str, float],
                     energy_uJ: float) -> bool:
    """Whether the kept results row `label` was evaluated at `volts`: the per-layer voltages
    recorded in the energy sidecar; for rows written before it recorded them, the energy
    and the lowest voltage stand in (blind to layers of equal energy swapping voltages)."""
    side = read_json(energy_sidecar(out)).get(label)
    if isinstance(side, dict) and isinstance(side.get("assignment"), dict):
        return side["assignment"] == _rounded(volts)
    return abs(float(row["energy_uJ"]) - energy_uJ) <= 1e-9 * energy_uJ \
        and round(float(row["voltage"]), 6) == round(min(volts.values()), 6)
