"""Validation of the shipped accelerators against the unmodified AccelForge examples.

For every arch/*_sram.yaml derived from an AccelForge example, maps the reference layer
(hwsim.commands.arch.REFERENCE_LAYER, ResNet-20's 16x16-channel 3x3 conv on 32x32, 8-bit)
on our file (cached in arch/cache, as `hwsim arch check` does) and on the unmodified example
(examples/arches/*.yaml of the installed AccelForge, with hwsim's einsum and the same fast
mapper settings; cached in benchmarks/results/arch_reference.json) and prints pJ/MAC of
both, their ratio, and the MAC-only pJ/MAC of both. The examples are AccelForge's own
files, loaded with AccelForge's loader (they use attribute-access expressions that hwsim's
trust model refuses in user files).

    .venv/bin/python benchmarks/bench_arch_reference.py [--markdown]

Run it on an idle machine: each cold mapping takes 0.5-3 min on 2 cores.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hwsim import accelforge_backend as backend  # noqa: E402
from hwsim.commands.arch import REFERENCE_LAYER  # noqa: E402
from hwsim.energy import EnergyCache, cache_key, cache_path_for, layer_energy  # noqa: E402
from hwsim.files import write_text_atomic  # noqa: E402

PAIRS = [  # (ours, AccelForge example, the example's node)
    ("eyeriss_sram", "eyeriss", "65 nm"),
    ("simba_sram", "simba", "16 nm"),
    ("nvdla_sram", "nvdla", "fixed pJ/action from the TPU paper"),
    ("tpu_sram", "tpu_v4i", "fixed pJ/action, TPU v4i 7 nm"),
]
BACKING = ("WeightSRAM", "ActivationSRAM")  # our replacement of the examples' DRAM
RESULTS = ROOT / "benchmarks" / "results" / "arch_reference.json"


def example_file(name: str) -> Path:
    import accelforge

    site = Path(accelforge.__file__).resolve().parent.parent
    return site / "examples" / "arches" / f"{name}.yaml"


def map_example(path: Path, layer=REFERENCE_LAYER) -> dict:
    """Energy per component (pJ) of `layer` on the unmodified example, fast mapper."""
    from accelforge.mapper.FFM.main import map_workload_to_arch
    from accelforge.util import _yaml

    with backend._quiet():
        d = _yaml.load_yaml(str(path))
    spec = backend.build_spec(d, layer, path, backend.FAST_MAPPER)
    t0 = time.perf_counter()
    with backend._quiet():
        mappings = map_workload_to_arch(spec, eval_in_detail=False, print_progress=False)
        detailed, _ = backend._evaluate_in_detail(spec, mappings)
        comps = {str(k): float(v) * 1e12 for k, v in detailed.energy(per_component=True).items()}
    return {"components_pJ": comps, "wall_s": time.perf_counter() - t0}


def _cached(arch: Path):
    """The reference layer's cached energy on `arch` (None: no file or not mapped yet;
    `hwsim arch check` maps it)."""
    if not arch.is_file():
        return None
    _, info = backend.load_arch(arch, accelforge_loader=False)
    return EnergyCache(cache_path_for(arch)).get(cache_key(info.sha256, REFERENCE_LAYER))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("--markdown", action="store_true", help="print a markdown table")
    ap.add_argument("--only", help="comma-separated arch names (default: all pairs)")
    args = ap.parse_args(argv)
    only = set(args.only.split(",")) if args.only else None
    key = f"{REFERENCE_LAYER.key()}|v{backend.MAPPER_SETTINGS_VERSION}|fast"
    store = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    macs = REFERENCE_LAYER.macs
    rows = []
    for ours, ex, node in PAIRS:
        if only and ours not in only:
            continue
        path = example_file(ex)
        k = f"{ex}|{key}"
        if k not in store:
            store[k] = map_example(path)
            RESULTS.parent.mkdir(parents=True, exist_ok=True)
            write_text_atomic(RESULTS, json.dumps(store, indent=1, sort_keys=True) + "\n")
        ref = store[k]["components_pJ"]
        mine, _ = layer_energy(ROOT / "arch" / f"{ours}.yaml", REFERENCE_LAYER)
        n22 = _cached(ROOT / "arch" / f"{ours}_22nm.yaml")
        rows.append({
            "arch": ours, "example": ex, "example_node": node,
            "ours_pJ_per_MAC": mine.total_pJ / macs,
            "ref_pJ_per_MAC": sum(ref.values()) / macs,
            "ratio": mine.total_pJ / sum(ref.values()),
            "ours_MAC_pJ": mine.components_pJ.get("MAC", 0.0) / macs,
            "ref_MAC_pJ": ref.get("MAC", 0.0) / macs,
            "ref_components_pJ_per_MAC": {c: v / macs for c, v in ref.items()},
            "ours_22nm_pJ_per_MAC": n22.total_pJ / macs if n22 else None,
            # the levels both have: the example without its DRAM, ours without the two
            # SRAMs that replace it
            "ref_dram_pJ_per_MAC": ref.get("MainMemory", 0.0) / macs,
            "ref_onchip_pJ_per_MAC": (sum(ref.values()) - ref.get("MainMemory", 0.0)) / macs,
            "ours_onchip_pJ_per_MAC": (mine.total_pJ - sum(
                mine.components_pJ.get(c, 0.0) for c in BACKING)) / macs,
        })
    if args.markdown:
        print("| arch | example (node) | ours pJ/MAC | example pJ/MAC (DRAM) | ratio "
              "| levels below DRAM: ours / example (ratio) | MAC ours / example "
              "| ours 22 nm (ratio) |")
        print("|---|---|---:|---:|---:|---:|---:|---:|")
        for r in rows:
            print(f"| `{r['arch']}` | `{r['example']}.yaml` ({r['example_node']}) | "
                  f"{r['ours_pJ_per_MAC']:.3f} | {r['ref_pJ_per_MAC']:.3f} "
                  f"({r['ref_dram_pJ_per_MAC']:.3f}) | {r['ratio']:.2f} | "
                  f"{r['ours_onchip_pJ_per_MAC']:.3f} / {r['ref_onchip_pJ_per_MAC']:.3f} "
                  f"({r['ours_onchip_pJ_per_MAC'] / r['ref_onchip_pJ_per_MAC']:.2f}) | "
                  f"{r['ours_MAC_pJ']:.3f} / {r['ref_MAC_pJ']:.3f} | "
                  + (f"{r['ours_22nm_pJ_per_MAC']:.3f} "
                     f"({r['ours_22nm_pJ_per_MAC'] / r['ref_pJ_per_MAC']:.2f}) |"
                     if r["ours_22nm_pJ_per_MAC"] else "not cached |"))
    else:
        print(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
