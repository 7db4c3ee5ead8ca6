"""Persistent-fault sweeps: every chip (models.chips) evaluated along the whole voltage grid.

`chip_sweep` writes, per (method, voltage), one results.csv row summarizing the chips (mean,
std, 95% CI of the mean, 5th/50th/95th percentile, yield = fraction of chips within
`yield_drop` of the clean accuracy) and, per (method, chip, voltage), one row in the sidecar
RESULTS.chips.csv. Chip i of a study is seeded by (seed, i) alone, so every method meets the
same chips (common random numbers). Resumable chip by chip.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from hwsim.models.checkpoint import method_name
from hwsim.models.chips import MODES, Layout, check_mode, evaluate_chip, sample_chip, stored_layout
from hwsim.models.device import check_device_name, resolve_device
from hwsim.models.errors import ConfigError
from hwsim.models.evaluate import (StoredWeights, accuracy, on_model_device, run_context,
                                   t_halfwidth)

from .accelforge_backend import load_arch
from .arch_safety import plain_number
from .ber import BerModel
from .domains import arch_nodes, warn_arch
from .energy import scaled_energy, scaled_weight_memory
from .sweep import (COLUMNS, RUN_COLUMNS, SWEEP_KEYS, checkpoint_test_data, file_sha256,
                    load_quantized, merge_rows, model_energy, note_mixed_runs, read_rows,
                    read_table, recorded_values, update_sidecar)

FAULT_MODELS = ("transient", "persistent")
CHIP_COLUMNS = ["label", "checkpoint_sha256", "fault_mode", "chip", "voltage", "ber",
                "accuracy", "erring_bits"]
EXTRA_COLUMNS = ["fault_model", "fault_mode", "stuck_q", "chips", "acc_p05", "acc_median",
                 "acc_p95", "yield", "yield_drop"]


@dataclass(frozen=True)
class Faults:
    """How bit errors are drawn: 'transient' (fresh flips per realization, the default) or
    'persistent' (`chips` fixed chips, failure `mode`, see models.chips)."""
    model: str = "transient"
    mode: str = "flip"
    chips: int = 100
    stuck_q: float = 0.5
    p01_scale: float = 1.0
    p10_scale: float = 1.0
    yield_drop: float = 0.01  # a chip "yields" within this accuracy drop (0.01 = 1 point)
    chip_files: tuple = ()  # measured chips (hwsim chip import): chip i = chip_files[i]

    @property
    def tag(self) -> str:
        """The fault_mode written to the per-chip rows: 'flip', or 'flip (measured)' for
        chip files (their chips must not pass for synthetic ones on --resume)."""
        return f"{self.mode} (measured)" if self.chip_files else self.mode

    def check(self) -> "Faults":
        if self.model not in FAULT_MODELS:
            raise ConfigError(f"fault model {self.model!r}: valid: {', '.join(FAULT_MODELS)}")
        check_mode(self.mode, self.stuck_q, self.p01_scale, self.p10_scale)
        if not (isinstance(self.chips, int) and self.chips >= 1):
            raise ConfigError(f"chips={self.chips!r}: must be an integer >= 1")
        if not (isinstance(self.yield_drop, (int, float)) and 0 <= self.yield_drop <= 1):
            raise ConfigError(f"yield_drop={self.yield_drop!r}: must be an accuracy drop in [0, 1]")
        for f in self.chip_files:
            if not Path(f).is_file():
                raise ConfigError(f"chip file {str(f)!r} does not exist (make one with "
                                  "`hwsim chip import PROFILE --out FILE.npz`)")
        if self.chip_files and (self.model != "persistent" or self.chips != len(self.chip_files)):
            raise ConfigError(f"{len(self.chip_files)} chip file(s) need fault model persistent "
                              f"and chips = {len(self.chip_files)}")
        return self


def _arith(text, where: str) -> int:
    """An integer from a number or a plain arithmetic expression like '8 * 1024 * 1024'
    (hwsim.arch_safety.plain_number)."""
    v = plain_number(text)
    if v is None:
        raise ConfigError(f"{where}: {text!r} is not a number or plain arithmetic of numbers "
                          "(a chip needs the weight memory's size and word width)")
    if not (v >= 1 and float(v).is_integer()):
        raise ConfigError(f"{where}: {text!r} must be a positive whole number of bits")
    return int(v)


def memory_geometry(arch: str) -> tuple[int, int]:
    """(word width in bits, capacity in bits) of the arch file's weight memory: the first
    component of `hwsim.weight_memory` (the SRAM that holds all weights); its `size` and
    `extra_attributes_for_component_model.width` (else its read action's bits_per_action)."""
    spec, info = load_arch(arch, accelforge_loader=False)
    name = info.weight_memory[0]
    node = arch_nodes(spec.get("arch")).get(name)
    where = f"arch file {str(arch)!r}: component {name}"
    if node is None or "size" not in node:
        raise ConfigError(f"{where}: field size is missing (the weight memory's bits)")
    width = (node.get("extra_attributes_for_component_model") or {}).get("width")
    if width is None:
        reads = [a for a in node.get("actions") or [] if isinstance(a, dict)
                 and a.get("name") == "read"]
        width = reads[0].get("bits_per_action") if reads else None
    if width is None:
        raise ConfigError(f"{where}: no word width (extra_attributes_for_component_model."
                          "width or a read action's bits_per_action)")
    return _arith(width, f"{where}: width"), _arith(node["size"], f"{where}: size")


def chips_sidecar(results_csv: str | Path) -> Path:
    """Per-chip rows next to the results CSV: results.csv -> results.chips.csv."""
    p = Path(results_csv)
    return p.with_name(p.stem + ".chips.csv")


def read_chip_rows(path: Path) -> pd.DataFrame:
    """RESULTS.chips.csv as a DataFrame (empty when missing); damaged files: one error line."""
    return read_table(path, CHIP_COLUMNS + RUN_COLUMNS, CHIP_COLUMNS,
                      ("chip", "voltage", "ber", "accuracy", "erring_bits"), "a chips CSV")


def _chip_keys(df: pd.DataFrame) -> list[tuple]:
    """What identifies a per-chip row: (label, fault mode, chip, voltage), as text."""
    return list(map(tuple, df[["label", "fault_mode", "chip", "voltage"]].astype(str).to_numpy()))


def chip_stats(accs: np.ndarray, clean: float, drop: float) -> dict:
    """Summary over chips of the accuracies at one voltage."""
    n = len(accs)
    std = float(accs.std(ddof=1)) if n > 1 else 0.0
    p05, p50, p95 = np.percentile(accs, [5, 50, 95])
    return {"acc_mean": float(accs.mean()), "acc_std": std, "acc_ci95": t_halfwidth(std, n),
            "acc_p05": float(p05), "acc_median": float(p50), "acc_p95": float(p95),
            "yield": float(np.mean(accs >= clean - drop - 1e-12)), "chips": n}


def chip_sweep(checkpoint: str, arch: str, voltages: list[float], out: str | Path,
               faults: Faults, *, act_bits: int = 8, ber_model: BerModel | None = None,
               seed: int = 0, resume: bool = False, label: str | None = None,
               data_root: str | None = None, data=None, progress: bool = True,
               device: str = "cpu", executor=None) -> pd.DataFrame:
    """Evaluate `faults.chips` persistent chips of `checkpoint` along `voltages` into `out`
    (summary rows) and chips_sidecar(out) (per-chip rows). `executor`: None evaluates the
    chips here; a hwsim.executor.RayExecutor evaluates blocks of chips as Ray tasks (on its
    nodes' devices), appending each block's rows as it finishes and the summary rows when
    the last block has (inside an executor batch: at the batch's end)."""
    faults.check()
    out, chips_csv = Path(out), chips_sidecar(out)
    ber_model = ber_model or BerModel()
    # a bad name fails before anything is written (with Ray, the nodes have the devices)
    if executor is not None:
        check_device_name(device)
    dev = resolve_device(device if executor is None else "cpu")  # Ray: on the driver, CPU
    if not Path(checkpoint).is_file():
        raise ConfigError(f"checkpoint {str(checkpoint)!r} does not exist")
    if out.is_dir():
        raise ConfigError(f"--out {str(out)!r} is a folder; give a CSV file name")
    rows = read_rows(out, SWEEP_KEYS)
    mine = rows["checkpoint"].astype(str) == str(checkpoint)
    if mine.any() and not resume:
        raise ConfigError(f"{out} already holds points of {checkpoint}; pass --resume to "
                          "continue it, or choose another --out")
    fingerprint = file_sha256(checkpoint)
    if "checkpoint_sha256" in rows and (rows.loc[mine, "checkpoint_sha256"] != fingerprint).any():
        raise ConfigError(f"{out} holds points of an earlier version of {checkpoint} (the file "
                          "changed since); remove those rows or choose another --out")
    grid = sorted({round(float(v), 6) for v in voltages}, reverse=True)  # high -> low voltage
    _check_same_faults(rows[mine], faults, out, checkpoint)
    if mine.any() and {round(v, 6) for v in rows.loc[mine, "voltage"]} >= set(grid):
        return rows
    word_bits, capacity = memory_geometry(arch)
    model, config = load_quantized(checkpoint, "chips need")
    q = config["quantizer"]
    label = label or method_name(config)
    test = checkpoint_test_data(config, data, data_root)
    model.to(dev)
    stored = StoredWeights(model)
    layout = stored_layout(stored, word_bits, capacity)  # per-layer widths when mixed
    energy = model_energy(arch, model, q["bits"], act_bits, progress=progress)
    warn_arch(arch, (), ber_model)  # once per process (hwsim.domains), not per chip
    update_sidecar(out, label, energy)
    bers = [ber_model.ber(v) for v in grid]
    done = read_chip_rows(chips_csv)
    done = done[(done["label"].astype(str) == label) & (done["fault_mode"] == faults.tag)
                & (done["checkpoint_sha256"].astype(str) == fingerprint)]
    per_chip = done.groupby("chip")["voltage"].apply(lambda s: set(s.round(6)))
    todo = [c for c in range(faults.chips) if c not in per_chip or not per_chip[c] >= set(grid)]
    if todo and executor is None:
        note_mixed_runs(done, run_context(model), chips_csv, label)

    def write_chips(pending: list[dict]) -> None:
        merge_rows(chips_csv, pd.DataFrame(pending, columns=CHIP_COLUMNS + RUN_COLUMNS),
                   _chip_keys, read_chip_rows)

    def summarize(clean: float) -> pd.DataFrame:
        return _summary(out, chips_csv, str(checkpoint), fingerprint, label, config, grid,
                        bers, clean, faults, layout, energy, seed, len(test))
    if executor is not None and todo:  # blocks of chips as Ray tasks (hwsim/remote.py)
        from .remote import submit_chips
        submit_chips(executor, str(checkpoint), fingerprint, test, device, todo,
                     (seed, grid, bers, faults, layout, label), write_chips, summarize)
        return read_rows(out, SWEEP_KEYS)
    xy = on_model_device(test, model)
    clean = accuracy(model, xy)
    pending = []
    for i, c in enumerate(tqdm(todo, desc=f"chips {label}", disable=not progress,
                               file=sys.stderr)):
        pending += chip_rows(model, xy, c, seed, grid, bers, faults, layout, stored, clean,
                             label, fingerprint)
        if len(pending) >= 20 * len(grid) or i == len(todo) - 1:  # every 20 chips
            write_chips(pending)
            pending = []
    return summarize(clean)


def chip_rows(model, xy, c: int, seed: int, grid: list[float], bers: list[float],
              faults: Faults, layout: Layout, stored: StoredWeights, clean: float, label: str,
              fingerprint: str) -> list[dict]:
    """RESULTS.chips.csv rows of chip `c` (seeded by `seed` and `c` alone) along `grid`."""
    if faults.chip_files:  # measured (hwsim/chip_import.py)
        from .chip_import import load_chip
        chip = load_chip(faults.chip_files[c], faults.mode, grid, bers, seed=c)
    else:
        chip = sample_chip(_chip_seed(seed, c), layout.used_bits, max(bers), faults.mode,
                           faults.stuck_q, faults.p01_scale, faults.p10_scale)
    accs, n_err = evaluate_chip(model, xy, bers, chip, layout, stored, clean)
    where = run_context(model)
    return [{"label": label, "checkpoint_sha256": fingerprint, "fault_mode": faults.tag,
             "chip": c, "voltage": v, "ber": b, "accuracy": a, "erring_bits": k, **where}
            for v, b, a, k in zip(grid, bers, accs, n_err)]


def _summary(out: Path, chips_csv: Path, checkpoint: str, fingerprint: str, label: str,
             config: dict, grid: list[float], bers: list[float], clean: float, faults: Faults,
             layout: Layout, energy, seed: int, test_images: int) -> pd.DataFrame:
    """Merge the per-voltage summary rows over the chips in chips_csv into `out` (chips in
    chip order, so the numbers do not depend on the order in which chips were written)."""
    q = config["quantizer"]
    allc = read_chip_rows(chips_csv)
    allc = allc[(allc["label"].astype(str) == label) & (allc["fault_mode"] == faults.tag)
                & (allc["checkpoint_sha256"].astype(str) == fingerprint)
                & (allc["chip"] < faults.chips)].sort_values("chip", kind="stable")
    new = []
    for v, b in zip(grid, bers):
        at_v = allc[allc["voltage"].round(6) == v]
        accs = at_v["accuracy"].to_numpy(float)
        new.append({"checkpoint": str(checkpoint), "checkpoint_sha256": fingerprint,
                    "label": label, "method": method_name(config), "quantizer": q["name"],
                    "bits": q["bits"], "bfn_rate": q.get("bfn_rate", 0.0), "voltage": v,
                    "ber": b, "acc_clean": clean, **chip_stats(accs, clean, faults.yield_drop),
                    "realizations": len(accs), "estimator": "chips",
                    "expected_flips": b * layout.n_bits,
                    "energy_uJ": scaled_energy(energy, v),
                    "energy_weight_mem_uJ": scaled_weight_memory(energy, v),
                    "energy_nominal_uJ": energy.total_uJ, "seed": seed,
                    "test_images": test_images, "fault_model": "persistent",
                    "fault_mode": faults.tag, "stuck_q": faults.stuck_q,
                    "yield_drop": faults.yield_drop, **_joined(at_v, RUN_COLUMNS)})
    new = pd.DataFrame(new, columns=COLUMNS + EXTRA_COLUMNS).iloc[::-1]  # low -> high V
    return merge_rows(out, new, reader=lambda p: read_rows(p, SWEEP_KEYS))


def _check_same_faults(rows: pd.DataFrame, faults: Faults, out: Path, checkpoint) -> None:
    """A resumed chip sweep must ask for the chips its summary rows describe: summary rows
    are kept once written, so other chips or another fault mode would otherwise return the
    old numbers silently."""
    if "chips" not in rows or "fault_mode" not in rows:
        return
    rows = rows[rows["estimator"].astype(str) == "chips"]
    chips = pd.to_numeric(rows["chips"], errors="coerce")
    have = {(int(c), str(m)) for c, m in zip(chips, rows["fault_mode"]) if c == c}
    other = sorted(have - {(faults.chips, faults.tag)})
    if other:
        chips, mode = other[0]
        raise ConfigError(f"{out} holds summary rows of {checkpoint} over {chips} chips "
                          f"(fault mode {mode}); this run asks for {faults.chips} "
                          f"({faults.tag}). Choose another --out, or delete those rows to "
                          f"recompute them (the chips already in {chips_sidecar(out).name} "
                          "are reused)")


def _joined(rows: pd.DataFrame, columns: list[str]) -> dict:
    """{column: its distinct recorded values joined by '+'} (e.g. device 'cpu+cuda' when a
    study's chips ran on both; '' when none recorded)."""
    return {c: "+".join(recorded_values(rows[c])) if c in rows else "" for c in columns}


def _chip_seed(seed: int, chip: int) -> int:
    """Chip `chip` of a study with seed `seed`: the same for every method (paired chips)."""
    return int(seed) * 1_000_003 + int(chip)


def faults_from_yaml(value, fail, base: Path | None = None) -> Faults:
    """A study file's `faults:` mapping -> Faults; `fail(key_path, message)` raises the
    study reader's one-line error (e.g. 'faults.mode: ...'). `chip_files` (measured chips;
    `chips` then defaults to their number) are relative to `base`, the study file's folder,
    unless they exist as given."""
    if value is None:
        return Faults()
    keys = ["model", "mode", "chips", "stuck_q", "p01_scale", "p10_scale", "yield_drop",
            "chip_files"]
    if not isinstance(value, dict):
        fail("faults", f"expected a mapping with keys {', '.join(keys)}, e.g. "
                       "{model: persistent, mode: stuck-at, chips: 100}")
    for k in value:
        if k not in keys:
            fail(f"faults.{k}", f"unknown key; valid keys: {', '.join(keys)}")
    value = dict(value)
    files = value.pop("chip_files", None) or []
    if not (isinstance(files, list) and all(isinstance(x, str) for x in files)):
        fail("faults.chip_files", "expected a list of chip files (.npz from hwsim chip import)")
    files = tuple(x if base is None or Path(x).is_absolute() or Path(x).exists()
                  else str(Path(base) / x) for x in files)
    for x in files:
        if not Path(x).is_file():
            fail("faults.chip_files", f"{x!r} does not exist (make it with hwsim chip import)")
    if files:
        value.setdefault("chips", len(files))
        if value["chips"] != len(files):
            fail("faults.chips", f"{value['chips']!r}: with chip_files it is their number, "
                                 f"{len(files)}")
    f = Faults(**value, chip_files=files)
    checks = [("model", lambda v: v in FAULT_MODELS, f"valid: {', '.join(FAULT_MODELS)}"),
              ("mode", lambda v: v in MODES, f"valid: {', '.join(MODES)}"),
              ("chips", lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1,
               "must be an integer >= 1"),
              ("stuck_q", lambda v: _num(v) and 0 <= v <= 1, "must be a probability in [0, 1]"),
              ("p01_scale", lambda v: _num(v) and v >= 0, "must be a number >= 0"),
              ("p10_scale", lambda v: _num(v) and v >= 0, "must be a number >= 0"),
              ("yield_drop", lambda v: _num(v) and 0 <= v <= 1,
               "must be an accuracy drop in [0, 1] (0.01 = 1 point)")]
    for k, ok, hint in checks:
        if not ok(getattr(f, k)):
            fail(f"faults.{k}", f"{getattr(f, k)!r} is not valid; {hint}")
    return f


def _num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v)


def run_study_chips(study, grid, results: Path, ber_model: BerModel, get_data, progress: bool,
                    checkpoint_of, executor=None) -> bool:
    """A study's step 2 for `faults: {model: persistent}`: chip_sweep of every method on the
    same chips (`executor`: see chip_sweep). Returns False (nothing done) for transient
    studies."""
    faults = study.faults
    if faults is None or faults.model != "persistent":
        return False
    for m in study.methods:
        chip_sweep(str(checkpoint_of(study, m)), study.arch, grid, results, faults,
                   act_bits=study.act_bits, ber_model=ber_model, seed=study.seed, resume=True,
                   label=m.name, data=get_data()[1], progress=progress,
                   device=study.device, executor=executor)
    return True


def study_chips_md(study, results: Path, df: pd.DataFrame) -> str:
    """summary.md's chips section of a persistent study ('' for transient ones)."""
    from .chips_report import chips_summary_md
    faults = study.faults
    if faults is None or faults.model != "persistent" or not chips_sidecar(results).exists():
        return ""
    chips = read_chip_rows(chips_sidecar(results))
    chips = chips[(chips["fault_mode"] == faults.tag) & (chips["chip"] < faults.chips)]
    return "\n" + chips_summary_md(df, chips, [m.name for m in study.methods], faults.tag,
                                   faults.yield_drop)
