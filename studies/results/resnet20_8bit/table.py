"""The README's table: the rows of studies/resnet20_8bit.yaml run so far (this folder's
at_ber.json, results.csv, attacks.json and checkpoints), then the same methods at 4 bits from
../resnet20_cifar10/ (its at_ber.json, results.csv, checkpoints) and
../resnet20_bfa_protocol/ (BFA with the same protocol, seeds 0-9, the count at < 11%).
Columns: clean accuracy; accuracy at BER 0.1% and 1% (mean +/- std over realizations, their
number in brackets; the 95% CI half-width at 1%); the drop at 1%; V_min as the study reports
compute it (hwsim.pareto: the lowest-energy voltage whose mean stays within 1 point of clean)
on this study's grid (0.38-0.8 V, step 0.04; the 4-bit study's finer grid restricted to
those voltages, so both are read on the same grid); the accuracy at 0.38 V; the
weight-weighted noise-to-signal ratio of BER 1% from the checkpoint (hwsim.api.noise_summary);
BFA N_flip (mean +/- std over seeds). Reads result files and checkpoints only.
Usage: python table.py > table.md"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
sys.path.insert(0, str(ROOT))
from hwsim.api import noise_summary  # noqa: E402
from hwsim.models.checkpoint import load_checkpoint  # noqa: E402
from hwsim.pareto import lowest_energy_within  # noqa: E402
from hwsim.study import checkpoint_path  # noqa: E402
from hwsim.study_spec import load_study  # noqa: E402
from hwsim.sweep import read_rows, voltage_grid  # noqa: E402

FOUR = HERE.parent / "resnet20_cifar10"
PROTOCOL = HERE.parent / "resnet20_bfa_protocol"
HEAD = ("| method | bits | clean % | BER 0.1% | BER 1% (95% CI) | drop at 1% | V_min (V) "
        "| acc at 0.38 V (BER 2.3%) | NSR at 1% | BFA N_flip (< 11%, seeds 0-9) |")


def fmt(p: dict) -> str:
    return f"{100 * p['mean']:.2f} ± {100 * p['std']:.2f} ({p['realizations']})"


def rows(study_file: Path, folder: Path, grid: list, n_flips, italic: bool = False) -> dict:
    """{method: Markdown row} for the methods of `study_file` with fixed-BER points in
    `folder`, in the study's order."""
    study = load_study(study_file)
    at_ber = json.loads((folder / "at_ber.json").read_text())
    sweep = read_rows(folder / "results.csv")
    sweep = sweep[np.isclose(sweep["voltage"].to_numpy()[:, None], grid).any(axis=1)]
    v_min = lowest_energy_within(sweep).set_index("method")["v_min_V"]
    out = {}
    for m in study.methods:
        if "0.01" not in at_ber.get(m.name, {}):  # not run yet (or still running)
            continue
        lo, hi = at_ber[m.name]["0.001"], at_ber[m.name]["0.01"]
        g = sweep[sweep["label"] == m.name]
        low = g.loc[g["voltage"].idxmin()]
        nsr = noise_summary(load_checkpoint(ROOT / checkpoint_path(study, m))[0], 0.01)["nsr"]
        flips = n_flips(m.name)
        name = f"*{m.name}, {m.bits}-bit*" if italic else m.name
        out[m.name] = (
            f"| {name} | {m.bits} | {100 * hi['clean']:.2f} | {fmt(lo)} | {fmt(hi)} "
            f"(±{100 * hi['ci95']:.2f}) | {100 * (hi['clean'] - hi['mean']):.2f} | "
            f"{v_min[m.name]:.2f} | {100 * low['acc_mean']:.2f} | {nsr:.3f} | "
            + (f"{np.mean(flips):.1f} ± {np.std(flips, ddof=1):.1f} |" if flips else "- |"))
    return out


def main() -> None:
    study_file = ROOT / "studies/resnet20_8bit.yaml"
    v = load_study(study_file).voltages
    grid = voltage_grid(v.min, v.max, v.step)  # the voltages the study swept
    attacks = json.loads((HERE / "attacks.json").read_text())
    eight = rows(study_file, HERE, grid,
                 lambda m: attacks[m]["n_flips"] if m in attacks else None)

    def four_flips(m):
        return json.loads((PROTOCOL / f"{m.replace('+', '_')}.json").read_text())["n_flips_lt11"]
    four = rows(ROOT / "studies/resnet20_cifar10.yaml", FOUR, grid, four_flips, italic=True)
    print(HEAD)
    print("|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join([*eight.values(), *(four[m] for m in eight)]))


if __name__ == "__main__":
    main()
