"""The HTML report rendered by a real browser (headless Chromium): `make test-browser`."""
import re
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest

from hwsim.report import write_report

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--virtual-time-budget=15000", "--dump-dom"]
# records uncaught errors in the page title, which --dump-dom shows us
TRAP = ("<script>window.addEventListener('error', e => "
        "{document.title = 'JSERROR: ' + e.message;});</script>")


def _results() -> pd.DataFrame:
    rows = []
    for label, tol in (("normal", 0.45), ("wcat+bfn", 0.40)):
        for v in np.arange(0.35, 0.81, 0.05):
            ber = min(np.exp(22.12 - 68.14 * v), 0.5)
            rows.append({"label": label, "voltage": v, "ber": ber, "acc_clean": 0.98,
                         "acc_mean": 0.98 - 0.9 * (v < tol), "acc_ci95": 0.01,
                         "energy_uJ": 5 + 3 * (v / 0.8) ** 2})
    return pd.DataFrame(rows)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (make test-browser installs it)")
def test_report_renders_in_headless_chromium(tmp_path):
    layers = [{"name": "conv1", "total_uJ": 2.0, "weight_memory_uJ": 0.5},
              {"name": "fc", "total_uJ": 1.0, "weight_memory_uJ": 0.7}]
    page = tmp_path / "study" / "report.html"  # as a study's: plotly.js in the folder above
    write_report(_results(), page, title="browser check", energy_layers={"cnn": layers},
                 plotly_dir=tmp_path)
    text = page.read_text()
    assert '<script src="../plotly.min.js"' in text and len(text) < 300_000
    assert (tmp_path / "plotly.min.js").stat().st_size > 3_000_000
    page.write_text(text.replace("<head>", "<head>" + TRAP, 1))
    dom = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}",
                          page.as_uri()], capture_output=True, text=True, timeout=120).stdout
    title = re.search(r"<title>([^<]*)</title>", dom).group(1)
    assert title == "browser check", title  # an uncaught JS error would have replaced it
    # plotly draws each figure into <svg class="main-svg">; 4 figures, traces and points
    assert dom.count('class="main-svg"') >= 4
    assert dom.count('class="plot-container plotly"') == 4
    assert len(re.findall(r'class="point"', dom)) >= 40  # scatter markers were drawn
