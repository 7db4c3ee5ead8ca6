import math

import numpy as np
import pytest

from hwsim.ber import BerModel, fit_ber
from hwsim.models.errors import ConfigError


def test_paper_model_values_and_clamp():
    m = BerModel()
    assert m.ber(0.5) == pytest.approx(math.exp(22.12 - 68.14 * 0.5))
    assert m.ber(0.8) == pytest.approx(math.exp(22.12 - 54.512))
    assert m.ber(0.30) == 0.5  # exp(1.678) > 0.5 -> saturated
    assert m.ber(0.2) == 0.5
    v = np.linspace(0.33, 0.8, 50)
    assert np.all(np.diff(m.bers(v)) <= 0)


@pytest.mark.parametrize("model", [BerModel(), BerModel(20.0, -60.0, -5.0)])
def test_inverse(model):
    for p in (1e-9, 1e-4, 1e-2, 0.3):
        assert model.ber(model.voltage(p)) == pytest.approx(p, rel=1e-9)


def test_fit_recovers_known_coefficients_and_ignores_saturated_points():
    truth = BerModel(21.0, -64.0, 0.0)
    v = np.linspace(0.3, 0.75, 40)
    rng = np.random.default_rng(0)
    raw = np.exp(21.0 - 64.0 * v + rng.normal(0, 0.02, len(v)))  # measurement noise
    bers = np.minimum(raw, 0.5)  # what an SRAM shows: never more than 1/2
    fit, stats = fit_ber(v, bers, quadratic=False)
    assert stats["points_saturated"] >= 2  # below ~0.34 V the model saturates
    assert fit.a == pytest.approx(21.0, abs=0.1) and fit.b == pytest.approx(-64.0, abs=0.2)
    # quadratic fit: V and V^2 are collinear, so check the curve, not each coefficient
    fq, sq = fit_ber(v, bers)
    grid = np.linspace(0.36, 0.75, 20)
    assert np.allclose(np.log(fq.bers(grid)), np.log(truth.bers(grid)), atol=0.05)
    assert sq["r2_log"] > 0.999


def test_bad_inputs_are_clean_errors(tmp_path):
    m = BerModel()
    for bad in (0, -0.1, float("nan")):
        with pytest.raises(ConfigError, match="positive"):
            m.ber(bad)
    for bad in (0.0, 0.6, -1e-3):
        with pytest.raises(ConfigError, match=r"\(0, 0.5\]"):
            m.voltage(bad)
    f = tmp_path / "m.yaml"
    f.write_text("a: 1\nb: x\n")
    with pytest.raises(ConfigError, match="'b' must be a number"):
        BerModel.load(f)
    f.write_text("a: 1\nb: -2\nd: 3\n")
    with pytest.raises(ConfigError, match="unknown key"):
        BerModel.load(f)


def test_model_yaml_roundtrip(tmp_path):
    m = BerModel(1.5, -20.0, 3.0)
    m.save(tmp_path / "m.yaml", fit={"rmse_log": 0.1})
    assert BerModel.load(tmp_path / "m.yaml").ber(0.4) == pytest.approx(m.ber(0.4))
