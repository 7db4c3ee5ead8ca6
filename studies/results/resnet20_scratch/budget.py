"""Final test accuracy vs training budget for the paper's from-scratch recipe (run.sh):
SGD Nesterov 0.9, weight decay 5e-4, batch 128, cosine from 0.1 over the budget, seed 0,
CIFAR-10 (JPEG q75 copy). Each budget is its own run (`EPOCHS=N bash run.sh M` writes
M.eN.pt; 300 epochs: M.pt); the float baseline of studies/resnet20_cifar10.yaml (40 epochs,
the same recipe) is the float row's 40. Reads only the JSON-lines logs; a run still in
progress shows its last epoch and "(running)"; a run whose epochs ran in more than one
precision (`run.sh`'s PRECISION) shows each one's median epoch time. Usage: python budget.py
> budget.md"""
from __future__ import annotations

import json
import re
from pathlib import Path

HERE = Path(__file__).resolve().parent
STUDY_FLOAT = HERE.parent / "resnet20_cifar10" / "checkpoints" / "float.pt.log"
PAPER = {"float": 92.6}  # the paper's float ResNet-20 (Table 1), original CIFAR-10, 300 epochs


def budgets() -> dict[str, dict[int, Path]]:
    out: dict[str, dict[int, Path]] = {"float": {40: STUDY_FLOAT}} if STUDY_FLOAT.exists() \
        else {}
    for log in sorted(HERE.glob("*.pt.log")):
        m = re.fullmatch(r"(\w+?)(?:\.e(\d+))?\.pt\.log", log.name)
        if m:
            out.setdefault(m[1], {})[int(m[2] or 300)] = log
    return out


def main() -> None:
    print("| method | budget (epochs) | epochs done | test accuracy % | train accuracy % | "
          "s per epoch (median) |")
    print("|---|---|---|---|---|---|")
    for method, runs in budgets().items():
        for budget, log in sorted(runs.items()):
            rows = [json.loads(ln) for ln in log.read_text().splitlines() if ln.strip()]
            if not rows:
                continue
            last = rows[-1]
            by = {}  # precision -> epoch seconds (the log says "precision" when not fp32)
            for r in rows:
                by.setdefault(r.get("precision", "fp32"), []).append(r["seconds"])
            secs = ", ".join(f"{sorted(v)[len(v) // 2]:.0f}" + (f" ({p})" if len(by) > 1 else "")
                             for p, v in by.items())
            state = "" if last["epoch"] >= budget else " (running)"
            print(f"| {method} | {budget} | {last['epoch']}{state} | "
                  f"{100 * last['test_acc']:.2f} | {100 * last['train_acc']:.2f} | "
                  f"{secs} |")
    for method, acc in PAPER.items():
        print(f"| {method} (paper) | 300 | 300 | {acc:.2f} | | |")


if __name__ == "__main__":
    main()
