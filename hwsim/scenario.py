"""What a swept supply voltage drives: the voltage domains set to it and their protection.

A sweep point is (network, V). The Scenario says which of the arch file's voltage domains
(hwsim.domains) run at V (the others stay at their nominal supply) and how the weights they
store are protected (`none`, `secded`, `msb:K`; the fault model is
hwsim.models.protection, the price hwsim.domain_energy). Faults follow the domains: weights
see bit errors only when a scaled domain holds weights, activations only when a scaled domain
holds inputs or outputs (transient, per inference: hwsim.models.activations). The default
scenario (every weight-holding domain, no protection) is hwsim's behaviour before domains
existed, bit for bit.

Copies in series: a value read through n scaled memories that hold it (e.g. weights in the
WeightSRAM backing store and again in a PE weight scratchpad, both at V) passes n independent
chances to flip; a bit is wrong when it flipped an odd number of times, so the rate applied is
    p_n = (1 - (1 - 2p)^n) / 2        (p_1 = p; p_2 = 2p(1-p))
with one fault pattern per realization (a scratchpad refill would draw new cells; holding
one pattern per inference is the same marginal error rate per read).
"""
from __future__ import annotations

from dataclasses import dataclass

from hwsim.models.errors import ConfigError

from .domain_energy import domains_of, parse_protection, price

ACTIVATIONS = ("input", "output")


def series_ber(p: float, n: int) -> float:
    """Error rate of a bit stored in `n` memories in series, each flipping it with rate p
    (odd number of flips): (1 - (1 - 2p)^n) / 2; exactly p for n = 1, 0 for n = 0."""
    if n <= 1:
        return p if n == 1 else 0.0
    return (1.0 - (1.0 - 2.0 * p) ** n) / 2.0


@dataclass(frozen=True)
class Scenario:
    """`domains`: names of the domains driven by the swept voltage (empty: every domain that
    holds weights); `protection`: 'none' | 'secded' | 'msb:K' for the weights they store."""
    domains: tuple[str, ...] = ()
    protection: str = "none"

    @classmethod
    def of(cls, domains=None, protection=None, what: str = "") -> "Scenario":
        """From CLI/YAML values: domains as a list or 'a,b' (None/'' = default), protection
        as a string (None = none). Errors name `what` (e.g. the YAML field)."""
        pre = f"{what}: " if what else ""
        if isinstance(domains, str):
            domains = [d.strip() for d in domains.split(",") if d.strip()]
        if domains is not None and not (isinstance(domains, (list, tuple))
                                        and all(isinstance(d, str) and d for d in domains)):
            raise ConfigError(f"{pre}domains {domains!r}: a list of domain names")
        names = tuple(dict.fromkeys(domains or ()))
        prot = str(parse_protection(protection, f"{pre}protection".strip()))
        return cls(names, prot)

    @property
    def is_default(self) -> bool:
        return not self.domains and self.protection == "none"

    def tag(self) -> str:
        """'' for the default; else e.g. 'weights+activations, secded'."""
        if self.is_default:
            return ""
        parts = (["+".join(self.domains)] if self.domains else []) + \
            ([self.protection] if self.protection != "none" else [])
        return ", ".join(parts)

    def label(self, method: str) -> str:
        """The results label of `method` under this scenario ('WCAT+BFN [secded]')."""
        return f"{method} [{self.tag()}]" if self.tag() else method

    def scaled(self, ne) -> tuple:
        """The Domain objects of `ne` (a NetworkEnergy) driven by the swept voltage."""
        doms = domains_of(ne)
        if not self.domains:
            return tuple(d for d in doms if "weight" in d.holds)
        by_name = {d.name: d for d in doms}
        bad = [n for n in self.domains if n not in by_name]
        if bad:
            raise ConfigError(f"domain(s) {', '.join(bad)} not in arch file {ne.arch_file!r}; "
                              f"its domains: {', '.join(by_name)}")
        return tuple(by_name[n] for n in self.domains)

    def copies(self, ne, tensors) -> int:
        """How many scaled memories (components) hold any of `tensors`."""
        return sum(len(d.components) for d in self.scaled(ne)
                   if any(t in d.holds for t in tensors))

    def holds(self, ne, tensors) -> bool:
        return self.copies(ne, tensors) > 0

    def bers(self, ne, v: float, ber_model) -> tuple[float, float]:
        """(weight BER, activation BER) at swept voltage `v`: 0 where no scaled memory holds
        that tensor, else the series rate of its copies (module docstring)."""
        ber = ber_model.ber(v)
        return (series_ber(ber, self.copies(ne, ("weight",))),
                series_ber(ber, self.copies(ne, ACTIVATIONS)))

    def energy_columns(self, ne, v: float) -> dict:
        """The energy columns of a results row at `v`: total and weight-memory energy, the
        two savings (hwsim.domain_energy.price), and what this scenario is."""
        doms = self.scaled(ne)
        p = price(ne, {d.name: v for d in doms}, self.protection)
        weight = sum(p["domains"][d.name]["uJ"] for d in doms if "weight" in d.holds)
        return {"energy_uJ": p["total_uJ"], "energy_weight_mem_uJ": weight,
                "energy_nominal_uJ": ne.total_uJ, "domains": "+".join(d.name for d in doms),
                "protection": self.protection, "saving_vs_nominal": p["saving_vs_nominal"],
                "saving_vs_errorfree": p["saving_vs_errorfree"]}


def activation_estimate(model, xy, weight_ber: float, act_ber: float, scenario: Scenario, *,
                        realizations: int, seed: int, clean: float, stored):
    """A sweep point whose scaled domains hold activations: plain Monte Carlo over
    `realizations` passes, each with transient 8-bit activation faults at `act_ber` and a
    persistent weight fault pattern at `weight_ber` (hwsim.models.activations), as an
    hwsim.models.estimate.Estimate ('mc'; expected_flips counts weight bits). `stored`: the
    model's StoredWeights."""
    from hwsim.models.activations import evaluate_under_activation_faults
    from hwsim.models.estimate import Estimate
    from hwsim.models.evaluate import run_context
    from hwsim.models.faultplan import FaultPlan
    r = evaluate_under_activation_faults(model, xy, act_ber, weight_ber=weight_ber,
                                         realizations=max(2, realizations), seed=seed,
                                         protection=scenario.protection, stored=stored)
    flips = FaultPlan(stored, weight_ber, scenario.protection).expected_flips()
    return Estimate(act_ber, clean, r.mean, r.std, r.ci95, r.realizations, "mc", flips,
                    **run_context(model))


def component_points(study, df, sidecar: dict) -> dict[str, dict[str, float]]:
    """Per-component energy (uJ) of chosen points of a study's results `df`: every
    label at nominal voltage once (the first label), then each label at its lowest-energy
    voltage within 1 point of clean (hwsim.pareto.lowest_energy_within) under its scenario.
    `sidecar`: the results' energy JSON ({label: NetworkEnergy dict})."""
    from .energy import network_energy
    from .pareto import lowest_energy_within
    from .workload import LayerShape
    scen = {sc.label(m.name): sc for sc in study.scenarios for m in study.methods}
    out: dict[str, dict[str, float]] = {}
    for _, row in lowest_energy_within(df).iterrows():
        lab = row["method"]
        if lab not in scen or lab not in sidecar:
            continue
        shapes = [LayerShape.from_dict(layer["shape"]) for layer in sidecar[lab]["layers"]]
        ne = network_energy(study.arch, shapes, progress=False)
        if not out:
            out["nominal"] = dict(ne.components_uJ)
        v = float(row["v_min_V"])
        sc = scen[lab]
        out[f"{lab} @ {v:.2f} V"] = price(ne, {d.name: v for d in sc.scaled(ne)},
                                          sc.protection)["components_uJ"]
    return out
