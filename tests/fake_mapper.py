"""A stand-in for AccelForge's mapping (hwsim.accelforge_backend.map_layer) that parallel
mapping tests hand to worker processes: they import it by name, so it lives in a module of
its own (tests/ is put on sys.path; `tests` itself is shadowed by an installed package)."""
from __future__ import annotations

import os
import time
from pathlib import Path

from hwsim import accelforge_backend as backend
from hwsim.models.errors import ConfigError


def map_layer(arch_file, layer, *, fast: bool = True, mapper=None) -> backend.LayerEnergy:
    """Energies from the shape alone; records the mapping process's pid in
    $HWSIM_TEST_PIDS/<layer name>. A layer named "bad" has no valid mapping. With
    $HWSIM_TEST_TOGETHER set, waits (up to 60 s) until two processes are mapping at once."""
    if layer.name == "bad":
        raise ConfigError(f"layer {layer.name!r}: no valid mapping")
    pids = Path(os.environ["HWSIM_TEST_PIDS"])
    (pids / layer.name).write_text(str(os.getpid()))
    end = time.monotonic() + 60
    while os.environ.get("HWSIM_TEST_TOGETHER") and time.monotonic() < end and \
            len({p.read_text() for p in pids.iterdir()}) < 2:
        time.sleep(0.01)
    e = float(layer.macs)
    return backend.LayerEnergy(layer=layer.name, key=layer.key(),
                               components_pJ={"WeightSRAM": 0.1 * e, "MAC": e},
                               total_pJ=1.1 * e, weight_memory_pJ=0.1 * e, macs=layer.macs)
