"""Per-layer WCAT ranges of ResNet-20 (issue 21 item 2, Table 2): where each init starts, from
the float baseline the study fine-tunes (max|W|; eq. 9's clean-MSE range; eq. 10's expected MSE
under 1% bit errors, `init: ber_mse`), and where the epochs of WCAT+BFN fine-tuning took them:
each row of studies/resnet20_ablation.yaml whose checkpoint exists, in the study's order, named
with its init (row gsinv-l0.01 is the main study's max-init WCAT+BFN, init4-ber_mse the same
with eq. 10's init, Table 1's other rows gs1-l*/gsinv-l* another grad scale or lambda, init8-*
the 8-bit rows), one table per width. Reads the study file and the checkpoints only.
Usage: python init_ranges.py > init_ranges.md"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))
from hwsim.models.checkpoint import read_checkpoint  # noqa: E402
from hwsim.models.quant import best_range  # noqa: E402
from hwsim.study import checkpoint_path  # noqa: E402
from hwsim.study_spec import load_study  # noqa: E402

FLOAT = ROOT / "studies/results/resnet20_cifar10/checkpoints/float.pt"
STUDY = ROOT / "studies/resnet20_ablation.yaml"


def trained() -> dict[str, Path]:
    """{'row (init ...)': checkpoint} for the study's rows, in its order."""
    study = load_study(STUDY)
    return {f"{m.name} (init {m.params.get('init', 'max')})": ROOT / checkpoint_path(study, m)
            for m in study.methods}


def main() -> None:
    torch.set_num_threads(1)
    weights = {k[:-len(".weight")]: w for k, w in read_checkpoint(FLOAT)["model_state"].items()
               if k.endswith(".weight") and w.dim() in (2, 4)}
    cks = {name: read_checkpoint(p) for name, p in trained().items() if p.exists()}
    for bits in sorted({ck["config"]["quantizer"]["bits"] for ck in cks.values()}):
        table(weights, bits, {n: ck for n, ck in cks.items()
                              if ck["config"]["quantizer"]["bits"] == bits})


def table(weights: dict, bits: int, cks: dict) -> None:
    cols = ["max|W|", "eq. 9 (mse)", "eq. 10 (ber_mse, 1%)"] + \
        [f"a after {ck['epoch']} epochs, {n}" for n, ck in cks.items()]
    print(f"\n### {bits}-bit\n\n| layer | std(W) | " + " | ".join(cols) + " |")
    print("|---|" + "---|" * (len(cols) + 1))
    rows = []
    for name, w in weights.items():
        row = [float(w.abs().max()), best_range(w, bits, 0.0), best_range(w, bits, 0.01)] + \
            [float(ck["model_state"][f"{name}.quantizer.a"]) for ck in cks.values()]
        rows.append(row)
        print(f"| {name} | {float(w.std()):.3f} | " + " | ".join(f"{v:.3f}" for v in row) + " |")
    t = np.array(rows)
    print("\nMedian over layers, as a multiple of max|W|: " + ", ".join(
        f"{c} {np.median(t[:, i] / t[:, 0]):.2f}" for i, c in enumerate(cols) if i))


if __name__ == "__main__":
    main()
