"""Variance of accuracy differences: nested/paired persistent chips vs independent draws, at
equal cost (the same number of evaluations). Issue 18 target: >= 3x lower variance.

- between adjacent voltages V1 > V2 of one method: nested = the same chip at V1 and V2
  (its faulty set at V2 contains that at V1); independent = a fresh chip at each voltage;
- between two methods at one voltage: paired = both methods on the same chip; independent =
  each method on its own chip.
Each sample costs two evaluations either way; the table prints the variance of the
difference per sample (percentage points^2) and the ratio independent / nested.

    .venv/bin/python benchmarks/bench_chips.py [--samples 100] [--threads 2]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from hwsim.ber import BerModel
from hwsim.models.checkpoint import load_checkpoint
from hwsim.models.chips import evaluate_chip, model_layout, sample_chip
from hwsim.models.data import load_digits
from hwsim.models.evaluate import StoredWeights

CKPT = Path(__file__).resolve().parent.parent / "studies/results/digits_quickstart/checkpoints"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    test = load_digits()[1]
    nets = {}
    for name in ("normal", "wcat"):
        model, _ = load_checkpoint(CKPT / f"{name}.pt")
        nets[name] = (model, model_layout(model, 64), StoredWeights(model))
    ber = BerModel()
    n = args.samples
    print(f"digits small CNN 4-bit (quickstart checkpoints), {n} samples per cell, "
          f"{args.threads} threads; variance of the difference in points^2")
    print(f"{'difference':<28} {'V':>11} {'nested/paired':>13} {'independent':>11} "
          f"{'ratio':>6} {'time s':>6}")

    def acc(name, seed, bers, p_max):
        model, lay, stored = nets[name]
        return evaluate_chip(model, test, bers, sample_chip(seed, lay.used_bits, p_max), lay,
                             stored)[0]

    for v1, v2 in ((0.40, 0.39), (0.39, 0.38)):
        b1, b2 = ber.ber(v1), ber.ber(v2)
        t = time.perf_counter()
        nested = [np.subtract(*acc("wcat", s, [b1, b2], b2)) for s in range(n)]
        indep = [acc("wcat", 10_000 + s, [b1], b2)[0] - acc("wcat", 20_000 + s, [b2], b2)[0]
                 for s in range(n)]
        _row(f"wcat: acc(V1) - acc(V2)", f"{v1:.2f}/{v2:.2f}", nested, indep, t)
    for v in (0.39, 0.38):
        b = ber.ber(v)
        t = time.perf_counter()
        pair = [acc("wcat", s, [b], b)[0] - acc("normal", s, [b], b)[0] for s in range(n)]
        indep = [acc("wcat", 10_000 + s, [b], b)[0] - acc("normal", 20_000 + s, [b], b)[0]
                 for s in range(n)]
        _row("wcat - normal", f"{v:.2f}", pair, indep, t)


def _row(what, volts, nested, indep, t0) -> None:
    vn, vi = np.var(np.asarray(nested) * 100, ddof=1), np.var(np.asarray(indep) * 100, ddof=1)
    print(f"{what:<28} {volts:>11} {vn:>13.3f} {vi:>11.3f} {vi / vn:>5.1f}x "
          f"{time.perf_counter() - t0:>6.1f}")


if __name__ == "__main__":
    main()
