"""The clamp probe's table (clamp.sh's results): the two paired comparisons at BER 1% and each
checkpoint's median range over the stored weights' RMS and weight-weighted noise-to-signal
ratio of BER 1% (hwsim.api.noise_summary). Reads result files and checkpoints only.
    .venv/bin/python studies/results/resnet20_cifar10/sensitivity/clamp_table.py > clamp.md"""
from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[3]
sys.path.insert(0, str(ROOT))
from hwsim.api import noise_summary  # noqa: E402
from hwsim.models.checkpoint import load_checkpoint  # noqa: E402

PAIRS = ("plclip_bfn", "wcat_bfn")  # A of each pair; B is the clamped WCAT+BFN


def main() -> str:
    lines = ["| A vs B = WCAT+BFN clamp_weights | clean A / B % | BER 1% A | BER 1% B | "
             "B − A, points (95% CI) | Wilcoxon p | drop A / B (points) |",
             "|---|---|---|---|---|---|---|"]
    paths = {}
    for a in PAIRS:
        d = json.loads((HERE / f"{a}-vs-wcat_bfn_clamp.ber0.01.json").read_text())
        b, diff = d["paired_with"], d["paired_difference"]
        assert diff["same_patterns"], "the pair did not see the same flipped bits"
        paths.update({d["method"]: d["checkpoint"], "wcat+bfn clamp": b["checkpoint"]})
        lines.append(
            f"| {d['method']} | {100 * d['clean']:.2f} / {100 * b['clean']:.2f} | "
            f"{100 * d['mean']:.2f} ± {100 * d['std']:.2f} | "
            f"{100 * b['mean']:.2f} ± {100 * b['std']:.2f} | "
            f"{100 * diff['mean']:+.2f} ± {100 * diff['ci95']:.2f} | {diff['wilcoxon_p']:.2g} | "
            f"{100 * (d['clean'] - d['mean']):.2f} / {100 * (b['clean'] - b['mean']):.2f} |")
    lines += ["", f"({d['realizations']} realizations, seed {d['seed']}, {d['test_images']} "
              "test images, mean ± std over realizations)", "",
              "| checkpoint | range / RMS of the stored weights (median over layers) | "
              "NSR at BER 1% (weight-weighted) | range / std of the float weights (median) |",
              "|---|---|---|---|"]
    for name, path in paths.items():
        s = noise_summary(load_checkpoint(ROOT / path)[0], 0.01)
        lines.append(f"| {name} | {s['range_over_rms']:.2f} | {s['nsr']:.3f} | "
                     f"{s['range_over_std']:.2f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(main())
