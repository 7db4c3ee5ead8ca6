"""report.html figures of persistent-chips studies (issue 18 item 8)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hwsim.chips_figures import chip_figures
from hwsim.report import write_report


def _chips() -> tuple[pd.DataFrame, pd.DataFrame]:
    """20 chips x 3 voltages for two methods; chip c of 'b' fails below 0.41 V iff c < 5."""
    rows = []
    for lab in ("a", "b"):
        for c in range(20):
            for v in (0.42, 0.41, 0.40):
                acc = 0.95 - (0.01 * c if v < 0.415 else 0.0)
                if lab == "b":
                    acc = 0.95 - (0.1 if (v < 0.405 and c < 5) else 0.0)
                rows.append({"label": lab, "chip": c, "voltage": v, "accuracy": acc})
    chips = pd.DataFrame(rows)
    res = []
    for (lab, v), g in chips.groupby(["label", "voltage"]):
        res.append({"label": lab, "voltage": v, "ber": 0.01, "acc_clean": 0.95,
                    "acc_mean": g["accuracy"].mean(), "acc_ci95": 0.01, "energy_uJ": v,
                    "yield": float(np.mean(g["accuracy"] >= 0.94 - 1e-12))})
    return pd.DataFrame(res), chips


def test_chip_figures_bands_yield_and_vmin(tmp_path):
    res, chips = _chips()
    bands, yld, vmin = chip_figures(res, chips, ["b", "a"])
    # study order: 'b' first; band trace then median trace per method
    med_b = bands.data[1]
    assert med_b.name == "b" and list(med_b.y) == pytest.approx([95, 95, 95])
    assert bands.data[0].y[-1] == pytest.approx(85)  # 5th percentile chip of 'b' at 0.40 V
    band_a = np.array(bands.data[2].y)  # hi then reversed lo, at 0.40, 0.41, 0.42
    lo40, hi40 = 100 * np.percentile(0.95 - 0.01 * np.arange(20), [5, 95])
    assert band_a[-1] == pytest.approx(lo40) and band_a[0] == pytest.approx(hi40)
    assert [t.name for t in yld.data] == ["b", "a"]
    assert list(yld.data[0].y) == pytest.approx([75, 100, 100])  # 0.40, 0.41, 0.42 V
    # V_min of 'a': chips 0, 1 stay within 1 point down to 0.40 V, the others fail at 0.41
    hist_a = np.array(vmin.data[1].x)
    assert (hist_a == 0.40).sum() == 2 and (hist_a == 0.42).sum() == 18
    page = tmp_path / "report.html"
    write_report(res, page, extra_figs=[bands, yld, vmin])
    text = page.read_text()
    assert text.count('class="plotly-graph-div"') == 6 and "Per-chip V_min" in text
