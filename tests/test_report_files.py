"""report.html loads one shared plotly.min.js by a relative path, written only when missing
or different."""
from __future__ import annotations

import numpy as np
import pandas as pd
from plotly.offline import get_plotlyjs

from hwsim.report import PLOTLY_JS, write_report


def _df() -> pd.DataFrame:
    v = np.arange(0.4, 0.81, 0.1)
    return pd.DataFrame({"label": "wcat", "voltage": v, "ber": np.exp(22.12 - 68.14 * v),
                         "acc_clean": 0.98, "acc_mean": 0.98 - 0.5 * (v < 0.45),
                         "acc_ci95": 0.01, "energy_uJ": 5 + 3 * (v / 0.8) ** 2})


def _src(page) -> str:
    text = page.read_text()
    assert "Plotly.newPlot" in text and len(text) < 300_000  # the library is not inlined
    return text.split('<script src="', 1)[1].split('"', 1)[0]


def test_reports_share_one_plotly_js(tmp_path):
    js = get_plotlyjs()
    shared = tmp_path / PLOTLY_JS
    write_report(_df(), tmp_path / "a" / "report.html", plotly_dir=tmp_path)
    assert _src(tmp_path / "a" / "report.html") == "../plotly.min.js"
    assert shared.read_text(encoding="utf-8") == js
    before = (shared.stat().st_ino, shared.stat().st_mtime_ns)
    write_report(_df(), tmp_path / "b" / "report.html", plotly_dir=tmp_path)
    # a report without plotly_dir (hwsim pareto) finds the identical copy in the folder above
    write_report(_df(), tmp_path / "c" / "report.html")
    assert _src(tmp_path / "c" / "report.html") == "../plotly.min.js"
    assert (shared.stat().st_ino, shared.stat().st_mtime_ns) == before  # not rewritten
    assert sorted(p.name for p in tmp_path.rglob("*.js")) == [PLOTLY_JS]
    # elsewhere, it is written next to the report
    write_report(_df(), tmp_path / "x" / "y" / "r.html")
    assert _src(tmp_path / "x" / "y" / "r.html") == PLOTLY_JS
    assert (tmp_path / "x" / "y" / PLOTLY_JS).read_text(encoding="utf-8") == js


def test_an_outdated_plotly_js_is_replaced(tmp_path):
    (tmp_path / PLOTLY_JS).write_text("/* plotly.js v1.0.0 */")
    write_report(_df(), tmp_path / "s" / "report.html", plotly_dir=tmp_path)
    assert (tmp_path / PLOTLY_JS).read_text(encoding="utf-8") == get_plotlyjs()
    assert not list(tmp_path.glob(".*.tmp"))


def test_frontier_voltages_table_and_component_bars(tmp_path):
    """Voltages are printed on the Pareto plot's frontier points (not only in hover text), the
    frontier is also a table, and chosen points get per-component stacked bars."""
    from hwsim.report import fig_components, fig_pareto, frontier_table
    from hwsim.pareto import frontier
    df = _df()
    front = frontier(df)
    fig = fig_pareto(df, front, {"wcat": "#1f77b4"})
    labelled = [t for t in fig.data if t.name == "wcat (frontier)"][0]
    assert "text" in labelled.mode and list(labelled.text) == [
        f"{v:.2f} V" for v in front["voltage"]]
    t = frontier_table(front)
    assert list(t.columns) == ["method", "voltage (V)", "BER", "energy (uJ)", "accuracy (%)"]
    assert len(t) == len(front) and t["accuracy (%)"].tolist() == ["48.00 ± 1.00", "98.00 ± 1.00"]
    bars = fig_components({"a @ 0.8 V": {"MAC": 2.0, "SRAM": 1.0},
                           "a @ 0.4 V": {"MAC": 2.0, "SRAM": 0.25, "ECC": 0.1}}, "t")
    assert [b.name for b in bars.data] == ["MAC", "SRAM", "ECC"]
    assert list(bars.data[2].y) == [0.0, 0.1] and bars.layout.barmode == "stack"
    page = tmp_path / "r.html"
    write_report(df, page, components={"a @ 0.8 V": {"MAC": 2.0}})
    text = page.read_text()
    assert "Pareto frontier (every point" in text and "by component" in text
