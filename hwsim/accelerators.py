"""Cross-accelerator study (`accelerators:` + `accuracy_from:` in a study file).

Accuracy under weight-memory bit errors does not depend on the arch file: it depends on the
checkpoint and the weight bit error rate. So the swept points of another study (its
results.csv) are reused and only energy is recomputed: for every accelerator (arch file) and
method (checkpoint), the network's nominal energy on that accelerator (hwsim.sweep.model_energy,
weight bits from the checkpoint, the study's act_bits), and at every voltage of the grid the
energy columns a sweep writes (hwsim.scenario.Scenario.energy_columns: the same energy law).
The accuracy columns are copied from the source row with the same checkpoint sha256 and
voltage, never re-evaluated; a missing point is an error.

This holds only when every accelerator applies the source's weight bit error rate: the same
BER model (checked against the source's `ber` column) and the same number of low-voltage
weight memories in series (hwsim.scenario: 2 copies flip more often than 1), with no
activation memory in the default low-voltage domain.

Outputs in studies/results/NAME/: results.csv (one row per method, accelerator and voltage,
label "method @ accelerator", column `arch`), results.energy.json, frontier.csv (each
accelerator's Pareto set), report.html, summary.md.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd

from hwsim.models.errors import ConfigError

from . import sweep as sw
from .ber import BerModel
from .files import read_json, stale_outputs, write_text_atomic
from .scenario import ACTIVATIONS, Scenario
from .study_spec import Method, Study

DEFAULT = Scenario()
REPORT_VERSION = "1"  # bump when report.html / summary.md of these studies change layout
SOURCE_NEEDS = ["checkpoint_sha256", "label", "voltage", "ber", "acc_clean", "acc_mean",
                "acc_std", "acc_ci95", "realizations"]


def accelerator_name(arch: str) -> str:
    """An accelerator's name in labels and tables: its arch file's stem (tpu_sram)."""
    return Path(arch).stem


def label(method: str, arch: str) -> str:
    """The results label of `method` priced on `arch`: 'wcat+bfn @ tpu_sram'."""
    return f"{method} @ {accelerator_name(arch)}"


def source_rows(study: Study, m: Method, grid: list[float], ber_model: BerModel,
                src: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """(rows, sidecar entry): the default-scenario rows of `study.accuracy_from` for m's
    checkpoint (by sha256), one per grid voltage in grid order, and the source's energy
    sidecar entry of their label. Every refusal names the file and what is missing."""
    path = study.accuracy_from
    sha = sw.file_sha256(m.checkpoint)
    mine = src[src["checkpoint_sha256"].astype(str) == sha]
    if "protection" in mine:
        mine = mine[mine["protection"].isna() | (mine["protection"] == "none")]
    mine = mine[~mine["label"].astype(str).str.contains(r" \[", regex=True)]
    if mine.empty:
        raise ConfigError(f"{path}: no unprotected weight-memory points of {m.checkpoint} "
                          f"(sha256 {sha}; method {m.name}): sweep it there first, or point "
                          "accuracy_from at the study that did")
    labels = list(dict.fromkeys(mine["label"].astype(str)))
    if len(labels) > 1:
        if m.name not in labels:
            raise ConfigError(f"{path}: {m.checkpoint} was swept under several labels "
                              f"({', '.join(labels)}); name method {m.name!r} like one of them")
        mine = mine[mine["label"] == m.name]
    lab = str(mine["label"].iloc[0])
    volts = mine["voltage"].astype(float).round(6)
    missing = [v for v in grid if round(v, 6) not in set(volts)]
    if missing:
        have = ", ".join(f"{v:g}" for v in sorted(set(volts)))
        raise ConfigError(f"{path}: no point of {lab} ({m.checkpoint}) at "
                          f"{', '.join(f'{v:g}' for v in missing)} V; the study's voltages "
                          f"must be swept ones (there: {have})")
    rows = pd.concat([mine[volts == round(v, 6)].iloc[:1] for v in grid], ignore_index=True)
    for v, ber in zip(grid, rows["ber"]):
        want = ber_model.ber(v)
        if abs(float(ber) - want) > 1e-9 * max(want, 1e-300) + 1e-300:
            raise ConfigError(f"{path}: {lab} at {v:g} V has BER {float(ber):.6g}, this "
                              f"study's BER model gives {want:.6g}: set ber_model: to the one "
                              "the source was swept with")
    side = read_json(sw.energy_sidecar(path)).get(lab)
    if side is None:
        raise ConfigError(f"{sw.energy_sidecar(path)}: no entry {lab!r} (written by the sweep "
                          "beside its results.csv): it records the source's arch")
    return rows, side


def _check_same_faults(study: Study, arch: str, ne, side: dict) -> None:
    """The accelerator's default low-voltage domain must apply the source's weight BER."""
    src_copies = len(side["weight_memory"])
    copies = DEFAULT.copies(ne, ("weight",))
    if DEFAULT.holds(ne, ACTIVATIONS):
        raise ConfigError(f"{arch}: its weight-memory domain also holds activations; the "
                          f"accuracy in {study.accuracy_from} models weight faults only")
    if copies != src_copies:
        raise ConfigError(f"{arch}: {copies} low-voltage weight memories in series, "
                          f"{study.accuracy_from} was swept with {src_copies} "
                          f"({', '.join(side['weight_memory'])} of {side['arch_file']}): the "
                          "weight bit error rate differs, so its accuracy cannot be reused")
    act = {layer["shape"]["act_bits"] for layer in side["layers"]}
    if act != {study.act_bits}:
        raise ConfigError(f"{study.file}: act_bits: {study.act_bits}, but {study.accuracy_from}"
                          f" was priced with {', '.join(map(str, sorted(act)))}-bit activations")


def _networks(study: Study) -> dict:
    """{method: (quantized model, weight bits)}: each checkpoint loaded once."""
    out = {}
    for m in study.methods:
        model, config = sw.load_quantized(m.checkpoint, "a cross-accelerator study needs")
        out[m.name] = model, config["quantizer"]["bits"]
    return out


def cross_rows(study: Study, progress: bool = True, log=print) -> tuple[pd.DataFrame, dict]:
    """(results rows, {label: NetworkEnergy}) of every method on every accelerator."""
    grid = sw.voltage_grid(study.voltages.min, study.voltages.max, study.voltages.step)
    ber_model = BerModel.load(study.ber_model)
    src = sw.read_rows(Path(study.accuracy_from), SOURCE_NEEDS)
    sources = {m.name: source_rows(study, m, grid, ber_model, src) for m in study.methods}
    nets = _networks(study)
    rows, energies = [], {}
    for arch in study.accelerators:
        for m in study.methods:
            model, bits = nets[m.name]
            t0 = time.perf_counter()
            ne = sw.model_energy(arch, model, bits, study.act_bits, progress=progress)
            mapped = len({layer.shape.key() for layer in ne.layers if not layer.cached})
            if mapped:
                log(f"== {m.name} on {accelerator_name(arch)}: mapped {mapped} shapes in "
                    f"{time.perf_counter() - t0:.0f} s")
            src_rows, side = sources[m.name]
            _check_same_faults(study, arch, ne, side)
            lab = label(m.name, arch)
            energies[lab] = ne
            for _, r in src_rows.iterrows():
                row = {c: r[c] for c in sw.COLUMNS if c in r}
                row.update(checkpoint=str(m.checkpoint), label=lab,
                           **DEFAULT.energy_columns(ne, float(r["voltage"])),
                           arch=accelerator_name(arch))
                rows.append(row)
    # device / precision as the accuracy source has them (none in files from before them)
    columns = [c for c in sw.COLUMNS if c not in sw.RUN_COLUMNS or c in src.columns]
    return pd.DataFrame(rows, columns=columns + ["arch"]), energies


def _write_if_changed(path: Path, text: str) -> None:
    if not (path.is_file() and path.read_text() == text):
        write_text_atomic(path, text)


def run_cross_study(study: Study, progress: bool = True, log=print) -> pd.DataFrame:
    """Price every method on every accelerator, write results.csv, results.energy.json and
    (when their inputs changed) report.html and summary.md; returns the summary table
    as strings (hwsim.accelerators_report.accelerator_table, readable). Files are rewritten
    only when changed."""
    from .accelerators_report import (accelerator_table, frontiers, readable, summary_md,
                                       write_cross_report)
    from .report import PLOTLY_JS
    out = study.out_dir
    out.mkdir(parents=True, exist_ok=True)
    df, energies = cross_rows(study, progress, log)
    results = out / "results.csv"
    _write_if_changed(results, df.to_csv(index=False))
    _write_if_changed(sw.energy_sidecar(results), json.dumps(
        {k: v.to_dict() for k, v in energies.items()}, indent=1) + "\n")
    df = sw.read_rows(results)  # as every reader sees it (numbers parsed back)
    table = accelerator_table(df, energies, study)
    stamp = out / ".report-inputs.sha256"
    outputs = [out / n for n in ("frontier.csv", "report.html", "summary.md")] + [
        out.parent / PLOTLY_JS]
    digest = stale_outputs(stamp, REPORT_VERSION, (results, sw.energy_sidecar(results),
                                                   study.file), outputs)
    if digest:
        write_text_atomic(out / "frontier.csv", frontiers(df, study).to_csv(index=False))
        write_cross_report(df, energies, table, study, out / "report.html")
        write_text_atomic(out / "summary.md", summary_md(study, table))
        write_text_atomic(stamp, digest + "\n")
    return readable(table)


def cross_status(study: Study) -> pd.DataFrame:
    """One row per (accelerator, method): layer shapes already mapped (cached) and points
    in results.csv, each 'done/wanted'; nothing is mapped or evaluated."""
    from .accelforge_backend import load_arch
    from .energy import EnergyCache, cache_key, cache_path_for
    grid = sw.voltage_grid(study.voltages.min, study.voltages.max, study.voltages.step)
    have = sw.read_rows(study.out_dir / "results.csv")
    out = []
    shapes_of = {name: {s.key(): s for s in sw.model_layers(model, bits, study.act_bits)}
                 for name, (model, bits) in _networks(study).items()}
    for arch in study.accelerators:
        info = load_arch(arch, accelforge_loader=False)[1]
        cache = EnergyCache(cache_path_for(arch))
        for m in study.methods:
            shapes = shapes_of[m.name]
            hit = sum(cache.get(cache_key(info.sha256, s)) is not None for s in shapes.values())
            n = int((have["label"] == label(m.name, arch)).sum())
            out.append({"accelerator": accelerator_name(arch), "method": m.name,
                        "shapes mapped": f"{hit}/{len(shapes)}",
                        "points": f"{n}/{len(grid)}"})
    return pd.DataFrame(out)
