"""Energy of voltage domains under a protection, and the two saving baselines.

`price(net_energy, {domain: V or {layer: V}}, protection)` is the one implementation;
hwsim.energy.scaled_energy / scaled_weight_memory are thin wrappers over it. Per domain d
and layer l, with E_dl its nominal energy, g_d(V) = Domain.factor(V) (dynamic (V/Vn)^2
plus the leakage law, hwsim.domains) and b the stored bits per value:

    none      E = E_dl g_d(V)
    msb:K     E = E_dl [(b-K)/b g_d(V) + K/b]            top K bits in a nominal-voltage bank
    secded    E = E_dl 72/64 g_d(V) + N_dl * E_codec      (72,64) words: 8 check bits stored
                                                          and read per 64 data bits
N_dl (64-bit accesses) = E_dl / e64(component), e64 the CACTI energy of one 64-bit read of
that SRAM (hwsim.accelforge_backend.sram_read_energy_pJ, size/banks/node from the arch),
cached in the energy cache next to the layer energies (access_pJ), so no CACTI at pricing.
E_codec, the SECDED encoder (write) or decoder (read) energy per 64-bit access, is derived
from Horowitz, "Computing's energy problem", ISSCC 2014 (45 nm, 0.9 V): 32-bit add 0.1 pJ.
A (72,64) Hsiao decoder is ~216 XOR2 for the syndrome + 64 syndrome decoders + 64
correcting XORs, about three 32-bit adders of logic: 0.3 pJ at 45 nm, scaled linearly with
the node (C ~ L at fixed voltage): 0.43 pJ at 65 nm. The codec stays at nominal voltage.
Protection applies to the domains given a voltage (the scaled ones).

Baselines: `saving_vs_nominal` = 1 - E / E(all nominal, no protection);
`saving_vs_errorfree` = 1 - E / E(each scaled domain at its lowest error-free voltage,
BER <= ber_target (1e-9 by default), no protection; the others at nominal).
"""
from __future__ import annotations

import importlib
import math
from dataclasses import dataclass, field, replace
from functools import lru_cache

from hwsim.models.errors import ConfigError
from hwsim.models.protection import Protection as FaultProtection

from .arch_safety import plain_number
from .domains import Domain, legacy_domains

SECDED_WORD, SECDED_DATA = 72, 64
CODEC_PJ_45NM = 0.3
CODEC_NODE = 45e-9
CODEC_SOURCE = ("(72,64) Hsiao SECDED codec ~ 3 x 32-bit adders of XOR logic; 32-bit add "
                "= 0.1 pJ at 45 nm (Horowitz, ISSCC 2014); scaled linearly with tech node")
DEFAULT_NODE = 65e-9


@dataclass(frozen=True)
class Protection:
    """The price list of a protection (hwsim.models.protection.Protection, the one parser
    and fault model, is `.fault`): kind 'none', 'secded' ((72,64) ECC) or 'msb' (top `k`
    bits of each value in a nominal-voltage bank). codec_pJ overrides the SECDED codec energy
    per 64-bit access; access_pJ maps component -> energy of one 64-bit access (overrides the
    CACTI estimate)."""
    kind: str = "none"
    k: int = 0
    codec_pJ: float | None = None
    access_pJ: dict = field(default_factory=dict, compare=False)

    def __str__(self) -> str:
        return self.fault.name

    @property
    def fault(self) -> FaultProtection:
        """The network side's fault model of this protection."""
        return FaultProtection(self.kind, self.k)


def parse_protection(spec, what: str = "protection") -> Protection:
    """'none' | 'secded' | 'msb:K' | a hwsim.models.protection.Protection |
    {kind: .., k: .., codec_pJ: .., access_pJ: {..}}."""
    if spec is None:
        return Protection()
    if isinstance(spec, Protection):
        return spec
    if isinstance(spec, (str, FaultProtection)):
        try:
            f = FaultProtection.parse(spec.strip().lower() if isinstance(spec, str) else spec)
        except ConfigError as e:
            raise ConfigError(f"{what} {spec!r}: {str(e).split(': ', 1)[-1]}") from None
        return Protection(f.kind, f.k)
    if isinstance(spec, dict):
        extra = set(spec) - {"kind", "k", "codec_pJ", "access_pJ"}
        if extra:
            raise ConfigError(f"{what}: unknown key(s) {sorted(extra)}; valid: kind, k, "
                              "codec_pJ, access_pJ")
        kind = str(spec.get("kind", "none")).lower()
        base = parse_protection(f"msb:{spec.get('k')}" if kind == "msb" else kind, what)
        codec = spec.get("codec_pJ")
        if codec is not None and not (isinstance(codec, (int, float)) and codec >= 0):
            raise ConfigError(f"{what}.codec_pJ {codec!r}: must be a number >= 0")
        acc = dict(spec.get("access_pJ") or {})
        if any(not (isinstance(v, (int, float)) and v > 0) for v in acc.values()):
            raise ConfigError(f"{what}.access_pJ {acc!r}: values must be numbers > 0 (pJ)")
        return Protection(base.kind, base.k, codec, acc)
    raise ConfigError(f"{what} {spec!r}: valid: none, secded, msb:K (K >= 1 bits)")


def codec_pJ(tech_node: float | None) -> float:
    """SECDED encoder/decoder energy per 64-bit access at `tech_node` (m) (see module doc)."""
    return CODEC_PJ_45NM * (tech_node or DEFAULT_NODE) / CODEC_NODE


# --------------------------------------------------------------------------- energies

def domains_of(ne) -> tuple[Domain, ...]:
    """The NetworkEnergy's domains (the legacy weight-memory domain when it has none)."""
    return tuple(getattr(ne, "domains", ()) or ()) or legacy_domains(ne.weight_memory,
                                                                     ne.v_nominal)


def find_domain(ne, name: str) -> Domain:
    """The domain called `name`, or one ConfigError listing the valid names."""
    doms = domains_of(ne)
    for d in doms:
        if d.name == name:
            return d
    raise ConfigError(f"domain {name!r}: not in {ne.arch_file}; valid: "
                      f"{', '.join(d.name for d in doms)}")


def domain_layer_energy(ne, domain: Domain) -> list[float]:
    """Nominal energy (uJ) of `domain` in each layer of `ne`, in layer order."""
    comps = set(domain.components)
    return [sum(v for k, v in layer.components_uJ.items() if k in comps) for layer in ne.layers]


def _layer_voltages(ne, domain: Domain, voltage) -> list[float]:
    if isinstance(voltage, dict):
        names = [layer.name for layer in ne.layers]
        bad = sorted(set(voltage) - set(names))
        if bad:
            raise ConfigError(f"voltages of domain {domain.name!r}: unknown layer(s) "
                              f"{', '.join(map(str, bad))}; layers: {', '.join(names)}")
        out = [voltage.get(n, domain.v_nominal) for n in names]
        for n, v in zip(names, out):
            domain.check(v, f"voltage of domain {domain.name!r} layer {n!r}")
        return out
    return [domain.check(voltage)] * len(ne.layers)


def domain_energy(ne, domain: Domain | str, voltage) -> float:
    """Energy (uJ) of one domain, unprotected, at `voltage` (V, or {layer name: V} with
    each layer's values in their own bank at their own voltage; unnamed layers nominal)."""
    d = find_domain(ne, domain) if isinstance(domain, str) else domain
    return _price_domain(ne, d, voltage, Protection())[0]


def _bits(ne, d: Domain) -> list[int]:
    if set(d.holds) == {"weight"}:
        return [layer.shape.weight_bits for layer in ne.layers]
    if "weight" not in d.holds:
        return [layer.shape.act_bits for layer in ne.layers]
    raise ConfigError(f"protection msb on domain {d.name!r}: it holds {list(d.holds)}; MSB "
                      "protection needs one value width (weights only or activations only)")


def _price_domain(ne, d: Domain, voltage, prot: Protection):
    """(energy uJ, codec uJ, per-component uJ) of domain `d` under `prot`."""
    per_layer = isinstance(voltage, dict)
    volts = _layer_voltages(ne, d, voltage)
    facs = [d.factor(v) for v in volts] if per_layer else [d.factor(volts[0])] * len(volts)
    if prot.kind == "msb":
        bits = _bits(ne, d)
        bad = [b for b in bits if prot.k > b]
        if bad:
            raise ConfigError(f"protection msb:{prot.k} on domain {d.name!r}: K exceeds the "
                              f"{bad[0]} bits stored per value")
        facs = [(b - prot.k) / b * f + prot.k / b for b, f in zip(bits, facs)]
    elif prot.kind == "secded":
        facs = [f * SECDED_WORD / SECDED_DATA for f in facs]
    comps, codec = {}, 0.0
    for c in d.components:
        e = [layer.components_uJ.get(c, 0.0) for layer in ne.layers]
        if per_layer or prot.kind == "msb":
            comps[c] = sum(x * f for x, f in zip(e, facs))
        else:
            comps[c] = sum(e) * facs[0]
        if prot.kind == "secded":
            e64 = prot.access_pJ.get(c) or access_pJ(ne.arch_file, c)
            cpj = prot.codec_pJ if prot.codec_pJ is not None else codec_pJ(_node(ne.arch_file))
            codec += sum(e) * 1e6 / e64 * cpj * 1e-6
    if not per_layer and prot.kind == "none":  # (sum E) * f, as hwsim always computed it
        total = sum(domain_layer_energy(ne, d)) * facs[0]
    else:
        total = sum(comps.values())
    return total, codec, comps


def price(ne, voltages: dict | None = None, protection=None, *, ber_target: float = 1e-9,
          v_nominal: float | None = None) -> dict:
    """Energy of `ne` with each named domain at its voltage (V or {layer: V}; unnamed
    domains at nominal) under `protection` (one spec for every named domain, or
    {domain: spec}). Returns total_uJ, nominal_uJ, errorfree_uJ, saving_vs_nominal,
    saving_vs_errorfree, rest_uJ, domains {name: {...}}, components_uJ (scaled).
    `v_nominal` overrides every named domain's nominal supply (legacy scaled_energy)."""
    voltages = dict(voltages or {})
    doms = {d.name: d for d in domains_of(ne)}
    for name in voltages:
        find_domain(ne, name)
    if v_nominal is not None:
        doms = {n: (replace(d, v_nominal=v_nominal) if n in voltages else d)
                for n, d in doms.items()}
    if isinstance(protection, dict) and "kind" not in protection:
        for name in protection:
            find_domain(ne, name)
        prots = {n: parse_protection(protection.get(n), f"protection of domain {n!r}")
                 for n in voltages}
    else:
        p = parse_protection(protection)
        prots = {n: p for n in voltages}
    out_doms, comps = {}, dict(ne.components_uJ)
    nominal_dom = {n: sum(domain_layer_energy(ne, d)) for n, d in doms.items()}
    scaled, codec_total, errorfree = [], 0.0, []
    for n, d in doms.items():
        if n not in voltages:
            continue
        e, codec, dcomps = _price_domain(ne, d, voltages[n], prots[n])
        comps.update(dcomps)
        scaled.append(e + codec)
        codec_total += codec
        vef = d.errorfree_voltage(ber_target)
        errorfree.append(_price_domain(ne, d, vef, Protection())[0])
        v = voltages[n]
        ber = (max(d.ber(x) for x in v.values()) if isinstance(v, dict) and v
               else d.ber(d.v_nominal if isinstance(v, dict) else v))
        out_doms[n] = {"voltage": v, "v_nominal": d.v_nominal, "nominal_uJ": nominal_dom[n],
                       "uJ": e, "codec_uJ": codec, "protection": str(prots[n]),
                       "ber": ber, "errorfree_voltage": vef, "components": dcomps}
    for n, d in doms.items():
        if n not in voltages:
            out_doms[n] = {"voltage": d.v_nominal, "v_nominal": d.v_nominal,
                           "nominal_uJ": nominal_dom[n], "uJ": nominal_dom[n], "codec_uJ": 0.0,
                           "protection": "none", "ber": d.ber(d.v_nominal),
                           "errorfree_voltage": d.errorfree_voltage(ber_target),
                           "components": {c: ne.components_uJ.get(c, 0.0)
                                          for c in d.components}}
    rest = ne.total_uJ - sum(nominal_dom[n] for n in voltages)
    total = sum(scaled) + rest
    ef_total = sum(errorfree) + rest
    nominal = ne.total_uJ
    if codec_total:
        comps["SECDED codec"] = codec_total
    return {"total_uJ": total, "nominal_uJ": nominal, "errorfree_uJ": ef_total,
            "saving_vs_nominal": 1 - total / nominal if nominal > 0 else 0.0,
            "saving_vs_errorfree": 1 - total / ef_total if ef_total > 0 else 0.0,
            "ber_target": ber_target, "rest_uJ": ne.total_uJ - sum(nominal_dom.values()),
            "domains": out_doms, "components_uJ": comps}


# --------------------------------------------------------------------------- CACTI access

def _arith(text, what: str) -> float:
    v = plain_number(text)
    if v is None:
        raise ConfigError(f"{what} = {text!r}: SECDED pricing needs a plain number or "
                          "arithmetic here (or pass access_pJ in the protection)")
    return v


def _arch_nodes(arch_file):
    from .accelforge_backend import load_arch
    from .domains import arch_nodes
    d, info = load_arch(arch_file, accelforge_loader=False)
    return arch_nodes(d["arch"]), info.tech_node, info.sha256


def _node(arch_file) -> float | None:
    try:
        return _arch_nodes(arch_file)[1]
    except ConfigError:
        return None


@lru_cache(maxsize=64)
def access_pJ(arch_file, component: str) -> float:
    """CACTI energy (pJ) of one 64-bit read of `component` of `arch_file` (size, n_banks
    and tech_node from the arch; organised in 64-bit words). Kept in the energy cache next
    to the layer energies (hwsim.energy.access_key; network_energy fills it when it maps),
    so pricing needs CACTI only for a value not cached yet."""
    from .energy import EnergyCache, access_key, cache_path_for
    nodes, node, sha = _arch_nodes(arch_file)
    cache = EnergyCache(cache_path_for(arch_file))
    hit = cache.get_access(access_key(sha, component))
    if hit is not None:
        return hit
    n = nodes.get(component)
    if n is None:
        raise ConfigError(f"arch file {str(arch_file)!r}: no component {component!r}")
    where = f"arch file {str(arch_file)!r}: field arch.nodes.{component}"
    size = _arith(n.get("size"), where + ".size")
    extra = n.get("extra_attributes_for_component_model") or {}
    banks = int(_arith(extra.get("n_banks", 1), where + ".n_banks"))
    if not (math.isfinite(size) and size >= 64):
        raise ConfigError(f"{where}.size = {size:g} bits: too small for 64-bit words")
    try:
        importlib.import_module("hwcomponents_cacti")  # the hardware tools (not on GPU images)
    except ImportError:
        raise ConfigError(f"{where}: SECDED pricing needs the 64-bit access energy of "
                          f"{component}, which is not in the energy cache "
                          f"{cache_path_for(arch_file)} and CACTI (hwcomponents_cacti) is not "
                          "installed; run `hwsim energy --fill-cache --arch ARCH` where it is, or "
                          "pass access_pJ in the protection") from None
    from .accelforge_backend import sram_read_energy_pJ
    e = sram_read_energy_pJ(int(size), 64, node or DEFAULT_NODE, max(1, banks))
    cache.put(access_key(sha, component), {"access_pJ": e, "width_bits": 64,
                                           "size_bits": int(size), "n_banks": max(1, banks),
                                           "tech_node": node or DEFAULT_NODE})
    return e
