"""summary.md tables of a persistent-chips study: per-chip V_min distribution, yield vs
voltage, and paired method differences on the same chips (common random numbers)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from hwsim.models.chips import vmin_index
from hwsim.models.evaluate import t_halfwidth


def chip_vmins(chips: pd.DataFrame, clean: dict, drop: float = 0.01) -> pd.DataFrame:
    """Per (label, chip): V_min, the lowest grid voltage at and above which the chip stays
    within `drop` of its method's clean accuracy (NaN: it fails at the highest voltage)."""
    out = []
    for (label, chip), g in chips.groupby(["label", "chip"], sort=False):
        g = g.sort_values("voltage", ascending=False)
        i = vmin_index(g["accuracy"].to_numpy(float), clean[label], drop)
        out.append({"label": label, "chip": int(chip),
                    "vmin": np.nan if i is None else float(g["voltage"].iloc[i])})
    return pd.DataFrame(out, columns=["label", "chip", "vmin"])


def paired(chips: pd.DataFrame, a: str, b: str, voltage: float) -> dict:
    """acc(a) - acc(b) over the chips both were evaluated on at `voltage`: mean, paired and
    (for comparison) unpaired 95% CI half-widths, and the fraction of chips where a >= b."""
    at = chips[chips["voltage"].round(6) == round(voltage, 6)]
    pa = at[at["label"] == a].set_index("chip")["accuracy"]
    pb = at[at["label"] == b].set_index("chip")["accuracy"]
    common = pa.index.intersection(pb.index)
    xa, xb = pa[common].to_numpy(float), pb[common].to_numpy(float)
    d = xa - xb
    n = len(d)
    sd = float(d.std(ddof=1)) if n > 1 else 0.0
    unpaired = t_halfwidth(float(np.sqrt((xa.var(ddof=1) + xb.var(ddof=1)) / 2)), n) * \
        np.sqrt(2) if n > 1 else float("inf")
    return {"mean": float(d.mean()) if n else float("nan"), "ci95": t_halfwidth(sd, n),
            "ci95_unpaired": float(unpaired), "a_ge_b": float(np.mean(d >= 0)) if n else 0.0,
            "chips": n}


def _md(rows: list[list[str]], head: list[str]) -> str:
    return "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] +
                     ["| " + " | ".join(r) + " |" for r in rows])


def chips_summary_md(results: pd.DataFrame, chips: pd.DataFrame, methods: list[str],
                     mode: str, drop: float = 0.01) -> str:
    """The summary.md section of a persistent-chips study (Markdown)."""
    methods = [m for m in methods if m in set(chips["label"])]
    if not methods:
        return ""
    clean = {m: float(results.loc[results["label"] == m, "acc_clean"].iloc[0]) for m in methods}
    vm = chip_vmins(chips, clean, drop)
    n = int(chips.groupby("label")["chip"].nunique().min())
    rows = []
    for m in methods:
        v = vm.loc[vm["label"] == m, "vmin"]
        ok = v.dropna().to_numpy()
        q = np.percentile(ok, [5, 50, 95]) if len(ok) else [np.nan] * 3
        rows.append([m, f"{100 * clean[m]:.2f}", f"{q[1]:.2f}", f"{q[0]:.2f}-{q[2]:.2f}",
                     f"{ok.mean():.3f}" if len(ok) else "", str(int(v.isna().sum()))])
    text = [f"## Persistent chips ({n} chips per method, fault mode {mode})", "",
            "Every method is evaluated on the same chips (chip i is seeded by the study seed "
            "and i). Per-chip V_min: the lowest grid voltage at and above which that chip stays "
            f"within {100 * drop:g} point(s) of its method's clean accuracy.", "",
            _md(rows, ["method", "clean acc %", "chip V_min median (V)", "5-95% (V)",
                       "mean (V)", "chips failing at Vmax"])]
    # yield vs voltage where it changes
    res = results[results["label"].isin(methods)]
    piv = res.pivot_table(index="voltage", columns="label", values="yield")
    moving = piv[(piv > 0).any(axis=1) & (piv < 1).any(axis=1)].index
    if len(moving):
        volts = [v for v in piv.index if moving.min() - 0.0101 <= v <= moving.max() + 0.0101]
        text += ["", f"Yield (% of chips within {100 * drop:g} point(s) of clean) vs voltage:", "",
                 _md([[f"{v:.2f}"] + [f"{100 * piv.at[v, m]:.0f}" for m in methods]
                      for v in sorted(volts, reverse=True)], ["V"] + methods)]
    # paired differences against the first method
    base = methods[0]
    bv = vm.loc[vm["label"] == base, "vmin"].dropna()
    grid = sorted(chips["voltage"].round(6).unique(), reverse=True)
    if len(methods) > 1 and len(bv):
        i = min(range(len(grid)), key=lambda k: abs(grid[k] - float(bv.median())))
        volts = grid[i:i + 3]
        rows = []
        for v in volts:
            for m in methods[1:]:
                p = paired(chips, m, base, v)
                rows.append([f"{v:.2f}", f"{m} - {base}",
                             f"{100 * p['mean']:+.2f} +/- {100 * p['ci95']:.2f}",
                             f"+/- {100 * p['ci95_unpaired']:.2f}", f"{100 * p['a_ge_b']:.0f}"])
        text += ["", f"Paired accuracy differences on the same chips (points; 95% CI), at "
                     f"{base}'s median chip V_min and the two grid voltages below; 'unpaired' is "
                     "the CI the same number of independent chips per method would give:", "",
                 _md(rows, ["V", "difference", "paired mean +/- CI", "unpaired CI",
                            "% chips where first >= second"])]
    return "\n".join(text) + "\n"
