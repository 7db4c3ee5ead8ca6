"""Network energy on an AccelForge architecture, with a disk cache and voltage scaling.

Every distinct layer shape is mapped once through AccelForge (hwsim.accelforge_backend)
and stored in a JSON cache keyed by
    sha256(arch spec without hwsim:) | LayerShape.key() | mapper settings version / fast flag
so repeated shapes (ResNet-32/44/56 reuse ResNet-20's shapes) cost nothing. For arch files
shipped in the repository's arch/ folder the cache lives in arch/cache/energy.json and is
committed; for any other arch file it lives in $HWSIM_ENERGY_CACHE (default
~/.cache/hwsim/energy). The arch hash covers what AccelForge sees (the parsed file without
its `hwsim:` section), so editing comments or the voltage-scaled components reuses mappings.

Voltage scaling (WCAT): only the weight memory runs at the scaled supply V; its dynamic
energy scales as (V / V_nominal)^2, everything else stays at nominal:
    E(V) = E_wm(V_nom) * (V / V_nom)^2 + E_rest
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from models.errors import ConfigError

from . import accelforge_backend as backend
from .ber import check_voltage
from .workload import LayerShape

REPO_ROOT = Path(__file__).resolve().parent.parent
SHIPPED_ARCH_DIR = REPO_ROOT / "arch"
SHIPPED_CACHE_DIR = SHIPPED_ARCH_DIR / "cache"
CACHE_FORMAT = 1
CACHE_NAME = "energy.json"


# --------------------------------------------------------------------------- results

@dataclass
class LayerResult:
    name: str
    shape: LayerShape
    components_uJ: dict[str, float]
    total_uJ: float
    weight_memory_uJ: float
    macs: int
    cached: bool

    def to_dict(self) -> dict:
        return {"name": self.name, "shape": self.shape.to_dict(),
                "components_uJ": self.components_uJ, "total_uJ": self.total_uJ,
                "weight_memory_uJ": self.weight_memory_uJ, "macs": self.macs,
                "cached": self.cached}


@dataclass
class NetworkEnergy:
    arch_file: str
    arch_sha256: str
    weight_memory: tuple[str, ...]
    v_nominal: float
    layers: list[LayerResult] = field(default_factory=list)

    @property
    def total_uJ(self) -> float:
        return sum(layer.total_uJ for layer in self.layers)

    @property
    def weight_memory_uJ(self) -> float:
        return sum(layer.weight_memory_uJ for layer in self.layers)

    @property
    def rest_uJ(self) -> float:
        return self.total_uJ - self.weight_memory_uJ

    @property
    def weight_share(self) -> float:
        t = self.total_uJ
        return self.weight_memory_uJ / t if t > 0 else 0.0

    @property
    def macs(self) -> int:
        return sum(layer.macs for layer in self.layers)

    @property
    def components_uJ(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for layer in self.layers:
            for k, v in layer.components_uJ.items():
                out[k] = out.get(k, 0.0) + v
        return out

    def to_dict(self) -> dict:
        return {
            "arch_file": self.arch_file, "arch_sha256": self.arch_sha256,
            "weight_memory": list(self.weight_memory), "v_nominal": self.v_nominal,
            "total_uJ": self.total_uJ, "weight_memory_uJ": self.weight_memory_uJ,
            "weight_share": self.weight_share, "macs": self.macs,
            "components_uJ": self.components_uJ,
            "layers": [layer.to_dict() for layer in self.layers],
        }


def voltage_factor(voltage, v_nominal=0.8) -> float:
    """(V / V_nominal)^2, the dynamic-energy scale of the weight memory."""
    v = check_voltage(voltage)
    vn = check_voltage(v_nominal, "v_nominal")
    return (v / vn) ** 2


def scaled_energy(net_energy: NetworkEnergy, voltage, v_nominal=None) -> float:
    """Total energy (uJ per image) with the weight memory at `voltage`.

    E(V) = E_wm * (V / V_nom)^2 + E_rest. `v_nominal` defaults to the arch file's
    hwsim.v_nominal (0.8 V for the shipped arch).
    """
    vn = net_energy.v_nominal if v_nominal is None else v_nominal
    return net_energy.weight_memory_uJ * voltage_factor(voltage, vn) + net_energy.rest_uJ


def scaled_weight_memory(net_energy: NetworkEnergy, voltage, v_nominal=None) -> float:
    vn = net_energy.v_nominal if v_nominal is None else v_nominal
    return net_energy.weight_memory_uJ * voltage_factor(voltage, vn)


# --------------------------------------------------------------------------- cache

def cache_path_for(arch_file, cache_dir=None) -> Path:
    """Where the cache for `arch_file` lives (see module docstring). One file serves every
    arch of a folder: entries are keyed by the spec hash, so variants share mappings."""
    arch = Path(arch_file).resolve()
    if cache_dir is not None:
        return Path(cache_dir) / CACHE_NAME
    if arch.parent == SHIPPED_ARCH_DIR.resolve():
        return SHIPPED_CACHE_DIR / CACHE_NAME
    base = Path(os.environ.get("HWSIM_ENERGY_CACHE",
                               Path.home() / ".cache" / "hwsim" / "energy"))
    return base / CACHE_NAME


def cache_key(sha: str, layer: LayerShape, fast: bool = True) -> str:
    return (f"{sha}|{layer.key()}|v{backend.MAPPER_SETTINGS_VERSION}"
            f"|{'fast' if fast else 'default'}")


class EnergyCache:
    """A JSON file {format, entries: {key: LayerEnergy dict}}; writes are atomic."""

    def __init__(self, path):
        self.path = Path(path)
        self.entries: dict[str, dict] = {}
        self.load()

    def load(self) -> None:
        if not self.path.is_file():
            self.entries = {}
            return
        try:
            data = json.loads(self.path.read_text())
            self.entries = dict(data.get("entries", {})) if data.get(
                "format") == CACHE_FORMAT else {}
        except (OSError, ValueError, AttributeError):
            self.entries = {}  # a corrupt cache is only a cache: rebuild it

    def get(self, key: str) -> backend.LayerEnergy | None:
        d = self.entries.get(key)
        if d is None:
            return None
        try:
            return backend.LayerEnergy.from_dict(d)
        except (KeyError, TypeError, ValueError):
            return None

    @contextlib.contextmanager
    def _lock(self):
        # the lock file lives in the temp dir, not next to the (committed) cache file
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tag = hashlib.sha256(str(self.path.resolve()).encode()).hexdigest()[:16]
        lock = Path(tempfile.gettempdir()) / f"hwsim-energy-{tag}.lock"
        with open(lock, "w") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def put(self, key: str, value: backend.LayerEnergy) -> None:
        with self._lock():
            mine = dict(self.entries)
            self.load()  # merge with entries other processes wrote meanwhile
            self.entries.update(mine)
            self.entries[key] = value.to_dict()
            data = {"format": CACHE_FORMAT,
                    "entries": {k: self.entries[k] for k in sorted(self.entries)}}
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=self.path.name,
                                       suffix=".tmp")
            try:
                with os.fdopen(fd, "w") as f:
                    json.dump(data, f, indent=1, sort_keys=False)
                    f.write("\n")
                os.chmod(tmp, 0o644)  # mkstemp creates 0600; the cache is a shared file
                os.replace(tmp, self.path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise


# --------------------------------------------------------------------------- network

def layer_energy(arch_file, layer: LayerShape, *, fast: bool = True, cache_dir=None,
                 use_cache: bool = True) -> tuple[backend.LayerEnergy, bool]:
    """(LayerEnergy, was_cached) for one layer; maps and caches on a miss."""
    sha = backend.arch_sha256(arch_file)
    cache = EnergyCache(cache_path_for(arch_file, cache_dir)) if use_cache else None
    key = cache_key(sha, layer, fast)
    if cache is not None:
        hit = cache.get(key)
        if hit is not None:
            return hit, True
    res = backend.map_layer(arch_file, layer, fast=fast)
    if cache is not None:
        cache.put(key, res)
    return res, False


def network_energy(arch_file, layers: Sequence[LayerShape], progress: bool = True, *,
                   fast: bool = True, cache_dir=None, use_cache: bool = True) -> NetworkEnergy:
    """Energy per image of `layers` on `arch_file` (uJ), mapping each distinct shape once."""
    if not layers:
        raise ConfigError("network_energy: no layers given")
    _, info = backend.load_arch(arch_file, accelforge_loader=False)  # ConfigError up front
    cache = EnergyCache(cache_path_for(arch_file, cache_dir)) if use_cache else None

    unique: dict[str, LayerShape] = {}
    for layer in layers:
        unique.setdefault(layer.key(), layer)
    results: dict[str, tuple[backend.LayerEnergy, bool]] = {}
    todo = []
    for k, layer in unique.items():
        hit = cache.get(cache_key(info.sha256, layer, fast)) if cache is not None else None
        if hit is not None:
            results[k] = (hit, True)
        else:
            todo.append(layer)

    if todo:
        bar = None
        if progress:
            from tqdm import tqdm
            bar = tqdm(total=len(todo), desc=f"mapping layers on {Path(arch_file).name}",
                       unit="shape", dynamic_ncols=True)
        try:
            for layer in todo:
                if bar is not None:
                    bar.set_postfix_str(layer.name)
                res = backend.map_layer(arch_file, layer, fast=fast)
                if cache is not None:
                    cache.put(cache_key(info.sha256, layer, fast), res)
                results[layer.key()] = (res, False)
                if bar is not None:
                    bar.update(1)
        finally:
            if bar is not None:
                bar.close()

    out = NetworkEnergy(arch_file=str(arch_file), arch_sha256=info.sha256,
                        weight_memory=info.weight_memory, v_nominal=info.v_nominal)
    for layer in layers:
        res, cached = results[layer.key()]
        comps = {k: v * 1e-6 for k, v in res.components_pJ.items()}
        out.layers.append(LayerResult(
            name=layer.name, shape=layer, components_uJ=comps, total_uJ=res.total_pJ * 1e-6,
            weight_memory_uJ=sum(v for k, v in comps.items() if k in info.weight_memory),
            macs=layer.macs, cached=cached))
    return out


def distinct_shapes(layers: Iterable[LayerShape]) -> int:
    return len({layer.key() for layer in layers})
