"""Bring your own network: a custom nn.Module on digits, float training, WCAT + bit-flip
noise (BFN) fine-tuning in a plain PyTorch loop, a voltage sweep and the Pareto report.

    .venv/bin/python examples/custom_network.py [--out DIR]      (~1 min on 2 CPU cores)

The hwsim calls are marked `# hwsim`: eight of them. TinyResNet has the layer shapes of
hwsim's small CNN, so its energies come from the committed arch/cache (no AccelForge run).
"""
import argparse
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from hwsim import api as hw
from hwsim.models import load_dataset


class TinyResNet(nn.Module):
    """Three 3x3 convs with a residual connection around the last one, and a classifier."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16)
        self.c2, self.b2 = nn.Conv2d(16, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32)
        self.c3, self.b3 = nn.Conv2d(32, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32)
        self.fc = nn.Linear(32, num_classes)

    def forward(self, x):
        x = F.relu(self.b1(self.c1(x)))
        x = F.max_pool2d(F.relu(self.b2(self.c2(x))), 2)
        x = x + F.relu(self.b3(self.c3(x)))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


def fit(net, x, y, epochs: int, lr: float) -> None:
    """Your own training loop: SGD + cosine schedule; the two hwsim hooks are all it needs."""
    opt = torch.optim.SGD(hw.param_groups(net, 5e-4), lr=lr, momentum=0.9,  # hwsim
                          nesterov=True)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    gen = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        net.train()
        for idx in torch.randperm(len(y), generator=gen).split(64):
            loss = F.cross_entropy(net(x[idx]), y[idx]) + hw.regularizer(net)  # hwsim
            opt.zero_grad()
            loss.backward()
            opt.step()
            hw.after_step(net)  # hwsim
        sched.step()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="custom_network_results", help="output folder")
    ap.add_argument("--epochs", type=int, default=10, help="float epochs (then half as many "
                    "WCAT+BFN fine-tuning epochs)")
    ap.add_argument("--realizations", type=int, default=20, help="per voltage (default 20)")
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(2)
    train, test = load_dataset("digits")  # hwsim: (1437 train, 360 test) images
    x, y = train.tensors()
    net = TinyResNet()
    fit(net, x, y, args.epochs, lr=0.05)
    hw.quantize(net, "wcat", bits=4, bfn_rate=5e-3)  # hwsim: in place, ranges from weights
    fit(net, x, y, max(1, args.epochs // 2), lr=0.01)
    r = hw.evaluate(net, test, ber=1e-2, realizations=args.realizations)  # hwsim
    print(f"clean {r.clean:.2%}, at BER 1%: {r.mean:.2%} +/- {r.std:.2%}")
    df = hw.sweep(net, test, arch="eyeriss_sram", realizations=args.realizations,  # hwsim
                  voltages=[round(0.36 + 0.02 * i, 2) for i in range(23)], label="TinyResNet")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    df.to_csv(out / "results.csv", index=False)
    front = hw.pareto(df, out=out / "report.html")  # hwsim
    print(df[["voltage", "ber", "acc_mean", "acc_ci95", "energy_uJ"]].to_string(index=False))
    print(f"{len(front)} points on the frontier; report: {out / 'report.html'}")


if __name__ == "__main__":
    main()
