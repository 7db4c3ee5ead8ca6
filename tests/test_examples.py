"""examples/ run as users run them (subprocess, from the repository root)."""
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_example(name: str, *args) -> str:
    r = subprocess.run([sys.executable, str(ROOT / "examples" / name), *map(str, args)],
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


def test_custom_network_short(tmp_path):
    """The custom-network example with 2 float + 1 fine-tuning epochs, 5 realizations."""
    out = run_example("custom_network.py", "--out", tmp_path, "--epochs", 2,
                      "--realizations", 5)
    df = pd.read_csv(tmp_path / "results.csv")
    assert len(df) == 23 and set(df.label) == {"TinyResNet"} and set(df.method) == {"wcat+bfn"}
    # TinyResNet has the small CNN's layer shapes: 1.376 uJ at 0.8 V from arch/cache
    assert df.energy_uJ.iloc[-1] == pytest.approx(1.3763, abs=1e-4)
    assert df.acc_clean.iloc[0] > 0.5 and df.acc_mean.iloc[0] < df.acc_clean.iloc[0]
    assert (tmp_path / "report.html").exists() and "points on the frontier" in out


@pytest.mark.slow
def test_custom_network_full(tmp_path):
    """The example as documented (~1.5 min on 2 busy cores)."""
    run_example("custom_network.py", "--out", tmp_path)
    df = pd.read_csv(tmp_path / "results.csv")
    assert df.acc_clean.iloc[0] > 0.95


@pytest.mark.slow
def test_mobilenet_sensitivity(tmp_path):
    out = run_example("mobilenet_energy.py", "--top", 3)
    assert "53 layers" in out
