"""CPU training throughput of ResNet-20 on 32x32 inputs (CIFAR-sized): memory layout, thread
count and bfloat16 autocast (`hwsim train --precision bf16`), each against the default
(contiguous NCHW, float32, all threads) in the same run.

    .venv/bin/python benchmarks/bench_train.py [--batches 20]

Data are random uint8 images pushed through the same normalisation/augmentation path as
training (models.data), so JPEG decoding (done once, cached) is not part of the number.
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from hwsim.models import create_model, quantize_model
from hwsim.models.data import ImageData
from hwsim.models.quant import post_step
from hwsim.models.device import forward_precision

EPOCH_BATCHES = 391  # 50,000 images / 128


def step_time(model, data: ImageData, batches: int, channels_last: bool,
              compiled: bool = False, precision: str = "fp32") -> float:
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    raw, model = model, (torch.compile(model) if compiled else model)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    it = data.batches(128, shuffle=True, train=True, generator=torch.Generator().manual_seed(0))
    times = []
    for i, (x, y) in enumerate(it):
        if i == batches + 2:
            break
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        t = time.perf_counter()
        with forward_precision("cpu", precision):
            logits = model(x)
        loss = F.cross_entropy(logits.float(), y)  # as models.train does
        opt.zero_grad()
        loss.backward()
        opt.step()
        post_step(raw)
        if i >= 2:  # warm-up
            times.append(time.perf_counter() - t)
    return sum(times) / len(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", type=int, default=20)
    ap.add_argument("--compile", action="store_true",
                    help="add channels_last + torch.compile rows, float32 and bf16, for the "
                         "float model (`hwsim train --compile` refuses bit-flip noise); "
                         "compilation ~20 s each, excluded: the first two steps are warm-up")
    ap.add_argument("--models", default="float,wcat+bfn",
                    help="comma-separated subset of float,wcat+bfn (default both)")
    args = ap.parse_args()
    bad = set(args.models.split(",")) - {"float", "wcat+bfn"}
    if bad:
        ap.error(f"--models {args.models!r}: valid: float, wcat+bfn")
    g = torch.Generator().manual_seed(0)
    data = ImageData(torch.randint(0, 256, (128 * (args.batches + 2), 3, 32, 32), dtype=torch.uint8,
                                   generator=g),
                     torch.randint(0, 10, (128 * (args.batches + 2),), generator=g),
                     (0.5,) * 3, (0.25,) * 3, augment=True)
    print(f"ResNet-20, batch 128, mean of {args.batches} steps after 2 warm-up steps")
    print(f"{'model':<12} {'layout':<26} {'threads':>7} {'s/step':>7} {'min/epoch':>9} "
          f"{'epochs/h':>8} {'vs base':>7}")
    base = None
    for quant in args.models.split(","):
        rows = [("NCHW", 2), ("channels_last", 2), ("channels_last+bf16", 2), ("NCHW", 1)]
        if args.compile and quant == "float":
            rows += [("channels_last+compile", 2), ("channels_last+compile+bf16", 2)]
        for layout, threads in rows:
            torch.set_num_threads(threads)
            torch.manual_seed(0)
            model = create_model("resnet20")
            if quant != "float":
                quantize_model(model, "wcat", 4, bfn_rate=5e-3)
            model.train()
            t = step_time(model, data, args.batches, layout.startswith("channels_last"),
                          compiled="compile" in layout,
                          precision="bf16" if layout.endswith("bf16") else "fp32")
            base = base or t
            print(f"{quant:<12} {layout:<26} {threads:>7} {t:>7.3f} {t * EPOCH_BATCHES / 60:>9.2f} "
                  f"{3600 / (t * EPOCH_BATCHES):>8.1f} {base / t:>7.2f}x", flush=True)


if __name__ == "__main__":
    main()
