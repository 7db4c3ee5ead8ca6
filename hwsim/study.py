"""`hwsim study FILE.yaml`: train what is missing, sweep, attack (optional), report.

Everything lands in studies/results/NAME/: checkpoints/, results.csv (+ results.energy.json),
frontier.csv, report.html, attacks.json, summary.md. Every step skips work already done, so a
re-run of a finished study only prints its table.
"""
from __future__ import annotations

import json
import platform
import re
import shlex
from dataclasses import replace
from pathlib import Path

import pandas as pd

from hwsim.models.checkpoint import read_checkpoint
from hwsim.models.errors import ConfigError
from hwsim.models.data import load_dataset
from hwsim.models.device import precision_scope, resolve_device
from hwsim.models.train import TrainConfig, train

from .ber import BerModel
from .chips import chips_sidecar, run_study_chips, study_chips_md
from .files import file_sha256, read_json, stale_outputs, update_json, write_text_atomic
from .pareto import TABLE_COLUMNS, lowest_energy_within, readable_table
from .study_spec import Method, Reference, Study
from .scenario import component_points
from .sweep import RUN_COLUMNS, energy_sidecar, read_rows, recorded_values, sweep, voltage_grid

REPORT_VERSION = "11"  # bump when the report/summary layout changes: finished studies redo it


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name.replace("+", "_"))


def checkpoint_path(study: Study, m: Method) -> Path:
    return Path(m.checkpoint) if m.checkpoint else study.out_dir / "checkpoints" / f"{_slug(m.name)}.pt"


def check_reused(study: Study, m: Method, ckpt: dict) -> None:
    """A method's `checkpoint:` must hold that method: same quantizer, bits, per-layer bits,
    quantizer params (defaults filled in on both sides), bit-flip noise (weights,
    activations) and adversarial training, or its results would go out under the wrong
    name."""
    from hwsim.models.quant import resolved_params
    cfg = ckpt["config"]
    q = cfg.get("quantizer") or {}
    fields = {"quantizer": (m.quantizer, q.get("name", "float")),
              "layer_bits": (dict(m.layer_bits or {}), dict(q.get("layer_bits") or {})),
              "bfn": (m.bfn, q.get("bfn_rate", 0) > 0),
              "act_bfn": (m.act_bfn, q.get("act_bfn_rate", 0) > 0),
              "adv_flips": (m.adv_flips, (cfg.get("train") or {}).get("adv_flips", 0))}
    if q:
        fields["bits"] = (m.bits, q.get("bits"))
    if m.quantizer == q.get("name"):  # another quantizer's params mean nothing here
        fields["params"] = (resolved_params(m.quantizer, m.params),
                            resolved_params(q["name"], q.get("params")))
    bad = [f"{k} {want!r} (checkpoint: {got!r})" for k, (want, got) in fields.items()
           if want != got]
    if bad:
        raise ConfigError(f"{study.file}: method {m.name!r}: checkpoint {m.checkpoint!r} "
                          f"does not hold this method: {'; '.join(bad)}; make the method's "
                          "fields match what the checkpoint was trained with, or point it at "
                          "the right checkpoint")


def train_config(study: Study, m: Method) -> TrainConfig:
    t = study.training
    return TrainConfig(model=study.network, data=study.data, data_root=study.data_root,
                       quantizer=m.quantizer, bits=m.bits, layer_bits=m.layer_bits or None,
                       bfn_rate=t.bfn_rate if m.bfn else 0.0, quantizer_params=dict(m.params),
                       epochs=t.epochs, batch_size=t.batch_size, lr=t.lr, momentum=t.momentum,
                       weight_decay=t.weight_decay, seed=study.seed, init_from=t.init_from,
                       act_bfn_rate=t.act_bfn_rate if m.act_bfn else 0.0,
                       adv_flips=m.adv_flips)


def _trained(path: Path, cfg: TrainConfig) -> bool:
    """True when `path` holds a finished training of exactly this recipe; a checkpoint of
    another recipe is an error rather than silently reused or overwritten."""
    if not path.exists():
        return False
    ck = read_checkpoint(path)
    if ck["config"]["train"] != cfg.recipe():
        raise ConfigError(f"{path} was trained with another recipe than the study now asks "
                          "for; delete it (and its rows in results.csv) to retrain, or give "
                          "the changed method a new name")
    return ck["epoch"] >= cfg.epochs


def _versions() -> str:
    from importlib.metadata import version
    pk = ["torch", "accelforge", "numpy", "hwsim"]
    return ", ".join(f"{p} {version(p)}" for p in pk) + f", Python {platform.python_version()}"


def _ber_column(ber) -> str:
    return f"acc % at BER {float(ber):g}"


def summary_table(df: pd.DataFrame, attacks: dict | None,
                  at_ber: dict | None = None) -> pd.DataFrame:
    t = lowest_energy_within(df, points=1.0)
    for ber in sorted({b for v in (at_ber or {}).values() for b in v}, key=float):
        t[_ber_column(ber)] = [
            f"{100 * at_ber[m][ber]['mean']:.2f} +/- {100 * at_ber[m][ber]['std']:.2f}"
            if ber in at_ber.get(m, {}) else "" for m in t["method"]]
    if attacks:
        t["bfa_n_flip"] = [f"{attacks[m]['n_flip_mean']:.1f} +/- {attacks[m]['n_flip_std']:.1f}"
                           if m in attacks else "" for m in t["method"]]
    return t


def format_table(t: pd.DataFrame) -> str:
    """The summary table as Markdown (also printed by `hwsim study`)."""
    t = readable_table(t)
    rows = [list(r) for r in t.itertuples(index=False)]
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(t.columns)]
    line = lambda cells: "| " + " | ".join(c.rjust(w) for c, w in zip(cells, widths)) + " |"
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(list(t.columns)), sep] + [line(r) for r in rows])


def reference_table(ref: Reference) -> pd.DataFrame:
    """Published figures under the same column titles as our summary table."""
    bers = sorted({b for row in ref.rows for b in row.acc_at_ber})
    fmt = lambda v, f: "" if v is None else f.format(v)
    title = lambda col: TABLE_COLUMNS[col][0]
    return pd.DataFrame([{
        title("method"): row.method, title("clean_acc_%"): fmt(row.clean_acc, "{:.2f}"),
        **{_ber_column(b): fmt(row.acc_at_ber.get(b), "{:.2f}") for b in bers},
        title("bfa_n_flip"): fmt(row.bfa_n_flip, "{:.1f}"),
        title("energy_at_vmax_uJ"): fmt(row.energy_uJ, "{:.2f}")} for row in ref.rows])


def in_study_order(df: pd.DataFrame, study: Study) -> pd.DataFrame:
    """The rows of the study's methods (under each of its scenarios), in the order the study
    file lists them (a resumed study appends rows to results.csv in the order they were
    swept)."""
    labels = [sc.label(m.name) for sc in study.scenarios for m in study.methods] + [
        a.label for a in study.assignments]
    rank = {lab: i for i, lab in enumerate(labels)}
    df = df[df["label"].isin(rank)]
    return df.sort_values("label", key=lambda s: s.map(rank), kind="stable")


def select_methods(study: Study, only: list[str] | None) -> Study:
    """The study restricted to the methods named in `only` (None: all of them)."""
    if not only:
        return study
    names = [m.name for m in study.methods]
    bad = [n for n in only if n not in names]
    if bad:
        raise ConfigError(f"{study.file}: --only {','.join(bad)}: no such method; valid: "
                          f"{', '.join(names)}")
    return replace(study, methods=[m for m in study.methods if m.name in only])


def sweep_methods(study: Study, results: Path, ber_model, test, progress: bool,
                  executor=None) -> None:
    """Sweep every method under every scenario into `results` (points already there are
    skipped; with an executor inside a batch, the points are only submitted)."""
    grid = voltage_grid(study.voltages.min, study.voltages.max, study.voltages.step)
    for sc in study.scenarios:
        for m in study.methods:
            sweep(str(checkpoint_path(study, m)), study.arch, grid, results,
                  act_bits=study.act_bits, ber_model=ber_model,
                  realizations=study.monte_carlo.realizations,
                  ci_target=study.monte_carlo.ci_target, seed=study.seed, resume=True,
                  label=m.name, data=test, progress=progress, device=study.device,
                  executor=executor, scenario=sc)


def assignment_points(study: Study, results: Path, ber_model, get_data, progress: bool) -> None:
    """The study's per-layer assignments, one results row each (hwsim.assignments.
    assignment_point; rows already there are kept); those of methods not selected skipped."""
    from .assignments import assignment_point
    methods = {m.name: m for m in study.methods}
    for a in study.assignments:
        if a.method in methods:
            assignment_point(str(checkpoint_path(study, methods[a.method])), a.file,
                             study.arch, results, label=a.label, seed=study.seed,
                             realizations=study.monte_carlo.realizations,
                             ci_target=study.monte_carlo.ci_target, ber_model=ber_model,
                             act_bits=study.act_bits, data=get_data()[1],
                             device=study.device, progress=progress)


def train_precision(study: Study) -> str:
    """The training forward's precision under the study's `precision:` (bf16 or fp32)."""
    return "bf16" if study.precision == "bf16" else "fp32"


def run_study(study: Study, progress: bool = True, log=print,
              only: list[str] | None = None, executor=None) -> pd.DataFrame | None:
    """Run every missing step. With `only`, just those methods' training, sweep, fixed-BER
    points and attacks: the report and summary need all methods and are left as they are
    (returns None). Training and evaluation run on `study.device`, under `study.precision`.
    `executor`: None runs everything here; a hwsim.executor.RayExecutor runs steps 1-4 as
    Ray tasks first."""
    with precision_scope(study.precision):
        return _run_study(study, progress, log, only, executor)


def _run_study(study: Study, progress, log, only, executor) -> pd.DataFrame | None:
    if study.accelerators:  # a cross-accelerator study: energy only (hwsim.accelerators)
        if only:
            raise ConfigError(f"{study.file}: --only: a cross-accelerator study evaluates "
                              "nothing per method; run it without --only")
        from .accelerators import run_cross_study
        return run_cross_study(study, progress=progress, log=log)
    full, study = study, select_methods(study, only)
    for m in study.methods:  # reused checkpoints must exist, be valid and hold their method
        if m.checkpoint:
            check_reused(study, m, read_checkpoint(checkpoint_path(study, m)))
    if executor is None:  # with Ray the nodes, not this machine, need the device
        resolve_device(study.device)  # e.g. cuda without a GPU: one error line before any work
    out = study.out_dir
    out.mkdir(parents=True, exist_ok=True)
    results = out / "results.csv"
    data = None

    def get_data():
        nonlocal data
        if data is None:
            data = load_dataset(study.data, study.data_root)
        return data

    if executor is not None:  # Ray tasks; the serial steps below then find all done
        from .remote import run_remote
        run_remote(study, executor, get_data, log)

    # 1. train what is missing (resumes a half-trained checkpoint)
    for m in study.methods:
        path = checkpoint_path(study, m)
        if m.checkpoint:  # checked above
            continue
        cfg = train_config(study, m)
        if _trained(path, cfg):
            continue
        log(f"== training {m.name} -> {path}")
        if study.training.threads:
            import torch
            torch.set_num_threads(study.training.threads)
        log_file = Path(str(path) + ".log")
        log_file.parent.mkdir(parents=True, exist_ok=True)

        def epoch_log(line, _f=log_file):
            with open(_f, "a") as f:
                f.write(line + "\n")
        train(cfg, path, resume=True, progress=progress, log=epoch_log, data=get_data(),
              device=study.device, precision=train_precision(study))

    # 2. sweep every method (skips points already in results.csv)
    grid = voltage_grid(study.voltages.min, study.voltages.max, study.voltages.step)
    ber_model = BerModel.load(study.ber_model)
    chips = run_study_chips(study, grid, results, ber_model, get_data, progress,
                            checkpoint_path, executor)  # issue 18: chips instead of sweep
    if not chips:
        sweep_methods(study, results, ber_model, get_data()[1], progress, executor)
        assignment_points(study, results, ber_model, get_data, progress)

    # 3. accuracy at fixed bit error rates (the paper's Table 1 columns), optional
    at_ber = _run_fixed_bers(study, out / "at_ber.json", get_data, progress, log) \
        if study.bers else None

    # 4. adversarial bit flips (optional)
    attacks = None
    if study.attacks.bfa_seeds > 0:
        attacks = _run_attacks(study, out / "attacks.json", get_data, progress, log)

    if only:
        return None
    # 5. frontier, report, summary: only when results changed since they were written
    from .report import PLOTLY_JS, write_report  # plotly: not needed by --only runs
    from .chips_figures import study_chip_figures
    study = full
    df = read_rows(results)
    df = in_study_order(df, study)
    table = summary_table(df, attacks, at_ber)
    outputs = [out / n for n in ("frontier.csv", "report.html", "summary.md")] + [
        out.parent / PLOTLY_JS]  # the report's plotly.js, shared by the studies beside it
    inputs = [results, study.file, study.arch] + [Path(a.file) for a in study.assignments] + [
        p for p in (out / "attacks.json", out / "at_ber.json", chips_sidecar(results))
        if p.exists()]
    stamp = out / ".report-inputs.sha256"
    digest = stale_outputs(stamp, REPORT_VERSION, inputs, outputs)
    if digest:
        energy = json.loads(energy_sidecar(results).read_text())
        layers = {k: v["layers"] for k, v in list(energy.items())[:1]}  # same net: one plot
        dataset = "CIFAR-10 (JPEG q75 copy)" if study.data == "cifar10" and \
            "jpeg" in str(study.data_root).lower() else study.data
        notes = (f"{study.network} on {dataset}, arch {study.arch}, BER model: "
                 f"{ber_model.source}; accuracy = mean over bit-error realizations with 95% CI.")
        front = write_report(df, out / "report.html", title=f"hwsim study: {study.name}",
                             energy_layers=layers, notes=notes, table=table,
                             plotly_dir=out.parent,  # one plotly.min.js for all studies
                             extra_figs=study_chip_figures(study, results, df),
                             components=component_points(study, df, energy))
        write_text_atomic(out / "frontier.csv", front.to_csv(index=False))
        write_text_atomic(out / "summary.md", _summary_md(study, table, dataset, attacks, df)
                          + study_chips_md(study, results, df))
        write_text_atomic(stamp, digest + "\n")
    return table


def bfn_comparisons(study: Study, attacks: dict | None) -> list[dict]:
    """For every BFN method whose twin without BFN (same quantizer, bits, params) was attacked
    too: models.attacks.compare_nflip(twin's N_flips, its N_flips) ("does BFN raise N_flip")."""
    from hwsim.models.attacks import compare_nflip
    out = []
    for m in study.methods:
        twin = next((t for t in study.methods if not t.bfn and (t.quantizer, t.bits, t.params,
                     t.layer_bits) == (m.quantizer, m.bits, m.params, m.layer_bits)), None)
        if not m.bfn or twin is None or not attacks or m.name not in attacks \
                or twin.name not in attacks:
            continue
        a, b = attacks[twin.name]["n_flips"], attacks[m.name]["n_flips"]
        if len(a) >= 2 and len(b) >= 2:
            out.append(compare_nflip(a, b, twin.name, m.name))
    return out


def _bfn_md(study: Study, attacks: dict | None) -> str:
    from hwsim.models.attacks import comparison_line
    lines = [f"- {comparison_line(c)}" for c in bfn_comparisons(study, attacks)]
    return "\nBFA, BFN against none (same attack seeds):\n\n" + "\n".join(lines) + "\n" \
        if lines else ""


def _summary_md(study: Study, table: pd.DataFrame, dataset: str,
                attacks: dict | None = None, rows: pd.DataFrame | None = None) -> str:
    cmd = "hwsim study " + shlex.quote(str(study.file))
    return f"""# Study `{study.name}`

- Command: `{cmd}` (seed {study.seed})
- Data: {dataset}; network: {study.network}; arch: `{study.arch}`
- Voltages: {study.voltages.min}-{study.voltages.max} V, step {study.voltages.step};
  {_evaluation_line(study)}
- Computed on: {_computed_line(rows)}
- Training: {_training_line(study)}
- BFA: {_bfa_line(study)}
- Versions: {_versions()}

Per method: clean accuracy and the lowest-energy weight-memory voltage whose mean accuracy
stays within 1 point of it; energy per inference there, and saving against nominal (every
memory at its nominal supply, unprotected){_scenario_note(study)}.

{format_table(table)}
{_bfn_md(study, attacks)}{_reference_md(study)}
Files: results.csv (every point), frontier.csv (Pareto set), report.html (figures),
checkpoints/ (with their training logs).
"""


def _scenario_note(study: Study) -> str:
    notes = []
    if not all(sc.is_default for sc in study.scenarios):
        notes.append("; a label's [brackets] name the voltage domains driven by the swept "
                     "voltage and their protection (hwsim/scenario.py), and \"saving vs "
                     "error-free\" compares with those domains at their lowest voltage with "
                     "BER <= 1e-9")
    if study.assignments:
        files = ", ".join(f"`{a.file}`" for a in study.assignments)
        notes.append(f"; a [per-layer] row is one point with each layer's weights at its own "
                     f"voltage ({files}; hwsim optimize-voltages): its V_min is the lowest "
                     "layer voltage")
    return "".join(notes)


def _computed_line(rows: pd.DataFrame | None) -> str:
    """Where the voltage points were evaluated and in what (results.csv's RUN_COLUMNS)."""
    parts = []
    for col in RUN_COLUMNS:
        values = recorded_values(rows[col]) if rows is not None and col in rows else []
        if values:
            parts.append(f"{col} {', '.join(values)}"
                         + (f" (per point: results.csv's {col} column)" if len(values) > 1
                            else ""))
    return "; ".join(parts) + " (the voltage points; training precision: each checkpoint's " \
        "log)" if parts else "not recorded (points computed before hwsim recorded it)"


def _evaluation_line(study: Study) -> str:
    f, mc = study.faults, study.monte_carlo
    if f is not None and f.model == "persistent":
        return (f"persistent chips: {f.chips} per method, the same chips for every method, "
                f"fault mode {f.mode}, each chip along the whole voltage grid")
    return (f"Monte Carlo: up to {mc.realizations} realizations per point,\n"
            f"  stop at 95% CI half-width {mc.ci_target}")


def _training_line(study: Study) -> str:
    if all(m.checkpoint for m in study.methods):
        return "none: every method uses its given checkpoint (`checkpoint:` in the study file)"
    t = study.training
    line = (f"{t.epochs} epochs per method, batch {t.batch_size}, SGD lr {t.lr} (cosine), "
            f"momentum {t.momentum}, weight decay {t.weight_decay}, BFN rate {t.bfn_rate} "
            f"where enabled, seed {study.seed}")
    if any(m.act_bfn for m in study.methods if not m.checkpoint):
        line += f", activation BFN rate {t.act_bfn_rate} where enabled"
    if any(m.adv_flips for m in study.methods if not m.checkpoint):
        line += (", adversarial training with BFA in the loop where `adv_flips: K` is set (K "
                 "flips per step once the running loss is below 1.75, the faulty pass's "
                 "gradients clipped to +/- 0.05)")
    if t.init_from:
        line += (f"; fine-tuned from `{t.init_from}` (its command: the study file's header; "
                 f"its per-epoch log: `{t.init_from}.log`)")
    return line


def _bfa_line(study: Study) -> str:
    a = study.attacks
    if a.bfa_seeds <= 0:
        return "not run"
    from hwsim.models.attacks import stop_rule
    rule = stop_rule(a.stop_rule)
    also = "" if rule.name == "lt11" else " (and, from the same runs, < 1.1x)"
    return (f"{a.bfa_seeds} attack seeds ({study.seed}..{study.seed + a.bfa_seeds - 1}), attack "
            f"batch {a.attack_batch}, N_flip until held-out accuracy "
            f"{'<=' if rule.inclusive else '<'} {rule.factor:g}x random guess{also}, at "
            f"most {a.max_flips} flips")


def _reference_md(study: Study) -> str:
    if study.reference is None:
        return ""
    return f"""
Published figures for comparison ({study.reference.source}):

{format_table(reference_table(study.reference))}
"""


def attack_partial(study: Study, method: str) -> tuple[Path, dict]:
    """(file, settings) of the per-seed BFA records a study keeps for `method` until its
    attacks.json entry is written (attack_records.resumable): the study's attack settings
    plus the checkpoint's sha256, so a retrained checkpoint starts over."""
    from .attack_records import partial_file
    m = next(m for m in study.methods if m.name == method)
    settings = dict(study.attacks.settings(study.seed),
                    checkpoint_sha256=file_sha256(checkpoint_path(study, m)),
                    device=resolve_device(study.device).type)
    return partial_file(study.out_dir / f"attacks.{method}.json"), settings


def _run_attacks(study: Study, path: Path, get_data, progress, log) -> dict:
    from hwsim.models.attacks import bfa_nflip
    from hwsim.models.checkpoint import load_checkpoint
    from .attack_records import resumable
    done = read_json(path)
    a = study.attacks
    for m in study.methods:
        key = m.name
        settings = a.settings(study.seed)
        if key in done and done[key].get("settings") == settings:
            continue
        log(f"== BFA on {m.name} ({a.bfa_seeds} seeds)")
        model, _ = load_checkpoint(checkpoint_path(study, m))
        model.to(resolve_device(study.device))
        partial, kept = attack_partial(study, key)
        r = bfa_nflip(model, get_data()[1], seeds=a.bfa_seeds, seed=study.seed,
                      progress=progress, **a.kwargs(), **resumable(partial, kept, model, log))
        done = update_json(path, lambda d: d.update({key: dict(r, settings=settings)}))
        partial.unlink(missing_ok=True)
    return done


def _run_fixed_bers(study: Study, path: Path, get_data, progress, log) -> dict:
    """{method: {ber (str): estimate dict}} for the study's `bers:`, with the sweep's Monte
    Carlo settings; each entry is kept while its checkpoint and settings are unchanged."""
    from hwsim.models.checkpoint import load_checkpoint
    from hwsim.models.estimate import estimate_accuracy
    from .sweep import point_seed
    done = read_json(path)
    mc = study.monte_carlo
    for m in study.methods:
        ck = checkpoint_path(study, m)
        settings = {"checkpoint_sha256": file_sha256(ck), "realizations": mc.realizations,
                    "ci_target": mc.ci_target, "seed": study.seed}
        entry = done.get(m.name, {})
        if entry.get("settings") != settings:
            entry = {"settings": settings}
        todo = [b for b in study.bers if repr(b) not in entry]
        if not todo:
            continue
        log(f"== accuracy of {m.name} at BER {', '.join(map(repr, todo))}")
        model, _ = load_checkpoint(ck)
        model.to(resolve_device(study.device))
        for b in todo:
            est = estimate_accuracy(model, get_data()[1], b, max_realizations=mc.realizations,
                                    ci_target=mc.ci_target, seed=point_seed(study.seed, b),
                                    progress=progress)
            entry[repr(b)] = est.as_dict()
            done = update_json(path, lambda d: _merge_at_ber(d, m.name, entry))
    return {k: {b: v for b, v in e.items() if b != "settings"} for k, e in done.items()}


def _merge_at_ber(done: dict, name: str, entry: dict) -> None:
    """Put `entry` (one method's points) into at_ber.json's contents, keeping the points
    another writer added meanwhile for the same checkpoint and settings."""
    old = done.get(name, {})
    done[name] = {**old, **entry} if old.get("settings") == entry["settings"] else entry
