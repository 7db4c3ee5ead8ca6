"""report.html figures of a persistent-chips study (issue 18 item 8): per method the median
and 5-95% band of accuracy over chips vs voltage, yield vs voltage, and the distribution of
per-chip V_min."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from .chips_report import chip_vmins
from .report import _colors, _rgba


def fig_chip_bands(chips: pd.DataFrame, colors: dict) -> go.Figure:
    """Median accuracy over chips vs voltage with the 5-95% band of chips, per method."""
    fig = go.Figure()
    for lab, g in chips.groupby("label", sort=False):
        q = g.groupby(g["voltage"].round(6))["accuracy"].quantile([0.05, 0.5, 0.95]).unstack()
        v = pd.Series(q.index, dtype=float)
        lo, mid, hi = (100 * q[k].to_numpy() for k in (0.05, 0.5, 0.95))
        fig.add_trace(go.Scatter(x=pd.concat([v, v[::-1]]), y=np.r_[hi, lo[::-1]],
                                 fill="toself", fillcolor=_rgba(colors[lab], 0.15),
                                 line=dict(width=0), hoverinfo="skip", showlegend=False,
                                 legendgroup=lab))
        fig.add_trace(go.Scatter(x=v, y=mid, mode="lines+markers", name=lab, legendgroup=lab,
                                 line=dict(color=colors[lab]), marker=dict(size=4)))
    n = int(chips.groupby("label")["chip"].nunique().min())
    fig.update_layout(title=f"Accuracy over {n} chips vs voltage: median, 5-95% of chips",
                      xaxis_title="weight-memory voltage (V)", yaxis_title="accuracy (%)")
    return fig


def fig_yield(results: pd.DataFrame, colors: dict, drop: float) -> go.Figure:
    """Fraction of chips within `drop` of clean accuracy vs voltage, per method."""
    fig = go.Figure()
    for lab, g in results.groupby("label", sort=False):
        g = g.sort_values("voltage")
        fig.add_trace(go.Scatter(x=g["voltage"], y=100 * g["yield"], mode="lines+markers",
                                 name=lab, line=dict(color=colors[lab]), marker=dict(size=4)))
    fig.update_layout(title=f"Yield: chips within {100 * drop:g} point(s) of clean accuracy",
                      xaxis_title="weight-memory voltage (V)", yaxis_title="yield (% of chips)")
    return fig


def fig_vmin(vmins: pd.DataFrame, colors: dict, step: float, start: float) -> go.Figure:
    """Histogram of per-chip V_min per method (one bar per grid voltage)."""
    fig = go.Figure()
    for lab, g in vmins.groupby("label", sort=False):
        fig.add_trace(go.Histogram(x=g["vmin"].dropna(), name=lab, marker_color=colors[lab],
                                   xbins=dict(start=start - step / 2, size=step),
                                   opacity=0.75))
    fig.update_layout(title="Per-chip V_min (lowest voltage at and above which the chip stays "
                            "within 1 point of clean)", barmode="group",
                      xaxis_title="chip V_min (V)", yaxis_title="chips")
    return fig


def chip_figures(results: pd.DataFrame, chips: pd.DataFrame, methods: list[str],
                 drop: float = 0.01) -> list[go.Figure]:
    """The three chip figures, methods in study order ([] when there are no chip rows)."""
    methods = [m for m in methods if m in set(chips["label"])]
    if not methods:
        return []
    order = {m: i for i, m in enumerate(methods)}
    chips = chips[chips["label"].isin(methods)].sort_values(
        "label", key=lambda s: s.map(order), kind="stable")
    res = results[results["label"].isin(methods)].sort_values(
        "label", key=lambda s: s.map(order), kind="stable")
    colors = _colors(list(dict.fromkeys(results["label"])))
    clean = {m: float(res.loc[res["label"] == m, "acc_clean"].iloc[0]) for m in methods}
    grid = np.sort(chips["voltage"].round(6).unique())
    step = float(np.min(np.diff(grid))) if len(grid) > 1 else 0.01
    return [fig_chip_bands(chips, colors), fig_yield(res, colors, drop),
            fig_vmin(chip_vmins(chips, clean, drop), colors, step, float(grid[0]))]


def study_chip_figures(study, results_csv, df: pd.DataFrame) -> list[go.Figure]:
    """The chip figures of a persistent study's report ([] for transient studies)."""
    from .chips import chips_sidecar, read_chip_rows
    faults = study.faults
    path = chips_sidecar(results_csv)
    if faults is None or faults.model != "persistent" or not path.exists():
        return []
    chips = read_chip_rows(path)
    chips = chips[(chips["fault_mode"] == faults.tag) & (chips["chip"] < faults.chips)]
    return chip_figures(df, chips, [m.name for m in study.methods], faults.yield_drop)
