"""Table of the BFA runs in this folder (run.sh): per checkpoint, N_flip under both stop rules
(< 11%, the paper's text; <= 10.1%, the authors' code, both from the same runs), runs that
met <= 10.1% within the budget, accuracy before -> after; then, per quantizer, whether
bit-flip noise training raises N_flip (the paper: yes), and whether each quantizer raises it
over normal quantization (the paper's Table 1: yes): one-sided Mann-Whitney U and Welch t
(models.attacks.compare_nflip), and paired by attack seed (the same attack batch for both
checkpoints: split_attack_batch depends only on the labels and the seed), one-sided Wilcoxon
signed-rank. Runs that spent the budget count the budget. Usage: python summarize.py > table.md"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from hwsim.models.attacks import compare_nflip, comparison_line  # noqa: E402

HERE = Path(__file__).resolve().parent
QUANTIZERS = ["normal", "plclip", "lsq", "wcat"]
# the paper's N_flip for ResNet-20 / CIFAR-10 (the reference rows of
# studies/resnet20_cifar10.yaml; 300 epochs from scratch, original CIFAR-10)
PAPER = {"normal": "11.3", "plclip": "46.9", "wcat": "78.8 +/- 15.5", "wcat_bfn": "90.2"}


SAME = ("attack", "attack_batch", "max_flips", "topk", "threshold", "stop_rule", "checkpoint")
PER_SEED = ("seeds", "n_flips", "n_flips_lt11", "reached", "clean_accuracies",
            "final_accuracies")


def load(m: str) -> dict | None:
    """M.json merged with M.sN.json (seeds N.., run.sh SEED=N): per-seed lists concatenated in
    seed order, means recomputed; files with other attack settings or overlapping seeds are
    refused."""
    more = sorted(p for p in HERE.glob(f"{m}.s*.json")  # not M.sN.json.partial.json
                  if re.fullmatch(rf"{m}\.s\d+\.json", p.name))
    files = [p for p in [HERE / f"{m}.json", *more] if p.exists()]
    if not files:
        return None
    parts = [json.loads(p.read_text()) for p in files]
    merged = dict(parts[0])
    for p, part in zip(files[1:], parts[1:]):
        bad = [k for k in SAME if part.get(k) != merged.get(k)]
        if bad or set(part["seeds"]) & set(merged["seeds"]):
            raise SystemExit(f"{p.name}: cannot merge with {files[0].name}: "
                             f"{'different ' + ', '.join(bad) if bad else 'seeds overlap'}")
        for k in PER_SEED:
            merged[k] = merged[k] + part[k]
        merged["layer_histogram"] = {
            name: merged["layer_histogram"].get(name, 0) + part["layer_histogram"].get(name, 0)
            for name in {**merged["layer_histogram"], **part["layer_histogram"]}}
    order = np.argsort(merged["seeds"], kind="stable")
    for k in PER_SEED:
        merged[k] = [merged[k][i] for i in order]
    merged["clean_accuracy_mean"] = float(np.mean(merged["clean_accuracies"]))
    merged["final_accuracy_mean"] = float(np.mean(merged["final_accuracies"]))
    return merged


def main() -> None:
    print("| checkpoint | seeds | N_flip < 11% | N_flip <= 10.1% | met <= 10.1% | "
          "accuracy % before -> after | paper N_flip |")
    print("|---|---|---|---|---|---|---|")
    runs = {}
    for q in QUANTIZERS:
        for m in (q, f"{q}_bfn"):
            r = load(m)
            if r is None:
                continue
            runs[m] = r
            lt, le = r["n_flips_lt11"], r["n_flips"]
            print(f"| {m} | {len(le)} | {np.mean(lt):.1f} +/- {np.std(lt, ddof=1):.1f} | "
                  f"{np.mean(le):.1f} +/- {np.std(le, ddof=1):.1f} | "
                  f"{sum(r['reached'])}/{len(le)} | {100 * r['clean_accuracy_mean']:.2f} -> "
                  f"{100 * r['final_accuracy_mean']:.2f} | {PAPER.get(m, '')} |")
    sections = (
        ("Does bit-flip noise training raise N_flip?", [(q, f"{q}_bfn") for q in QUANTIZERS]),
        ("Does a quantizer raise N_flip over normal quantization?",
         [(f"normal{b}", f"{q}{b}") for b in ("", "_bfn") for q in QUANTIZERS[1:]]),
        ("Does WCAT need more flips than the other quantizers (the paper: yes)?",
         [(f"{q}{b}", f"wcat{b}") for b in ("", "_bfn") for q in ("plclip", "lsq")]))
    for title, chosen in sections:
        lines = [line for a, b in chosen if a in runs and b in runs
                 for line in comparison_lines(runs[a], runs[b], a, b)]
        if lines:
            print(f"\n{title}")
            print("\n".join(lines))


def comparison_lines(a: dict, b: dict, name_a: str, name_b: str) -> list[str]:
    """Both stop rules' tests of "b needs more flips than a"."""
    out = []
    for key, rule in (("n_flips_lt11", "< 11%"), ("n_flips", "<= 10.1%")):
        c = compare_nflip(a[key], b[key], name_a.replace("_", "+"), name_b.replace("_", "+"))
        line = f"- {rule}: {comparison_line(c)}"
        common = sorted(set(a["seeds"]) & set(b["seeds"]))
        by_a, by_b = dict(zip(a["seeds"], a[key])), dict(zip(b["seeds"], b[key]))
        d = np.array([by_b[s] - by_a[s] for s in common], float)
        if np.any(d != 0):
            w = stats.wilcoxon(d, alternative="greater")
            line += f"; paired by seed ({len(common)}): Wilcoxon p = {w.pvalue:.3g}"
        out.append(line)
    return out


if __name__ == "__main__":
    main()
