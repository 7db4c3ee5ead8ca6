"""BFA's held-out check (is accuracy below random guess yet?) in learned order vs fixed order.

After every flip BFA asks whether the held-out accuracy is below the random-guess threshold.
The check stops once enough images are correct; `HeldOutCheck` evaluates the images with the
largest margin at the previous check first, so it gets there sooner. Both variants must find
the same N_flip (the order never changes the answer); the table shows images evaluated and
wall time per run, and the ratio.

    .venv/bin/python benchmarks/bench_bfa_check.py \\
        --checkpoint studies/results/resnet20_cifar10/checkpoints/wcat.pt --seeds 4
"""
from __future__ import annotations

import argparse
import time

import torch

from hwsim.models import load_checkpoint
from hwsim.models.attacks import bfa_run
from hwsim.models.data import load_dataset
from hwsim.models.errors import ConfigError


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default="studies/results/resnet20_cifar10/checkpoints/wcat.pt")
    ap.add_argument("--data-root", default=None, help="default: the checkpoint's data root")
    ap.add_argument("--seeds", type=int, nargs="+", default=[4], help="attack seeds (default 4)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model, config = load_checkpoint(args.checkpoint)
    d = config.get("data") or {}
    try:
        _, test = load_dataset(d.get("name", "digits"), args.data_root or d.get("root"))
    except ConfigError as e:  # `make bench` on a machine without the CIFAR copy
        print(f"skipped: {e}")
        return

    print(f"{args.checkpoint}: BFA, attack batch 128, {len(test)} test images, "
          f"{args.threads} thread(s), torch {torch.__version__}")
    print(f"{'seed':>4}  {'order':>7}  {'N_flip':>6}  {'images checked':>14}  {'run s':>7}  "
          f"{"rest s (run - search)":>22}")
    totals = {}
    for seed in args.seeds:
        for reorder in (False, True):
            t0 = time.perf_counter()
            r = bfa_run(model, test, attack_batch=128, seed=seed, reorder_check=reorder)
            wall = time.perf_counter() - t0
            check = wall - r.iteration_seconds * r.n_flip
            name = "learned" if reorder else "fixed"
            t = totals.setdefault(name, [0, 0.0, 0.0, []])
            t[0] += r.extra["held_out_images"]
            t[1] += wall
            t[2] += check
            t[3].append(r.n_flip)
            print(f"{seed:>4}  {name:>7}  {r.n_flip:>6}  {r.extra['held_out_images']:>14,}  "
                  f"{wall:>7.1f}  {check:>22.1f}")
    f, l = totals["fixed"], totals["learned"]
    assert f[3] == l[3], "the check's order changed N_flip"
    print(f"\nlearned order vs fixed: images {f[0] / l[0]:.2f}x fewer, check time "
          f"{f[2] / l[2]:.2f}x faster, whole BFA run {f[1] / l[1]:.2f}x faster")


if __name__ == "__main__":
    main()
