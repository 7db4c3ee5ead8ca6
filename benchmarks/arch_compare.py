"""Cross-accelerator comparison: ResNet-20 (8-bit) on every shipped 65 nm arch.

Prints, per arch, energy per image, pJ/MAC, the weight-memory share and the saving when
the weight memory runs at 0.40 V (hwsim.energy.scaled_energy). Reads the committed cache
(arch/cache/energy.json); an arch whose shapes are not cached is mapped first (minutes).

    .venv/bin/python benchmarks/arch_compare.py [--voltage 0.4] [--model resnet20]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ARCHS = ["eyeriss_sram", "simba_sram", "nvdla_sram", "tpu_sram"]


def main(argv=None) -> int:
    from hwsim.commands.energy import compute
    from hwsim.energy import scaled_energy

    ap = argparse.ArgumentParser(description="ResNet-20 on every shipped arch")
    ap.add_argument("--voltage", type=float, default=0.4)
    ap.add_argument("--model", default="resnet20")
    ap.add_argument("--archs", default=",".join(ARCHS))
    args = ap.parse_args(argv)
    print(f"| arch | {args.model} uJ/image | pJ/MAC | weight memory uJ | weight-memory share "
          f"| total at {args.voltage:g} V uJ | saving |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for a in args.archs.split(","):
        _, _, ne = compute(str(ROOT / "arch" / f"{a}.yaml"), args.model, 8, 8, progress=False)
        low = scaled_energy(ne, args.voltage)
        print(f"| `{a}` | {ne.total_uJ:.2f} | {ne.total_uJ * 1e6 / ne.macs:.3f} | "
              f"{ne.weight_memory_uJ:.3f} | {ne.weight_share * 100:.1f}% | {low:.2f} | "
              f"{(1 - low / ne.total_uJ) * 100:.1f}% |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
