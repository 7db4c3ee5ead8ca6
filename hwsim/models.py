"""The network side under an unambiguous name: `import hwsim.models` or
`from hwsim.models import create_model, load_checkpoint, quant` (never `import models`).

The code lives in the top-level `models/` folder (the project's layout; it never imports
hwsim). This module re-exports its public names, and registers each of its submodules as
`hwsim.models.<name>` (the same module objects, not copies), so `import hwsim.models.quant`
and `from hwsim.models.train import TrainConfig` work too.
"""
import importlib
import pkgutil
import sys

import models as _models
from models import *  # noqa: F401,F403
from models import __all__ as _names
from models.data import load_dataset  # noqa: F401  (digits, cifar10, path/file.py:factory)

__all__ = list(_names) + ["load_dataset"]

for _info in pkgutil.iter_modules(_models.__path__):
    _mod = importlib.import_module(f"models.{_info.name}")
    sys.modules[f"{__name__}.{_info.name}"] = _mod
    globals()[_info.name] = _mod
del _info, _mod
