"""Measured chips: a lab's per-cell failure profile of one SRAM replaces a synthetic chip.

Input (`hwsim chip import FILE`), CSV with a header row, or NPZ with the same names as arrays;
one row per weak cell:
- `address`: the cell's address in the weight memory, word * word_bits + column (the layout
  of models/chips.py), an integer in [0, cells);
- exactly one of `voltage`: the cell's failure voltage in V (it reads wrong at this supply
  voltage and every lower one), or `rank`: its order of failure as the voltage falls (1 = the
  first cell to fail; at bit error rate p the cells with rank <= p x cells fail, so the
  failure count follows the BER model and the measurement gives the order);
- optionally `stuck`: 0 or 1, the value the faulty cell reads (needed by `--fault-mode
  stuck-at`; `flip` ignores it).
Cells not listed work at every voltage the measurement covered: down to the lowest failure
voltage (or `--v-low`), or up to BER (highest rank) / cells. A sweep whose grid goes further
is one error. Addresses must be distinct.

Output: a chip file (.npz: address, kind, value, stuck (-1: none), cells, v_low) that
`hwsim sweep --chip-file` and a study's `faults: {chip_files: [...]}` read. Bad rows give one
error naming the row (the CSV line) and column; nothing is written then.
"""
from __future__ import annotations

import io
import math
import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from hwsim.models.chips import Chip
from hwsim.models.errors import ConfigError

from .ber import BerModel, check_voltage
from .files import FILE_MODE

KINDS = ("voltage", "rank")
SHIFT = 1 - 1e-9  # thresholds just under BER(v_f): the cell fails at v_f itself


def _table(path: Path) -> tuple[dict, int]:
    """Columns of a CSV or NPZ chip profile, and the offset of its first row's line number."""
    if path.suffix.lower() == ".npz":
        try:
            with np.load(path, allow_pickle=False) as z:
                return {k: np.asarray(z[k]).ravel() for k in z.files}, 0
        except (OSError, ValueError) as e:
            raise ConfigError(f"{path}: not a readable NPZ file ({e})") from None
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ConfigError(f"{path}: not a readable CSV text file ({first})") from None
    return {str(c).strip(): df[c].to_numpy() for c in df.columns}, 2


def _where(path: Path, line0: int, i: int, col: str) -> str:
    return f"{path}: {'line' if line0 else 'entry'} {i + line0}, column {col}"


def _numbers(path, line0, cols, col, integer, lo, hi=None) -> np.ndarray:
    """Column `col` as numbers in [lo, hi]; the first bad entry: one error naming it."""
    out = np.empty(len(cols[col]), dtype=np.float64)
    for i, raw in enumerate(cols[col]):
        try:
            v = float(str(raw).strip()) if isinstance(raw, str) else float(raw)
        except ValueError:
            v = math.nan
        bad = not math.isfinite(v) or v < lo or (hi is not None and v > hi) or \
            (integer and not v.is_integer())
        if bad:
            valid = (f"an integer in [{lo}, {hi}]" if integer and hi is not None else
                     f"an integer >= {lo}" if integer else f"a number >= {lo}")
            shown = repr(raw) if isinstance(raw, str) else str(raw)
            raise ConfigError(f"{_where(path, line0, i, col)}: {shown} is not valid; must be "
                              f"{valid}")
        out[i] = v
    return out


def read_profile(path: str | Path, cells: int, v_low: float | None = None) -> dict:
    """Check a measured profile (CSV/NPZ, see the module docstring) -> the chip-file arrays.
    `cells`: the measured memory's number of cells (addresses must be below it)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"chip profile {str(path)!r} does not exist")
    cols, line0 = _table(path)
    kinds = [k for k in KINDS if k in cols]
    extra = sorted(set(cols) - {"address", "stuck", *KINDS})
    if "address" not in cols or len(kinds) != 1 or extra:
        raise ConfigError(f"{path}: columns {', '.join(cols) or '(none)'}; a chip profile has "
                          "address, exactly one of voltage or rank, and optionally stuck")
    kind = kinds[0]
    n = len(cols["address"])
    if n == 0:
        raise ConfigError(f"{path}: no rows; list at least one weak cell")
    addr = _numbers(path, line0, cols, "address", True, 0, cells - 1).astype(np.int64)
    if kind == "voltage":
        value = _numbers(path, line0, cols, "voltage", False, 0.0)
        for i, v in enumerate(value):
            try:
                check_voltage(float(v))
            except ConfigError as e:
                raise ConfigError(f"{_where(path, line0, i, 'voltage')}: {e}") from None
    else:
        value = _numbers(path, line0, cols, "rank", True, 1, cells)
    stuck = _numbers(path, line0, cols, "stuck", True, 0, 1).astype(np.int8) \
        if "stuck" in cols else np.full(n, -1, np.int8)
    order = np.argsort(addr, kind="stable")
    dup = np.flatnonzero(np.diff(addr[order]) == 0)
    if len(dup):
        i = int(order[dup[0] + 1])
        raise ConfigError(f"{_where(path, line0, i, 'address')}: {addr[i]} is listed twice; "
                          "one row per cell")
    if kind == "voltage":
        lowest = float(value.min())
        v_low = lowest if v_low is None else check_voltage(v_low, "--v-low")
        if v_low > lowest:
            raise ConfigError(f"--v-low {v_low:g} V is above the lowest failure voltage "
                              f"{lowest:g} V in {path}")
    return {"address": addr[order], "kind": np.array(kind), "value": value[order],
            "stuck": stuck[order], "cells": np.array(int(cells)),
            "v_low": np.array(np.nan if v_low is None else float(v_low))}


def write_chip_file(arrays: dict, out: str | Path) -> Path:
    """The chip file (.npz), written atomically."""
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), FILE_MODE)
            f.write(buf.getvalue())
        os.replace(tmp, out)
    except BaseException:
        os.unlink(tmp)
        raise
    return out


def load_chip(path: str | Path, mode: str, grid, bers, seed: int = 0) -> Chip:
    """A chip file -> models.chips.Chip for the voltage `grid` with bit error rates `bers`
    (same order): each cell's threshold makes it fail exactly at the grid voltages at and
    below its failure voltage (voltage form) or at BERs >= rank / cells (rank form). The
    measurement must cover the whole grid."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            a = {k: z[k] for k in z.files}
        kind = str(a["kind"])
        addr, value, stuck = a["address"].astype(np.int64), a["value"], a["stuck"]
        cells, v_low = int(a["cells"]), float(a["v_low"])
    except (OSError, ValueError, KeyError) as e:
        raise ConfigError(f"chip file {str(path)!r}: not a chip file from `hwsim chip "
                          f"import` ({type(e).__name__}: {e})") from None
    if mode not in ("flip", "stuck-at"):
        raise ConfigError(f"chip file {path}: fault mode {mode!r}; measured chips support "
                          "flip and stuck-at")
    if mode == "stuck-at" and (stuck < 0).any():
        raise ConfigError(f"chip file {path} has no stuck values; import a profile with a "
                          "stuck column, or use fault mode flip")
    grid, bers = np.asarray(grid, float), np.asarray(bers, float)
    p_max = float(bers.max())
    if kind == "voltage":
        if v_low > grid.min() + 1e-9:
            raise ConfigError(f"chip file {path} was measured down to {v_low:g} V; the voltage "
                              f"grid goes down to {grid.min():g} V: raise the grid's lowest "
                              "voltage")
        # BER of the highest grid voltage at or below each cell's failure voltage (inf: none)
        t = np.array([bers[grid <= v + 1e-9].min(initial=np.inf) for v in value]) * SHIFT
    else:
        if p_max > value.max() / cells * (1 + 1e-12):
            raise ConfigError(f"chip file {path} ranks cells up to BER {value.max() / cells:.3g}"
                              f"; the voltage grid reaches BER {p_max:.3g}: raise the grid's "
                              "lowest voltage")
        t = (value - 1) / cells
    keep = t < np.inf
    return Chip(seed, p_max, mode, addr[keep], t[keep].astype(np.float64),
                stuck[keep].astype(np.uint8) if mode == "stuck-at" else None)


def export_profile(chip: Chip, out: str | Path, ber_model: BerModel) -> Path:
    """A synthetic chip as a measured-profile CSV (voltage form, with stuck values when it
    has them): the inverse of read_profile + load_chip, for tests and examples."""
    rows = {"address": chip.addresses,
            "voltage": [repr(ber_model.voltage(float(t))) for t in chip.thresholds]}
    if chip.stuck is not None:
        rows["stuck"] = chip.stuck
    Path(out).write_text(pd.DataFrame(rows).to_csv(index=False))
    return Path(out)
