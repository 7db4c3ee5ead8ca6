"""Map one layer onto an AccelForge architecture and return its energy per component.

The arch YAML is an ordinary AccelForge spec (`arch:` section) plus an optional `hwsim:`
section that AccelForge never sees:

    hwsim:
      weight_memory: [WeightSRAM]   # components forming the voltage-scaled weight memory
      v_nominal: 0.8                # supply (V) at which the component energies hold

AccelForge API notes (accelforge==1.0.467):
  * `Spec.map_workload_to_arch()` evaluates the chosen mapping "in detail" and, on the way,
    writes `mapping.svg` into the current directory through graphviz. We call the lower
    level `accelforge.mapper.FFM.main.map_workload_to_arch(..., eval_in_detail=False)`,
    which returns the optimal mapping with only `Total<SEP>energy` filled in
    (`Mappings.energy()` then reads 0 because the per-component columns are missing), and
    then run `accelforge.model.main.evaluate_mapping` on that one mapping ourselves —
    the same call AccelForge makes, minus the SVG — to get the per-component energies.
  * The search space is cut by mapper knobs (see FAST_MAPPER / DEFAULT_MAPPER).
"""
from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from hwsim.models.errors import ConfigError

from . import arch_safety
from .workload import LayerShape

# Bump when the einsum encoding, the mapper settings or the result format change: the
# version is part of every cache key, so old cache entries are simply not found.
MAPPER_SETTINGS_VERSION = 1

# Fast settings: no loop-order exploration (orders that matter for partial reuse are
# still fixed by the storage-node order), everything else as AccelForge's defaults.
FAST_MAPPER = {
    "explore_loop_orders": False,
}
# AccelForge's own defaults (the full search), used for the fast-vs-default comparison.
DEFAULT_MAPPER: dict = {}

# AccelForge builds its tile-shape objectives with sympy, whose default 1000-entry cache
# thrashes there: unbounded, ResNet-20 on simba_sram maps in ~2/3 of the time with
# bit-identical energies (benchmarks/bench_mapping.py). Read by sympy when it is imported,
# so it is set before AccelForge is (and inherited by the processes AccelForge starts).
SYMPY_CACHE_SIZE = "none"


def use_unbounded_sympy_cache() -> None:
    """Set $SYMPY_CACHE_SIZE for this process and its children unless the user set it."""
    os.environ.setdefault("SYMPY_CACHE_SIZE", SYMPY_CACHE_SIZE)


@dataclass
class LayerEnergy:
    layer: str
    key: str
    components_pJ: dict[str, float]
    total_pJ: float
    weight_memory_pJ: float
    macs: int
    mapper: dict = field(default_factory=dict)
    wall_s: float = 0.0

    def to_dict(self) -> dict:
        return {
            "layer": self.layer, "key": self.key, "components_pJ": dict(self.components_pJ),
            "total_pJ": self.total_pJ, "weight_memory_pJ": self.weight_memory_pJ,
            "macs": self.macs, "mapper": dict(self.mapper), "wall_s": self.wall_s,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "LayerEnergy":
        return cls(layer=d["layer"], key=d["key"],
                   components_pJ={k: float(v) for k, v in d["components_pJ"].items()},
                   total_pJ=float(d["total_pJ"]), weight_memory_pJ=float(d["weight_memory_pJ"]),
                   macs=int(d["macs"]), mapper=dict(d.get("mapper", {})),
                   wall_s=float(d.get("wall_s", 0.0)))


@dataclass(frozen=True)
class ArchInfo:
    path: str
    sha256: str
    weight_memory: tuple[str, ...]
    v_nominal: float
    components: tuple[str, ...]
    domains: tuple = ()  # hwsim.domains.Domain, parsed and validated from hwsim:
    tech_node: float | None = None


# --------------------------------------------------------------------------- arch file

def _read_bytes(arch_file) -> bytes:
    p = Path(arch_file)
    if not p.is_file():
        raise ConfigError(f"arch file {str(arch_file)!r} not found")
    return p.read_bytes()


def arch_sha256(arch_file) -> str:
    """Hash of what AccelForge sees: the parsed file without its `hwsim:` section, so that
    comments, formatting and the choice of voltage-scaled components (which do not change
    any component energy) keep the cached mappings valid. Files that need AccelForge's
    loader (jinja, includes) are hashed byte for byte."""
    raw = _read_bytes(arch_file)
    d = _load_yaml_plain(raw.decode("utf-8", errors="replace"))
    if not isinstance(d, dict):
        return hashlib.sha256(raw).hexdigest()
    d = {k: v for k, v in d.items() if k != "hwsim"}
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()


def _load_yaml_plain(text: str):
    """Fast path (no AccelForge import): plain YAML with `!Tag` nodes read as mappings.
    Returns None when the file needs AccelForge's loader (jinja, includes)."""
    import yaml

    if "{{" in text or "{%" in text or "<<" in text or "!include" in text.lower():
        return None

    class _Loader(yaml.SafeLoader):
        pass

    def _tagged(loader, suffix, node):
        if isinstance(node, yaml.MappingNode):
            return loader.construct_mapping(node, deep=True)
        if isinstance(node, yaml.SequenceNode):
            return loader.construct_sequence(node, deep=True)
        return loader.construct_scalar(node)

    _Loader.add_multi_constructor("!", _tagged)
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.YAMLError:
        return None  # let AccelForge's loader produce the error message


def _load_yaml(arch_file, accelforge_loader: bool = True) -> dict:
    """Load the arch YAML with AccelForge's loader (handles !Memory tags, jinja, includes).
    With accelforge_loader=False a plain-YAML fast path is tried first (cache hits).
    Either way the raw text is checked first (Jinja2, includes: hwsim.arch_safety)."""
    raw = _read_bytes(arch_file)
    arch_safety.check_arch_text(arch_file, raw.decode("utf-8", errors="replace"))
    if not accelforge_loader:
        d = _load_yaml_plain(raw.decode("utf-8", errors="replace"))
        if isinstance(d, dict) and "arch" in d:
            return d
    from accelforge.util import _yaml

    try:
        with contextlib.redirect_stdout(io.StringIO()):
            d = _yaml.load_yaml(str(arch_file))
    except Exception as e:  # ruamel / jinja errors: keep the first line, name the file
        msg = str(e).strip().splitlines()
        raise ConfigError(f"arch file {str(arch_file)!r}: malformed YAML: "
                          f"{' '.join(msg[:3]) if msg else type(e).__name__}") from None
    if not isinstance(d, dict):
        raise ConfigError(f"arch file {str(arch_file)!r}: top level must be a mapping "
                          f"with an 'arch:' section, got {type(d).__name__}")
    if "arch" not in d:
        raise ConfigError(f"arch file {str(arch_file)!r}: missing top-level 'arch:' section")
    return d


def _component_names(arch_dict) -> list[str]:
    names = []
    nodes = arch_dict.get("nodes", []) if isinstance(arch_dict, dict) else []

    def walk(ns):
        for n in ns or []:
            if isinstance(n, dict):
                if "name" in n:
                    names.append(str(n["name"]))
                if "nodes" in n:
                    walk(n["nodes"])
    walk(nodes)
    return names


def load_arch(arch_file, accelforge_loader: bool = True) -> tuple[dict, ArchInfo]:
    """Return (accelforge spec dict without `hwsim:`, hwsim metadata).

    accelforge_loader=False only needs the metadata (e.g. to read the cache) and may
    return a plain dict instead of AccelForge's parsed spec dict."""
    d = _load_yaml(arch_file, accelforge_loader)
    arch_safety.check_spec(arch_file, d)  # expressions: before anything is evaluated
    meta = d.pop("hwsim", None) or {}
    where = f"arch file {str(arch_file)!r}"
    if not isinstance(meta, dict):
        raise ConfigError(f"{where}: 'hwsim:' must be a mapping, got {type(meta).__name__}")
    extra = set(d) - {"arch", "variables", "config", "mapper", "model"}
    if extra:
        raise ConfigError(f"{where}: unexpected top-level field(s) {', '.join(sorted(extra))}; "
                          "an hwsim arch file holds 'arch:' (and optionally 'hwsim:', "
                          "'variables:', 'config:')")
    comps = _component_names(d["arch"])
    if not comps:
        raise ConfigError(f"{where}: field arch.nodes is empty or missing")
    from .domains import parse_domains, tech_node
    domains, vn = parse_domains(meta, d["arch"], where, arch_file)
    wm = [c for dom in domains if "weight" in dom.holds for c in dom.components]
    info = ArchInfo(path=str(arch_file), sha256=arch_sha256(arch_file),
                    weight_memory=tuple(str(w) for w in wm), v_nominal=vn,
                    components=tuple(comps), domains=domains, tech_node=tech_node(d["arch"]))
    return d, info


# --------------------------------------------------------------------------- workload

def layer_workload(layer: LayerShape) -> tuple[dict, dict]:
    """(workload dict, renames dict) for one conv/linear layer as an AccelForge einsum.

    O[g, m, p, q] = I[g, c, H: p*stride + r, W: q*stride + s] * Wt[g, m, c, r, s]
    Rank variables of size 1 are dropped. The input extent therefore covers the padded
    input ((P-1)*stride + R rows), i.e. zero padding counts as stored input.
    """
    g = layer.groups
    sizes = {
        "g": g, "m": layer.out_channels // g, "c": layer.in_channels // g,
        "p": layer.P, "q": layer.Q, "r": layer.R, "s": layer.S,
    }
    live = {k: v for k, v in sizes.items() if v > 1}

    def idx(vars_):
        return [v for v in vars_ if v in live]

    def spatial(out_var, k_var, stride):
        terms = []
        if out_var in live:
            terms.append(f"{out_var} * {stride}" if stride != 1 else out_var)
        if k_var in live:
            terms.append(k_var)
        return " + ".join(terms)

    in_idx = idx(["g", "c"])
    h = spatial("p", "r", layer.stride[0])
    w = spatial("q", "s", layer.stride[1])
    if h:
        in_idx.append(f"H: {h}")
    if w:
        in_idx.append(f"W: {w}")
    out_idx = idx(["g", "m", "p", "q"])
    wt_idx = idx(["g", "m", "c", "r", "s"])
    if not out_idx or not wt_idx or not in_idx:
        raise ConfigError(f"layer {layer.name!r} ({layer.key()}): degenerate shape (a tensor "
                          "with every dimension of size 1) cannot be mapped")
    einsum = f"O[{', '.join(out_idx)}] = I[{', '.join(in_idx)}] * Wt[{', '.join(wt_idx)}]"
    workload = {
        "bits_per_value": {"I": layer.act_bits, "O": layer.act_bits, "Wt": layer.weight_bits},
        "einsums": [{
            "einsum": einsum,
            "iteration_space_shape": [f"0 <= {k} < {v}" for k, v in live.items()],
            "renames": {"output": "O", "input": "I", "weight": "Wt"},
        }],
    }
    renames = {"einsums": [{
        "name": "default",
        "tensor_accesses": [
            {"name": "input", "source": "Inputs & Intermediates", "expected_count": 1},
            {"name": "output", "source": "Outputs", "expected_count": 1},
            {"name": "weight", "source": "~(input | output)", "expected_count": 1},
        ],
    }]}
    return workload, renames


# --------------------------------------------------------------------------- mapping

def _format_af_error(arch_file, e: BaseException) -> str:
    """One-paragraph message for an AccelForge/pydantic failure, naming file and field."""
    try:
        from pydantic import ValidationError
    except ImportError:  # pragma: no cover
        ValidationError = ()
    where = f"arch file {str(arch_file)!r}"
    if ValidationError and isinstance(e, ValidationError):
        parts = []
        for err in e.errors()[:3]:
            loc = ".".join(str(x) for x in err.get("loc", ()))
            m = " ".join(str(err.get("msg", "")).split())
            m = m.replace("Supported fields are: ", "supported fields: ").replace(
                "Value error, ", "")
            if len(m) > 400:
                m = m[:400] + " ..."
            parts.append(f"field {loc}: {m}" + (
                f" (got {err['input']!r})" if "input" in err and not isinstance(
                    err["input"], (dict, list)) else ""))
        return f"{where}: invalid spec: " + "; ".join(parts)
    msg = str(e).strip()
    from accelforge.util.exceptions import EvaluationError
    if isinstance(e, EvaluationError):
        fields = ".".join(str(f) for f in e._fields[::-1])
        detail = str(e.message or "").split("Stack trace")[0]
        detail = " ".join(detail.split())
        if len(detail) > 400:
            detail = detail[:400] + " ..."
        if fields.startswith("nodes."):
            fields = "arch." + fields
        return f"{where}: field {fields}: {detail}"
    lines = [ln for ln in msg.splitlines() if ln.strip()]
    short = " ".join(lines[:4])
    if len(short) > 600:
        short = short[:600] + " ..."
    return f"{where}: AccelForge rejected the spec: {type(e).__name__}: {short}"


def build_spec(arch_dict: dict, layer: LayerShape, arch_file, mapper: dict):
    import accelforge as af

    workload, renames = layer_workload(layer)
    d = copy.deepcopy(arch_dict)
    d["workload"] = workload
    d["renames"] = renames
    try:
        spec = af.Spec(**d)
        for k, v in mapper.items():
            setattr(spec.mapper, k, v)
    except ConfigError:
        raise
    except Exception as e:
        raise ConfigError(_format_af_error(arch_file, e)) from None
    return spec


@contextlib.contextmanager
def _quiet():
    """AccelForge prints progress/info; keep the user's terminal clean."""
    buf_out, buf_err = io.StringIO(), io.StringIO()
    logger = logging.getLogger("accelforge")
    old = logger.level
    logger.setLevel(logging.WARNING)
    try:
        with contextlib.redirect_stdout(buf_out), contextlib.redirect_stderr(buf_err):
            yield buf_out
    finally:
        logger.setLevel(old)


def _evaluate_in_detail(spec, mappings):
    """AccelForge's eval_in_detail step for the best mapping, without writing mapping.svg."""
    from accelforge.model.main import evaluate_mapping

    best = mappings.data["Total<SEP>energy"].astype(float).values.argmin()
    local = copy.deepcopy(spec)
    local.model.metrics = local.mapper.info_metrics
    local.mapping = mappings.data.iloc[best]["Total<SEP>mapping"](_for_model=True)
    return evaluate_mapping(local, flattened_arches=mappings.flattened_arches,
                            evaluated_specs=mappings.evaluated_specs), best


def map_layer(arch_file, layer: LayerShape, *, fast: bool = True,
              mapper: dict | None = None) -> LayerEnergy:
    """Map `layer` onto `arch_file` for minimum energy; energies in pJ per image."""
    use_unbounded_sympy_cache()
    arch_dict, info = load_arch(arch_file)
    settings = dict(FAST_MAPPER if fast else DEFAULT_MAPPER)
    if mapper:
        settings.update(mapper)
    spec = build_spec(arch_dict, layer, arch_file, settings)

    from accelforge.mapper.FFM.main import map_workload_to_arch

    t0 = time.perf_counter()
    try:
        with _quiet():
            mappings = map_workload_to_arch(spec, eval_in_detail=False, print_progress=False)
            if len(mappings.data) == 0:
                raise ConfigError(
                    f"arch file {str(arch_file)!r}: AccelForge found no valid mapping for "
                    f"layer {layer.name!r} ({layer.key()}); check the memory sizes and "
                    "spatial constraints in field arch.nodes")
            detailed, best = _evaluate_in_detail(spec, mappings)
            per_comp = detailed.energy(per_component=True)
    except ConfigError:
        raise
    except Exception as e:
        raise ConfigError(_format_af_error(arch_file, e)) from None
    wall = time.perf_counter() - t0

    comps = {str(k): float(v) * 1e12 for k, v in per_comp.items()}
    total = sum(comps.values())
    search_total = float(mappings.data["Total<SEP>energy"].iloc[best]) * 1e12
    if total <= 0 or not math.isfinite(total):
        raise RuntimeError(f"AccelForge returned non-positive energy {total} pJ for "
                           f"{layer.key()} on {arch_file}")
    if abs(total - search_total) > 1e-3 * max(total, search_total):
        logging.getLogger(__name__).warning(
            "detailed energy %.4g pJ differs from the mapper's %.4g pJ for %s",
            total, search_total, layer.key())
    wm = sum(v for k, v in comps.items() if k in info.weight_memory)
    return LayerEnergy(layer=layer.name, key=layer.key(), components_pJ=comps, total_pJ=total,
                       weight_memory_pJ=wm, macs=layer.macs,
                       mapper={"fast": fast, **settings,
                               "version": MAPPER_SETTINGS_VERSION},
                       wall_s=wall)


def sram_read_energy_pJ(size_bits: int, width_bits: int = 64, tech_node: float = 65e-9,
                        n_banks: int = 1) -> float:
    """Energy (pJ) of one `width_bits` read of a CACTI SRAM, through hwcomponents."""
    from hwcomponents_cacti import SRAM

    with _quiet():
        s = SRAM(tech_node=tech_node, size=size_bits, width=width_bits, n_banks=n_banks)
        return float(s.read(bits_per_action=width_bits).energy) * 1e12
