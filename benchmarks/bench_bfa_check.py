"""BFA's held-out check (is accuracy below the stop rule's threshold yet?) in three image
orders, on the same flips.

After every flip BFA asks whether the held-out accuracy meets the stop rule. The check stops
once enough images are correct, so the order decides how many images it evaluates:
- fixed: test-set order (the baseline);
- previous check: the images evaluated by the previous check sorted by their margin, the
  others after them in their old order (hwsim before session 14);
- latest margin: every image sorted by its latest known margin, starting from the clean
  network's (HeldOutCheck now).
One BFA run (the paper's protocol by default: 64 attack images, stop rule le10.1 with the
lt11 count on the way) gives the flips; each order then replays them, asking the check after
every flip as bfa_run does. All orders must give the same answers (the order never changes
them); the table shows images evaluated and seconds per order, and the ratios.

    .venv/bin/python benchmarks/bench_bfa_check.py [--orders "previous check,latest margin"] \\
        --checkpoint studies/results/resnet20_cifar10/checkpoints/wcat_bfn.pt --seed 0
"""
from __future__ import annotations

import argparse
import time

import torch

from hwsim.models import load_checkpoint
from hwsim.models.attacks import (STOP_RULES, HeldOutCheck, _eval_mode, _margin, _split_index,
                                  bfa_run, clean_scores)
from hwsim.models.data import load_dataset
from hwsim.models.errors import ConfigError
from hwsim.models.evaluate import StoredWeights, use_channels_last


class PreviousCheckOrder(HeldOutCheck):
    """The order before: only the images the previous check evaluated are re-sorted."""

    @torch.no_grad()
    def __call__(self, model) -> bool:
        correct, seen, margins = 0, 0, []
        for i in range(0, len(self.y), self.batch_size):
            idx = self.order[i:i + self.batch_size]
            logits = model(use_channels_last(model, self.x[idx]))
            correct += int((logits.argmax(1) == self.y[idx]).sum())
            margins.append(_margin(logits, self.y[idx]))
            seen += len(idx)
            if correct >= self.need:
                break
        self.images += seen
        m = torch.argsort(torch.cat(margins), descending=True, stable=True)
        self.order = torch.cat([self.order[:seen][m], self.order[seen:]])
        return correct < self.need


def replay(model, stored, states, lt11_at, le, check) -> tuple[list[bool], float]:
    """Ask `check` after every flip as bfa_run does (lt11's count, then le10.1's: `le`)."""
    answers, t0 = [], time.perf_counter()
    with _eval_mode(model):
        for k, ints in enumerate(states):
            with stored.installed(stored.weights(ints)):
                if k == lt11_at:
                    answers.append(check(model))
                    check.need = le
                answers.append(check(model))
    return answers, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint",
                    default="studies/results/resnet20_cifar10/checkpoints/wcat_bfn.pt")
    ap.add_argument("--data-root", default=None, help="default: the checkpoint's data root")
    ap.add_argument("--seed", type=int, default=0, help="attack seed (default 0)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--orders", default="fixed,previous check,latest margin",
                    help="comma-separated orders to replay (default all three; the first is "
                         "the baseline of the ratios)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model, config = load_checkpoint(args.checkpoint)
    d = config.get("data") or {}
    try:
        _, test = load_dataset(d.get("name", "digits"), args.data_root or d.get("root"))
    except ConfigError as e:  # `make bench` on a machine without the CIFAR copy
        print(f"skipped: {e}")
        return
    x, y = test.tensors()
    classes = test.num_classes
    t0 = time.perf_counter()
    run = bfa_run(model, test, seed=args.seed, rule="le10.1")
    attack_s = time.perf_counter() - t0
    print(f"{args.checkpoint}: BFA seed {args.seed}, attack batch 64, le10.1: {run.n_flip} "
          f"flips (lt11 at {run.extra['n_flip_lt11']}), {attack_s:.0f} s; {len(y) - 64} "
          f"held-out images, {args.threads} thread(s), torch {torch.__version__}")
    stored = StoredWeights(model)
    offset = dict(zip(stored.names, torch.cumsum(torch.tensor([0] + stored.sizes[:-1]), 0)))
    ints, states = stored.ints.clone(), [stored.ints.clone()]
    for f in run.flips:
        ints[int(offset[f.layer]) + f.index] = f.after
        states.append(ints.clone())
    _, h = _split_index(y, 64, args.seed)
    xh, yh = x[h], y[h]
    margins = clean_scores(model, test)[1][h]
    lt = STOP_RULES["lt11"].need(len(yh), classes)
    make = {"fixed": lambda: HeldOutCheck(xh, yh, 0, need=lt, reorder=False),
            "previous check": lambda: PreviousCheckOrder(xh, yh, 0, need=lt),
            "latest margin": lambda: HeldOutCheck(xh, yh, 0, need=lt, margins=margins)}
    names = [o.strip() for o in args.orders.split(",")]
    if not names or set(names) - set(make):
        raise SystemExit(f"--orders {args.orders!r}: valid: {', '.join(make)}")
    le = STOP_RULES["le10.1"].need(len(yh), classes)
    res = {}
    for name in names:
        check = make[name]()
        if name == "previous check":  # it too starts from the clean network's margins
            check.order = torch.argsort(margins, descending=True, stable=True)
        res[name] = replay(model, stored, states, run.extra["n_flip_lt11"], le, check) + \
            (check.images,)
    print(f"\n| order | images evaluated | s | images vs {names[0]} | s vs {names[0]} |\n"
          "|---|---:|---:|---:|---:|")
    base = res[names[0]]
    for name, (answers, secs, images) in res.items():
        assert answers == base[0], f"{name}: the order changed an answer"
        print(f"| {name} | {images:,} | {secs:.1f} | {base[2] / images:.2f}x fewer | "
              f"{base[1] / secs:.2f}x faster |")


if __name__ == "__main__":
    main()
