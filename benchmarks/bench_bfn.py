"""Cost of bit-flip noise training (BFN) per ResNet-20 training step, by where the flip
positions are drawn (models.quant.bfn_noise): 'host' (numpy, the CPU default: positions
copied to the device every layer and step, the range read back to the host) against
'device' (a torch generator on the device, the GPU default: nothing leaves it), with
WCAT 4-bit without BFN as the floor, all measured in the same run.

    .venv/bin/python benchmarks/bench_bfn.py [--device cuda] [--steps 30] [--rate 0.005]

Random images (batch 128, 32x32), SGD; mean step time after 3 warm-up steps, the device
synchronized after every step.
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from hwsim.models import create_model, quantize_model
from hwsim.models.device import resolve_device
from hwsim.models.quant import post_step, quant_layers

EPOCH_STEPS = 391  # 50,000 images / 128


def step_time(device, rate: float, sampler: str | None, steps: int) -> float:
    torch.manual_seed(0)
    model = create_model("resnet20")
    quantize_model(model, "wcat", 4, bfn_rate=rate)
    for _, layer in quant_layers(model):
        layer.bfn_sampler = sampler
    model.to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(128, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (128,), device=device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    times = []
    for i in range(steps + 3):
        sync()
        t = time.perf_counter()
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        post_step(model)
        sync()
        if i >= 3:
            times.append(time.perf_counter() - t)
    return sum(times) / len(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--rate", type=float, default=5e-3)
    args = ap.parse_args()
    device = resolve_device(args.device)
    print(f"ResNet-20 WCAT 4-bit, batch 128, {device}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, mean of {args.steps} steps")
    print(f"{'BFN':<24} {'s/step':>8} {'s/epoch':>8} {'vs host':>8}")
    rows = [("off (floor)", 0.0, None), (f"host draws, p={args.rate:g}", args.rate, "host"),
            (f"device draws, p={args.rate:g}", args.rate, "device")]
    times = {name: step_time(device, rate, s, args.steps) for name, rate, s in rows}
    host = times[rows[1][0]]
    for name, t in times.items():
        print(f"{name:<24} {t:>8.4f} {t * EPOCH_STEPS:>8.1f} {host / t:>7.2f}x")


if __name__ == "__main__":
    main()
