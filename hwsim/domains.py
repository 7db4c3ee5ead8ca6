"""Voltage domains: named groups of SRAM components that share one supply voltage.

An arch file's `hwsim:` section declares them (arch/README.md, "Voltage domains"):

    hwsim:
      v_nominal: 0.8
      domains:
        weights:     {components: [WeightSRAM], holds: [weight]}
        activations: {components: [ActivationSRAM, GlobalBuffer], holds: [input, output],
                      v_nominal: 0.8, ber_model: default, leakage_share: 0.0}

The legacy form `weight_memory: [A, B]` means one domain named `weights` that holds the
weights. `parse_domains` is the one parser and validator; `Domain.factor` is the one energy
law (pricing, protection and savings live in hwsim.domain_energy):

    E_dom(V) = E_dom(Vn) * [(1 - s) (V/Vn)^2 + s (V/Vn)]      s = leakage_share

The dynamic part is paper eq. 12 (E ~ C V^2). The leakage part: leakage power
P = V * I_leak (Butts & Sohi, "A static power model for architects", MICRO 2000, eq. 1:
P_static = V_cc * N * k_design * I_leak) over the same latency (the clock does not change),
with I_leak held at its nominal value; DIBL makes I_leak fall with V, so the linear law
under-states the leakage saving (conservative). AccelForge's cached per-component energies
include leakage without separating it, hence the per-domain `leakage_share` (default 0:
all of the domain's energy is treated as dynamic, which is what hwsim did before).
"""
from __future__ import annotations

import ast
import math
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from hwsim.models.errors import ConfigError

from .ber import SATURATION, BerModel, check_voltage

TENSORS = ("input", "output", "weight")
HWSIM_KEYS = ("weight_memory", "v_nominal", "domains")
DOMAIN_KEYS = ("components", "holds", "v_nominal", "ber_model", "leakage_share")
# component classes the SRAM BER model (eq. 11) may describe, and ones it certainly does not
SRAM_WORDS = ("sram", "buffer", "regfile", "register_file", "scratchpad", "cache")
DRAM_WORDS = ("dram", "ddr", "hbm", "flash", "rram", "reram", "mram", "pcm")
BER_MODEL_NODE = 22e-9  # eq. 11 was fitted on GF 22 nm FDX SRAM (Di Mauro et al. 2020)
_SETS = {"All": set(TENSORS), "Nothing": set(), "Inputs": {"input", "weight"},
         "Outputs": {"output"}, "Intermediates": set(), "Tensors": set(TENSORS)}
_WARNED: set = set()


@dataclass(frozen=True)
class Domain:
    """One voltage domain: its components, the tensors they hold, nominal supply, BER model
    ("default" = hwsim.ber.BerModel(), else the path of a `hwsim ber fit` YAML) and the
    share of its energy that is leakage."""
    name: str
    components: tuple[str, ...]
    holds: tuple[str, ...] = ("weight",)
    v_nominal: float = 0.8
    ber_model: str = "default"
    leakage_share: float = 0.0
    field: str = ""  # the hwsim: field it was declared in (for messages)

    def check(self, voltage, what: str | None = None) -> float:
        """`voltage` validated against this domain's range [0.2 V, 1.25 x v_nominal]."""
        return check_voltage(voltage, what or f"voltage of domain {self.name!r}",
                             v_nominal=self.v_nominal)

    def factor(self, voltage) -> float:
        """E(V) / E(v_nominal) for this domain: (1-s)(V/Vn)^2 + s (V/Vn)."""
        r = self.check(voltage) / self.v_nominal
        if self.leakage_share == 0:
            return r ** 2  # bit-identical to the pre-domain (V/Vn)^2
        return (1 - self.leakage_share) * r ** 2 + self.leakage_share * r

    def model(self) -> BerModel:
        """This domain's BER(V) model."""
        return _ber_model(self.ber_model)

    def ber(self, voltage) -> float:
        """Bit error rate at `voltage` (checked against this domain's range, not 0.8 V's)."""
        m, v = self.model(), self.check(voltage)
        x = m.a + m.b * v + m.c * v * v
        return min(math.exp(min(x, 0.0)), SATURATION)

    def errorfree_voltage(self, ber_target: float = 1e-9) -> float:
        """The lowest supply with BER <= ber_target (never above v_nominal)."""
        return min(self.model().voltage(ber_target), self.v_nominal)


@lru_cache(maxsize=32)
def _ber_model(spec: str) -> BerModel:
    return BerModel() if spec == "default" else BerModel.load(spec)


def legacy_domains(weight_memory, v_nominal: float) -> tuple[Domain, ...]:
    """The domain the legacy `weight_memory: [..]` form means: `weights`, holding weights."""
    return (Domain("weights", tuple(weight_memory), ("weight",), float(v_nominal),
                   field="hwsim.weight_memory"),)


# --------------------------------------------------------------------------- parsing

def arch_nodes(arch: dict) -> dict[str, dict]:
    """{component name: its node dict} of an arch spec's `nodes` tree (first of a name)."""
    out: dict[str, dict] = {}

    def walk(ns):
        for n in ns or []:
            if isinstance(n, dict):
                if "name" in n:
                    out.setdefault(str(n["name"]), n)
                walk(n.get("nodes"))
    walk(arch.get("nodes") if isinstance(arch, dict) else None)
    return out


def keep_set(expr, field: str, where: str) -> set[str]:
    """The tensors an AccelForge set expression (`weight`, `~weight`, `input | output`,
    `All`, ...) names; anything else is refused rather than guessed."""
    if isinstance(expr, (list, tuple)):
        return set().union(*(keep_set(e, field, where) for e in expr)) if expr else set()
    text = str(expr).strip()

    def ev(node) -> set[str]:
        if isinstance(node, ast.Name):
            if node.id in TENSORS:
                return {node.id}
            if node.id in _SETS:
                return set(_SETS[node.id])
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Invert):
            return set(TENSORS) - ev(node.operand)
        elif isinstance(node, ast.BinOp):
            a, b = ev(node.left), ev(node.right)
            op = type(node.op)
            if op in (ast.BitOr, ast.Add):
                return a | b
            if op is ast.BitAnd:
                return a & b
            if op is ast.Sub:
                return a - b
            if op is ast.BitXor:
                return a ^ b
        raise ValueError
    try:
        return ev(ast.parse(text, mode="eval").body)
    except (SyntaxError, ValueError, RecursionError):
        raise ConfigError(f"{where}: field {field} = {text!r}: hwsim cannot tell which tensors "
                          "this keeps; use names input, output, weight, All, Nothing with "
                          "~ | & -") from None


def can_hold(node: dict, name: str, where: str) -> set[str]:
    """Every tensor the mapper may place in this memory: keep | may_keep | back (AccelForge's
    default may_keep is All when keep is not given)."""
    t = node.get("tensors") or {}
    if not isinstance(t, dict):
        raise ConfigError(f"{where}: field arch.nodes.{name}.tensors must be a mapping")
    base = f"arch.nodes.{name}.tensors"
    held = keep_set(t["keep"], base + ".keep", where) if "keep" in t else set()
    if "may_keep" in t:
        held |= keep_set(t["may_keep"], base + ".may_keep", where)
    elif "keep" not in t:
        held = set(TENSORS)
    if "back" in t:
        held |= keep_set(t["back"], base + ".back", where)
    return held


def _memory_class(node: dict, field: str, comp: str, where: str) -> None:
    cls = node.get("component_class")
    if cls is None:
        raise ConfigError(f"{where}: field {field} names {comp}, which is not a memory (no "
                          "component_class: a container); a domain holds SRAM components")
    low = str(cls).lower()
    if any(w in low for w in DRAM_WORDS):
        raise ConfigError(f"{where}: field {field} names {comp} (component_class {cls}), a "
                          "DRAM/non-SRAM memory: the SRAM bit-error model (eq. 11) does not "
                          "apply to it; put only SRAM components in a voltage domain")
    if not any(w in low for w in SRAM_WORDS):
        raise ConfigError(f"{where}: field {field} names {comp} (component_class {cls}), "
                          "which is not an SRAM-like memory (class names containing "
                          f"{', '.join(SRAM_WORDS)}); a domain holds SRAM components")


def _number(v, field: str, where: str, lo: float, hi: float | None, lo_open=True) -> float:
    try:
        x = float(v)
        if isinstance(v, bool):
            raise ValueError
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: field {field} must be a number, got {v!r}") from None
    bad_lo = x <= lo if lo_open else x < lo
    if not math.isfinite(x) or bad_lo or (hi is not None and x > hi):
        rng = f"{'(' if lo_open else '['}{lo:g}, {hi:g}]" if hi is not None else f"> {lo:g}"
        raise ConfigError(f"{where}: field {field} must be in {rng}, got {v!r}")
    return x


def _names(v, field: str, where: str) -> list[str]:
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, (list, tuple)) or not v or not all(isinstance(x, str) for x in v):
        raise ConfigError(f"{where}: field {field} must be a non-empty list of names, "
                          f"got {v!r}")
    return [str(x) for x in v]


def parse_domains(meta: dict, arch: dict, where: str, arch_file=None
                  ) -> tuple[tuple[Domain, ...], float]:
    """(domains, v_nominal) of an arch file's `hwsim:` section, validated against its
    `arch:` nodes; every error is one ConfigError naming `where`, the field and the value."""
    unknown = sorted(set(meta) - set(HWSIM_KEYS))
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) hwsim.{', hwsim.'.join(unknown)}; "
                          f"valid: hwsim.{', hwsim.'.join(HWSIM_KEYS)}")
    vn = meta.get("v_nominal", 0.8)
    try:
        vn = float(vn)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: field hwsim.v_nominal must be a number, got {vn!r}") from None
    if not (vn > 0 and math.isfinite(vn)):
        raise ConfigError(f"{where}: field hwsim.v_nominal must be > 0, got {vn}")
    nodes = arch_nodes(arch)
    comps = list(nodes)
    if "domains" in meta and "weight_memory" in meta:
        raise ConfigError(f"{where}: fields hwsim.weight_memory and hwsim.domains both given; "
                          "use one (weight_memory: [..] means domains: {weights: ..})")
    if "domains" not in meta:
        wm = meta.get("weight_memory")
        if wm is None:
            raise ConfigError(f"{where}: field hwsim.weight_memory is missing (list of the "
                              "memory components that hold the weights; components: "
                              f"{', '.join(comps)}), or give hwsim.domains")
        if isinstance(wm, str):
            wm = [wm]
        if not isinstance(wm, (list, tuple)) or not wm:
            raise ConfigError(f"{where}: field hwsim.weight_memory must be a non-empty list of "
                              f"component names, got {wm!r}")
        bad = [w for w in wm if str(w) not in comps]
        if bad:
            raise ConfigError(f"{where}: field hwsim.weight_memory names unknown component(s) "
                              f"{', '.join(map(str, bad))}; components: {', '.join(comps)}")
        raw = {"weights": {"components": [str(w) for w in wm], "holds": ["weight"]}}
        fields = {"weights": "hwsim.weight_memory"}
    else:
        raw = meta["domains"]
        if not isinstance(raw, dict) or not raw:
            raise ConfigError(f"{where}: field hwsim.domains must be a non-empty mapping "
                              f"NAME: {{components: [..], holds: [..]}}, got {raw!r}")
        fields = {str(n): f"hwsim.domains.{n}" for n in raw}
    domains, owner = [], {}
    for name, spec in raw.items():
        name, f = str(name), fields[str(name)]
        if not isinstance(spec, dict):
            raise ConfigError(f"{where}: field {f} must be a mapping with components: [..], "
                              f"got {spec!r}")
        extra = sorted(set(spec) - set(DOMAIN_KEYS))
        if extra:
            raise ConfigError(f"{where}: unknown field(s) {f}.{', '.join(extra)}; valid: "
                              f"{', '.join(DOMAIN_KEYS)}")
        cf = f if f == "hwsim.weight_memory" else f + ".components"
        members = _names(spec.get("components"), cf, where)
        held_by = {}
        for c in members:
            if c not in nodes:
                raise ConfigError(f"{where}: field {cf} names unknown component {c}; "
                                  f"components: {', '.join(comps)}")
            if c in owner:
                raise ConfigError(f"{where}: field {cf} names {c}, which is already in domain "
                                  f"{owner[c]!r}; a component belongs to one domain")
            owner[c] = name
            _memory_class(nodes[c], cf, c, where)
            held_by[c] = can_hold(nodes[c], c, where)
        union = set().union(*held_by.values())
        if "holds" in spec:
            holds = _names(spec["holds"], f + ".holds", where)
            bad = [h for h in holds if h not in TENSORS]
            if bad:
                raise ConfigError(f"{where}: field {f}.holds = {bad[0]!r}: not a tensor; "
                                  f"valid: {', '.join(TENSORS)}")
        else:
            holds = [t for t in TENSORS if t in union]
        for c, held in held_by.items():
            if not held & set(holds):
                raise ConfigError(f"{where}: field {cf}: {c} (tensors {sorted(held)}) cannot "
                                  f"hold any of the tensors the domain claims "
                                  f"({f}.holds = {holds})")
            if held - set(holds):
                raise ConfigError(f"{where}: field {f}.holds = {holds}: {c} may also hold "
                                  f"{sorted(held - set(holds))}, which would then sit in the "
                                  "low-voltage domain without faults; list them in holds")
        missing = [h for h in holds if h not in union]
        if missing:
            raise ConfigError(f"{where}: field {f}.holds = {holds}: no component of the domain "
                              f"can hold {', '.join(missing)}")
        dvn = _number(spec.get("v_nominal", vn), f + ".v_nominal", where, 0, None)
        share = _number(spec.get("leakage_share", 0.0), f + ".leakage_share", where, 0, 1,
                        lo_open=False)
        bm = spec.get("ber_model", "default")
        if not isinstance(bm, str) or not bm:
            raise ConfigError(f"{where}: field {f}.ber_model must be 'default' or the path of a "
                              f"`hwsim ber fit` YAML, got {bm!r}")
        if bm != "default":
            base = Path(arch_file).resolve().parent if arch_file else Path.cwd()
            p = (base / bm).resolve()
            if not p.is_relative_to(base):
                raise ConfigError(f"{where}: field {f}.ber_model = {bm!r}: must stay inside the "
                                  "arch file's folder (arch files are untrusted)")
            if not p.is_file():
                raise ConfigError(f"{where}: field {f}.ber_model = {bm!r}: no such file "
                                  f"(relative to the arch file); valid: 'default' or a YAML "
                                  "written by `hwsim ber fit`")
            BerModel.load(p)  # a bad file is an error now, not at pricing time
            bm = str(p)
        domains.append(Domain(name, tuple(members), tuple(holds), dvn, bm, share, cf))
    return tuple(domains), vn


def tech_node(arch: dict) -> float | None:
    """The arch's tech_node (m) from extra_attributes_for_all_component_models, if numeric."""
    extra = (arch or {}).get("extra_attributes_for_all_component_models") or {}
    try:
        return float(extra.get("tech_node"))
    except (TypeError, ValueError):
        return None


def warn_tech_node(node: float | None, domains, stream=None) -> None:
    """Warn once per process (stderr) when the arch's node differs from the BER model's."""
    if node is None:
        return
    for d in domains:
        if d.ber_model != "default":
            continue  # a user's own fit: its node is theirs to know
        src = d.model().source
        if abs(node - BER_MODEL_NODE) / BER_MODEL_NODE < 0.05 or (node, src) in _WARNED:
            continue
        _WARNED.add((node, src))
        print(f"hwsim: warning: the arch's energies are for tech_node {node * 1e9:g} nm, the "
              f"BER model is from 22 nm FDX ({src}); domain {d.name!r} mixes both",
              file=stream or sys.stderr)


def warn_arch(arch_file, names=(), ber_model=None, stream=None) -> None:
    """The tech-node warning (warn_tech_node) of one run on `arch_file` that drives the
    domains `names` (empty: every domain holding weights) with `ber_model` (a
    hwsim.ber.BerModel; one other than the default is the user's own fit: no warning).
    sweep.sweep, chips.chip_sweep and voltages.optimize_voltages call it once their inputs
    are checked (so an error stays one line); warn_tech_node prints it once per process,
    so a study's many sweeps (Ray ones submit from this process) warn once."""
    if ber_model is not None and ber_model != BerModel():
        return
    from .accelforge_backend import load_arch
    try:
        _, info = load_arch(arch_file, accelforge_loader=False)
    except (ConfigError, OSError):
        return  # a warning never stops a run; the run reports a bad arch file itself
    if set(names or ()) - {d.name for d in info.domains}:
        return  # the run itself reports the unknown domain (one error line, no warning)
    doms = [d for d in info.domains if (d.name in names if names else "weight" in d.holds)]
    warn_tech_node(info.tech_node, doms, stream)
