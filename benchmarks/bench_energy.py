"""Energy-model benchmark: cold/warm network times and fast-vs-default mapper energy.

    python benchmarks/bench_energy.py            # small CNN + ResNet-20, 3 layers (~12 min)
    python benchmarks/bench_energy.py --quick    # small CNN only + one comparison layer
    python benchmarks/bench_energy.py --large    # also compare conv 8->8 @8x8 (> 40 min)

Cold = every distinct layer shape mapped through AccelForge (empty temporary cache);
warm = the same call again, answered from the cache (target < 1 s).
The comparison maps the same layer with hwsim's fast mapper settings and with AccelForge's
default (full) search and reports the energy difference (positive = fast is worse).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hwsim import accelforge_backend as backend  # noqa: E402
from hwsim.energy import network_energy  # noqa: E402
from hwsim.workload import LayerShape, extract_layers  # noqa: E402

ARCH = ROOT / "arch" / "eyeriss_sram.yaml"

COMPARE = [
    LayerShape("conv 4->4 3x3 @4x4", "conv", 4, 4, (3, 3), (4, 4), (4, 4), (1, 1), (1, 1)),
    LayerShape("fc 64->10", "linear", 64, 10, (1, 1), (1, 1), (1, 1)),
    # ResNet-20's most common shape (layers.0.conv1): default search ~4 min on 2 cores
    LayerShape("resnet20 16->16 @32x32", "conv", 16, 16, (3, 3), (32, 32), (32, 32), (1, 1),
               (1, 1)),
]
# a contended run of AccelForge's default search on this one passed 40 min: only with --large
LARGE = LayerShape("conv 8->8 3x3 @8x8", "conv", 8, 8, (3, 3), (8, 8), (8, 8), (1, 1), (1, 1))


def bench_network(name: str, bits: int = 8) -> dict:
    from hwsim.models import create_model, input_shape

    layers = extract_layers(create_model(name, num_classes=10), input_shape(name),
                            weight_bits=bits)
    with tempfile.TemporaryDirectory() as d:
        t = time.perf_counter()
        cold = network_energy(ARCH, layers, progress=False, cache_dir=d)
        t_cold = time.perf_counter() - t
        t = time.perf_counter()
        warm = network_energy(ARCH, layers, progress=False, cache_dir=d)
        t_warm = time.perf_counter() - t
    assert warm.total_uJ == cold.total_uJ
    return {"net": name, "bits": bits, "layers": len(layers),
            "shapes": len({x.key() for x in layers}), "cold_s": t_cold, "warm_s": t_warm,
            "total_uJ": cold.total_uJ, "wm_uJ": cold.weight_memory_uJ,
            "share": cold.weight_share}


def bench_compare(layer: LayerShape) -> dict:
    fast = backend.map_layer(ARCH, layer, fast=True)
    full = backend.map_layer(ARCH, layer, fast=False)
    return {"layer": layer.name, "macs": layer.macs, "fast_s": fast.wall_s,
            "default_s": full.wall_s, "fast_pJ": fast.total_pJ, "default_pJ": full.total_pJ,
            "diff_pct": (fast.total_pJ / full.total_pJ - 1) * 100}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="small CNN only and one comparison layer")
    ap.add_argument("--large", action="store_true",
                    help="also compare a conv 8->8 @8x8 layer (default search may pass 40 min)")
    args = ap.parse_args(argv)
    nets = ["small_cnn"] if args.quick else ["small_cnn", "resnet20"]
    layers = COMPARE[:1] if args.quick else COMPARE + ([LARGE] if args.large else [])

    print(f"arch: {ARCH.relative_to(ROOT)}; mapper settings fast = {backend.FAST_MAPPER}, "
          f"default = AccelForge defaults")
    print(f"\n{'network':<10} {'bits':>4} {'layers':>6} {'shapes':>6} {'cold s':>8} "
          f"{'warm s':>8} {'total uJ':>10} {'WM uJ':>9} {'WM %':>6}")
    for n in nets:
        r = bench_network(n)
        print(f"{r['net']:<10} {r['bits']:>4} {r['layers']:>6} {r['shapes']:>6} "
              f"{r['cold_s']:>8.1f} {r['warm_s']:>8.3f} {r['total_uJ']:>10.3f} "
              f"{r['wm_uJ']:>9.3f} {r['share'] * 100:>6.1f}", flush=True)

    print(f"\n{'layer':<22} {'MACs':>8} {'fast s':>8} {'default s':>10} {'fast pJ':>12} "
          f"{'default pJ':>12} {'diff %':>7}")
    for layer in layers:
        r = bench_compare(layer)
        print(f"{r['layer']:<22} {r['macs']:>8} {r['fast_s']:>8.1f} {r['default_s']:>10.1f} "
              f"{r['fast_pJ']:>12.1f} {r['default_pJ']:>12.1f} {r['diff_pct']:>+7.2f}",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
