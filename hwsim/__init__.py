"""hwsim: the hardware side (voltage -> bit error rate, AccelForge energy) and the `hwsim` CLI.

The Python API is hwsim/api.py (docs/api.md): `from hwsim import api as hw`, then
hw.quantize, hw.regularizer, hw.after_step, hw.param_groups, hw.accuracy, hw.evaluate,
hw.compare, hw.precision, hw.layer_sensitivity, hw.layer_noise, hw.noise_summary, hw.energy,
hw.sweep, hw.pareto. The names that do not collide with a submodule are also re-exported here
(`hwsim.quantize`, `hwsim.evaluate`, ...); `hwsim.sweep`, `hwsim.energy` and `hwsim.pareto`
stay the modules of those names. The network side is `hwsim.models`. All imported on first
use, so `hwsim --help` stays fast.
"""
import os as _os

__version__ = "0.1.0"

# The network side is the package hwsim.models. Installed (pip install, editable or not), the
# package mapping in pyproject.toml puts it there; a source tree used without installing (e.g.
# `PYTHONPATH=.` on a machine with only torch) finds it in the sibling models/ folder here.
_ROOT = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))
if (not _os.path.isdir(_os.path.join(__path__[0], "models"))
        and _os.path.isfile(_os.path.join(_ROOT, "models", "__init__.py"))):
    __path__.append(_ROOT)

# hwsim.api's functions re-exported lazily (sweep, energy, pareto are submodules' names)
API = ("quantize", "regularizer", "after_step", "param_groups", "evaluate", "compare",
       "precision", "accuracy", "layer_sensitivity", "layer_noise", "noise_summary",
       "ConfigError")


def __getattr__(name):
    """Lazy re-export: torch, pandas and AccelForge load on first use."""
    import importlib
    if name in API:
        return getattr(importlib.import_module("hwsim.api"), name)
    if name in ("api", "models"):
        return importlib.import_module(f"hwsim.{name}")
    raise AttributeError(f"module 'hwsim' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(API) + ["api", "models"])
