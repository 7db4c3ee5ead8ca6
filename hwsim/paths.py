"""Where the shipped accelerator files live, so `--arch` works from any working directory.

An `--arch` value is, in this order: a file that exists as given (relative to the working
directory), a path relative to the project root (e.g. `arch/eyeriss_sram.yaml` from another
folder), or the bare name of a shipped arch file (`eyeriss_sram`, `eyeriss_sram.yaml`).
"""
from __future__ import annotations

from pathlib import Path

from hwsim.models.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
ARCH_DIR = PROJECT_ROOT / "arch"
DEFAULT_ARCH = "arch/eyeriss_sram.yaml"


def shipped_archs() -> list[str]:
    """Names of the arch files shipped in arch/ (without .yaml)."""
    return sorted(p.stem for p in ARCH_DIR.glob("*.yaml"))


def resolve_arch(value: str | Path, what: str = "--arch") -> str:
    """The arch file `value` names (see the module docstring), or one clean error."""
    p = Path(value)
    candidates = [p]
    if not p.is_absolute():
        candidates.append(PROJECT_ROOT / p)
        if len(p.parts) == 1:
            candidates += [ARCH_DIR / p, ARCH_DIR / f"{p.name}.yaml"]
    for c in candidates:
        if c.is_file():
            return str(c)
    if p.is_dir():
        raise ConfigError(f"{what} {str(value)!r} is a folder, not an arch YAML file")
    raise ConfigError(f"{what} {str(value)!r}: no such arch file; shipped ones (by name, or "
                      f"arch/NAME.yaml): {', '.join(shipped_archs())}")
