"""Report and summary of a cross-accelerator study (hwsim.accelerators): per accelerator its
frontier, weight-memory share and saving at V_min, side by side."""
from __future__ import annotations

import html
import shlex
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go

from .domain_energy import price
from .pareto import frontier, lowest_energy_within, readable_table
from .report import PALETTE, fig_components, frontier_table, write_page
from .study_spec import Study

SYMBOLS = ["circle", "diamond", "square", "triangle-up", "x", "star", "cross", "hexagon"]
# columns of accelerator_table not in hwsim.pareto.TABLE_COLUMNS: (title, format)
EXTRA = {"accelerator": ("accelerator", "{}"), "pj_per_mac": ("pJ/MAC", "{:.3f}"),
         "weight_share_%": ("weight-memory share %", "{:.1f}")}


def accelerator_table(df: pd.DataFrame, energies: dict, study: Study) -> pd.DataFrame:
    """One row per (accelerator, method), in study order: pJ/MAC and weight-memory share at
    nominal, clean accuracy, the lowest-energy voltage within 1 point of it (V_min), the
    energy there and at nominal, and the saving vs nominal (hwsim.pareto.lowest_energy_within)."""
    from .accelerators import accelerator_name, label
    low = lowest_energy_within(df).set_index("method")
    rows = []
    for arch in study.accelerators:
        for m in study.methods:
            lab = label(m.name, arch)
            ne, r = energies[lab], low.loc[lab]
            rows.append({"accelerator": accelerator_name(arch), "method": m.name,
                         "pj_per_mac": ne.total_uJ * 1e6 / ne.macs,
                         "weight_share_%": 100 * ne.weight_share,
                         "clean_acc_%": r["clean_acc_%"], "v_min_V": r["v_min_V"],
                         "acc_at_v_min_%": r["acc_at_v_min_%"],
                         "energy_at_vmax_uJ": ne.total_uJ,
                         "energy_at_v_min_uJ": r["energy_at_v_min_uJ"],
                         "saving_%": r["saving_%"]})
    return pd.DataFrame(rows)


def readable(t: pd.DataFrame) -> pd.DataFrame:
    """accelerator_table as strings under human titles."""
    t = t.copy()
    for c, (_, f) in EXTRA.items():
        t[c] = [f.format(v) for v in t[c]]
    return readable_table(t).rename(columns={c: title for c, (title, _) in EXTRA.items()}
                                    | {"E at Vmax (uJ)": "E nominal (uJ)"})


def markdown(t: pd.DataFrame) -> str:
    """accelerator_table as a Markdown table."""
    from .study import format_table
    return format_table(readable(t))


def _styles(df: pd.DataFrame, study: Study) -> tuple[dict, dict]:
    from .accelerators import accelerator_name
    archs = [accelerator_name(a) for a in study.accelerators]
    colors = {a: PALETTE[i % len(PALETTE)] for i, a in enumerate(archs)}
    symbols = {m.name: SYMBOLS[i % len(SYMBOLS)] for i, m in enumerate(study.methods)}
    return colors, symbols


def fig_cross(df: pd.DataFrame, study: Study, x: str, title: str, xtitle: str,
              scale: float = 1.0, fronts: bool = True) -> go.Figure:
    """Accuracy vs `x` (energy_uJ, or saving_vs_nominal with scale 100): color = accelerator,
    symbol = method; with `fronts`, each accelerator's Pareto frontier as a line."""
    from .accelerators import accelerator_name, label
    colors, symbols = _styles(df, study)
    fig = go.Figure()
    for arch in study.accelerators:
        a = accelerator_name(arch)
        for m in study.methods:
            g = df[df["label"] == label(m.name, arch)].sort_values("voltage")
            fig.add_trace(go.Scatter(
                x=scale * g[x], y=100 * g["acc_mean"], name=f"{m.name} @ {a}",
                mode="markers" if fronts else "lines+markers", legendgroup=a,
                opacity=0.35 if fronts else 1.0,
                marker=dict(color=colors[a], symbol=symbols[m.name], size=7),
                line=dict(color=colors[a]), text=[f"{m.name} @ {a}, {v:.2f} V"
                                                  for v in g["voltage"]],
                hovertemplate="%{text}<br>%{x:.4g}, %{y:.2f}%<extra></extra>"))
        if fronts:
            f = frontier(df[df["arch"] == a])
            fig.add_trace(go.Scatter(
                x=scale * f[x], y=100 * f["acc_mean"], mode="lines+markers",
                name=f"{a} frontier", legendgroup=a, line=dict(color=colors[a], width=2),
                marker=dict(color=colors[a], size=9, line=dict(color="black", width=1),
                            symbol=[symbols.get(str(lab).split(" @ ")[0], "circle")
                                    for lab in f["label"]]),
                text=[f"{lab}, {v:.2f} V" for lab, v in zip(f["label"], f["voltage"])],
                hovertemplate="%{text}<br>%{x:.4g}, %{y:.2f}%<extra></extra>"))
    fig.update_layout(title=title, xaxis_title=xtitle, yaxis_title="accuracy (%)")
    return fig


def component_bars(energies: dict, table: pd.DataFrame, study: Study) -> dict:
    """{point: {component: uJ}}: each accelerator at nominal, then each method at its V_min
    (the weight memory scaled as in the sweep: hwsim.domain_energy.price)."""
    from .accelerators import DEFAULT, accelerator_name, label
    out = {}
    for arch in study.accelerators:
        a = accelerator_name(arch)
        for i, m in enumerate(study.methods):
            ne = energies[label(m.name, arch)]
            if i == 0:
                out[f"{a} nominal"] = dict(ne.components_uJ)
            v = float(table.loc[(table["accelerator"] == a) & (table["method"] == m.name),
                                "v_min_V"].iloc[0])
            out[f"{a}: {m.name} @ {v:.2f} V"] = price(
                ne, {d.name: v for d in DEFAULT.scaled(ne)})["components_uJ"]
    return out


def frontiers(df: pd.DataFrame, study: Study) -> pd.DataFrame:
    """Each accelerator's Pareto frontier (hwsim.pareto.frontier of its rows), in turn."""
    from .accelerators import accelerator_name
    return pd.concat([frontier(df[df["arch"] == accelerator_name(a)])
                      for a in study.accelerators], ignore_index=True)


def write_cross_report(df: pd.DataFrame, energies: dict, table: pd.DataFrame, study: Study,
                       out: Path) -> None:
    """report.html of a cross-accelerator study (plotly.js shared in the results' parent)."""
    title = f"hwsim study: {study.name}"
    fronts = frontiers(df, study)
    notes = (f"{study.network}: the checkpoints' accuracy copied from {study.accuracy_from} "
             "(same checkpoint sha256 and voltage, never re-evaluated); energy per inference "
             "recomputed on each accelerator with only its weight memory at the swept voltage.")
    parts = [f"<h1>{html.escape(title)}</h1>", f"<p>{html.escape(notes)}</p>",
             "<h2>Per accelerator: weight-memory share and saving at the lowest-energy voltage "
             "within 1 point of clean accuracy</h2>",
             readable(table).to_html(index=False, border=0),
             "<h2>Pareto frontier of each accelerator</h2>",
             frontier_table(fronts).to_html(index=False, border=0)]
    figs = [fig_cross(df, study, "energy_uJ", "Accuracy vs energy per inference (each "
                      "accelerator's Pareto frontier as a line)", "energy per inference (uJ)"),
            fig_cross(df, study, "saving_vs_nominal", "Accuracy vs saving against nominal "
                      "voltage", "saving vs nominal (%)", scale=100.0, fronts=False),
            fig_components(component_bars(energies, table, study),
                           "Energy per inference by component: nominal and at V_min")]
    write_page(out, title, parts, figs, plotly_dir=out.parent.parent)


def summary_md(study: Study, table: pd.DataFrame) -> str:
    """summary.md: command, inputs and the per-accelerator table."""
    from .study import _versions
    cmd = "hwsim study " + shlex.quote(str(study.file))
    archs = ", ".join(f"`{a}`" for a in study.accelerators)
    methods = ", ".join(f"{m.name} (`{m.checkpoint}`)" for m in study.methods)
    best = table.loc[table.groupby("method", sort=False)["saving_%"].idxmax()]
    lines = "\n".join(f"- {r.method}: largest saving on {r.accelerator} ({r['saving_%']:.1f}% "
                      f"at {r.v_min_V:.2f} V, weight-memory share {r['weight_share_%']:.1f}%)"
                      for _, r in best.iterrows())
    return f"""# Study `{study.name}` (cross-accelerator)

- Command: `{cmd}`
- Accelerators: {archs}
- Methods: {methods}
- Accuracy: copied from `{study.accuracy_from}` (same checkpoint sha256 and voltage; never
  re-evaluated); voltages {study.voltages.min}-{study.voltages.max} V, step {study.voltages.step}
- Energy: recomputed per accelerator, {study.act_bits}-bit activations, weight bits from each
  checkpoint; only the weight memory at the swept voltage
- Versions: {_versions()}

Per accelerator and method: pJ/MAC and weight-memory share at nominal voltage, and the
lowest-energy weight-memory voltage whose mean accuracy stays within 1 point of clean (V_min;
the same on every accelerator, since accuracy is), with the saving there against nominal.

{markdown(table)}

{lines}

Files: results.csv (every point, label "method @ accelerator", column `arch`),
results.energy.json (per-layer energy per label), frontier.csv (each accelerator's Pareto
set), report.html (figures).
"""
