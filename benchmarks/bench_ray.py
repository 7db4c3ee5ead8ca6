"""Ray executor scaling (issue 20.2): the digits quickstart study's evaluation points
(checkpoint x voltage, its grid and Monte Carlo settings) as Ray tasks on a local cluster of
2 workers against 1, plus the serial in-process run (1 torch thread) as the baseline; all
three measured in this run, results written to a temporary folder. Target: 2 workers >= 1.7x
over 1. Cluster start and worker warm-up (importing torch) are timed apart, not in the ratio.

    .venv/bin/python benchmarks/bench_ray.py [--methods normal,wcat+bfn] [--step 0.01]
"""
from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

from hwsim.executor import RayExecutor
from hwsim.study import checkpoint_path, select_methods
from hwsim.study_spec import load_study
from hwsim.sweep import sweep, voltage_grid
from hwsim.models.data import load_dataset

ROOT = Path(__file__).resolve().parent.parent
STUDY = ROOT / "studies/digits_quickstart.yaml"


def _warm(_):
    import hwsim.remote  # noqa: F401  (imports torch and the project, as a real task does)
    return os.getpid()


def points(study, grid, test, folder: Path, executor=None) -> tuple[float, pd.DataFrame]:
    """Seconds to evaluate every (method, voltage) point into folder/results.csv."""
    out = folder / "results.csv"
    mc = study.monte_carlo
    t = time.perf_counter()
    with executor.batch() if executor else contextlib.nullcontext():
        for m in study.methods:
            sweep(str(checkpoint_path(study, m)), study.arch, grid, out,
                  realizations=mc.realizations, ci_target=mc.ci_target, seed=study.seed,
                  label=m.name, data=test, progress=False, executor=executor)
    return time.perf_counter() - t, pd.read_csv(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--methods", default="normal,wcat+bfn",
                    help="comma-separated quickstart methods (default normal,wcat+bfn)")
    ap.add_argument("--step", type=float, default=None, help="voltage step (default: study's)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    study = select_methods(load_study(STUDY), args.methods.split(","))
    v = study.voltages
    grid = voltage_grid(v.min, v.max, args.step or v.step)
    test = load_dataset(study.data, study.data_root)[1]
    n = len(grid) * len(study.methods)
    print(f"digits quickstart points: {len(study.methods)} methods x {len(grid)} voltages = "
          f"{n} tasks, up to {study.monte_carlo.realizations} realizations, CI target "
          f"{study.monte_carlo.ci_target}; {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.2f} at start")
    rows, results = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        sweep(str(checkpoint_path(study, study.methods[0])), study.arch, grid[:1],
              Path(tmp) / "warm.csv", data=test, progress=False, realizations=2)  # energy cache
        secs, results["serial"] = points(study, grid, test, Path(tmp, "serial"))
        rows.append(("serial (in process, 1 thread)", None, secs))
        for workers in (1, 2):
            t = time.perf_counter()
            with RayExecutor(workers=workers) as ex:
                with ex.batch():
                    for _ in range(workers):
                        ex.submit(_warm, None)
                start = time.perf_counter() - t
                secs, results[workers] = points(study, grid, test, Path(tmp, f"ray{workers}"),
                                                ex)
            rows.append((f"ray, {workers} worker{'s' * (workers > 1)}", start, secs))
    key = ["label", "voltage"]
    same = all(results[w].drop(columns="checkpoint").sort_values(key).reset_index(drop=True)
               .equals(results["serial"].drop(columns="checkpoint").sort_values(key)
                       .reset_index(drop=True)) for w in (1, 2))
    one = rows[1][2]
    print(f"\n{'executor':<30} {'start+warm s':>12} {'points s':>9} {'points/s':>9} "
          f"{'vs 1 worker':>11}")
    for name, start, secs in rows:
        first = "-" if start is None else f"{start:.1f}"
        print(f"{name:<30} {first:>12} {secs:>9.1f} {n / secs:>9.1f} {one / secs:>10.2f}x")
    print(f"\n2 workers vs 1: {one / rows[2][2]:.2f}x (target >= 1.7x); rows identical to the "
          f"serial run: {same}; load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
