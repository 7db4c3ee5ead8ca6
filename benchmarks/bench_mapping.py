"""Cold mapping time of a whole network on one accelerator: hwsim's mapping defaults against
the settings they replaced, measured in the same run (issue 19: < 5 min per accelerator for
a 20-layer CNN on 2 cores).

    python benchmarks/bench_mapping.py                          # simba_sram, ResNet-20 4-bit
    python benchmarks/bench_mapping.py --arch tpu_sram --bits 8
    python benchmarks/bench_mapping.py --configs baseline,new   # skip the middle row

Each configuration runs `hwsim energy --model NET --arch ARCH --weight-bits B` in a fresh
process on a copy of the arch file whose cache is an empty temporary folder (cold: every
distinct layer shape is mapped), and then once more from that cache (warm).
    baseline  sympy's default 1000-entry cache, --workers 1 (hwsim before this change:
              one shape at a time, AccelForge spreading it over the cores)
    parallel  sympy's default cache, default --workers (one process per core, at most 4)
    new       hwsim's defaults: unbounded sympy cache, default --workers
Every configuration must give the same energies (checked; the table says so). Run it on an
idle machine: ResNet-20 on simba_sram takes ~4-6 min per configuration on 2 cores.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HWSIM = [sys.executable, "-m", "hwsim.cli"]

CONFIGS = {
    "baseline": ({"SYMPY_CACHE_SIZE": "1000"}, ["--workers", "1"]),
    "parallel": ({"SYMPY_CACHE_SIZE": "1000"}, []),
    "new": ({}, []),
}


def run_config(name: str, arch: Path, model: str, bits: int) -> dict:
    env_extra, flags = CONFIGS[name]
    with tempfile.TemporaryDirectory(prefix="hwsim-bench-map-") as d:
        copy = Path(d) / arch.name  # outside arch/: its cache is $HWSIM_ENERGY_CACHE
        shutil.copy(arch, copy)
        env = {k: v for k, v in os.environ.items() if k != "SYMPY_CACHE_SIZE"}
        env.update(env_extra, HWSIM_ENERGY_CACHE=str(Path(d) / "cache"))
        cmd = HWSIM + ["energy", "--model", model, "--arch", str(copy), "--weight-bits",
                       str(bits), "--no-progress", "--json"] + flags
        times, outs = [], []
        for _ in ("cold", "warm"):
            load = os.getloadavg()[0]
            t = time.perf_counter()
            p = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
            times.append(time.perf_counter() - t)
            if p.returncode:
                sys.exit(f"{name}: {' '.join(cmd)} failed:\n{p.stderr.strip()}")
            outs.append(json.loads(p.stdout))
        layers = outs[0]["layers"]
        return {"config": name, "cold_s": times[0], "warm_s": times[1], "load": load,
                "shapes": len({json.dumps({k: v for k, v in lr["shape"].items() if k != "name"},
                                          sort_keys=True) for lr in layers}),
                "warm_all_cached": all(lr["cached"] for lr in outs[1]["layers"]),
                "total_uJ": outs[0]["total_uJ"],
                "components": [lr["components_uJ"] for lr in layers]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--arch", default="simba_sram", help="shipped arch name or file")
    ap.add_argument("--model", default="resnet20")
    ap.add_argument("--bits", type=int, default=4)
    ap.add_argument("--configs", default="baseline,parallel,new")
    args = ap.parse_args()
    arch = Path(args.arch)
    if not arch.suffix:
        arch = ROOT / "arch" / f"{args.arch}.yaml"
    names = args.configs.split(",")
    bad = [n for n in names if n not in CONFIGS]
    if bad:
        sys.exit(f"--configs: unknown {bad}; valid: {', '.join(CONFIGS)}")
    print(f"{args.model} ({args.bits}-bit weights) on {arch.name}, {os.cpu_count()} cores,"
          f" configurations: {', '.join(names)}")
    rows = []
    for n in names:
        rows.append(run_config(n, arch, args.model, args.bits))
        r = rows[-1]
        print(f"  {n}: cold {r['cold_s']:.1f} s, warm {r['warm_s']:.1f} s", flush=True)
    base = rows[0]
    print(f"\n{'config':<10} {'cold s':>8} {'warm s':>7} {'load':>5} {'ratio':>6} "
          f"{'total uJ':>10} same energies")
    for r in rows:
        same = r["components"] == base["components"] and r["warm_all_cached"]
        print(f"{r['config']:<10} {r['cold_s']:>8.1f} {r['warm_s']:>7.1f} {r['load']:>5.1f} "
              f"{base['cold_s'] / r['cold_s']:>5.2f}x {r['total_uJ']:>10.3f} "
              f"{'yes' if same else 'NO'}")
    print(f"{base['shapes']} distinct shapes; ratio = {base['config']} cold / this cold; "
          "load = 1-min load average before the warm run; same energies = every layer's "
          "components equal the first row's and the warm run came from the cache")


if __name__ == "__main__":
    main()
