"""CPU inference throughput of ResNet-20 on 32x32 inputs (one bit-error realization is one
pass over the 10,000 CIFAR-10 test images) by inference batch size, against a batch of 1000
in the same run.

    .venv/bin/python benchmarks/bench_eval.py [--images 5000] [--repeats 2]
"""
from __future__ import annotations

import argparse
import time

import torch

from models import create_model
from models.evaluate import EVAL_BATCH, predict


def seconds(model, x, batch: int, repeats: int) -> float:
    predict(model, x[:batch], batch)  # warm-up (layout conversion, allocator)
    t = time.perf_counter()
    for _ in range(repeats):
        predict(model, x, batch)
    return (time.perf_counter() - t) / repeats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=5000)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--model", default="resnet20")
    args = ap.parse_args()
    torch.manual_seed(0)
    model = create_model(args.model).eval()
    x = torch.randn(args.images, 3, 32, 32)
    base = seconds(model, x, 1000, args.repeats)
    print(f"{args.model}, {args.images} images, {torch.get_num_threads()} threads "
          f"(hwsim default EVAL_BATCH = {EVAL_BATCH})")
    print(f"| batch | s per pass | s per 10k images | speed-up vs 1000 |")
    print(f"| ---: | ---: | ---: | ---: |")
    for batch in (1000, 512, 256, 128, 64, 32):
        s = base if batch == 1000 else seconds(model, x, batch, args.repeats)
        print(f"| {batch} | {s:.2f} | {s * 10000 / args.images:.2f} | {base / s:.2f}x |")


if __name__ == "__main__":
    main()
