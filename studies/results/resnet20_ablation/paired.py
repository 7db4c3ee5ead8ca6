"""Paired comparison of the 8-bit range inits (Table 2 rows init8-ber_mse vs init8-max): both
checkpoints under the very same bit-error patterns (the same seed and number of weight bits
give the same flip positions), so the per-realization difference removes the pattern-to-
pattern spread that dominates the unpaired CIs of table.md. CIFAR-10 (JPEG q75 copy), the
10,000 test images, 20 realizations per BER, seed 0, plain Monte Carlo
(models.evaluate.evaluate_under_bit_errors). Usage: python paired.py > paired.md"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from scipy import stats

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
sys.path.insert(0, str(ROOT))
from hwsim.models import evaluate_under_bit_errors, load_checkpoint  # noqa: E402
from hwsim.models.data import load_cifar10  # noqa: E402
from hwsim.models.evaluate import t_halfwidth  # noqa: E402

A, B = "init8-max", "init8-ber_mse"
BERS, REALIZATIONS, SEED = (0.01, 0.022978414585476146), 20, 0  # 1%, and 0.38 V's BER


def main() -> None:
    torch.set_num_threads(2)
    test = load_cifar10(ROOT.parent / "shared/data/cifar10-jpeg.tar.gz")[1]
    models = {n: load_checkpoint(HERE / "checkpoints" / f"{n}.pt")[0] for n in (A, B)}
    print(f"| BER | {A} % | {B} % | paired difference {B} - {A} (points, 95% CI) | "
          "Wilcoxon p (two-sided) | same flip counts |")
    print("|---|---|---|---|---|---|")
    for ber in BERS:
        r = {n: evaluate_under_bit_errors(m, test, ber, realizations=REALIZATIONS, seed=SEED)
             for n, m in models.items()}
        a, b = (100 * np.array(r[n].accuracies) for n in (A, B))
        d = b - a
        half = t_halfwidth(d.std(ddof=1), len(d))
        print(f"| {ber:.4g} | {a.mean():.2f} ± {a.std(ddof=1):.2f} | {b.mean():.2f} ± "
              f"{b.std(ddof=1):.2f} | {d.mean():+.2f} ± {half:.2f} (std {d.std(ddof=1):.2f}) | "
              f"{stats.wilcoxon(d).pvalue:.3g} | {r[A].flips == r[B].flips} |", flush=True)


if __name__ == "__main__":
    main()
