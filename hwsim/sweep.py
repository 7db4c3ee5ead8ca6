"""Voltage sweep: for each weight-memory voltage, BER eps(V), accuracy under random bit errors
(variance-reduced Monte Carlo), and energy per inference. Written point by point, atomically;
`resume` skips every point already in the file."""
from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from models.checkpoint import load_checkpoint, method_name
from models.data import load_dataset
from models.errors import ConfigError
from models.estimate import estimate_accuracy
from models.evaluate import StoredWeights, accuracy

from models.networks import input_shape

from .ber import BerModel, check_voltage
from .files import read_json, write_json_atomic, write_text_atomic
from .energy import NetworkEnergy, network_energy, scaled_energy, scaled_weight_memory
from .workload import extract_layers

COLUMNS = ["checkpoint", "checkpoint_sha256", "label", "method", "quantizer", "bits", "bfn_rate", "voltage", "ber",
           "acc_clean", "acc_mean", "acc_std", "acc_ci95", "realizations", "estimator",
           "expected_flips", "energy_uJ", "energy_weight_mem_uJ", "energy_nominal_uJ",
           "seed", "test_images"]


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
    """Nominal-voltage energy per inference of a (quantized) model on an arch file."""
    layers = extract_layers(model, input_shape(model), weight_bits=weight_bits,
                            act_bits=act_bits)
    return network_energy(arch, layers, progress=progress)


def read_rows(path: Path) -> pd.DataFrame:
    if path.exists() and path.stat().st_size > 0:
        return pd.read_csv(path)
    return pd.DataFrame(columns=COLUMNS)


def write_rows_atomic(df: pd.DataFrame, path: Path) -> None:
    write_text_atomic(path, df.to_csv(index=False))


def file_sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def point_seed(seed: int, voltage: float) -> int:
    # per-point seed: a resumed sweep draws exactly what an uninterrupted one would
    return int(seed) * 1_000_003 + int(round(voltage * 1e6))


def energy_sidecar(results_csv: str | Path) -> Path:
    """Per-layer nominal energies of every swept checkpoint, next to the results CSV."""
    p = Path(results_csv)
    return p.with_name(p.stem + ".energy.json")


def update_sidecar(results_csv: Path, label: str, energy: NetworkEnergy) -> None:
    path = energy_sidecar(results_csv)
    data = read_json(path)
    data[label] = energy.to_dict()
    write_json_atomic(path, data)


def sweep(checkpoint: str, arch: str, voltages: list[float], out: str | Path, *,
          act_bits: int = 8, ber_model: BerModel | None = None, realizations: int = 50,
          ci_target: float | None = None, seed: int = 0, resume: bool = False,
          label: str | None = None, data_root: str | None = None, data=None,
          progress: bool = True) -> pd.DataFrame:
    out = Path(out)
    ber_model = ber_model or BerModel()
    if out.exists() and not resume:
        done = read_rows(out)
        if (done["checkpoint"] == str(checkpoint)).any():
            raise ConfigError(f"{out} already holds points of {checkpoint}; pass --resume to "
                              "continue it, or choose another --out")
    rows = read_rows(out)
    fingerprint = file_sha256(checkpoint)
    mine = rows["checkpoint"].astype(str) == str(checkpoint)
    if "checkpoint_sha256" in rows and (rows.loc[mine, "checkpoint_sha256"] != fingerprint).any():
        raise ConfigError(f"{out} holds points of an earlier version of {checkpoint} (the file "
                          "changed since); remove those rows or choose another --out")
    have = set(zip(rows["checkpoint"].astype(str), rows["voltage"].round(6)))
    todo = [v for v in voltages if (str(checkpoint), round(v, 6)) not in have]
    if not todo:
        return rows
    model, config = load_checkpoint(checkpoint)
    q = config.get("quantizer")
    if not q:
        raise ConfigError(f"{checkpoint} is a float network: a sweep needs stored integers "
                          "(a quantized checkpoint)")
    test = data if data is not None else load_dataset(
        config["data"]["name"], data_root or config["data"].get("root"))[1]
    energy = model_energy(arch, model, q["bits"], act_bits, progress=progress)
    label = label or method_name(config)
    update_sidecar(out, label, energy)
    stored = StoredWeights(model)
    clean = accuracy(model, test)
    bar = tqdm(todo, desc=f"sweep {label}", disable=not progress,
               file=sys.stderr)
    for v in bar:
        ber = ber_model.ber(v)
        est = estimate_accuracy(model, test, ber, max_realizations=realizations,
                                ci_target=ci_target, seed=point_seed(seed, v), stored=stored,
                                clean=clean, progress=progress)
        e_total, e_weight = scaled_energy(energy, v), scaled_weight_memory(energy, v)
        row = {"checkpoint": str(checkpoint), "checkpoint_sha256": fingerprint, "label": label,
               "method": method_name(config), "quantizer": q["name"], "bits": q["bits"],
               "bfn_rate": q.get("bfn_rate", 0.0), "voltage": v, "ber": ber,
               "acc_clean": clean, "acc_mean": est.mean, "acc_std": est.std,
               "acc_ci95": est.ci95, "realizations": est.realizations,
               "estimator": est.estimator, "expected_flips": est.expected_flips,
               "energy_uJ": e_total, "energy_weight_mem_uJ": e_weight,
               "energy_nominal_uJ": energy.total_uJ, "seed": seed,
               "test_images": len(test)}
        rows = pd.concat([rows, pd.DataFrame([row])], ignore_index=True) if len(rows) else \
            pd.DataFrame([row], columns=COLUMNS)
        write_rows_atomic(rows, out)
        bar.set_postfix(V=f"{v:.2f}", acc=f"{est.mean:.3f}")
    return rows
