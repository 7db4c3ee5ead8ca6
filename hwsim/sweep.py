"""Voltage sweep: for each weight-memory voltage, BER eps(V), accuracy under random bit errors
(variance-reduced Monte Carlo), and energy per inference. Written point by point, atomically;
`resume` skips every point already in the file."""
from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from hwsim.models.checkpoint import load_checkpoint, method_name
from hwsim.models.data import load_dataset
from hwsim.models.errors import ConfigError
from hwsim.models.estimate import estimate_accuracy
from hwsim.models.device import check_device_name, resolve_device
from hwsim.models.evaluate import StoredWeights, accuracy, on_model_device, run_context

from hwsim.models.networks import input_shape

from .ber import BerModel, check_voltage
from .files import file_lock, file_sha256, update_json, write_text_atomic
from .energy import NetworkEnergy, network_energy
from .domains import warn_arch
from .scenario import Scenario, activation_estimate
from .workload import extract_layers

COLUMNS = ["checkpoint", "checkpoint_sha256", "label", "method", "quantizer", "bits", "bfn_rate", "voltage", "ber",
           "acc_clean", "acc_mean", "acc_std", "acc_ci95", "realizations", "estimator",
           "expected_flips", "energy_uJ", "energy_weight_mem_uJ", "energy_nominal_uJ",
           "seed", "test_images", "domains", "protection", "saving_vs_nominal",
           "saving_vs_errorfree", "device", "precision"]
RUN_COLUMNS = ["device", "precision"]  # where a row was computed (empty in older files)


def voltage_grid(vmin: float, vmax: float, step: float) -> list[float]:
    for name, v in (("vmin", vmin), ("vmax", vmax)):
        check_voltage(v, name)
    if not step > 0:
        raise ConfigError(f"voltage step {step!r}: must be > 0")
    if vmin > vmax:
        raise ConfigError(f"vmin {vmin} > vmax {vmax}")
    n = int(round((vmax - vmin) / step))
    grid = [round(vmin + i * step, 6) for i in range(n + 1)]
    return [v for v in grid if v <= vmax + 1e-9]


def model_energy(arch: str, model, weight_bits: int, act_bits: int = 8,
                 progress: bool = True) -> NetworkEnergy:
    """Nominal-voltage energy per inference of a (quantized) model on an arch file; layers
    quantized to another width than `weight_bits` (mixed precision) keep their own."""
    return network_energy(arch, model_layers(model, weight_bits, act_bits), progress=progress)


def model_layers(model, weight_bits: int, act_bits: int = 8) -> list:
    """The LayerShapes model_energy prices (layers quantized to another width than
    `weight_bits` keep their own)."""
    from hwsim.models.quant import layer_widths
    mixed = {n: b for n, b in layer_widths(model).items() if b != weight_bits}
    return extract_layers(model, input_shape(model), weight_bits=weight_bits,
                          act_bits=act_bits, layer_bits=mixed)


SWEEP_KEYS = ["checkpoint", "label", "voltage", "acc_mean", "energy_uJ"]  # what resume reads
NUMERIC = ["bits", "bfn_rate", "voltage", "ber", "acc_clean", "acc_mean", "acc_std", "acc_ci95",
           "realizations", "expected_flips", "energy_uJ", "energy_weight_mem_uJ",
           "energy_nominal_uJ", "seed", "test_images", "saving_vs_nominal",
           "saving_vs_errorfree"]
# identifiers read as text: pandas would turn a hash such as 0123456789012345 or 1234e56789...
# (or a label such as 001) into a number, and the point would no longer match its checkpoint
TEXT = ["checkpoint", "checkpoint_sha256", "label", "method", "fault_mode", "fault_model",
        "device", "precision"]
# what the Pareto frontier and the report read: a hand-made CSV needs these columns
DEFAULT = Scenario()
REPORT_COLUMNS = ["label", "voltage", "ber", "acc_clean", "acc_mean", "acc_ci95", "energy_uJ"]


def read_rows(path: Path, required: list[str] | tuple = ()) -> pd.DataFrame:
    """A results CSV as a DataFrame (empty with COLUMNS when the file does not exist yet).
    Numeric columns must hold numbers and `required` columns must be present and filled:
    a damaged cell is an error naming its line and column, never a silently recomputed
    (and then duplicated) point."""
    return read_table(path, COLUMNS, required, NUMERIC,
                      f"a results CSV (all columns `hwsim sweep` writes: {', '.join(COLUMNS)})")


def read_table(path: Path, columns: list[str], required, numeric, what: str) -> pd.DataFrame:
    """The one checked reader of hwsim's result CSVs (results.csv, RESULTS.chips.csv): an
    empty table with `columns` when the file does not exist yet; `required` columns present
    and filled, `numeric` ones numbers; anything else one error naming file, line, column."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{str(path)!r} is a folder, not a CSV file")
    if not (path.exists() and path.stat().st_size > 0):
        return pd.DataFrame(columns=columns)
    try:
        df = pd.read_csv(path, dtype={c: str for c in TEXT})
    except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ConfigError(f"{path}: not a readable CSV text file ({first})") from None
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise ConfigError(f"{path}: missing column(s) {', '.join(missing)}; {what} needs "
                          f"{', '.join(required)}")
    for col in df.columns:
        empty = df[col].isna()
        if col in required and empty.any():
            i = int(empty.to_numpy().argmax())
            raise ConfigError(f"{path}: line {i + 2}, column {col}: empty; fill or delete that "
                              "row")
        if col in numeric:
            num = pd.to_numeric(df[col], errors="coerce")
            bad = num.isna() & ~empty
            if bad.any():
                i = int(bad.to_numpy().argmax())
                raise ConfigError(f"{path}: line {i + 2}, column {col}: {df[col].iloc[i]!r} is "
                                  "not a number; fix or delete that row")
            df[col] = num
    return df


def write_rows_atomic(df: pd.DataFrame, path: Path) -> None:
    write_text_atomic(path, df.to_csv(index=False))


def recorded_values(values: pd.Series) -> list[str]:
    """The distinct values a RUN_COLUMNS column records, sorted (empty cells: older files)."""
    return sorted({str(x) for x in values.dropna() if str(x)})


def note_mixed_runs(rows: pd.DataFrame, now: dict, out, label: str) -> None:
    """A stderr note when `out` already holds points of `label` computed on another device or
    in another precision than `now` (models.evaluate.run_context): a resumed run adds points
    that differ in their last digits; the device and precision columns tell them apart."""
    for col, value in now.items():
        other = [x for x in recorded_values(rows[col]) if x != value] if col in rows else []
        if other:
            print(f"note: {out} holds points of {label} computed with {col} "
                  f"{', '.join(other)}; this run adds {value} points (column {col})",
                  file=sys.stderr)


def note_mixed_labels(rows: pd.DataFrame, out) -> None:
    """After Ray tasks, whose device is the worker's (so note_mixed_runs cannot tell before):
    a stderr note for each label in `rows` (the points in `out`) computed on more than one
    device or in more than one precision."""
    if "label" not in rows:
        return
    for col in RUN_COLUMNS:
        if col not in rows:
            continue
        for label, values in rows.groupby(rows["label"].astype(str))[col]:
            seen = recorded_values(values)
            if len(seen) > 1:
                print(f"note: {out} holds points of {label} computed with {col} "
                      f"{', '.join(seen)} (column {col})", file=sys.stderr)


def point_keys(df: pd.DataFrame) -> list[tuple]:
    """What identifies a results row: (checkpoint, label, voltage to 1 uV); one checkpoint
    swept under several scenarios (hwsim.scenario) has one label per scenario."""
    return list(zip(df["checkpoint"].astype(str), df["label"].astype(str),
                    df["voltage"].astype(float).round(6)))


def merge_rows(path: Path, new: pd.DataFrame, keys=point_keys, reader=read_rows) -> pd.DataFrame:
    """Lock the CSV, re-read it with `reader`, append the rows of `new` whose keys(row) are
    not in it yet and write it back atomically; returns the merged table. Rows other writers
    added meanwhile are kept, in file order (with any extra columns), and no row is written
    twice. The one merge behind results.csv and RESULTS.chips.csv."""
    with file_lock(path):
        rows = reader(path)
        if len(rows):
            have = set(keys(rows))
            new = new[[k not in have for k in keys(new)]]
            merged = pd.concat([rows, new], ignore_index=True) if len(new) else rows
        else:
            merged = new
        if len(new):
            write_rows_atomic(merged, path)
    return merged


def append_rows(path: Path, new: list[dict]) -> pd.DataFrame:
    """merge_rows for results rows (dicts with the COLUMNS) keyed by point_keys."""
    return merge_rows(path, pd.DataFrame(new, columns=COLUMNS))


def load_quantized(checkpoint, need: str):
    """(model, config) of a quantized checkpoint; a float one is refused, `need` saying what
    needs its stored integers (e.g. 'a sweep needs')."""
    model, config = load_checkpoint(checkpoint)
    if not config.get("quantizer"):
        raise ConfigError(f"{checkpoint} is a float network: {need} stored integers "
                          "(a quantized checkpoint)")
    return model, config


def checkpoint_test_data(config: dict, data=None, data_root: str | None = None):
    """The test set a checkpoint was trained with (`data` when given; `data_root` overrides
    the recorded root)."""
    return data if data is not None else load_dataset(
        config["data"]["name"], data_root or config["data"].get("root"))[1]


def point_seed(seed: int, voltage: float) -> int:
    # per-point seed: a resumed sweep draws exactly what an uninterrupted one would
    return int(seed) * 1_000_003 + int(round(voltage * 1e6))


def energy_sidecar(results_csv: str | Path) -> Path:
    """Per-layer nominal energies of every swept checkpoint, next to the results CSV."""
    p = Path(results_csv)
    return p.with_name(p.stem + ".energy.json")


def update_sidecar(results_csv: Path, label: str, energy: NetworkEnergy,
                   extra: dict | None = None) -> None:
    """Record `label`'s per-layer energy (plus `extra` keys, e.g. a per-layer assignment's
    voltages) in the results' sidecar."""
    entry = {**energy.to_dict(), **(extra or {})}
    update_json(energy_sidecar(results_csv), lambda data: data.update({label: entry}))


def point_row(config: dict, label: str, v: float, ber: float, clean: float, est,
              energy: NetworkEnergy, seed: int, test_images: int, checkpoint: str = "",
              fingerprint: str = "", scenario: Scenario = DEFAULT,
              energy_columns: dict | None = None) -> dict:
    """One results row (COLUMNS): the estimate `est` of a point plus its energy at `v` under
    `scenario` (which domains run at v, and their protection), or `energy_columns` as given
    (a per-layer assignment's, hwsim.assignments.assignment_point)."""
    q = config["quantizer"]
    energy_columns = energy_columns or scenario.energy_columns(energy, v)
    return {"checkpoint": str(checkpoint), "checkpoint_sha256": fingerprint, "label": label,
            "method": method_name(config), "quantizer": q["name"], "bits": q["bits"],
            "bfn_rate": q.get("bfn_rate", 0.0), "voltage": v, "ber": ber,
            "acc_clean": clean, "acc_mean": est.mean, "acc_std": est.std,
            "acc_ci95": est.ci95, "realizations": est.realizations,
            "estimator": est.estimator, "expected_flips": est.expected_flips,
            **energy_columns, "seed": seed, "test_images": test_images,
            "device": est.device, "precision": est.precision}


def sweep_points(model, config: dict, test, energy: NetworkEnergy, voltages: list[float], *,
                 ber_model: BerModel, realizations: int = 50, ci_target: float | None = None,
                 seed: int = 0, label: str | None = None, checkpoint: str = "",
                 fingerprint: str = "", progress: bool = True, on_row=None,
                 scenario: Scenario = DEFAULT) -> list[dict]:
    """The results rows (COLUMNS) of a quantized `model` already on its device, one per
    voltage; `config` is a checkpoint config (its quantizer names the method). Shared by
    sweep() (a checkpoint, rows appended to a CSV through `on_row`) and hwsim.api.sweep (a
    model in memory). `scenario`: which domains the voltage drives and their protection
    (default: the weight memory, unprotected); the label defaults to scenario.label(method)."""
    label = label or scenario.label(method_name(config))
    scenario.scaled(energy)  # unknown domain names fail before any point is evaluated
    xy = on_model_device(test, model)  # normalized and on the device once for all points
    stored = StoredWeights(model)
    clean = accuracy(model, xy)
    out = []
    bar = tqdm(voltages, desc=f"sweep {label}", disable=not progress,
               file=sys.stderr)
    for v in bar:
        ber = ber_model.ber(v)
        weight_ber, act_ber = scenario.bers(energy, v, ber_model)
        if act_ber > 0:
            est = activation_estimate(model, xy, weight_ber, act_ber, scenario,
                                      realizations=realizations, seed=point_seed(seed, v),
                                      clean=clean, stored=stored)
        else:
            est = estimate_accuracy(model, xy, weight_ber, max_realizations=realizations,
                                    ci_target=ci_target, seed=point_seed(seed, v),
                                    stored=stored, clean=clean, progress=progress,
                                    protection=scenario.protection)
        row = point_row(config, label, v, ber, clean, est, energy, seed, len(xy[1]),
                        checkpoint, fingerprint, scenario)
        out.append(row)
        if on_row is not None:
            on_row(row)
        bar.set_postfix(V=f"{v:.2f}", acc=f"{est.mean:.3f}")
    return out


def sweep(checkpoint: str, arch: str, voltages: list[float], out: str | Path, *,
          act_bits: int = 8, ber_model: BerModel | None = None, realizations: int = 50,
          ci_target: float | None = None, seed: int = 0, resume: bool = False,
          label: str | None = None, data_root: str | None = None, data=None,
          progress: bool = True, device: str = "cpu", executor=None,
          scenario: Scenario = DEFAULT) -> pd.DataFrame:
    """Sweep `checkpoint` over `voltages` into `out`. `device`: where the network runs
    (cpu, cuda, cuda:N, auto); the energy model is the same everywhere. `executor`: None
    runs the points here; a hwsim.executor.RayExecutor runs each as a Ray task (on its
    nodes' devices) and appends its row as it finishes. `scenario`: the domains the voltage
    drives and their protection (hwsim.scenario); its rows get their own label."""
    out = Path(out)
    ber_model = ber_model or BerModel()
    # a bad name fails before anything is written (with Ray, the nodes have the devices)
    dev = resolve_device(device) if executor is None else check_device_name(device)
    if not Path(checkpoint).is_file():
        raise ConfigError(f"checkpoint {str(checkpoint)!r} does not exist")
    if out.is_dir():
        raise ConfigError(f"--out {str(out)!r} is a folder; give a CSV file name")
    model, config = load_quantized(checkpoint, "a sweep needs")
    q = config["quantizer"]
    label = scenario.label(label or method_name(config))
    if out.exists() and not resume:
        done = read_rows(out, SWEEP_KEYS)
        if ((done["checkpoint"] == str(checkpoint)) & (done["label"] == label)).any():
            raise ConfigError(f"{out} already holds points of {checkpoint} ({label}); pass "
                              "--resume to continue it, or choose another --out")
    rows = read_rows(out, SWEEP_KEYS)
    fingerprint = file_sha256(checkpoint)
    mine = rows["checkpoint"].astype(str) == str(checkpoint)
    if "checkpoint_sha256" in rows and (rows.loc[mine, "checkpoint_sha256"] != fingerprint).any():
        raise ConfigError(f"{out} holds points of an earlier version of {checkpoint} (the file "
                          "changed since); remove those rows or choose another --out")
    have = set(point_keys(rows))
    todo = [v for v in voltages if (str(checkpoint), label, round(v, 6)) not in have]
    if not todo:
        return rows
    test = checkpoint_test_data(config, data, data_root)
    energy = model_energy(arch, model, q["bits"], act_bits, progress=progress)
    scenario.scaled(energy)  # unknown domain names fail before anything is written
    warn_arch(arch, scenario.domains, ber_model)  # once per process (a study's sweeps too)
    update_sidecar(out, label, energy)
    if executor is not None:  # one Ray task per point (hwsim/remote.py)
        from .remote import submit_sweep
        rows = submit_sweep(executor, out, config, label, energy, todo, test, device,
                            ber_model, dict(max_realizations=realizations, ci_target=ci_target,
                                            protection=scenario.protection),
                            seed, str(checkpoint), fingerprint, scenario)
        if not executor.in_batch:  # in a batch (a study) the rows come at its end
            note_mixed_labels(rows[rows["label"].astype(str) == label], out)
        return rows
    model.to(dev)
    note_mixed_runs(rows[mine & (rows["label"].astype(str) == label)], run_context(model),
                    out, label)
    written = [rows]

    def write(row: dict) -> None:  # keeps rows another sweep on `out` wrote meanwhile
        written[0] = append_rows(out, [row])
    sweep_points(model, config, test, energy, todo, ber_model=ber_model,
                 realizations=realizations, ci_target=ci_target, seed=seed, label=label,
                 checkpoint=str(checkpoint), fingerprint=fingerprint, progress=progress,
                 on_row=write, scenario=scenario)
    return written[0]
