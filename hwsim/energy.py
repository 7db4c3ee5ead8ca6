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

import json
import multiprocessing
import os
import pickle
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from hwsim.models.errors import ConfigError

from . import accelforge_backend as backend
from .ber import check_voltage
from .files import file_lock, write_text_atomic
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
    domains: tuple = ()  # hwsim.domains.Domain of the arch (empty: the legacy weights domain)

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
    vn = check_voltage(v_nominal, "v_nominal", v_nominal=None)
    v = check_voltage(voltage, v_nominal=vn)
    return (v / vn) ** 2


def _weight_voltages(net_energy: NetworkEnergy, voltage, v_nominal) -> dict:
    """{domain: voltage} for every domain that holds weights (validated as before)."""
    from .domain_energy import domains_of
    voltage_factor(voltage, net_energy.v_nominal if v_nominal is None else v_nominal)
    return {d.name: voltage for d in domains_of(net_energy) if "weight" in d.holds}


def scaled_energy(net_energy: NetworkEnergy, voltage, v_nominal=None) -> float:
    """Total energy (uJ per image) with the weight memory at `voltage`.

    E(V) = E_wm * (V / V_nom)^2 + E_rest. `v_nominal` defaults to the arch file's
    hwsim.v_nominal (0.8 V for the shipped arch). A thin wrapper over
    hwsim.domain_energy.price with every weight-holding domain at `voltage`.
    """
    from .domain_energy import price
    return price(net_energy, _weight_voltages(net_energy, voltage, v_nominal),
                 v_nominal=v_nominal)["total_uJ"]


def scaled_weight_memory(net_energy: NetworkEnergy, voltage, v_nominal=None) -> float:
    """Energy (uJ) of the weight-holding domains with their supply at `voltage`."""
    from .domain_energy import price
    volts = _weight_voltages(net_energy, voltage, v_nominal)
    doms = price(net_energy, volts, v_nominal=v_nominal)["domains"]
    return sum(doms[name]["uJ"] for name in volts)


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


def access_key(sha: str, component: str, width_bits: int = 64) -> str:
    """Cache key of the energy of one `width_bits` read of `component` (SECDED pricing,
    hwsim.domain_energy.access_pJ): stored next to the layer energies of the same spec."""
    return f"{sha}|access{width_bits}:{component}"


def cache_key(sha: str, layer: LayerShape, fast: bool = True) -> str:
    return (f"{sha}|{layer.key()}|v{backend.MAPPER_SETTINGS_VERSION}"
            f"|{'fast' if fast else 'default'}")


class EnergyCache:
    """A JSON file {format, entries: {key: LayerEnergy dict}}; writes are atomic and merge
    with what other processes wrote meanwhile (under hwsim.files.file_lock)."""

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

    def get_access(self, key: str) -> float | None:
        """A cached per-access energy (pJ) stored under `key` (access_key), or None."""
        d = self.entries.get(key)
        try:
            v = float(d["access_pJ"]) if isinstance(d, dict) else None
        except (KeyError, TypeError, ValueError):
            return None
        return v if v is not None and v > 0 and v == v and v != float("inf") else None

    def put(self, key: str, value: backend.LayerEnergy | dict) -> None:
        """Add one entry (a LayerEnergy, or a plain dict such as an access energy): lock,
        re-read, merge, write atomically (entries stay sorted)."""
        with file_lock(self.path):
            mine = dict(self.entries)
            self.load()  # merge with entries other processes wrote meanwhile
            self.entries.update(mine)
            self.entries[key] = value if isinstance(value, dict) else value.to_dict()
            data = {"format": CACHE_FORMAT,
                    "entries": {k: self.entries[k] for k in sorted(self.entries)}}
            write_text_atomic(self.path, json.dumps(data, indent=1) + "\n")


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


def _share_cores(jobs: int) -> None:
    """Worker initializer: AccelForge's parallel jobs per mapping in this process."""
    from accelforge.util.parallel import set_n_parallel_jobs
    set_n_parallel_jobs(jobs)


# Parallel mapping processes chosen by default: one per core, at most this many (each
# holds ~1.5 GB while mapping ResNet-20 on simba_sram).
MAX_AUTO_WORKERS = 4


def auto_workers(n_shapes: int) -> int:
    """Mapping processes for `n_shapes` uncached shapes when the caller does not say: one
    per core, at most MAX_AUTO_WORKERS, never more than there are shapes."""
    return max(1, min(os.cpu_count() or 1, MAX_AUTO_WORKERS, n_shapes))


def _portable(fn) -> bool:
    """Whether worker processes can receive `fn` (a module-level function; a lambda or a
    closure standing in for the mapper cannot leave this process)."""
    try:
        pickle.dumps(fn)
    except Exception:
        return False
    return True


def _map_shapes(arch_file, todo: Sequence[LayerShape], on_done, *, fast: bool = True,
                workers: int | None = None) -> None:
    """Map every shape of `todo`, in up to `workers` processes at once (None: auto_workers);
    calls on_done(layer, LayerEnergy) in this process as each one finishes."""
    mapper = backend.map_layer  # resolved here, so that a stand-in reaches the workers too
    if workers is None:
        workers = auto_workers(len(todo)) if _portable(mapper) else 1
    if workers == 1 or len(todo) < 2:
        for layer in todo:
            on_done(layer, mapper(arch_file, layer, fast=fast))
        return
    backend.use_unbounded_sympy_cache()  # before the workers (and their sympy) start
    workers = min(workers, len(todo))
    # AccelForge spreads one mapping over every core (joblib): share the cores out instead
    init = (_share_cores, (max(1, (os.cpu_count() or 1) // workers),)) \
        if mapper.__module__ == backend.__name__ else (None, ())
    error = None
    # forked from a fresh single-threaded server, not from this process (which may run torch
    # threads that fork() can deadlock); the mapper reaches the workers by module and name
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload([backend.__name__])  # imported once, before the server forks
    with ProcessPoolExecutor(workers, ctx, initializer=init[0], initargs=init[1]) as pool:
        futures = {pool.submit(mapper, arch_file, layer, fast=fast): layer for layer in todo}
        for fut in as_completed(futures):
            if fut.cancelled():
                continue
            if fut.exception() is None:
                on_done(futures[fut], fut.result())
            elif error is None:  # stop queued shapes; the running ones finish and are kept
                error = fut.exception()
                for f in futures:
                    f.cancel()
    if error is not None:
        raise error


def network_energy(arch_file, layers: Sequence[LayerShape], progress: bool = True, *,
                   fast: bool = True, cache_dir=None, use_cache: bool = True,
                   workers: int | None = None) -> NetworkEnergy:
    """Energy per image of `layers` on `arch_file` (uJ), mapping each distinct shape once;
    shapes missing from the cache are mapped in `workers` parallel processes (None: one
    per core, at most MAX_AUTO_WORKERS; 1: in this process)."""
    if not layers:
        raise ConfigError("network_energy: no layers given")
    if workers is not None and not (isinstance(workers, int) and workers >= 1):
        raise ConfigError(f"workers {workers!r}: must be an integer >= 1 (or None: auto)")
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

        def done(layer: LayerShape, res: backend.LayerEnergy) -> None:
            if cache is not None:  # cached as soon as mapped: an interrupted run keeps it
                cache.put(cache_key(info.sha256, layer, fast), res)
            results[layer.key()] = (res, False)
            if bar is not None:
                bar.set_postfix_str(layer.name)
                bar.update(1)
        try:
            _map_shapes(arch_file, todo, done, fast=fast, workers=workers)
        finally:
            if bar is not None:
                bar.close()

    if todo and cache is not None and cache_dir is None:
        fill_access(arch_file, info)  # CACTI is here (it just mapped): cache what SECDED needs
    out = NetworkEnergy(arch_file=str(arch_file), arch_sha256=info.sha256,
                        weight_memory=info.weight_memory, v_nominal=info.v_nominal,
                        domains=info.domains)
    for layer in layers:
        res, cached = results[layer.key()]
        comps = {k: v * 1e-6 for k, v in res.components_pJ.items()}
        out.layers.append(LayerResult(
            name=layer.name, shape=layer, components_uJ=comps, total_uJ=res.total_pJ * 1e-6,
            weight_memory_uJ=sum(v for k, v in comps.items() if k in info.weight_memory),
            macs=layer.macs, cached=cached))
    _check_domains(out, arch_file)
    return out


def fill_access(arch_file, info=None) -> None:
    """Cache the 64-bit access energy of every domain component of `arch_file` (done with
    the mapping and by `hwsim energy --fill-cache`, so that pricing SECDED later needs no
    CACTI); a component hwsim cannot size is left out (pricing it then names the problem)."""
    from .domain_energy import access_pJ
    if info is None:
        info = backend.load_arch(arch_file, accelforge_loader=False)[1]
    for d in info.domains:
        for c in d.components:
            try:
                access_pJ(arch_file, c)
            except ConfigError:
                pass


def _check_domains(ne: NetworkEnergy, arch_file) -> None:
    """Every component of every voltage domain must spend energy after mapping: one that
    spends none is a memory the mapping keeps none of the domain's tensors in, and scaling
    it would report a saving of exactly nothing."""
    from .domain_energy import domains_of
    for d in domains_of(ne):
        idle = [c for c in d.components
                if not any(layer.components_uJ.get(c, 0.0) > 0 for layer in ne.layers)]
        if idle:
            spent = sorted(c for c, v in ne.components_uJ.items() if v > 0)
            f = d.field or f"hwsim.domains.{d.name}.components"
            raise ConfigError(f"arch file {str(arch_file)!r}: field {f} names "
                              f"{', '.join(idle)}, which spends no energy in any layer (a "
                              f"container, or a memory that holds none of "
                              f"{', '.join(d.holds)}); components with energy: "
                              f"{', '.join(spent)}")


def distinct_shapes(layers: Iterable[LayerShape]) -> int:
    return len({layer.key() for layer in layers})
