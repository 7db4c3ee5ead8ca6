"""The rows of studies/resnet20_ablation.yaml run so far, from this folder's at_ber.json (fixed
bit error rates) and results.csv (the voltage sweep): clean accuracy, accuracy at BER 0.1% and
1% (mean +/- std over realizations, their number in brackets, and the 95% CI half-width at
1%), the drop at 1%, and the lowest swept voltage whose mean stays within 1 point of clean.
Reads result files only. Usage: python table.py > table.md"""
from __future__ import annotations

import csv
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
PAPER = "| *paper, ResNet-20 WCAT 4-bit (Table 1)* | | *91.88* | *91.69* | *88.62* | *3.26* | |"


def v_min(points: list[dict]) -> str:
    ok = [float(p["voltage"]) for p in points
          if float(p["acc_clean"]) - float(p["acc_mean"]) <= 0.01]
    return f"{min(ok):.2f}" if ok else "-"


def main() -> None:
    at_ber = json.loads((HERE / "at_ber.json").read_text())
    with open(HERE / "results.csv", newline="") as f:
        sweep: dict[str, list[dict]] = {}
        for row in csv.DictReader(f):
            sweep.setdefault(row["label"], []).append(row)
    print("| row | bits | clean % | BER 0.1% | BER 1% (95% CI) | drop at 1% (points) | V_min (V) |")
    print("|---|---|---|---|---|---|---|")
    for name, points in at_ber.items():
        lo, hi = points.get("0.001"), points.get("0.01")
        bits = sweep[name][0]["bits"] if name in sweep else "?"
        fmt = lambda p: f"{100 * p['mean']:.2f} ± {100 * p['std']:.2f} ({p['realizations']})"
        print(f"| {name} | {bits} | {100 * hi['clean']:.2f} | {fmt(lo)} | {fmt(hi)} "
              f"(±{100 * hi['ci95']:.2f}) | {100 * (hi['clean'] - hi['mean']):.2f} | "
              f"{v_min(sweep.get(name, []))} |")
    print(PAPER)


if __name__ == "__main__":
    main()
