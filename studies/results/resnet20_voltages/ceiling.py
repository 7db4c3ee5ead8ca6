"""How much can per-layer voltages save at all? The continuous optimum under the flips model
(hwsim.voltages.flip_model): each layer's accuracy drop k_l eps(V_l), k_l fitted to the
per-layer sensitivity an optimize-voltages run recorded; minimise the weight-domain energy
sum_l E_l(V_l) (each domain's own law, hwsim.voltages.LayerEnergies) subject to
sum_l k_l eps(V_l) <= the model's drop at the best uniform voltage, by a Lagrange multiplier
bisected over a 0.5 mV grid. Prints the saving against that uniform voltage: a ceiling for any
search that believes the model, with exact sensitivities and a continuous voltage grid.

  python studies/results/resnet20_voltages/ceiling.py ASSIGNMENT.yaml
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from hwsim.ber import BerModel  # noqa: E402
from hwsim.models.checkpoint import load_checkpoint  # noqa: E402
from hwsim.models.evaluate import StoredWeights  # noqa: E402
from hwsim.models.quant import quant_layers  # noqa: E402
from hwsim.sweep import model_energy  # noqa: E402
from hwsim.voltages import flip_model, layer_energies, recorded_sensitivity  # noqa: E402


def main(path: str) -> None:
    doc = yaml.safe_load(Path(path).read_text())
    model, cfg = load_checkpoint(doc["checkpoint"])
    layers = [n for n, _ in quant_layers(model)]
    bm = BerModel(**{k: doc["ber_model"][k] for k in ("a", "b", "c")})
    lo, hi, n = doc["grid"]
    grid = list(np.round(np.linspace(lo, hi, n), 6))
    sens, _ = recorded_sensitivity(path, doc["checkpoint"], grid, doc["max_drop_points"], bm,
                                   layers)
    st = StoredWeights(model)
    bits = dict(zip(layers, (s * b for s, b in zip(st.sizes, st.layer_bits))))
    k = {}
    for name in layers:
        fit = flip_model(sens[name], bits[name], bm, doc["max_drop_points"] / 100)
        v = min(fit)
        k[name] = fit[v] / bm.ber(v)
    law = layer_energies(model_energy(doc["arch"], model, cfg["quantizer"]["bits"], 8,
                                      progress=False), layers)
    vu = doc["uniform"]["voltage"]
    budget = sum(k[name] for name in layers) * bm.ber(vu)
    fine = np.round(np.arange(0.2, doc["v_nominal"] + 1e-9, 0.0005), 6)
    eps = np.array([bm.ber(v) for v in fine])
    energy = {name: np.array([law.layer(name, v) for v in fine]) for name in layers}

    def choose(mu: float) -> dict[str, int]:
        return {name: int(np.argmin(energy[name] + mu * k[name] * eps)) for name in layers}

    def drop(idx) -> float:
        return sum(k[name] * eps[i] for name, i in idx.items())
    def optimum(target: float) -> tuple[float, float, float]:
        """(energy, lowest V, highest V) of the continuous per-layer optimum at `target`."""
        lo_mu, hi_mu = 1e-12, 1e12
        for _ in range(200):  # geometric bisection: the smallest multiplier within target
            mid = (lo_mu * hi_mu) ** 0.5
            lo_mu, hi_mu = (mid, hi_mu) if drop(choose(mid)) > target else (lo_mu, mid)
        idx = choose(hi_mu)
        vs = [fine[i] for i in idx.values()]
        return sum(energy[name][i] for name, i in idx.items()), min(vs), max(vs)
    ksum = sum(k.values())
    e_uni = law.total(dict.fromkeys(layers, vu))
    e_opt, vlo, vhi = optimum(budget)
    print(f"{doc['method']}: flips-model drop at the best uniform grid voltage {vu:.2f} V: "
          f"{100 * budget:.2f} points; continuous per-layer optimum at that drop {e_opt:.4g} "
          f"uJ vs {e_uni:.4g} uJ: saving {100 * (1 - e_opt / e_uni):.1f}% (layers "
          f"{vlo:.3f}-{vhi:.3f} V; k_l, drop per unit BER, {min(k.values()):.3g}-"
          f"{max(k.values()):.3g})")
    target = doc["max_drop_points"] / 100  # both continuous, both spending the whole budget
    vc = fine[np.nonzero(ksum * eps <= target)[0].min()]
    e_c = law.total(dict.fromkeys(layers, float(vc)))
    e_opt, vlo, vhi = optimum(target)
    print(f"  at the whole {doc['max_drop_points']:g}-point budget: continuous uniform "
          f"{vc:.4f} V {e_c:.4g} uJ, per-layer optimum {e_opt:.4g} uJ: saving "
          f"{100 * (1 - e_opt / e_c):.1f}% (layers {vlo:.3f}-{vhi:.3f} V)")

if __name__ == "__main__":
    main(sys.argv[1])
