"""Monte Carlo evaluation speed: bit-error realizations per second of a 4-bit ResNet-20 over a
test set (one realization = fresh random flips, then one pass over every image), for hwsim's
plain Monte Carlo (`hwsim eval`) and its sweep estimator (`hwsim sweep`), against a plain loop
measured in the same run (batch 2000, flip positions drawn on the device with torch, no other
tuning), then inference time by batch size.

    .venv/bin/python benchmarks/bench_eval.py              # CPU: 2,000 images (make bench)
    python benchmarks/bench_eval.py --device cuda          # GPU: 10,000 images, 30 realizations
    ... --data-root ../shared/data/cifar10-jpeg.tar.gz [--checkpoint C.pt] [--precision]

Without --data-root: a random-init ResNet-20 quantized to 4 bits on random CIFAR-shaped
tensors (the speed does not depend on the values). On a GPU it also times hwsim's path with
batches of 2500 and 10000, in float32 and in bfloat16 (hwsim's GPU default: float16
autocast). --precision times bfloat16 on the CPU too and compares its accuracies with
float32 under the same flips (meaningful with a trained --checkpoint and --data-root).
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from hwsim.models import create_model, load_checkpoint, quant_layers, quantize_model
from hwsim.models.device import precision_scope, resolve_device
from hwsim.models.errors import ConfigError
from hwsim.models.estimate import estimate_accuracy
from hwsim.models.evaluate import (EVAL_BATCH, eval_batch_size, evaluate_under_bit_errors,
                             on_model_device, predict)

PLAIN_BATCH = 2000


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


@torch.no_grad()
def plain_loop(model, x, y, ber: float, realizations: int, seed: int = 0) -> list[float]:
    """The baseline: what one writes without hwsim's evaluation code."""
    layers = [m for _, m in quant_layers(model)]
    ints, scales = zip(*(m.quantizer.integers(m.weight) for m in layers))
    flat = torch.cat([i.reshape(-1) for i in ints]).to(torch.int32)
    bits = layers[0].quantizer.bits
    n_bits = flat.numel() * bits
    rng, gen = np.random.default_rng(seed), torch.Generator(device=x.device)
    gen.manual_seed(seed)
    model.eval()
    correct = []
    for _ in range(realizations):
        k = int(rng.binomial(n_bits, ber))
        pos = torch.randperm(n_bits, generator=gen, device=x.device)[:k]
        mask = torch.zeros_like(flat).index_put_(
            (pos // bits,), torch.ones_like(pos, dtype=torch.int32) << (pos % bits).int(),
            accumulate=True)
        u = torch.remainder(flat, 1 << bits) ^ mask
        v = torch.where(u >= 1 << (bits - 1), u - (1 << bits), u)
        for m, part, i, s in zip(layers, torch.split(v, [t.numel() for t in ints]), ints, scales):
            m.weight_override = part.reshape(i.shape).float() * s
        correct.append(sum((model(x[j:j + PLAIN_BATCH]).argmax(1) == y[j:j + PLAIN_BATCH]).sum()
                           for j in range(0, len(x), PLAIN_BATCH)))
    for m in layers:
        m.weight_override = None
    return (torch.stack(correct).float() / len(y)).tolist()


def in_precision(name: str, fn):
    """fn() under hwsim's inference precision `name` (models/device.py)."""
    with precision_scope(name):
        return fn()


def timed(dev, fn, realizations: int) -> tuple[float, float]:
    """(seconds, mean accuracy) of fn(realizations) after a 2-realization warm-up."""
    fn(2)
    sync(dev)
    t = time.perf_counter()
    accs = fn(realizations)
    sync(dev)
    return time.perf_counter() - t, float(np.mean(accs))


def seconds_per_pass(model, x, batch: int, repeats: int) -> float:
    dev = x.device
    predict(model, x[:batch], batch)  # warm-up (layout conversion, allocator, autotuning)
    sync(dev)
    t = time.perf_counter()
    for _ in range(repeats):
        predict(model, x, batch)
    sync(dev)
    return (time.perf_counter() - t) / repeats


def agreement(model, x, y, ber: float, realizations: int) -> None:
    """float32 vs bfloat16 inference under the very same flips (seed 1): per realization."""
    res = {p: in_precision(p, lambda: evaluate_under_bit_errors(model, (x, y), ber,
                                                                realizations, seed=1))
           for p in ("fp32", "bf16")}
    a, b = res["fp32"], res["bf16"]
    diff = [abs(u - v) * len(y) for u, v in zip(a.accuracies, b.accuracies)]
    print(f"\nbf16 vs fp32 under the same flips ({realizations} realizations, {len(y)} images):"
          f" clean {100 * a.clean:.2f} vs {100 * b.clean:.2f}%, mean {100 * a.mean:.2f} vs "
          f"{100 * b.mean:.2f}%, per realization at most {max(diff):.0f} images apart "
          f"(mean {np.mean(diff):.1f}; Monte Carlo std {100 * a.std:.2f} points)")


def load(args, dev):
    torch.manual_seed(0)
    if args.checkpoint:
        model, _ = load_checkpoint(args.checkpoint)
    else:
        model = quantize_model(create_model(args.model), "normal", bits=4)
    model.eval().to(dev)
    if args.data_root:
        from hwsim.models.data import load_dataset
        x, y = on_model_device(load_dataset("cifar10", args.data_root)[1], model)
        return model, x[:args.images], y[:args.images], "CIFAR-10 test images"
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.images, 3, 32, 32, generator=g)
    y = torch.randint(0, 10, (args.images,), generator=g)
    return model, x.to(dev), y.to(dev), "random 32x32 tensors"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N, auto")
    ap.add_argument("--images", type=int, help="default 2000 on CPU, 10000 on a GPU")
    ap.add_argument("--realizations", type=int, help="timed per loop (default 2 CPU, 30 GPU)")
    ap.add_argument("--ber", type=float, default=1e-2, help="bit error rate (default 0.01)")
    ap.add_argument("--repeats", type=int, default=2, help="passes per batch size (default 2)")
    ap.add_argument("--model", default="resnet20")
    ap.add_argument("--checkpoint", help="a quantized checkpoint instead of a random init")
    ap.add_argument("--data-root", help="CIFAR-10 (see README); default: random tensors")
    ap.add_argument("--precision", action="store_true",
                    help="on the CPU too: time --precision bf16 and compare its accuracies "
                         "with float32 under the same flips")
    args = ap.parse_args()
    dev = resolve_device(args.device)
    gpu = dev.type == "cuda"
    args.images = args.images or (10000 if gpu else 2000)
    r = args.realizations or (30 if gpu else 2)
    model, x, y, what = load(args, dev)
    name = torch.cuda.get_device_name(dev) if gpu else f"{torch.get_num_threads()} CPU threads"
    print(f"{args.checkpoint or args.model + ' (random init, 4-bit)'}, {args.images} {what}, "
          f"BER {args.ber:g}, {dev} ({name}), torch {torch.__version__}")

    loops = [
        ("plain loop", PLAIN_BATCH, "torch, on the device",
         lambda n: plain_loop(model, x, y, args.ber, n)),
        ("hwsim eval (evaluate_under_bit_errors)", eval_batch_size(dev),
         "host" if not gpu else "device",
         lambda n: evaluate_under_bit_errors(model, (x, y), args.ber, n, seed=1).accuracies),
        ("hwsim sweep point (estimate_accuracy)", eval_batch_size(dev),
         "host" if not gpu else "device",
         lambda n: [estimate_accuracy(model, (x, y), args.ber, max_realizations=n,
                                      min_realizations=n, seed=2, force_mc=True).mean]),
    ]
    if gpu:  # which batch is best here, and what float16 autocast buys
        for b in (2500, 10000):
            loops.append((f"hwsim eval, batch {b}", b, "device", lambda n, b=b:
                          evaluate_under_bit_errors(model, (x, y), args.ber, n, seed=1,
                                                    batch_size=b).accuracies))
        loops.append(("hwsim eval in float32 (--precision fp32)", eval_batch_size(dev),
                      "device", lambda n: in_precision("fp32", lambda: evaluate_under_bit_errors(
                          model, (x, y), args.ber, n, seed=1).accuracies)))
    if gpu or args.precision:  # bfloat16 autocast (on a CPU: needs AVX512-BF16 to pay)
        loops.append(("hwsim eval in bfloat16 (--precision bf16)", eval_batch_size(dev),
                      "host" if not gpu else "device",
                      lambda n: in_precision("bf16", lambda: evaluate_under_bit_errors(
                          model, (x, y), args.ber, n, seed=1).accuracies)))
    print("\n| loop | batch | flip positions | realizations | s | realizations/s "
          "| per 10k images | vs plain loop |")
    print("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |")
    base = None
    for label, batch, where, fn in loops:
        s, acc = timed(dev, fn, r)
        rate = r / s
        base = base or rate
        print(f"| {label} | {batch} | {where} | {r} | {s:.2f} | {rate:.2f} | "
              f"{rate * args.images / 10000:.2f} | {rate / base:.2f}x |")

    if args.precision:
        agreement(model, x, y, args.ber, r)
    batches = (1000, 2000, 2500, 5000, 10000) if gpu else (1000, 512, 256, 128, 64, 32)
    default = eval_batch_size(dev)
    print(f"\nclean inference by batch size (hwsim's default here: {default}; "
          f"CPU default EVAL_BATCH = {EVAL_BATCH})")
    batches = [b for b in batches if b <= args.images] or [args.images]
    print(f"| batch | s per pass | s per 10k images | speed-up vs {batches[0]} |")
    print("| ---: | ---: | ---: | ---: |")
    ref = None
    for batch in batches:
        s = seconds_per_pass(model, x, batch, args.repeats)
        ref = ref or s
        print(f"| {batch} | {s:.3f} | {s * 10000 / args.images:.3f} | {ref / s:.2f}x |")


if __name__ == "__main__":
    try:
        main()
    except ConfigError as e:
        raise SystemExit(f"error: {e}")
