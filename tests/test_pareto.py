import numpy as np
import pandas as pd
import pytest

from hwsim.pareto import lowest_energy_within, pareto_mask


def brute_force(acc, energy):
    n = len(acc)
    return np.array([not any(acc[j] >= acc[i] and energy[j] <= energy[i]
                             and (acc[j] > acc[i] or energy[j] < energy[i]) for j in range(n))
                     for i in range(n)])


def test_pareto_equals_brute_force_with_ties():
    rng = np.random.default_rng(0)
    for trial in range(200):
        n = rng.integers(1, 40)
        # small integer grids force ties in accuracy, energy, and whole duplicate points
        acc = rng.integers(0, 6, n).astype(float)
        energy = rng.integers(0, 6, n).astype(float)
        assert np.array_equal(pareto_mask(acc, energy), brute_force(acc, energy)), trial
    acc, energy = rng.random(500), rng.random(500)
    assert np.array_equal(pareto_mask(acc, energy), brute_force(acc, energy))


def test_pareto_hand_made():
    acc = [0.9, 0.9, 0.8, 0.95, 0.95, 0.5]
    energy = [10, 12, 5, 20, 20, 5]
    assert pareto_mask(acc, energy).tolist() == [True, False, True, True, True, False]


def test_lowest_energy_within_one_point():
    df = pd.DataFrame({"label": ["a"] * 4, "acc_clean": [0.95] * 4,
                       "voltage": [0.8, 0.6, 0.5, 0.4], "ber": [0, 1e-6, 1e-4, 1e-2],
                       "acc_mean": [0.95, 0.949, 0.941, 0.7],
                       "energy_uJ": [100.0, 70.0, 60.0, 50.0]})
    row = lowest_energy_within(df).iloc[0]
    assert row["v_min_V"] == 0.5 and row["energy_at_v_min_uJ"] == 60.0
    assert abs(row["saving_%"] - 40.0) < 1e-9


def test_pareto_command_keeps_same_named_methods_of_two_studies_apart(tmp_path):
    import pandas as pd
    from hwsim.commands.pareto import load_results
    from hwsim.sweep import COLUMNS
    paths = []
    for study, energy in (("resnet20_x", 100.0), ("resnet56_x", 300.0)):
        row = {c: 0 for c in COLUMNS}
        row.update(label="wcat", voltage=0.8, acc_mean=0.9, energy_uJ=energy)
        (tmp_path / study).mkdir()
        paths.append(str(tmp_path / study / "results.csv"))
        pd.DataFrame([row]).to_csv(paths[-1], index=False)
    df, _ = load_results(paths)
    assert list(df["label"]) == ["resnet20_x/wcat", "resnet56_x/wcat"]
    df, _ = load_results(paths[:1])  # one study: labels untouched
    assert list(df["label"]) == ["wcat"]


def test_pareto_methods_filter_keeps_the_named_methods_of_every_csv(tmp_path):
    from hwsim.commands.pareto import load_results
    from hwsim.sweep import COLUMNS
    from hwsim.models.errors import ConfigError
    paths = []
    for study, methods in (("r20", ["normal", "lsq", "wcat+bfn"]), ("r32", ["normal", "wcat+bfn"])):
        (tmp_path / study).mkdir()
        paths.append(str(tmp_path / study / "results.csv"))
        rows = [{**{c: 0 for c in COLUMNS}, "label": m, "voltage": 0.8, "acc_mean": 0.9,
                 "energy_uJ": 1.0} for m in methods]
        pd.DataFrame(rows).to_csv(paths[-1], index=False)
    df, _ = load_results(paths, ["normal", "wcat+bfn"])
    assert list(df["label"]) == ["r20/normal", "r20/wcat+bfn", "r32/normal", "r32/wcat+bfn"]
    with pytest.raises(ConfigError, match=r"--methods wcat: in none of the CSVs; valid: "
                                          r"lsq, normal, wcat\+bfn"):
        load_results(paths, ["normal", "wcat"])


def test_report_with_more_methods_than_the_first_palette(tmp_path):
    # past 10 labels the palette continues with Set2, given as 'rgb(r,g,b)' instead of '#hex';
    # comparing four networks' studies (8 methods each) gets there
    from hwsim.report import PALETTE, write_report
    from hwsim.sweep import COLUMNS
    rows = []
    for i in range(12):
        for v, acc in ((0.8, 0.9), (0.4, 0.5 + 0.01 * i)):
            row = {c: 0 for c in COLUMNS}
            row.update(label=f"net{i // 8}/m{i}", voltage=v, ber=1e-3 * (v < 0.5),
                       acc_clean=0.9, acc_mean=acc, acc_ci95=0.01, energy_uJ=100 * v + i)
            rows.append(row)
    write_report(pd.DataFrame(rows), tmp_path / "r.html")
    page = (tmp_path / "r.html").read_text()
    assert PALETTE[11].startswith("rgb(")
    r, g, b = PALETTE[11][4:-1].split(",")
    assert f"rgba({int(r)},{int(g)},{int(b)},0.15)" in page  # the 12th method's CI band


def test_ber_axis_starts_two_decades_before_the_first_loss():
    from hwsim.report import _log_range
    bers = [1e-14, 1e-10, 1e-6, 1e-4, 1e-3, 1e-2]
    df = pd.DataFrame({"ber": bers, "acc_clean": 0.9,
                       "acc_mean": [0.9, 0.9, 0.9, 0.898, 0.85, 0.5]})
    lo, hi = _log_range(df, "ber")
    assert lo == pytest.approx(-5.0) and hi == pytest.approx(-1.9)  # 1e-3 lost 5 points
    assert _log_range(df.assign(acc_mean=0.9), "ber") is None  # nothing lost: plotly decides


def test_table_energies_keep_four_significant_digits_with_trailing_zeros():
    from hwsim.pareto import readable_table
    t = readable_table(pd.DataFrame({"energy_at_v_min_uJ": [111.0, 110.84, 0.0443],
                                     "energy_at_vmax_uJ": [115.57, 115.57, 0.09738]}))
    assert list(t["E at V_min (uJ)"]) == ["111.0", "110.8", "0.04430"]
    assert list(t["E at Vmax (uJ)"]) == ["115.6", "115.6", "0.09738"]
