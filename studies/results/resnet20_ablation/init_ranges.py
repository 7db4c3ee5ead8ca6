"""Per-layer WCAT ranges of ResNet-20, 4-bit (issue 21 item 2): where each init starts, from the
float baseline the study fine-tunes (max|W|; eq. 9's clean-MSE range; eq. 10's expected MSE
under 1% bit errors, `init: ber_mse`), and where the epochs of WCAT+BFN fine-tuning took them
(rows gsinv-l0.01, max init, and init4-ber_mse of studies/resnet20_ablation.yaml). Reads the
checkpoints only. Usage: python init_ranges.py > init_ranges.md"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))
from hwsim.models.checkpoint import read_checkpoint  # noqa: E402
from hwsim.models.quant import best_range  # noqa: E402

FLOAT = ROOT / "studies/results/resnet20_cifar10/checkpoints/float.pt"
TRAINED = {"gsinv-l0.01 (max init)":
           ROOT / "studies/results/resnet20_cifar10/checkpoints/wcat_bfn.pt",
           "init4-ber_mse": Path(__file__).resolve().parent / "checkpoints/init4-ber_mse.pt"}


def main() -> None:
    torch.set_num_threads(1)
    weights = {k[:-len(".weight")]: w for k, w in read_checkpoint(FLOAT)["model_state"].items()
               if k.endswith(".weight") and w.dim() in (2, 4)}
    cks = {name: read_checkpoint(p) for name, p in TRAINED.items() if p.exists()}
    learned = {name: ck["model_state"] for name, ck in cks.items()}
    cols = ["max|W|", "eq. 9 (mse)", "eq. 10 (ber_mse, 1%)"] + \
        [f"a after {ck['epoch']} epochs, {n}" for n, ck in cks.items()]
    print("| layer | std(W) | " + " | ".join(cols) + " |")
    print("|---|" + "---|" * (len(cols) + 1))
    table = []
    for name, w in weights.items():
        row = [float(w.abs().max()), best_range(w, 4, 0.0), best_range(w, 4, 0.01)] + \
            [float(sd[f"{name}.quantizer.a"]) for sd in learned.values()]
        table.append(row)
        print(f"| {name} | {float(w.std()):.3f} | " + " | ".join(f"{v:.3f}" for v in row) + " |")
    t = np.array(table)
    print("\nMedian over layers, as a multiple of max|W|: " + ", ".join(
        f"{c} {np.median(t[:, i] / t[:, 0]):.2f}" for i, c in enumerate(cols) if i))


if __name__ == "__main__":
    main()
