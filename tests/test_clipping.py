"""Optimal clipping range under bit errors (paper App. A, Fig. 10): eq. 10 against brute force
and Monte Carlo, the shared-range Monte Carlo of a network, and `hwsim clip-range`."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from hwsim.cli import main
from hwsim.models.clipping import (DISTRIBUTIONS, flip_masks, optimal_alpha, optimal_range,
                                   quadrature, shared_range_mc)
from hwsim.models.errors import ConfigError
from hwsim.models.faults import from_unsigned, to_unsigned
from hwsim.models.quant import expected_mse


def test_alpha_star_at_ber0_matches_brute_force_for_normal_4bit():
    a_star, mse = optimal_alpha(DISTRIBUTIONS["normal"], 4, 0.0)
    # brute force 1: a fine grid of the same quadrature
    x, w = quadrature(DISTRIBUTIONS["normal"])
    grid = np.arange(2.35, 2.6, 0.002)
    errs = [expected_mse(x, a, 4, 0.0, weights=w) for a in grid]
    assert a_star == pytest.approx(grid[int(np.argmin(errs))], abs=2e-3)
    assert mse == pytest.approx(min(errs), rel=1e-6)
    # brute force 2, independent of expected_mse: quantize 10^6 draws directly
    s = np.random.default_rng(0).standard_normal(1_000_000)
    grid = np.arange(2.3, 2.7, 0.005)
    direct = [np.mean((s - np.round(np.clip(s, -a, a) / (a / 7)) * (a / 7)) ** 2) for a in grid]
    assert a_star == pytest.approx(grid[int(np.argmin(direct))], abs=0.03)
    assert 2.4 < a_star < 2.55  # measured 2.474: 15 levels, Q = 7
    assert min(direct) == pytest.approx(mse, rel=0.01)


def test_uniform_optimum_is_analytic_and_alpha_shrinks_with_ber():
    # U(-1,1), Q = 7: granular a (a/7)^2/12 vs clipped (1-a)^3/3 -> a* = 14/15
    assert optimal_alpha(DISTRIBUTIONS["uniform"], 4, 0.0)[0] == pytest.approx(14 / 15, abs=1e-3)
    for d in DISTRIBUTIONS.values():
        a = [optimal_alpha(d, 4, p, grid=30, points=5001)[0] for p in (0.0, 1e-3, 1e-2, 1e-1)]
        assert all(x > y for x, y in zip(a, a[1:])), (d.name, a)
        assert a[-1] < 0.7 * a[0], (d.name, a)  # measured 0.43-0.66 of the BER-0 range


def test_eq10_matches_monte_carlo_bit_flips():
    w = torch.from_numpy(np.random.default_rng(1).standard_normal(50_000))
    a, p, q = 2.0, 0.01, 7
    v = torch.round(w.clamp(-a, a) / (a / q)).long()
    mc = []
    for r in range(10):
        (mask,) = flip_masks([len(v)], 4, p, np.random.default_rng(r))
        f = from_unsigned(to_unsigned(v, 4) ^ mask, 4).double() * (a / q)
        mc.append(float(((w - f) ** 2).mean()))
    assert np.mean(mc) == pytest.approx(expected_mse(w, a, 4, p), rel=0.02)
    # a sample's optimum: the same machinery as the densities'
    a_s, _ = optimal_range(w, 4, p, grid=40)
    assert a_s == pytest.approx(optimal_alpha(DISTRIBUTIONS["normal"], 4, p, grid=40)[0],
                                abs=0.05)


@pytest.fixture(scope="module")
def mlp(digits, tmp_path_factory):
    from hwsim.models import load_checkpoint
    from hwsim.models.train import TrainConfig, train
    ck = tmp_path_factory.mktemp("mlp") / "mlp.pt"
    train(TrainConfig(model="mlp", epochs=3, batch_size=64, lr=0.05), ck, progress=False,
          log=lambda s: None, data=digits)
    return load_checkpoint(ck)[0]


def test_shared_range_mc(mlp, digits):
    rows = shared_range_mc(mlp, digits[1], 4, [0.0, 0.05], [1.0, 3.0], realizations=4, seed=2)
    assert [(r["ber"], r["alpha"], r["realizations"]) for r in rows] == [
        (0.0, 1.0, 1), (0.0, 3.0, 1), (0.05, 1.0, 4), (0.05, 3.0, 4)]
    # BER 0: exactly the network quantized with range 3 * std per layer
    x, y = digits[1].tensors()
    ref = {}
    with torch.no_grad():
        for name, m in mlp.named_modules():
            if isinstance(m, torch.nn.Linear):
                ref[name] = m.weight.clone()
                s = 3.0 * float(m.weight.std()) / 7
                m.weight.copy_(torch.round(m.weight.clamp(-7 * s, 7 * s) / s) * s)
        acc = float((mlp(x).argmax(1) == y).float().mean())
        for name, m in mlp.named_modules():
            if name in ref:
                m.weight.copy_(ref[name])
    assert rows[1]["acc_mean"] == pytest.approx(acc)
    assert rows[0]["acc_mean"] < rows[1]["acc_mean"]  # range 1 std clips far too much
    assert rows[3]["acc_mean"] < rows[1]["acc_mean"] and rows[3]["acc_std"] > 0
    again = shared_range_mc(mlp, digits[1], 4, [0.05], [3.0], realizations=4, seed=2)
    assert again[0] == rows[3]  # seeded; and the model itself was not changed
    with pytest.raises(ConfigError, match="bit error rate"):
        shared_range_mc(mlp, digits[1], 4, [0.7], [1.0], realizations=2)


@pytest.mark.slow
def test_cli_clip_range(tmp_path, monkeypatch, capsys):
    from hwsim.commands import clip_range
    monkeypatch.setattr(clip_range, "DIST_BERS", [0.0, 1e-2])
    monkeypatch.setattr(clip_range, "MLP_BERS", [0.0, 1e-2])
    monkeypatch.setattr(clip_range, "MLP_ALPHAS", [2.0, 3.0, 4.0])
    monkeypatch.setitem(clip_range.RECIPE, "epochs", 2)
    out = tmp_path / "results" / "fig10"
    assert main(["clip-range", "--out", str(out), "--realizations", "3", "--seed", "1",
                 "--threads", "1"]) == 0
    stars = pd.read_csv(out / "alpha_star.csv")
    assert set(stars["criterion"]) == {"expected_mse", "mc_loss", "mc_accuracy"}
    assert len(stars) == 4 * 2 + 2 + 2 * 2  # densities, MLP eq. 10, MLP MC (2 criteria)
    n = stars[(stars.source == "normal")].set_index("ber")["alpha_star"]
    assert n[0.0] > n[0.01]
    grid = pd.read_csv(out / "mlp_mc.csv")
    assert len(grid) == 6 and grid[grid.ber > 0]["realizations"].eq(3).all()
    page = (out / "report.html").read_text()
    assert 'src="../plotly.min.js"' in page and (out.parent / "plotly.min.js").is_file()
    assert "hwsim clip-range --out" in (out / "README.md").read_text()
    assert (out / "mlp_float.pt").is_file()
    capsys.readouterr()
    assert main(["clip-range", "--out", str(out / "README.md")]) == 2
    assert "is a file" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:  # argparse: one line, exit 2
        main(["clip-range", "--out", str(out), "--bits", "9"])
    assert e.value.code == 2 and "--bits: '9' is not an integer in [2, 8]" in \
        capsys.readouterr().err
