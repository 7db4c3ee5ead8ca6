"""`hwsim arch check FILE`: validate an accelerator file and show what one layer costs on it.

    hwsim arch check arch/simba_sram.yaml [--json]

Loads the file the way every command does (hwsim.accelforge_backend.load_arch: trust
model, `hwsim:` section, AccelForge's own validation; bad input is one error line), maps
REFERENCE_LAYER (a ResNet-20 3x3 convolution; cached through hwsim.energy like every
mapping, so shipped arches answer at once) and prints the energy of every component under
its full name, pJ/MAC and the weight-memory share. Warns (stderr, exit 0) when a
weight-memory component looks like DRAM (its energy would be scaled as if it were an SRAM
at the reduced voltage) or spends no energy on the layer (scaling it saves nothing).
"""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field

from hwsim.models.errors import ConfigError
from hwsim.arch_safety import plain_number
from hwsim.domains import arch_nodes
from hwsim.paths import resolve_arch
from hwsim.workload import LayerShape

from .common import print_json

# The layer `arch check` maps and benchmarks/bench_arch_reference.py compares against the
# unmodified AccelForge examples: ResNet-20's most frequent convolution, 8-bit.
REFERENCE_LAYER = LayerShape(name="resnet20.layer1.0.conv1", kind="conv", in_channels=16,
                             out_channels=16, kernel=(3, 3), output=(32, 32), input=(32, 32),
                             stride=(1, 1), padding=(1, 1), weight_bits=8, act_bits=8)

# component classes that model off-chip DRAM (hwcomponents / AccelForge examples)
DRAM_CLASSES = ("dram", "lpddr", "ddr", "hbm", "gddr")
# a weight memory larger than this (bits) is not an on-chip SRAM: 1 Gbit
MAX_ON_CHIP_BITS = 2 ** 30


@dataclass
class ArchCheck:
    """The result of `hwsim arch check`: one layer's energy per component on an arch."""
    arch_file: str
    layer: LayerShape
    weight_memory: tuple[str, ...]
    v_nominal: float
    components_pJ: dict[str, float]
    cached: bool
    warnings: list[str] = field(default_factory=list)

    @property
    def total_pJ(self) -> float:
        return sum(self.components_pJ.values())

    @property
    def weight_memory_pJ(self) -> float:
        return sum(v for k, v in self.components_pJ.items() if k in self.weight_memory)

    @property
    def pj_per_mac(self) -> float:
        return self.total_pJ / self.layer.macs

    @property
    def weight_share(self) -> float:
        return self.weight_memory_pJ / self.total_pJ if self.total_pJ > 0 else 0.0

    def to_dict(self) -> dict:
        return {"arch_file": self.arch_file, "layer": self.layer.to_dict(),
                "macs": self.layer.macs, "weight_memory": list(self.weight_memory),
                "v_nominal": self.v_nominal, "components_pJ": dict(self.components_pJ),
                "total_pJ": self.total_pJ, "pJ_per_MAC": self.pj_per_mac,
                "weight_memory_pJ": self.weight_memory_pJ,
                "weight_share": self.weight_share, "cached": self.cached,
                "warnings": list(self.warnings)}


def _size_bits(value) -> float | None:
    """A memory's `size` field as a number when it is a plain arithmetic expression of
    numbers (e.g. 8 * 1024 * 1024, inf); None when it needs AccelForge's evaluator."""
    return plain_number(value)


def dram_warnings(arch_dict: dict, weight_memory) -> list[str]:
    """Warnings for weight-memory components that look like off-chip DRAM: a DRAM
    component class, or a size that is unbounded or over MAX_ON_CHIP_BITS."""
    nodes = arch_nodes(arch_dict.get("arch", {}))
    out = []
    for name in weight_memory:
        n = nodes.get(name, {})
        cls = str(n.get("component_class", "") or "")
        size = _size_bits(n.get("size")) if "size" in n else None
        why = None
        if any(d in cls.lower() for d in DRAM_CLASSES):
            why = f"component_class {cls}"
        elif size is not None and size > MAX_ON_CHIP_BITS:
            why = f"size {n.get('size')} bits" + (" (unbounded)" if math.isinf(size) else "")
        if why:
            out.append(f"weight memory {name} looks like DRAM ({why}): hwsim scales its energy "
                       "as an SRAM's at the reduced voltage; give the weights their own on-chip "
                       "SRAM (see arch/README.md, 'Derive a new accelerator')")
    return out


def check(arch_file, layer: LayerShape = REFERENCE_LAYER, *, cache_dir=None) -> ArchCheck:
    """Validate `arch_file` and map `layer` on it (cached through hwsim.energy)."""
    from hwsim import accelforge_backend as backend
    from hwsim.energy import layer_energy

    plain, info = backend.load_arch(arch_file, accelforge_loader=False)
    warnings = dram_warnings(plain, info.weight_memory)
    # AccelForge's own validation (field names, types), also when the layer is cached
    spec_dict, _ = backend.load_arch(arch_file)
    backend.build_spec(spec_dict, layer, arch_file, backend.FAST_MAPPER)
    res, cached = layer_energy(arch_file, layer, cache_dir=cache_dir)
    for name in info.weight_memory:
        if res.components_pJ.get(name, 0.0) <= 0:
            warnings.append(f"weight memory {name} spends no energy on {layer.key()} (a "
                            "container, or a memory the mapping keeps no weights in): scaling "
                            "its voltage saves nothing")
    return ArchCheck(arch_file=str(arch_file), layer=layer, weight_memory=info.weight_memory,
                     v_nominal=info.v_nominal, components_pJ=dict(res.components_pJ),
                     cached=cached, warnings=warnings)


def format_table(result: ArchCheck) -> str:
    """The per-component table (full component names), pJ/MAC and weight-memory share."""
    names = list(result.components_pJ)
    w = max([len("component")] + [len(n) for n in names])
    wm = set(result.weight_memory)
    macs, total = result.layer.macs, result.total_pJ
    lines = [f"{result.arch_file}: layer {result.layer.key()} ({macs:,} MACs, "
             f"{'cached' if result.cached else 'mapped now'}; energies at "
             f"{result.v_nominal:g} V)",
             f"{'component':<{w}} {'energy uJ':>11} {'pJ/MAC':>9} {'share':>7}"]
    lines.append("-" * len(lines[-1]))
    for n in names:
        e = result.components_pJ[n]
        lines.append(f"{n:<{w}} {e * 1e-6:>11.4f} {e / macs:>9.4f} {e / total * 100:>6.1f}%"
                     + ("  weight memory" if n in wm else ""))
    lines.append("-" * len(lines[1]))
    lines.append(f"{'total':<{w}} {total * 1e-6:>11.4f} {total / macs:>9.4f} {100:>6.1f}%")
    lines.append(f"weight memory [{', '.join(result.weight_memory)}]: "
                 f"{result.weight_memory_pJ / macs:.4f} pJ/MAC, "
                 f"{result.weight_share * 100:.1f}% of total")
    return "\n".join(lines)


def register(sub) -> None:
    p = sub.add_parser("arch", help="check an accelerator (architecture YAML) file",
                       description="Accelerator files: `hwsim arch check FILE` validates the "
                                   "file and its hwsim: section, maps one ResNet-20 layer "
                                   "(cached) and prints the energy per component.")
    asub = p.add_subparsers(dest="arch_command", metavar="ACTION", required=True)
    c = asub.add_parser("check", help="validate FILE, map one layer, print energy per component",
                        description="Validates FILE (trust model, hwsim: section, AccelForge "
                                    "spec), maps a 16x16-channel 3x3 conv on 32x32 (8-bit; "
                                    "cached in arch/cache or $HWSIM_ENERGY_CACHE) and prints "
                                    "per-component energy, pJ/MAC and the weight-memory share. "
                                    "Warns when the weight memory looks like DRAM or spends "
                                    "no energy.")
    c.add_argument("file", help="architecture YAML, or the name of a shipped one")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=run)


def run(args) -> int:
    arch = resolve_arch(args.file, "arch file")
    try:
        result = check(arch)
    except ConfigError:
        raise
    except RuntimeError as e:  # AccelForge returned a non-positive energy
        raise ConfigError(f"arch file {arch!r}: {e}") from None
    if args.json:
        print_json(result.to_dict())
    else:
        print(format_table(result))
    for w in result.warnings:
        print(f"hwsim arch check: warning: {w}", file=sys.stderr)
    return 0
