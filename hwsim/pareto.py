"""Pareto frontier over (model, voltage) points: maximise accuracy, minimise energy."""
from __future__ import annotations

import numpy as np
import pandas as pd

DEFAULT_TITLE = "hwsim report"  # of a report drawn without --title (hwsim.report)


def pareto_mask(acc, energy) -> np.ndarray:
    """True where no other point is at least as accurate and at most as costly while strictly
    better in one of the two. Identical points do not dominate each other (both are kept)."""
    acc, energy = np.asarray(acc, float), np.asarray(energy, float)
    order = np.lexsort((-acc, energy))  # by energy, then best accuracy first
    keep = np.zeros(len(acc), bool)
    best = -np.inf  # best accuracy among strictly cheaper points
    i = 0
    while i < len(order):
        j = i  # group of equal energy
        while j < len(order) and energy[order[j]] == energy[order[i]]:
            j += 1
        group = order[i:j]
        top = acc[group].max()
        for k in group:
            keep[k] = acc[k] == top and acc[k] > best
        best = max(best, top)
        i = j
    return keep


def frontier(df: pd.DataFrame, acc: str = "acc_mean", energy: str = "energy_uJ") -> pd.DataFrame:
    return df[pareto_mask(df[acc], df[energy])].sort_values(energy).reset_index(drop=True)


def lowest_energy_within(df: pd.DataFrame, points: float = 1.0) -> pd.DataFrame:
    """Per method (label): clean accuracy, the lowest-energy voltage whose mean accuracy stays
    within `points` percentage points of that method's clean accuracy, and its energy and
    saving against nominal: the energy with every memory at nominal voltage and no
    protection (results' `energy_nominal_uJ`; a table without it: the highest voltage swept).
    Rows that carry `saving_vs_errorfree` (hwsim.scenario) add the saving against the scaled
    domains at their lowest error-free voltage."""
    out = []
    for label, g in df.groupby("label", sort=False):
        clean = float(g["acc_clean"].iloc[0])
        nominal = g.loc[g["voltage"].idxmax()]
        ok = g[g["acc_mean"] >= clean - points / 100.0]
        best = ok.loc[ok["energy_uJ"].idxmin()] if len(ok) else nominal
        base = float(best.get("energy_nominal_uJ", float("nan")))
        if not base > 0:
            base = float(nominal["energy_uJ"])
        row = {"method": label, "clean_acc_%": 100 * clean,
               "v_min_V": float(best["voltage"]), "ber_at_v_min": float(best["ber"]),
               "acc_at_v_min_%": 100 * float(best["acc_mean"]),
               "energy_at_v_min_uJ": float(best["energy_uJ"]),
               "energy_at_vmax_uJ": float(nominal["energy_uJ"]),
               "saving_%": 100 * (1 - float(best["energy_uJ"]) / base)}
        ef = float(best.get("saving_vs_errorfree", float("nan")))
        if ef == ef:  # not NaN
            row["saving_vs_errorfree_%"] = 100 * ef
        out.append(row)
    return pd.DataFrame(out)


# column -> (title, format) for tables shown to people (summary.md, report, terminal)
TABLE_COLUMNS = {
    "method": ("method", "{}"), "clean_acc_%": ("clean acc %", "{:.2f}"),
    "v_min_V": ("V_min (V)", "{:.2f}"), "ber_at_v_min": ("BER at V_min", "{:.2g}"),
    "acc_at_v_min_%": ("acc at V_min %", "{:.2f}"),
    "energy_at_v_min_uJ": ("E at V_min (uJ)", "{:#.4g}"),
    "energy_at_vmax_uJ": ("E at Vmax (uJ)", "{:#.4g}"), "saving_%": ("saving %", "{:.1f}"),
    "saving_vs_errorfree_%": ("saving vs error-free %", "{:.1f}"),
    "bfa_n_flip": ("BFA N_flip", "{}")}


def readable_table(t: pd.DataFrame) -> pd.DataFrame:
    """Formatted strings under human column titles; columns unknown to TABLE_COLUMNS are
    already formatted and keep their name and place."""
    return pd.DataFrame({TABLE_COLUMNS[c][0] if c in TABLE_COLUMNS else c:
                         [TABLE_COLUMNS[c][1].format(v) for v in t[c]] if c in TABLE_COLUMNS
                         else list(t[c]) for c in t.columns})
