"""Fault-injection cost on ResNet-20: O(flips) sampler vs a naive per-bit Bernoulli sampler,
and both against one clean forward pass of a 1,000-image 32x32 batch (the unit of work
every realization pays anyway). Target: injection < 2% of that forward pass at p <= 1e-3.

    .venv/bin/python benchmarks/bench_faults.py [--repeats 5] [--threads 2]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from hwsim.models import create_model, quantize_model
from hwsim.models.evaluate import StoredWeights
from hwsim.models.faults import flip_bits_bernoulli_naive, sample_flip_count, sample_positions


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    x = torch.randn(1000, 3, 32, 32)
    print(f"ResNet-20, best of {args.repeats}, {args.threads} threads; times in ms")
    print(f"{'bits':>4} {'p':>7} {'flips':>7} {'fast':>8} {'naive':>9} {'naive/fast':>10} "
          f"{'forward':>8} {'fast/fwd %':>10}")
    for bits in (4, 8):
        model = quantize_model(create_model("resnet20"), "normal", bits).eval()
        stored = StoredWeights(model)
        with torch.no_grad():
            fwd = best_of(lambda: model(x), max(2, args.repeats // 2))
        for p in (1e-5, 1e-4, 1e-3, 1e-2):
            rng = np.random.default_rng(0)
            flips = []

            def fast():
                k = sample_flip_count(stored.n_bits, p, rng)
                flips.append(k)
                w = stored.flipped(sample_positions(stored.n_bits, k, rng))
                with stored.installed(w):
                    pass

            def naive():
                ints = flip_bits_bernoulli_naive(stored.ints, bits, p)
                with stored.installed(stored.weights(ints)):
                    pass

            tf, tn = best_of(fast, args.repeats), best_of(naive, args.repeats)
            print(f"{bits:>4} {p:>7.0e} {int(np.mean(flips)):>7} {tf * 1e3:>8.2f} "
                  f"{tn * 1e3:>9.2f} {tn / tf:>10.1f} {fwd * 1e3:>8.0f} {100 * tf / fwd:>10.2f}")


if __name__ == "__main__":
    main()
