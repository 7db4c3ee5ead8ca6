"""How much can per-layer voltages save at all? The continuous optimum under the flips model
(hwsim.voltages.flip_model): each layer's accuracy drop k_l eps(V_l), k_l fitted to the
per-layer sensitivity an optimize-voltages run recorded; minimise the weight-domain energy
sum_l E_l(V_l) (each domain's own law, hwsim.voltages.LayerEnergies) subject to
sum_l k_l eps(V_l) <= the model's drop at the best uniform voltage, by a Lagrange multiplier
bisected over a 0.5 mV grid (hwsim.voltages.continuous_optimum). Prints the saving against
that uniform voltage: a ceiling for any search that believes the model, with exact
sensitivities and a continuous voltage grid; then the same at the whole budget, which
`hwsim optimize-voltages` now prints and records itself (`ceiling_flips_model`).

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
from hwsim.voltages import (continuous_optimum, drop_per_ber, flips_ceiling,  # noqa: E402
                            layer_energies, recorded_sensitivity)


def main(path: str) -> None:
    doc = yaml.safe_load(Path(path).read_text())
    model, cfg = load_checkpoint(doc["checkpoint"])
    layers = [n for n, _ in quant_layers(model)]
    bm = BerModel(**{k: doc["ber_model"][k] for k in ("a", "b", "c")})
    lo, hi, n = doc["grid"]
    grid = list(np.round(np.linspace(lo, hi, n), 6))
    max_drop = doc["max_drop_points"] / 100
    sens, _ = recorded_sensitivity(path, doc["checkpoint"], grid, doc["max_drop_points"], bm,
                                   layers)
    st = StoredWeights(model)
    bits = dict(zip(layers, (s * b for s, b in zip(st.sizes, st.layer_bits))))
    k = drop_per_ber(sens, bits, bm, max_drop)
    law = layer_energies(model_energy(doc["arch"], model, cfg["quantizer"]["bits"], 8,
                                      progress=False), layers)
    vu = doc["uniform"]["voltage"]
    budget = sum(k.values()) * bm.ber(vu)
    e_uni = law.total(dict.fromkeys(layers, vu))
    e_opt, volts = continuous_optimum(k, law, bm, doc["v_nominal"], budget)
    print(f"{doc['method']}: flips-model drop at the best uniform grid voltage {vu:.2f} V: "
          f"{100 * budget:.2f} points; continuous per-layer optimum at that drop {e_opt:.4g} "
          f"uJ vs {e_uni:.4g} uJ: saving {100 * (1 - e_opt / e_uni):.1f}% (layers "
          f"{min(volts.values()):.3f}-{max(volts.values()):.3f} V; k_l, drop per unit BER, "
          f"{min(k.values()):.3g}-{max(k.values()):.3g})")
    c = flips_ceiling(k, law, bm, doc["v_nominal"], max_drop)  # optimize-voltages' own line
    print(f"  at the whole {doc['max_drop_points']:g}-point budget: continuous uniform "
          f"{c['uniform_voltage']:.4f} V {c['uniform_energy_uJ']:.4g} uJ, per-layer optimum "
          f"{c['energy_uJ']:.4g} uJ: saving {100 * c['saving_vs_uniform']:.1f}% (layers "
          f"{c['layer_voltages'][0]:.3f}-{c['layer_voltages'][1]:.3f} V)")


if __name__ == "__main__":
    main(sys.argv[1])
