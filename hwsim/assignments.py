"""Per-layer voltage assignment files (issue 22, item 4): the YAML document
`hwsim optimize-voltages --out` writes (optimize_voltages: hwsim.voltages' search, with its
sensitivity resumable and reusable from an earlier file), and its uses: `hwsim eval
--assignment` (evaluate_assignment), `hwsim sweep --assignment` and a study's `assignments:`
(assignment_point: one results row beside the uniform sweep points). Assignment files are
untrusted input: safe YAML only, every voltage checked, layers matched to the checkpoint.
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

import yaml

from hwsim.models.checkpoint import method_name
from hwsim.models.device import resolve_device
from hwsim.models.errors import ConfigError
from hwsim.models.estimate import Estimate
from hwsim.models.quant import quant_layers

from .ber import V_NOMINAL, BerModel, check_voltage
from .domain_energy import domains_of, price
from .domains import warn_arch
from .energy import NetworkEnergy
from .files import read_json, read_partial, read_yaml, write_partial, write_text_atomic
from .sweep import (append_rows, checkpoint_test_data, energy_sidecar, file_sha256,
                    load_quantized, model_energy, point_row, read_rows, update_sidecar)
from .voltages import (SENS_MODELS, Evaluator, assignment_seed, layer_energies, optimize,
                       sensitivity)

FORMAT = "hwsim-voltage-assignment/1"


def _eval_setup(checkpoint, data, data_root, device, with_test: bool = True):
    """(model on `device`, config, test data, or None when not `with_test`)."""
    if not Path(checkpoint).is_file():
        raise ConfigError(f"checkpoint {str(checkpoint)!r} does not exist")
    model, config = load_quantized(checkpoint, "per-layer voltages need")
    test = checkpoint_test_data(config, data, data_root) if with_test else None
    model.to(resolve_device(device))
    return model, config, test


def optimize_voltages(checkpoint: str, arch: str, max_drop_points: float, grid: list[float],
                      *, out: str | Path | None = None, seed: int = 0, realizations: int = 50,
                      sens_realizations: int = 10, ci_target: float | None = None,
                      sens_images: int | None = None, act_bits: int = 8,
                      ber_model: BerModel | None = None,
                      data_root: str | None = None, data=None, device: str = "cpu",
                      command: str = "", progress: bool = True, estimate=None,
                      sens_model: str = "measured",
                      sensitivity_from: str | Path | None = None) -> dict:
    """Optimise `checkpoint`'s per-layer voltages on `arch` (module docstring) and return the
    assignment document; written atomically as YAML to `out` when given.
    `sensitivity_from`: an assignment this command wrote for the same checkpoint, grid and
    BER model with at least this max drop: its per-layer sensitivity is reused (step 1
    skipped; the recorded sensitivity_images carried over)."""
    ber_model = ber_model or BerModel()
    if sens_model not in SENS_MODELS:
        raise ConfigError(f"sens-model {sens_model!r}: valid: {', '.join(SENS_MODELS)}")
    model, config, test = _eval_setup(checkpoint, data, data_root, device)
    ev = Evaluator(model, test, ber_model, estimate=estimate)
    recorded, sens_n, known = None, None, None
    verification = {"seed": seed, "realizations": realizations, "ci_target": ci_target,
                    "images": len(ev.xy[1])}
    if sensitivity_from is not None:
        if sens_images is not None:
            raise ConfigError("--sens-images with --sensitivity-from: the sensitivity is "
                              "reused, not measured")
        recorded, sens_n = recorded_sensitivity(sensitivity_from, checkpoint, grid,
                                                max_drop_points, ber_model, ev.layers)
        known = recorded_uniform_points(sensitivity_from, verification)
        sens_n = sens_n or len(ev.xy[1])  # files from before --sens-images: all images
        sens_ev = ev
    else:
        sens_ev = ev if sens_images is None else ev.subset(sens_images, seed)  # checked first
        sens_n = len(sens_ev.xy[1])
    energy = model_energy(arch, model, config["quantizer"]["bits"], act_bits,
                          progress=progress)
    vn = energy.v_nominal
    for v in grid:
        check_voltage(v, "--grid voltage", vn)
    warn_arch(arch, (), ber_model)  # once per run (hwsim.domains)
    law = layer_energies(energy, ev.layers)
    energies = law.nominal()
    log = (lambda s: print(s, file=sys.stderr)) if progress else None
    partial = None
    if recorded is None and out is not None and max_drop_points > 0:
        partial = partial_sensitivity_file(out)
        recorded = resumable_sensitivity(
            sens_ev, grid, max_drop_points / 100, sens_realizations, seed, log, partial,
            {"checkpoint_sha256": file_sha256(checkpoint), "grid": [min(grid), max(grid),
             len(grid)], "ber_model": vars(ber_model) | {}, "max_drop_points": max_drop_points,
             "sensitivity_images": sens_n, "sens_realizations": sens_realizations, "seed": seed})
    res = optimize(ev, law, vn, grid, max_drop_points / 100, seed=seed,
                   realizations=realizations, sens_realizations=sens_realizations,
                   ci_target=ci_target, log=log, sens_ev=sens_ev, sens_model=sens_model,
                   sens=recorded, uniform_known=known)
    doc = {
        "format": FORMAT, "checkpoint": str(checkpoint),
        "checkpoint_sha256": file_sha256(checkpoint), "method": method_name(config),
        "arch": str(arch), "v_nominal": vn, "ber_model": vars(ber_model) | {},
        "max_drop_points": max_drop_points, "grid": [min(grid), max(grid), len(grid)],
        "seed": seed, "command": command, "search": "greedy (additive per-layer drops)",
        "sensitivity_images": sens_n, "sensitivity_model": sens_model,
        **({"sensitivity_from": str(sensitivity_from)} if sensitivity_from else {}),
        "result_from": res.source,
        "layers": {n: {"voltage": res.chosen.volts[n], "ber": ber_model.ber(res.chosen.volts[n]),
                       "energy_nominal_uJ": energies[n],
                       "energy_uJ": law.layer(n, res.chosen.volts[n])}
                   for n in ev.layers},
        "energy_weight_domain_uJ": res.chosen.energy_uJ,
        "energy_weight_domain_nominal_uJ": sum(energies.values()),
        "accuracy": res.chosen.accuracy(),
        "uniform": {"voltage": next(iter(res.uniform.volts.values())),
                    "energy_weight_domain_uJ": res.uniform.energy_uJ,
                    "accuracy": res.uniform.accuracy()},
        "saving_vs_uniform": res.saving,
        "ceiling_flips_model": res.ceiling,
        "verification": verification,
        "uniform_points": {v: e.as_dict() for v, e in sorted(res.uniform_points.items())},
        "attempts": res.attempts,
        "sensitivity_drop_points": {n: {float(v): d * 100 for v, d in s.items()}
                                    for n, s in res.sensitivity.items()},
    }
    if out is not None:
        write_text_atomic(out, yaml.safe_dump(_plain(doc), sort_keys=False))
    if partial is not None:
        partial.unlink(missing_ok=True)
    return doc


def partial_sensitivity_file(out: str | Path) -> Path:
    """Where optimize-voltages keeps the layers measured so far while it writes `out`."""
    return Path(f"{out}.sensitivity.partial.json")


def resumable_sensitivity(sens_ev: Evaluator, grid, max_drop: float, realizations: int,
                          seed: int, log, partial: Path, settings: dict) -> dict:
    """sensitivity() with every measured layer saved to `partial` (JSON, atomically), and the
    layers already there reused when it was written with the same `settings` (checkpoint
    sha256, grid, BER model, max drop, images, realizations, seed); otherwise, or when it is
    not such a file, measured again."""
    def parse(layers: dict) -> dict:
        return {str(n): {float(v): float(d) for v, d in pts.items()}
                for n, pts in layers.items() if n in sens_ev.layers}
    done = read_partial(partial, settings, "layers", parse, log, what="layers")

    def save(name, drops):
        done[name] = drops
        write_partial(partial, settings, "layers", {
            n: {repr(float(v)): d for v, d in pts.items()} for n, pts in done.items()})
    return sensitivity(sens_ev, grid, max_drop, realizations, seed, log, done, save)


def recorded_sensitivity(path, checkpoint, grid, max_drop_points, ber_model, layers):
    """({layer: {V: drop fraction}}, test images it used) recorded in the assignment file
    `path`; ConfigError unless it was measured on the same checkpoint (sha256), grid and BER
    model, for the same layers, with a max drop >= `max_drop_points` (a layer's descent
    stops past the max drop, so a larger one needs points that were never measured)."""
    p, doc, rec = _section(path, "sensitivity_drop_points", "no sensitivity_drop_points (write "
                           "one with `hwsim optimize-voltages --out`)")
    want = {"checkpoint_sha256": file_sha256(checkpoint),
            "grid": [min(grid), max(grid), len(grid)], "ber_model": vars(ber_model) | {}}
    for key, value in want.items():
        got = doc.get(key)
        if key == "grid" and isinstance(got, list) and len(got) == 3:
            same = all(math.isclose(float(a), float(b), abs_tol=1e-9) for a, b in zip(got, value))
        else:
            same = got == value
        if not same:
            raise ConfigError(f"{p}: {key} {got!r} differs from this run's {value!r}; its "
                              "sensitivity does not apply")
    if not float(doc.get("max_drop_points", 0)) >= max_drop_points:
        raise ConfigError(f"{p}: measured for max drop {doc.get('max_drop_points')!r} points, "
                          f"less than {max_drop_points:g}; measure again")
    check_layers({str(n): 0 for n in rec}, layers, str(p), checkpoint)
    try:
        sens = {str(n): {float(v): float(d) / 100 for v, d in pts.items()}
                for n, pts in rec.items()}
    except (AttributeError, TypeError, ValueError):
        raise ConfigError(f"{p}: sensitivity_drop_points must map layer -> {{V: points}}") \
            from None
    return {n: sens[n] for n in layers}, doc.get("sensitivity_images")


def recorded_uniform_points(path, verification: dict) -> dict | None:
    """{V: Estimate} of the uniform points an assignment file recorded, when it was verified
    with the same seed, realizations, CI target and test-set size (`verification`; the
    checkpoint, grid and BER model are checked by recorded_sensitivity); else None."""
    doc = read_yaml(Path(path), "assignment")
    if not isinstance(doc, dict) or doc.get("verification") != verification \
            or not isinstance(doc.get("uniform_points"), dict):
        return None
    pts = doc["uniform_points"]
    fields = set(Estimate.__dataclass_fields__)
    recorded = {"device", "precision"}  # optional: files written before they were recorded
    numbers = ("clean", "mean", "std", "ci95", "realizations", "expected_flips")
    try:
        out = {float(v): Estimate(**{k: e[k] for k in fields if k in e or k not in recorded})
               for v, e in pts.items()}
        if not all(isinstance(getattr(e, k), (int, float)) and not isinstance(
                getattr(e, k), bool) for e in out.values() for k in numbers):
            raise TypeError
        return out
    except (KeyError, TypeError, ValueError):
        raise ConfigError(f"{path}: uniform_points must map V -> an accuracy estimate "
                          f"({', '.join(sorted(fields))})") from None


def _section(path, key: str, missing: str) -> tuple[Path, dict, dict]:
    """(path, document, its non-empty mapping `key`) of an assignment YAML (safe YAML);
    ConfigError '{path}: {missing}' when there is no such mapping."""
    p = Path(path)
    doc = read_yaml(p, "assignment")
    part = doc.get(key) if isinstance(doc, dict) else None
    if not isinstance(part, dict) or not part:
        raise ConfigError(f"{p}: {missing}")
    return p, doc, part


def _plain(obj):
    """Numbers as plain floats/ints (numpy scalars dumped by safe_dump would fail)."""
    if isinstance(obj, dict):
        return {str(k) if not isinstance(k, float) else k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, bool) or obj is None or isinstance(obj, str):
        return obj
    if isinstance(obj, int):
        return int(obj)
    return float(obj)


def read_assignment(path: str | Path) -> dict[str, float]:
    """{layer: V} of an assignment YAML (`layers: {name: {voltage: V}}` or `{name: V}`);
    safe YAML only, each voltage checked (check_voltage)."""
    return _read_assignment(path)[0]


def _read_assignment(path: str | Path) -> tuple[dict[str, float], dict]:
    """({layer: V}, the whole document) of an assignment YAML (read_assignment)."""
    p, doc, layers = _section(path, "layers", "expected a mapping `layers: {layer: {voltage: "
                              "V}}` (as `hwsim optimize-voltages --out` writes)")
    vn = doc.get("v_nominal", V_NOMINAL)
    vn = check_voltage(vn, f"{p}: v_nominal", v_nominal=None)
    out = {}
    for name, entry in layers.items():
        v = entry.get("voltage") if isinstance(entry, dict) else entry
        out[str(name)] = check_voltage(v, f"{p}: layers.{name}.voltage", vn)
    return out, doc


def check_layers(volts: dict[str, float], layers: list[str], where: str, checkpoint) -> None:
    """ConfigError unless `volts` names exactly the quantized layers of the checkpoint."""
    unknown = [n for n in volts if n not in layers]
    missing = [n for n in layers if n not in volts]
    if unknown or missing:
        what = (f"layer {unknown[0]!r} is not a quantized layer of {checkpoint}" if unknown
                else f"layer {missing[0]!r} of {checkpoint} has no voltage")
        raise ConfigError(f"{where}: {what}; its layers: {', '.join(layers)}")


def _volts_of(assignment) -> tuple[dict[str, float], str, dict]:
    """({layer: V}, where to name in errors, the document) of a YAML path or a dict."""
    if isinstance(assignment, dict):
        return dict(assignment), "assignment", {}
    volts, doc = _read_assignment(assignment)
    return volts, str(assignment), doc


def _assignment_setup(assignment, checkpoint, arch, act_bits, data, data_root, device,
                      progress, with_test: bool = True):
    """(volts, where, model, config, test or None, energy or None without `arch`): the
    assignment read, its layers checked against the checkpoint and its voltages against the
    arch's nominal supply (evaluate_assignment, assignment_point)."""
    volts, where, _ = _volts_of(assignment)
    model, config, test = _eval_setup(checkpoint, data, data_root, device, with_test)
    check_layers(volts, [n for n, _ in quant_layers(model)], where, checkpoint)
    energy = None if arch is None else model_energy(
        arch, model, config["quantizer"]["bits"], act_bits, progress=progress)
    vn = V_NOMINAL if energy is None else energy.v_nominal
    for n, v in volts.items():
        check_voltage(v, f"{where}: voltage of layer {n!r}", vn)
    return volts, where, model, config, test, energy


def assignment_warning(assignment, checkpoint) -> str | None:
    """A line when the assignment file records another checkpoint (sha256) than
    `checkpoint`: it was optimised for other weights (still evaluable)."""
    _, where, doc = _volts_of(assignment)
    sha = doc.get("checkpoint_sha256")
    if sha and sha != file_sha256(checkpoint):
        return (f"{where} was optimised for {doc.get('checkpoint', 'another checkpoint')} "
                f"(sha256 {str(sha)[:12]}), not {checkpoint}")
    return None


def evaluate_assignment(assignment, checkpoint: str, *, seed: int = 0, realizations: int = 50,
                        ci_target: float | None = None, ber_model: BerModel | None = None,
                        data_root: str | None = None, data=None, device: str = "cpu",
                        estimate=None, arch: str | None = None, act_bits: int = 8,
                        progress: bool = False):
    """Accuracy estimate (models.estimate.Estimate) of `checkpoint` with its layers at the
    voltages of `assignment` (a YAML path or a {layer: V} dict), seeded as `optimize`
    verifies (assignment_seed; a uniform assignment equals the sweep point). With `arch`:
    (Estimate, {energy_weight_domain_uJ, energy_weight_domain_nominal_uJ}) priced as
    `optimize` prices it (each weight domain's own law)."""
    volts, where, model, config, test, energy = _assignment_setup(
        assignment, checkpoint, arch, act_bits, data, data_root, device, progress)
    law = None
    if energy is not None:
        law = layer_energies(energy, [n for n, _ in quant_layers(model)])
        warn_arch(arch, (), ber_model)
    ev = Evaluator(model, test, ber_model or BerModel(), estimate=estimate)
    est = ev(volts, assignment_seed(seed, volts), realizations, ci_target)
    if law is None:
        return est
    return est, {"energy_weight_domain_uJ": law.total(volts),
                 "energy_weight_domain_nominal_uJ": sum(law.nominal().values())}


PER_LAYER = "per-layer"  # the tag of an assignment's results label ('wcat+bfn [per-layer]')


def assignment_energy_columns(energy: NetworkEnergy, volts: dict[str, float]) -> dict:
    """The energy columns of a results row (hwsim.sweep.point_row) with each layer's weights
    at its own voltage in every weight-holding domain (the others at nominal), priced by
    hwsim.domain_energy.price (each domain's own law)."""
    doms = [d for d in domains_of(energy) if "weight" in d.holds]
    per = {layer.name: volts[layer.name.split("#")[0]] for layer in energy.layers}
    p = price(energy, {d.name: per for d in doms})
    return {"energy_uJ": p["total_uJ"],
            "energy_weight_mem_uJ": sum(p["domains"][d.name]["uJ"] for d in doms),
            "energy_nominal_uJ": energy.total_uJ, "domains": "+".join(d.name for d in doms),
            "protection": "none", "saving_vs_nominal": p["saving_vs_nominal"],
            "saving_vs_errorfree": p["saving_vs_errorfree"]}


def assignment_point(checkpoint: str, assignment, arch: str, out: str | Path, *,
                     label: str | None = None, seed: int = 0, realizations: int = 50,
                     ci_target: float | None = None, ber_model: BerModel | None = None,
                     act_bits: int = 8, data_root: str | None = None, data=None,
                     device: str = "cpu", progress: bool = False, resume: bool = True) -> dict:
    """One results row of `checkpoint` at the per-layer voltages of `assignment` (a YAML
    path or {layer: V}), merged into the results CSV `out` as `hwsim sweep` writes it, so
    reports and Pareto fronts show it beside the uniform sweeps. Label '<method>
    [per-layer]' unless given; `voltage` holds the lowest layer voltage and `ber` its rate;
    accuracy seeded as `optimize` verifies (evaluate_assignment). A row already in `out`
    (same checkpoint and label) is returned as it is when `resume` and its energy and lowest
    voltage match the assignment's; an error when they do not (the assignment changed), or
    without `resume` (as `hwsim sweep` without --resume)."""
    ber_model = ber_model or BerModel()
    volts, where, model, config, _, energy = _assignment_setup(  # test set: only if needed
        assignment, checkpoint, arch, act_bits, data, data_root, device, progress, False)
    out = Path(out)
    # the arch has a weight domain and the layers match
    layer_energies(energy, [n for n, _ in quant_layers(model)])
    label = label or f"{method_name(config)} [{PER_LAYER}]"
    columns = assignment_energy_columns(energy, volts)
    vmin = min(volts.values())
    rows = read_rows(out)
    same = rows[(rows["checkpoint"].astype(str) == str(checkpoint)) & (rows["label"] == label)]
    if len(same):
        if not resume:
            raise ConfigError(f"{out} already holds {label!r} of {checkpoint}; pass --resume "
                              "to keep it, or choose another --out or --label")
        row = same.iloc[-1].to_dict()
        if not _same_assignment(out, label, row, volts, columns["energy_uJ"]):
            raise ConfigError(f"{out} holds a point {label!r} of {checkpoint} at other "
                              f"voltages than {where} (the assignment changed); remove that "
                              "row or give another label")
        return row
    warn_arch(arch, (), ber_model)
    ev = Evaluator(model, checkpoint_test_data(config, data, data_root), ber_model)
    est = ev(volts, assignment_seed(seed, volts), realizations, ci_target)
    row = point_row(config, label, vmin, ber_model.ber(vmin), ev.clean, est, energy, seed,
                    len(ev.xy[1]), str(checkpoint), file_sha256(checkpoint),
                    energy_columns=columns)
    update_sidecar(out, label, energy, {"assignment": _rounded(volts)})
    append_rows(out, [row])
    return row


def _rounded(volts: dict[str, float]) -> dict[str, float]:
    return {k: round(float(v), 6) for k, v in sorted(volts.items())}


def _same_assignment(out: Path, label: str, row: dict, volts: dict[str, float],
                     energy_uJ: float) -> bool:
    """Whether the kept results row `label` was evaluated at `volts`: the per-layer voltages
    recorded in the energy sidecar; for rows written before it recorded them, the energy
    and the lowest voltage stand in (blind to layers of equal energy swapping voltages)."""
    side = read_json(energy_sidecar(out)).get(label)
    if isinstance(side, dict) and isinstance(side.get("assignment"), dict):
        return side["assignment"] == _rounded(volts)
    return abs(float(row["energy_uJ"]) - energy_uJ) <= 1e-9 * energy_uJ \
        and round(float(row["voltage"]), 6) == round(min(volts.values()), 6)
