"""Table of the T-BFA runs in this folder (run.sh): per checkpoint and class pair, N_flip,
attack success rate and the other classes' accuracy before -> after; then per checkpoint over
all pairs, and whether WCAT (and WCAT+BFN) need more flips than normal: paired by pair and
attack seed (the same attack batch), one-sided Wilcoxon signed-rank, and unpaired
(models.attacks.compare_nflip). Usage: python summarize.py [srcN] > table.md"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from hwsim.models.attacks import compare_nflip, comparison_line  # noqa: E402

HERE = Path(__file__).resolve().parent
CHECKPOINTS = ["normal", "wcat", "wcat_bfn"]
PAIRS = [("bird", "horse"), ("dog", "airplane"), ("ship", "bird")]


VARIANT = sys.argv[1] if len(sys.argv) > 1 else ""  # e.g. src100: run.sh's SOURCE_IMAGES=100


def load(m: str, src: str, dst: str) -> dict | None:
    p = HERE / f"{m}.{src}-{dst}{'.' + VARIANT if VARIANT else ''}.json"
    return json.loads(p.read_text()) if p.exists() else None


def attacked(r: dict) -> str:
    a = r.get("attack_asrs")
    return f" ({100 * np.mean(a):.1f})" if a else ""


def main() -> None:
    pct = lambda v: f"{100 * v:.1f}"
    print("| checkpoint | source -> target | N_flip (mean +/- std) | per seed | ASR % held-out "
          "(attacked) | reached | other classes acc % before -> after |")
    print("|---|---|---|---|---|---|---|")
    flips: dict[str, list[float]] = {}
    summary = {}
    for m in CHECKPOINTS:
        rows = [(s, d, load(m, s, d)) for s, d in PAIRS]
        rows = [(s, d, r) for s, d, r in rows if r]
        for s, d, r in rows:
            print(f"| {m} | {s} -> {d} | {r['n_flip_mean']:.1f} +/- {r['n_flip_std']:.1f} | "
                  f"{', '.join(map(str, r['n_flips']))} | {pct(r['asr_mean'])}"
                  f"{attacked(r)} | "
                  f"{sum(r['reached'])}/{len(r['reached'])} | "
                  f"{pct(r['clean_other_accuracy_mean'])} -> {pct(r['other_accuracy_mean'])} |")
        flips[m] = [n for _, _, r in rows for n in r["n_flips"]]
        if rows:
            summary[m] = (len(rows), np.mean(flips[m]), np.std(flips[m], ddof=1),
                          np.mean([r["asr_mean"] for *_, r in rows]),
                          np.mean([r["clean_other_accuracy_mean"] for *_, r in rows]),
                          np.mean([r["other_accuracy_mean"] for *_, r in rows]))
    print("\n| checkpoint | pairs | runs | N_flip (mean +/- std) | ASR % | other classes acc % "
          "before -> after |")
    print("|---|---|---|---|---|---|")
    for m, (k, n, sd, asr, before, after) in summary.items():
        print(f"| {m} | {k} | {len(flips[m])} | {n:.1f} +/- {sd:.1f} | {pct(asr)} | "
              f"{pct(before)} -> {pct(after)} |")
    print()
    for m in CHECKPOINTS[1:]:
        a, b = flips.get("normal", []), flips.get(m, [])
        if len(a) < 2 or len(a) != len(b):
            continue
        w = stats.wilcoxon(np.array(b) - np.array(a), alternative="greater")
        print(f"- {comparison_line(compare_nflip(a, b, 'normal', m))}; paired by pair and "
              f"seed ({len(a)} matched runs): one-sided Wilcoxon signed-rank p = "
              f"{w.pvalue:.3g}")


if __name__ == "__main__":
    main()
