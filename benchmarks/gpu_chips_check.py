"""Persistent chips on a GPU (issue 18): the same chips give the same erring bits on CPU and
GPU and accuracies within float rounding (digits small CNN, quickstart checkpoint), and the
cost of one chip-voltage evaluation of ResNet-20 on 10,000 32x32 inputs (random images: the
timing does not depend on the data), to size studies/resnet20_chips.yaml.

Needs only torch, numpy, scipy, scikit-learn (tqdm stubbed by gpu_check.sh's trick if absent):
    PYTHONPATH=. python3 benchmarks/gpu_chips_check.py
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from hwsim.models.checkpoint import load_checkpoint
from hwsim.models.chips import evaluate_chip, model_layout, sample_chip
from hwsim.models.data import load_digits
from hwsim.models.evaluate import StoredWeights

ROOT = Path(__file__).resolve().parent.parent / "studies/results"


def main() -> None:
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    print("device:", torch.cuda.get_device_name() if dev == "cuda" else "cpu (no GPU)")
    test = load_digits()[1]
    model, _ = load_checkpoint(ROOT / "digits_quickstart/checkpoints/wcat_bfn.pt")
    lay = model_layout(model, 64)
    bers = [1e-3, 1e-2, 3e-2, 0.1]
    worst = 0.0
    for s in range(10):
        chip = sample_chip(s, lay.used_bits, 0.1)
        model.cpu()
        a_cpu, e_cpu = evaluate_chip(model, test, bers, chip, lay)
        model.to(dev)
        a_dev, e_dev = evaluate_chip(model, test, bers, chip, lay)
        assert e_cpu == e_dev, (s, e_cpu, e_dev)
        worst = max(worst, float(np.max(np.abs(np.subtract(a_cpu, a_dev)))))
    print(f"digits: 10 chips x {len(bers)} BERs, erring bits identical, max |acc cpu - acc "
          f"{dev}| = {worst:.4f} ({worst * len(test):.1f} of {len(test)} images)")
    assert worst <= 3 / len(test)

    ck = ROOT / "resnet20_cifar10/checkpoints/wcat_bfn.pt"
    model, _ = load_checkpoint(ck)
    model.to(dev)
    lay = model_layout(model, 64)
    stored = StoredWeights(model)
    x = torch.randn(10_000, 3, 32, 32, device=dev)
    y = torch.randint(0, 10, (10_000,), device=dev)
    bers = [1e-4, 1e-3, 3e-3, 1e-2]
    evaluate_chip(model, (x, y), bers, sample_chip(0, lay.used_bits, 1e-2), lay, stored)  # warm
    if dev == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    n = 5
    for s in range(1, n + 1):
        evaluate_chip(model, (x, y), bers, sample_chip(s, lay.used_bits, 1e-2), lay, stored)
    dt = time.perf_counter() - t
    print(f"resnet20 ({lay.n_weights} weights): {n} chips x {len(bers)} BERs on 10,000 images "
          f"in {dt:.2f} s = {1000 * dt / (n * len(bers)):.0f} ms per chip-voltage on {dev}")


if __name__ == "__main__":
    main()
