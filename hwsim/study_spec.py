"""Study files: declarative YAML mapped 1:1 onto typed dataclasses. Every error names the
file, the key path (e.g. methods[2].quantizer) and the valid choices."""
from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from hwsim.models.attacks import DEFAULT_ATTACK_BATCH, DEFAULT_STOP_RULE, STOP_RULES
from hwsim.models.data import DATASETS
from hwsim.models.device import INFERENCE_PRECISIONS, check_device_name
from hwsim.models.errors import ConfigError
from hwsim.models.networks import NETWORKS
from hwsim.models.quant import QUANTIZERS

from .ber import check_voltage
from .chips import faults_from_yaml
from .scenario import Scenario


class _Reader:
    def __init__(self, file: Path):
        self.file = file

    def fail(self, path: str, msg: str):
        raise ConfigError(f"{self.file}: {path}: {msg}")

    def mapping(self, d, path: str, allowed: list[str], required: tuple = ()) -> dict:
        if d is None:
            d = {}
        if not isinstance(d, dict):
            self.fail(path or "(top level)", f"expected a mapping with keys {', '.join(allowed)}")
        for k in d:
            if k not in allowed:
                near = difflib.get_close_matches(str(k), allowed, n=1)
                hint = f" (did you mean {near[0]!r}?)" if near else ""
                self.fail(f"{path}.{k}".lstrip("."),
                          f"unknown key{hint}; valid keys: {', '.join(allowed)}")
        for k in required:
            if k not in d:
                self.fail(f"{path}.{k}".lstrip("."), "required key is missing")
        return d

    def choice(self, v, path, choices):
        if v not in choices:
            self.fail(path, f"{v!r} is not valid; valid: {', '.join(map(str, choices))}")
        return v

    def number(self, v, path, lo=None, hi=None, integer=False):
        ok = isinstance(v, int) if integer else isinstance(v, (int, float))
        if isinstance(v, bool) or not ok:
            self.fail(path, f"{v!r} must be {'an integer' if integer else 'a number'}")
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            self.fail(path, f"{v!r} is out of range [{lo}, {hi}]")
        return v


@dataclass
class Method:
    name: str
    quantizer: str
    bits: int = 4
    bfn: bool = False
    params: dict = field(default_factory=dict)
    checkpoint: str | None = None  # use an existing checkpoint instead of training
    layer_bits: dict = field(default_factory=dict)  # {layer: bits} overriding bits
    act_bfn: bool = False  # bit-flip noise on the 8-bit activations too (issue 22)
    adv_flips: int = 0  # adversarial training with BFA in the loop (models/adversarial.py)


@dataclass
class AssignmentPoint:
    """A per-layer voltage assignment (`hwsim optimize-voltages --out`) evaluated on a study
    method's checkpoint: one results row labelled `label` (hwsim.assignments.assignment_point)."""
    method: str
    file: str
    label: str


@dataclass
class Training:
    epochs: int = 15
    batch_size: int = 64
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    bfn_rate: float = 5e-3  # p_o for methods with bfn: true (paper Sec. 3.4)
    act_bfn_rate: float = 2e-3  # activation bit-flip rate for methods with act_bfn: true
    init_from: str | None = None  # e.g. a float checkpoint: fine-tune every method from it
    threads: int | None = None


@dataclass
class Voltages:
    min: float = 0.35
    max: float = 0.8
    step: float = 0.01


@dataclass
class MonteCarlo:
    realizations: int = 50
    ci_target: float | None = 0.005


@dataclass
class Attacks:
    """BFA settings of a study. A study file that states attack_batch keeps it; the default
    follows the paper (64). stop_rule: 'lt11' (< 11%) or 'le10.1' (<= 10.1%, the authors'
    code; it also reports the 'lt11' counts of the same runs)."""
    bfa_seeds: int = 0  # 0 = no BFA
    attack_batch: int = DEFAULT_ATTACK_BATCH
    max_flips: int = 500
    stop_rule: str = DEFAULT_STOP_RULE

    def settings(self, seed: int) -> dict:
        """What an attacks.json entry was computed with (the stop rule only when not the
        default, so entries written before it existed still match)."""
        s = {"seeds": self.bfa_seeds, "attack_batch": self.attack_batch,
             "max_flips": self.max_flips, "seed": seed}
        if self.stop_rule != DEFAULT_STOP_RULE:
            s["stop_rule"] = self.stop_rule
        return s

    def kwargs(self) -> dict:
        """bfa_run / bfa_nflip keyword arguments of these settings."""
        return {"attack_batch": self.attack_batch, "max_flips": self.max_flips,
                "rule": self.stop_rule}


@dataclass
class ReferenceRow:
    """Published figures for one method, shown next to ours in summary.md (percentages)."""
    method: str
    clean_acc: float | None = None
    acc_at_ber: dict = field(default_factory=dict)  # bit error rate -> accuracy %
    bfa_n_flip: float | None = None
    energy_uJ: float | None = None  # energy per inference at nominal voltage


@dataclass
class Reference:
    source: str
    rows: list[ReferenceRow]


@dataclass
class Study:
    name: str
    file: Path
    data: str
    data_root: str | None
    network: str
    methods: list[Method]
    training: Training
    arch: str
    ber_model: str | None
    voltages: Voltages
    monte_carlo: MonteCarlo
    attacks: Attacks
    bers: list[float] = field(default_factory=list)
    seed: int = 0
    act_bits: int = 8
    results_dir: str | None = None
    reference: Reference | None = None
    device: str = "cpu"  # where training and evaluation run; `hwsim study --device` overrides
    # auto | fp32 | bf16 (models/device.py): bf16 trains and evaluates under bfloat16
    # autocast; like the device an execution choice (`hwsim study --precision` overrides)
    precision: str = "auto"
    faults: Any = None  # hwsim.chips.Faults: transient (default) or persistent chips
    # hwsim.scenario.Scenario: which voltage domains the swept voltage drives, and their
    # protection; every method is swept under each (default: the weight memory, unprotected)
    scenarios: list = field(default_factory=lambda: [Scenario()])
    # a cross-accelerator study (hwsim.accelerators): arch files the methods' checkpoints are
    # priced on, accuracy copied from the results CSV `accuracy_from` (never re-evaluated)
    accelerators: list[str] = field(default_factory=list)
    accuracy_from: str | None = None
    # per-layer voltage assignments evaluated as one point each beside the sweeps
    assignments: list[AssignmentPoint] = field(default_factory=list)

    @property
    def out_dir(self) -> Path:
        """studies/results/NAME next to the study file, or `results_dir` (resolved from the
        study file's folder; load_study has checked that it stays inside that folder)."""
        return self.file.parent / (self.results_dir or Path("results") / self.name)


TOP = ["name", "description", "seed", "data", "network", "methods", "training", "arch",
       "ber_model", "voltages", "monte_carlo", "attacks", "bers", "act_bits", "results_dir",
       "reference", "device", "precision", "faults", "scenarios", "accelerators", "accuracy_from",
       "assignments"]


def _sub(r: _Reader, d: dict, key: str, cls, checks: dict) -> Any:
    """Read a flat section into dataclass `cls`; `checks` maps field -> validator."""
    raw = r.mapping(d.get(key), key, [f.name for f in fields(cls)])
    kw = {}
    for k, v in raw.items():
        kw[k] = checks[k](v, f"{key}.{k}") if k in checks and v is not None else v
    return cls(**kw)


def _reference(r: _Reader, d) -> Reference | None:
    if d is None:
        return None
    d = r.mapping(d, "reference", ["source", "rows"], required=("source", "rows"))
    if not isinstance(d["rows"], list) or not d["rows"]:
        r.fail("reference.rows", "must be a non-empty list, e.g. [{method: wcat, clean_acc: 91.9}]")
    rows = []
    for i, row in enumerate(d["rows"]):
        p = f"reference.rows[{i}]"
        row = r.mapping(row, p, [f.name for f in fields(ReferenceRow)], required=("method",))
        acc = row.get("acc_at_ber") or {}
        if not isinstance(acc, dict):
            r.fail(f"{p}.acc_at_ber", "must map bit error rate -> accuracy %, e.g. {0.01: 88.6}")
        acc = {float(r.number(b, f"{p}.acc_at_ber", 1e-15, 0.5)):
               float(r.number(a, f"{p}.acc_at_ber[{b}]", 0, 100)) for b, a in acc.items()}
        opt = lambda k, hi=None: (None if row.get(k) is None
                                  else float(r.number(row[k], f"{p}.{k}", 0, hi)))
        rows.append(ReferenceRow(str(row["method"]), opt("clean_acc", 100), acc,
                                 opt("bfa_n_flip"), opt("energy_uJ")))
    return Reference(str(d["source"]), rows)


NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")


def _name(r: _Reader, name) -> str:
    """A study name is one folder name under results/: no path separators, not empty."""
    if not isinstance(name, (str, int)) or not NAME_RE.fullmatch(str(name)):
        r.fail("name", f"{name!r} is not a valid study name: use letters, digits and _ . + - "
                       "(starting with a letter or digit), e.g. resnet20_cifar10; it names the "
                       "folder results/NAME")
    return str(name)


def _results_dir(r: _Reader, value) -> str | None:
    """`results_dir` relative to the study file's folder, never outside it."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        r.fail("results_dir", f"{value!r} must be a non-empty relative path (or null)")
    base = r.file.parent.resolve()
    target = (base / value).resolve()
    if target == base or base not in target.parents:
        r.fail("results_dir", f"{value!r} leaves the study file's folder {str(base)!r}; give "
                              "a path inside it, e.g. results/my_run (or null for results/NAME)")
    return os.path.relpath(target, base)


def _device(r: _Reader, value) -> str:
    """cpu, cuda, cuda:N or auto; whether this machine has that GPU is checked at run time."""
    try:
        return check_device_name(value)
    except ConfigError as e:
        r.fail("device", str(e).removeprefix("device "))


def _network(r: _Reader, value, base: Path) -> str:
    """A registry name, or a user model spec (path/to/file.py:factory, relative to the study
    file's folder; torchvision:NAME; timm:NAME). Loading a user file runs its code: it is the
    study author's own code, unlike arch files and checkpoints, which stay data."""
    from hwsim.models.usercode import is_spec, parse_spec
    if not is_spec(value):
        return r.choice(value, "network", NETWORKS.names() +
                        ["path/to/file.py:factory", "torchvision:NAME", "timm:NAME"])
    head, factory = str(value).rsplit(":", 1)
    if head.endswith(".py"):
        path = head if Path(head).is_absolute() else os.path.normpath(base / head)
        if not Path(path).is_file():
            r.fail("network", f"{value!r}: file {path!r} does not exist")
        value = f"{path}:{factory}"
    try:
        parse_spec(value, "network")
    except ConfigError as e:
        r.fail("network", str(e).removeprefix("network "))
    return value


def _layer_bits(r, d, path: str, network: str) -> dict:
    """A method's {layer: bits} (mixed precision), every name a Conv2d/Linear of the network."""
    if d is None:
        return {}
    if not isinstance(d, dict) or not d:
        r.fail(path, "must be a mapping of layer name to weight bits, e.g. {conv1: 8}")
    import torch.nn as nn
    from hwsim.models.networks import create_model
    from hwsim.models.usercode import build_user_model, is_spec, model_entry
    net = build_user_model(model_entry(network, 10)) if is_spec(network) else \
        create_model(network)  # layer names do not depend on classes or channels
    names = [n for n, m in net.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    for k, v in d.items():
        if k not in names:
            r.fail(f"{path}.{k}", f"{network} has no Conv2d/Linear layer {k!r}; layers: "
                                  f"{', '.join(names[:10])}{' ...' if len(names) > 10 else ''}")
        r.number(v, f"{path}.{k}", 2, 8, integer=True)
    return dict(d)


def load_study(path: str | Path) -> Study:
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"study file {str(file)!r} does not exist")
    r = _Reader(file)
    try:
        d = yaml.safe_load(file.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{file}: not valid YAML: {e}") from None
    d = r.mapping(d, "", TOP, required=("name", "network", "methods"))

    data = r.mapping(d.get("data", {"name": "digits"}), "data", ["name", "root"])
    data_name = r.choice(data.get("name", "digits"), "data.name", DATASETS)
    if data_name == "digits" and data.get("root"):
        r.fail("data.root", "digits is bundled with scikit-learn and reads no files; drop "
                            "root (it is for cifar10)")
    network = _network(r, d["network"], file.parent)
    if not isinstance(d["methods"], list) or not d["methods"]:
        r.fail("methods", "must be a non-empty list of methods")
    methods, seen = [], set()
    for i, m in enumerate(d["methods"]):
        p = f"methods[{i}]"
        m = r.mapping(m, p, [f.name for f in fields(Method)], required=("quantizer",))
        q = r.choice(m["quantizer"], f"{p}.quantizer", QUANTIZERS.names())
        bits = r.number(m.get("bits", 4), f"{p}.bits", 2, 8, integer=True)
        bfn, act_bfn = m.get("bfn", False), m.get("act_bfn", False)
        for key, flag in (("bfn", bfn), ("act_bfn", act_bfn)):
            if not isinstance(flag, bool):
                r.fail(f"{p}.{key}", f"{flag!r} must be true or false")
        params = m.get("params") or {}
        if not isinstance(params, dict):
            r.fail(f"{p}.params", "must be a mapping of quantizer hyper-parameters")
        name = str(m.get("name") or (q + ("+bfn" if bfn else "")))
        if name in seen:
            r.fail(f"{p}.name", f"{name!r} is used twice; give each method a unique name")
        seen.add(name)
        try:  # validate hyper-parameters now, not after an hour of training
            QUANTIZERS.get(q)(bits=bits, **params)
        except TypeError as e:
            r.fail(f"{p}.params", f"not accepted by quantizer {q!r} ({e})")
        except ConfigError as e:
            r.fail(f"{p}.params", str(e))
        layer_bits = _layer_bits(r, m.get("layer_bits"), f"{p}.layer_bits", network)
        adv = r.number(m.get("adv_flips", 0), f"{p}.adv_flips", 0, None, integer=True)
        methods.append(Method(name, q, bits, bfn, params, m.get("checkpoint"), layer_bits,
                              act_bfn, adv))

    pos_int = lambda lo: (lambda v, p: r.number(v, p, lo, None, integer=True))
    pos = lambda v, p: r.number(v, p, 1e-12)
    training = _sub(r, d, "training", Training, {
        "epochs": pos_int(1), "batch_size": pos_int(1), "lr": pos, "momentum":
        lambda v, p: r.number(v, p, 0, 1), "weight_decay": lambda v, p: r.number(v, p, 0),
        "bfn_rate": lambda v, p: r.number(v, p, 0, 0.5),
        "act_bfn_rate": lambda v, p: r.number(v, p, 0, 0.5), "threads": pos_int(1)})
    volt = lambda v, p: check_voltage(v, f"{file}: {p}")
    voltages = _sub(r, d, "voltages", Voltages, {"min": volt, "max": volt, "step": pos})
    if voltages.min > voltages.max:
        r.fail("voltages", f"min {voltages.min} > max {voltages.max}")
    mc = _sub(r, d, "monte_carlo", MonteCarlo, {"realizations": pos_int(2), "ci_target": pos})
    attacks = _sub(r, d, "attacks", Attacks, {"bfa_seeds": pos_int(0),
                                              "attack_batch": pos_int(1),
                                              "max_flips": pos_int(1),
                                              "stop_rule": lambda v, p: r.choice(
                                                  v, p, list(STOP_RULES))})
    bers = d.get("bers") or []
    if not isinstance(bers, list):
        r.fail("bers", "must be a list of bit error rates, e.g. [0.001, 0.01]")
    bers = [float(r.number(b, f"bers[{i}]", 1e-15, 0.5)) for i, b in enumerate(bers)]
    base = file.parent

    def resolve(s):
        """Relative paths: as given if they exist from here, else relative to the study file."""
        if s is None or Path(s).is_absolute() or Path(s).exists():
            return s
        return os.path.normpath(base / s) if (base / s).exists() else s
    accelerators, accuracy_from = _accelerators(r, d, methods, resolve)
    if "arch" not in d and not accelerators:
        r.fail("arch", "required key is missing")
    arch = resolve(str(d["arch"])) if "arch" in d else accelerators[0]
    if not Path(arch).is_file():
        r.fail("arch", f"architecture file {arch!r} does not exist (see arch/ for shipped ones)")
    ber_model = resolve(d.get("ber_model"))
    faults = faults_from_yaml(d.get("faults"), r.fail, base)
    scenarios = _scenarios(r, d.get("scenarios"), arch)
    assignments = _assignments(r, d.get("assignments"), methods, scenarios, faults, resolve)
    return Study(name=_name(r, d["name"]), file=file, data=data_name, data_root=data.get("root"),
                 network=network, methods=methods, training=training, arch=arch,
                 ber_model=ber_model, voltages=voltages, monte_carlo=mc, attacks=attacks,
                 bers=bers,
                 seed=r.number(d.get("seed", 0), "seed", 0, integer=True),
                 act_bits=r.number(d.get("act_bits", 8), "act_bits", 1, 32, integer=True),
                 results_dir=_results_dir(r, d.get("results_dir")),
                 reference=_reference(r, d.get("reference")),
                 device=_device(r, d.get("device", "cpu")),
                 precision=r.choice(d.get("precision", "auto"), "precision",
                                    INFERENCE_PRECISIONS),
                 faults=faults, scenarios=scenarios, accelerators=accelerators,
                 accuracy_from=accuracy_from, assignments=assignments)


CROSS_UNUSED = ["arch", "training", "bers", "attacks", "faults", "scenarios", "assignments"]


def _accelerators(r: _Reader, d: dict, methods: list, resolve) -> tuple[list[str], str | None]:
    """`accelerators: [arch files]` + `accuracy_from: results.csv` (hwsim.accelerators): both
    or neither; every method then names its `checkpoint`, and the keys of a training/sweep
    study that would be ignored are refused."""
    acc, src = d.get("accelerators"), d.get("accuracy_from")
    if acc is None and src is None:
        return [], None
    if acc is None or src is None:
        r.fail("accelerators" if acc is None else "accuracy_from", "a cross-accelerator study "
               "needs both accelerators (arch files) and accuracy_from (a results CSV)")
    if not isinstance(acc, list) or not acc or not all(isinstance(a, str) for a in acc):
        r.fail("accelerators", f"{acc!r} must be a non-empty list of arch files, e.g. "
                               "[../arch/eyeriss_sram.yaml, ../arch/tpu_sram.yaml]")
    for key in CROSS_UNUSED:
        if key in d:
            r.fail(key, "not used by a cross-accelerator study (accelerators:): accuracy is "
                        "copied from accuracy_from, energy priced on each accelerator")
    files = []
    for i, a in enumerate(acc):
        f = resolve(a)
        if not Path(f).is_file():
            r.fail(f"accelerators[{i}]", f"architecture file {f!r} does not exist (see arch/ "
                                         "for shipped ones)")
        if Path(f).stem in {Path(x).stem for x in files}:
            r.fail(f"accelerators[{i}]", f"{a!r}: an accelerator named {Path(f).stem!r} is "
                                         "listed twice (rows are labelled by file name)")
        files.append(f)
    if not isinstance(src, str) or not Path(resolve(src)).is_file():
        r.fail("accuracy_from", f"{src!r}: no such results CSV (a study's results.csv)")
    for i, m in enumerate(methods):
        if not m.checkpoint:
            r.fail(f"methods[{i}].checkpoint", "required in a cross-accelerator study: the "
                                               "checkpoint whose swept points accuracy_from holds")
        if not Path(resolve(m.checkpoint)).is_file():
            r.fail(f"methods[{i}].checkpoint", f"{m.checkpoint!r} does not exist")
        m.checkpoint = resolve(m.checkpoint)
    return files, resolve(src)


def _scenarios(r: _Reader, v, arch: str) -> list:
    """`scenarios: [{domains: [..], protection: ..}, ...]` (an empty mapping: the default),
    domain names checked against the arch file's `hwsim:` domains."""
    if v is None:
        return [Scenario()]
    if not isinstance(v, list) or not v:
        r.fail("scenarios", "must be a non-empty list of mappings with keys domains, protection")
    from .accelforge_backend import load_arch
    names = [dm.name for dm in load_arch(arch, accelforge_loader=False)[1].domains]
    out = []
    for i, item in enumerate(v):
        m = r.mapping(item, f"scenarios[{i}]", ["domains", "protection"])
        try:
            sc = Scenario.of(m.get("domains"), m.get("protection"))
        except ConfigError as e:
            r.fail(f"scenarios[{i}]", str(e))
        bad = [n for n in sc.domains if n not in names]
        if bad:
            r.fail(f"scenarios[{i}].domains", f"{', '.join(bad)}: not a domain of {arch}; "
                   f"valid: {', '.join(names)}")
        if sc in out:
            r.fail(f"scenarios[{i}]", "listed twice")
        out.append(sc)
    return out


def _assignments(r: _Reader, v, methods: list, scenarios: list, faults, resolve) -> list:
    """`assignments: [{method: NAME, file: A.yaml, label: ...}]`: each file read (safe YAML,
    voltages checked) now; its layers are checked against the checkpoint when it runs."""
    if v is None:
        return []
    if not isinstance(v, list) or not v:
        r.fail("assignments", "must be a non-empty list of mappings with keys method, file "
                              "(and optionally label)")
    if faults is not None and faults.model == "persistent":
        r.fail("assignments", "per-layer assignments are evaluated with transient faults; a "
                              "persistent-chips study (faults:) has none")
    from .assignments import PER_LAYER, read_assignment
    names = [m.name for m in methods]
    taken = {sc.label(n) for sc in scenarios for n in names}
    out = []
    for i, item in enumerate(v):
        p = f"assignments[{i}]"
        m = r.mapping(item, p, ["method", "file", "label"], required=("method", "file"))
        if m["method"] not in names:
            r.fail(f"{p}.method", f"{m['method']!r} is not a method of this study; valid: "
                                  f"{', '.join(names)}")
        f = resolve(str(m["file"]))
        if not Path(f).is_file():
            r.fail(f"{p}.file", f"{f!r} does not exist (write one with `hwsim "
                                "optimize-voltages --out`)")
        try:
            read_assignment(f)
        except ConfigError as e:
            r.fail(f"{p}.file", str(e))
        label = str(m.get("label") or f"{m['method']} [{PER_LAYER}]")
        if label in taken:
            r.fail(f"{p}.label", f"{label!r} is already the label of another row set; give "
                                 "each assignment its own label")
        taken.add(label)
        out.append(AssignmentPoint(m["method"], f, label))
    return out
