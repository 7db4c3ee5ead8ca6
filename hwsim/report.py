"""The HTML report: one page per results folder, loading a shared plotly.min.js by a relative
path (works offline, from file://; keep the page and that file together when copying)."""
from __future__ import annotations

import html
import math
import os
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
from plotly.colors import hex_to_rgb, qualitative, unlabel_rgb

from .files import write_text_atomic
from .pareto import DEFAULT_TITLE, frontier, lowest_energy_within, readable_table

PALETTE = qualitative.D3 + qualitative.Set2
PLOTLY_JS = "plotly.min.js"


def _colors(labels) -> dict:
    return {lab: PALETTE[i % len(PALETTE)] for i, lab in enumerate(labels)}


def _rgba(color: str, alpha: float) -> str:
    """'#1f77b4' (D3) or 'rgb(102,194,165)' (Set2, used past the 10th label) at `alpha`."""
    r, g, b = (hex_to_rgb(color) if color.startswith("#") else unlabel_rgb(color))
    return f"rgba({int(r)},{int(g)},{int(b)},{alpha})"


def fig_pareto(df: pd.DataFrame, front: pd.DataFrame, colors: dict) -> go.Figure:
    fig = go.Figure()
    for lab, g in df.groupby("label", sort=False):
        fig.add_trace(go.Scatter(x=g["energy_uJ"], y=100 * g["acc_mean"], mode="markers",
                                 name=f"{lab}", legendgroup=lab, opacity=0.25,
                                 marker=dict(color=colors[lab], size=6),
                                 text=[f"{lab} @ {v:.2f} V" for v in g["voltage"]],
                                 hovertemplate="%{text}<br>%{x:.3g} uJ, %{y:.2f}%<extra></extra>"))
    fig.add_trace(go.Scatter(x=front["energy_uJ"], y=100 * front["acc_mean"], mode="lines",
                             line=dict(color="black", width=1, dash="dot"), name="frontier",
                             hoverinfo="skip"))
    for lab, g in front.groupby("label", sort=False):
        # the voltage is printed next to each frontier point, not only in the hover text
        fig.add_trace(go.Scatter(x=g["energy_uJ"], y=100 * g["acc_mean"], mode="markers+text",
                                 name=f"{lab} (frontier)", legendgroup=lab,
                                 marker=dict(color=colors[lab], size=10,
                                             line=dict(color="black", width=1)),
                                 text=[f"{v:.2f} V" for v in g["voltage"]],
                                 textposition="top center", textfont=dict(size=10),
                                 customdata=[f"{lab} @ {v:.2f} V" for v in g["voltage"]],
                                 hovertemplate="%{customdata}<br>%{x:.3g} uJ, %{y:.2f}%"
                                               "<extra></extra>"))
    fig.update_layout(title="Accuracy vs energy per inference (Pareto frontier highlighted)",
                      xaxis_title="energy per inference (uJ)", yaxis_title="accuracy (%)")
    return fig


def fig_vs(df: pd.DataFrame, colors: dict, x: str, title: str, log_x: bool) -> go.Figure:
    fig = go.Figure()
    for lab, g in df.groupby("label", sort=False):
        g = g[g[x] > 0] if log_x else g
        g = g.sort_values(x)
        lo, hi = 100 * (g["acc_mean"] - g["acc_ci95"]), 100 * (g["acc_mean"] + g["acc_ci95"])
        fig.add_trace(go.Scatter(x=pd.concat([g[x], g[x][::-1]]), y=pd.concat([hi, lo[::-1]]),
                                 fill="toself", fillcolor=_rgba(colors[lab], 0.15),
                                 line=dict(width=0), hoverinfo="skip", showlegend=False,
                                 legendgroup=lab))
        fig.add_trace(go.Scatter(x=g[x], y=100 * g["acc_mean"], mode="lines+markers", name=lab,
                                 legendgroup=lab, line=dict(color=colors[lab]),
                                 marker=dict(size=4)))
    fig.update_layout(title=title, yaxis_title="accuracy (%), mean with 95% CI band",
                      xaxis_title={"ber": "bit error rate", "voltage": "weight-memory voltage (V)"}[x])
    if log_x:
        fig.update_xaxes(type="log", range=_log_range(df, x))
    return fig


def _log_range(df: pd.DataFrame, x: str) -> list[float] | None:
    """Log-axis range that starts two decades before the first point where any method loses
    half a point (high voltages give BERs down to 1e-14 where nothing happens, which would
    take most of the plot); None (plotly's own range) when no method loses anything."""
    pos = df[df[x] > 0]
    hurt = pos[pos["acc_mean"] < pos["acc_clean"] - 0.005]
    if hurt.empty:
        return None
    lo = max(float(hurt[x].min()) / 100, float(pos[x].min()))
    return [math.log10(lo), math.log10(float(pos[x].max())) + 0.1]


def fig_layers(energy_layers: list[dict], title: str) -> go.Figure:
    names = [l["name"] for l in energy_layers]
    fig = go.Figure([
        go.Bar(x=names, y=[l["weight_memory_uJ"] for l in energy_layers],
               name="weight memory (voltage-scaled)"),
        go.Bar(x=names, y=[l["total_uJ"] - l["weight_memory_uJ"] for l in energy_layers],
               name="rest (nominal voltage)")])
    fig.update_layout(barmode="stack", title=title, yaxis_title="energy per inference (uJ)",
                      xaxis_title="layer")
    return fig


def fig_components(points: dict[str, dict[str, float]], title: str) -> go.Figure:
    """Stacked bars of energy per inference by component (uJ), one bar per chosen point
    (e.g. "WCAT+BFN @ 0.42 V" -> {"MAC": .., "WeightSRAM": .., ...}); components in the order
    they first appear."""
    comps = list(dict.fromkeys(c for d in points.values() for c in d))
    fig = go.Figure([go.Bar(x=list(points), y=[d.get(c, 0.0) for d in points.values()], name=c)
                     for c in comps])
    fig.update_layout(barmode="stack", title=title, yaxis_title="energy per inference (uJ)",
                      xaxis_title="point")
    return fig


def frontier_table(front: pd.DataFrame) -> pd.DataFrame:
    """The Pareto frontier as a table: method, voltage, BER, energy, accuracy +/- 95% CI,
    lowest energy first."""
    cols = ["label", "voltage", "ber", "energy_uJ", "acc_mean", "acc_ci95"]
    t = front[[c for c in cols if c in front]].copy()
    t = t.rename(columns={"label": "method"})
    out = pd.DataFrame({"method": t["method"], "voltage (V)": t["voltage"].map("{:.2f}".format),
                        "BER": t["ber"].map("{:.2g}".format),
                        "energy (uJ)": t["energy_uJ"].map("{:.4g}".format),
                        "accuracy (%)": [f"{100 * a:.2f} ± {100 * c:.2f}" for a, c in
                                         zip(t["acc_mean"], t["acc_ci95"])]})
    return out


def plotly_js_src(report: Path, shared_dir: str | Path | None = None) -> str:
    """The relative URL the page `report` loads plotly.js from. A plotly.min.js identical to
    the installed plotly's in `shared_dir`, the report's folder or its parent is reused;
    otherwise it is written to `shared_dir` (default: the report's folder)."""
    from plotly.offline import get_plotlyjs
    js = get_plotlyjs()
    size = len(js.encode("utf-8"))
    folder = Path(os.path.abspath(report)).parent
    first = Path(os.path.abspath(shared_dir)) if shared_dir is not None else folder
    for d in dict.fromkeys([first, folder, folder.parent]):
        f = d / PLOTLY_JS
        if f.is_file() and f.stat().st_size == size and f.read_text(encoding="utf-8") == js:
            break
    else:
        f = first / PLOTLY_JS
        write_text_atomic(f, js)
    return Path(os.path.relpath(f, folder)).as_posix()


def write_report(df: pd.DataFrame, out: str | Path, *, title: str = DEFAULT_TITLE,
                 energy_layers: dict[str, list[dict]] | None = None,
                 notes: str = "", table: pd.DataFrame | None = None,
                 plotly_dir: str | Path | None = None,
                 extra_figs: list[go.Figure] | None = None,
                 components: dict[str, dict[str, float]] | None = None) -> pd.DataFrame:
    """Write the HTML report; returns the frontier. The page loads plotly.js from a
    plotly.min.js in `plotly_dir` (default: next to it; see plotly_js_src). `extra_figs`
    (e.g. hwsim.chips_figures.chip_figures) follow the voltage plot; `components` (point
    name -> {component: uJ}) adds the per-component stacked bars (fig_components)."""
    out = Path(out)
    front = frontier(df)
    colors = _colors(list(dict.fromkeys(df["label"])))
    figs = [fig_pareto(df, front, colors),
            fig_vs(df, colors, "ber", "Accuracy vs bit error rate", log_x=True),
            fig_vs(df, colors, "voltage", "Accuracy vs weight-memory supply voltage", False)]
    figs += list(extra_figs or [])
    if components:
        figs.append(fig_components(components, "Energy per inference by component at "
                                               "chosen points"))
    for name, layers in (energy_layers or {}).items():
        figs.append(fig_layers(layers, f"Energy per layer at nominal voltage: {name}"))
    table = lowest_energy_within(df) if table is None else table
    parts = [f"<h1>{html.escape(title)}</h1>", f"<p>{html.escape(notes)}</p>" if notes else "",
             "<h2>Lowest-energy voltage within 1 point of clean accuracy"
             + (" and BFA N_flip" if "bfa_n_flip" in table else "") + "</h2>",
             readable_table(table).to_html(index=False, border=0),
             "<h2>Pareto frontier (every point no other point beats on both axes)</h2>",
             frontier_table(front).to_html(index=False, border=0)]
    write_page(out, title, parts, figs, plotly_dir)
    return front


def write_page(out: Path, title: str, parts: list[str], figs: list[go.Figure],
               plotly_dir: str | Path | None = None) -> None:
    """One report page: the HTML `parts` (headings, tables), then the figures, loading
    plotly.js by a relative path (plotly_js_src)."""
    parts = list(parts)
    for i, fig in enumerate(figs):
        fig.update_layout(template="plotly_white", height=520)
        parts.append(fig.to_html(full_html=False, include_plotlyjs=False, div_id=f"fig{i}"))
    src = html.escape(plotly_js_src(out, plotly_dir))
    page = ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>"
            f"{html.escape(title)}</title><script src=\"{src}\" charset=\"utf-8\"></script>"
            "<style>body{font-family:sans-serif;margin:2em}"
            "table{border-collapse:collapse}td,th{padding:2px 8px;text-align:right}"
            "</style></head><body>" + "\n".join(parts) + "</body></html>")
    write_text_atomic(out, page)
