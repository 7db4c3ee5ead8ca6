"""Time one BFA iteration (progressive bit search) on an untrained 4-bit ResNet-20.

One iteration = one forward/backward pass on the attack batch (bit gradients of every stored
bit at once) + topk forward passes per layer (in-layer search) + the commit. It is compared
with one plain forward pass and with what a search that evaluated every candidate bit would
cost (one forward per stored bit). "reuse prefix": in the in-layer search for layer l, the
layers that run before l return their outputs cached from the gradient pass (default on).

    .venv/bin/python benchmarks/bench_attack.py [--model resnet20] [--batch 128] [--iters 5]
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from hwsim.models import create_model, input_shape, quantize_model
from hwsim.models.attacks import BitSearch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="resnet20")
    ap.add_argument("--quantizer", default="normal")
    ap.add_argument("--bits", type=int, default=4)
    ap.add_argument("--batch", type=int, default=128, help="attack batch (default 128)")
    ap.add_argument("--iters", type=int, default=5, help="timed iterations (default 5)")
    ap.add_argument("--topk", type=int, nargs="+", default=[1, 3])
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    model = quantize_model(create_model(args.model), args.quantizer, args.bits).eval()
    x = torch.randn(args.batch, *input_shape(args.model))
    y = torch.randint(0, 10, (args.batch,))

    search = BitSearch(model, F.cross_entropy)
    with search.attacking(), torch.no_grad():
        model(x)  # warm-up
        t = time.perf_counter()
        for _ in range(3):
            model(x)
        fwd = (time.perf_counter() - t) / 3
    n_layers, n_weights = len(search.names), sum(search.stored.sizes)
    n_bits = n_weights * search.bits

    rows = []
    for k, reuse in [(k, r) for k in args.topk for r in (True, False)]:
        search = BitSearch(model, F.cross_entropy, topk=k, reuse_prefix=reuse)
        with search.attacking():
            search.step(x, y)  # warm-up
            search.timing.update(grad=0.0, search=0.0, iterations=0)
            for _ in range(args.iters):
                search.step(x, y)
        it = search.timing["iterations"]
        t = search.timing
        rows.append((k, reuse, 1000 * t["grad"] / it, 1000 * t["search"] / it,
                     1000 * search.iteration_seconds()))

    print(f"{args.model} ({args.quantizer}, {args.bits}-bit): {n_layers} quantized layers, "
          f"{n_weights:,} weights = {n_bits:,} stored bits; attack batch {args.batch}; "
          f"{args.threads} CPU thread(s); torch {torch.__version__}")
    print(f"one forward pass: {1000 * fwd:.1f} ms;  one pass per candidate bit would take "
          f"~{n_bits * fwd:,.0f} s per iteration")
    print()
    print(f"{'topk':>4}  {'reuse prefix':>12}  {'grad pass ms':>12}  {'in-layer search ms':>18}  "
          f"{'iteration ms':>12}  {'forward passes':>14}  {'x forward':>9}")
    for k, reuse, g, s, tot in rows:
        print(f"{k:>4}  {'yes' if reuse else 'no':>12}  {g:>12.1f}  {s:>18.1f}  "
              f"{tot:>12.1f}  {1 + k * n_layers:>14d}  {tot / (1000 * fwd):>9.1f}")


if __name__ == "__main__":
    main()
