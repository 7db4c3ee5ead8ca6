"""The rows of studies/resnet20_ablation.yaml run so far, from this folder's at_ber.json (fixed
bit error rates) and results.csv (the voltage sweep): clean accuracy, accuracy at BER 0.1% and
1% (mean +/- std over realizations, their number in brackets, and the 95% CI half-width at
1%), the drop at 1%, V_min as the study reports compute it (hwsim.pareto: the
lowest-energy swept voltage whose mean stays within 1 point of clean), the precision the
fixed-BER points were computed in (`-`: not recorded, rows run before it was), and from each
row's checkpoint (hwsim.api.noise_summary) the median over layers of the range over the stored
weights' RMS and the weight-weighted noise-to-signal ratio of BER 1%. Reads result files and
checkpoints only. Then Table 1's layout: the rows gs{1,inv}-l{lambda} as a grid of grad scale x
lambda, accuracy at BER 1% (clean in brackets), `-` where a row is not run yet.
Usage: python table.py > table.md"""
from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2]))
from hwsim.api import noise_summary  # noqa: E402
from hwsim.models.checkpoint import load_checkpoint  # noqa: E402
from hwsim.pareto import lowest_energy_within  # noqa: E402
from hwsim.study import checkpoint_path  # noqa: E402
from hwsim.study_spec import load_study  # noqa: E402
from hwsim.sweep import read_rows  # noqa: E402

PAPER = ("| *paper, ResNet-20 WCAT 4-bit (Table 1)* | | *91.88* | *91.69* | *88.62* | *3.26* "
         "| | | | |")
STUDY = HERE.parents[1] / "resnet20_ablation.yaml"
LAMBDAS = ("0.0005", "0.001", "0.01")
SCALES = {"gs1": "1", "gsinv": "1/√N"}


def fmt(p: dict) -> str:
    return f"{100 * p['mean']:.2f} ± {100 * p['std']:.2f} ({p['realizations']})"


def noise(path: Path) -> str:
    """'range/RMS median | NSR' cells of a checkpoint (hwsim.api.noise_summary at BER 1%)."""
    s = noise_summary(load_checkpoint(path)[0], 0.01)
    return f"{s['range_over_rms']:.2f} | {s['nsr']:.3f}"


def main() -> None:
    at_ber = json.loads((HERE / "at_ber.json").read_text())
    study = load_study(STUDY)
    paths = {m.name: HERE.parents[2] / checkpoint_path(study, m) for m in study.methods}
    sweep = read_rows(HERE / "results.csv")
    bits = sweep.groupby("label")["bits"].first()
    v_min = lowest_energy_within(sweep).set_index("method")["v_min_V"]  # the reports' V_min
    print("| row | bits | clean % | BER 0.1% | BER 1% (95% CI) | drop at 1% (points) | V_min (V) "
          "| precision | range/RMS | NSR at 1% |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, points in at_ber.items():
        lo, hi = points["0.001"], points["0.01"]
        print(f"| {name} | {bits.get(name, '?')} | {100 * hi['clean']:.2f} | {fmt(lo)} | "
              f"{fmt(hi)} (±{100 * hi['ci95']:.2f}) | {100 * (hi['clean'] - hi['mean']):.2f} | "
              f"{f'{v_min[name]:.2f}' if name in v_min else '-'} | {hi.get('precision') or '-'} | "
              f"{noise(paths[name])} |")
    print(PAPER)
    print()
    print(grid(at_ber))


def grid(at_ber: dict) -> str:
    """Table 1's layout: grad scale x lambda, accuracy at BER 1% (clean) of rows gs*-l*."""
    lines = ["| grad scale | " + " | ".join(f"λ {lam}" for lam in LAMBDAS) + " |",
             "|---|" + "---|" * len(LAMBDAS)]
    for prefix, label in SCALES.items():
        cells = []
        for lam in LAMBDAS:
            hi = at_ber.get(f"{prefix}-l{lam}", {}).get("0.01")
            cells.append(f"{100 * hi['mean']:.2f} ± {100 * hi['ci95']:.2f} "
                         f"({100 * hi['clean']:.2f})" if hi else "-")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
