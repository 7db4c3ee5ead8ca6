"""Seed spread of studies/digits_ablation.yaml: every method retrained with training seeds 1
and 2 (seed 0 is the study itself) and evaluated at the study's bit error rates with its
Monte Carlo settings; writes seeds.csv here (one row per method x seed, seed 0 read from
at_ber.json) and prints mean +/- std over the seeds. 1 thread, ~4 min CPU:
    .venv/bin/python studies/results/digits_ablation/seeds.py
Checkpoints go to a temporary folder (not committed)."""
import csv
import dataclasses
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from hwsim.models.checkpoint import load_checkpoint
from hwsim.models.data import load_dataset
from hwsim.models.estimate import estimate_accuracy
from hwsim.models.train import train
from hwsim.study import checkpoint_path, train_config
from hwsim.study_spec import load_study
from hwsim.sweep import point_seed

HERE = Path(__file__).resolve().parent
SEEDS = (1, 2)


def main() -> None:
    torch.set_num_threads(1)
    study = load_study(HERE.parents[1] / "digits_ablation.yaml")
    mc, data = study.monte_carlo, load_dataset(study.data, study.data_root)
    at_ber = json.loads((HERE / "at_ber.json").read_text())
    rows = []
    for m in study.methods:
        ck0 = torch.load(checkpoint_path(study, m), weights_only=True)
        rows.append({"method": m.name, "seed": 0, "clean": ck0["history"][-1]["test_acc"],
                     **{f"acc_{b:g}": at_ber[m.name][repr(b)]["mean"] for b in study.bers}})
    with tempfile.TemporaryDirectory() as tmp:
        for seed in SEEDS:
            for m in study.methods:
                cfg = dataclasses.replace(train_config(study, m), seed=seed)
                path = Path(tmp) / f"{m.name}_{seed}.pt"
                ck = train(cfg, path, progress=False, log=lambda s: None, data=data)
                model, _ = load_checkpoint(path)
                row = {"method": m.name, "seed": seed, "clean": ck["history"][-1]["test_acc"]}
                for b in study.bers:
                    est = estimate_accuracy(model, data[1], b, max_realizations=mc.realizations,
                                            ci_target=mc.ci_target, seed=point_seed(seed, b))
                    row[f"acc_{b:g}"] = est.mean
                rows.append(row)
                print(json.dumps(row), file=sys.stderr)
    with open(HERE / "seeds.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    cols = [k for k in rows[0] if k not in ("method", "seed")]
    print("| method | " + " | ".join(f"{c} % (mean +/- std, 3 seeds)" for c in cols) + " |")
    print("| --- |" + " --- |" * len(cols))
    for m in study.methods:
        vals = {c: np.array([r[c] for r in rows if r["method"] == m.name]) * 100 for c in cols}
        print(f"| {m.name} | " + " | ".join(f"{v.mean():.2f} +/- {v.std(ddof=1):.2f}"
                                           for v in vals.values()) + " |")


if __name__ == "__main__":
    main()
