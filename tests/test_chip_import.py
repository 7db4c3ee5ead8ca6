"""Measured chips (issue 18 item 7): `hwsim chip import`, chip files in sweeps and studies."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hwsim.ber import BerModel
from hwsim.chip_import import export_profile, load_chip, read_profile, write_chip_file
from hwsim.chips import chip_sweep, chips_sidecar, Faults
from hwsim.cli import main
from hwsim.study_spec import load_study
from hwsim.models.checkpoint import load_checkpoint
from hwsim.models.chips import evaluate_chip, model_layout, sample_chip
from hwsim.models.errors import ConfigError

GRID = [0.44, 0.41, 0.39, 0.37]


def test_import_round_trip_evaluates_identically(trained, digits, tmp_path):
    """A synthetic chip exported as a measured profile (failure voltages, stuck values) and
    re-imported gives the same erring bits and accuracies along the grid."""
    model, _ = load_checkpoint(trained("normal"))
    lay = model_layout(model, 64)
    bm = BerModel()
    bers = [bm.ber(v) for v in GRID]
    for mode in ("flip", "stuck-at"):
        chip = sample_chip(4, lay.used_bits, max(bers), mode)
        csv = export_profile(chip, tmp_path / f"{mode}.csv", bm)
        out = tmp_path / f"{mode}.chip.npz"
        assert main(["chip", "import", str(csv), "--out", str(out),
                     "--v-low", repr(min(GRID))]) == 0
        back = load_chip(out, mode, GRID, bers)
        a, na = evaluate_chip(model, digits[1], bers, chip, lay)
        b, nb = evaluate_chip(model, digits[1], bers, back, lay)
        assert na == nb and a == b
        assert na[-1] > 100 and a[-1] < a[0] - 0.05  # the lowest voltage really hurts


def test_chip_files_in_sweep_and_study(trained, digits, tmp_path):
    bm = BerModel()
    files = []
    for s in (1, 2):
        chip = sample_chip(s, 200_000, bm.ber(0.37))
        csv = export_profile(chip, tmp_path / f"c{s}.csv", bm)
        files.append(str(write_chip_file(read_profile(csv, 8 << 20, 0.37),
                                         tmp_path / f"c{s}.npz")))
    out = tmp_path / "r.csv"
    ck = str(trained("wcat"))
    assert main(["sweep", "--checkpoint", ck, "--out", str(out), "--vmin", "0.37", "--vmax",
                 "0.41", "--step", "0.02", "--chip-file", files[0], "--chip-file", files[1],
                 "--no-progress"]) == 0
    rows, chips = pd.read_csv(out), pd.read_csv(chips_sidecar(out))
    assert (rows["chips"] == 2).all() and (rows["fault_mode"] == "flip (measured)").all()
    assert len(chips) == 6 and (chips["fault_mode"] == "flip (measured)").all()
    e = chips.pivot(index="chip", columns="voltage", values="erring_bits")
    assert (e[0.37] > e[0.41]).all()
    # below the measured range: one error, nothing added
    with pytest.raises(ConfigError, match=r"measured down to 0.37 V; the voltage grid goes "
                                          r"down to 0.35 V"):
        chip_sweep(ck, "arch/eyeriss_sram.yaml", [0.35, 0.4], tmp_path / "x.csv",
                   Faults("persistent", chips=2, chip_files=tuple(files)), data=digits[1],
                   progress=False)
    assert not (tmp_path / "x.chips.csv").exists()
    # a study's faults: {chip_files: [...]} relative to the study file; chips = their number
    study = tmp_path / "s.yaml"
    study.write_text(f"name: s\ndata: {{name: digits}}\nnetwork: small_cnn\nmethods:\n"
                     f"  - {{name: w, quantizer: wcat, bits: 4, checkpoint: {ck}}}\n"
                     f"arch: {__import__('hwsim.paths').paths.resolve_arch('eyeriss_sram')}\n"
                     "faults: {model: persistent, chip_files: [c1.npz, c2.npz]}\n")
    f = load_study(study).faults
    assert f.chips == 2 and f.chip_files == (str(tmp_path / "c1.npz"), str(tmp_path / "c2.npz"))
    study.write_text(study.read_text().replace("c2.npz]", "c2.npz], chips: 5"))
    with pytest.raises(ConfigError, match=r"faults.chips: 5: with chip_files it is their "
                                          r"number, 2"):
        load_study(study)


@pytest.mark.parametrize("text,message", [
    ("address,voltage\n0,0.4\n12,abc\n", r"line 3, column voltage: 'abc' is not valid"),
    ("address,voltage\n0,0.4\n-3,0.4\n", r"line 3, column address: '-3' is not valid; must "
                                         r"be an integer in \[0, 1023\]"),
    ("address,voltage\n0,0.4\n1024,0.4\n", r"line 3, column address: '1024'"),
    ("address,voltage\n5,0.4\n6,0.05\n", r"line 3, column voltage: voltage 0.05: outside"),
    ("address,rank\n5,1\n6,2.5\n", r"line 3, column rank: '2.5' is not valid; must be an "
                                   r"integer in \[1, 1024\]"),
    ("address,voltage,stuck\n5,0.4,1\n6,0.41,2\n", r"line 3, column stuck: '2'"),
    ("address,voltage\n5,0.4\n7,0.41\n5,0.39\n", r"line 4, column address: 5 is listed twice"),
    ("address,voltage,rank\n5,0.4,1\n", r"a chip profile has address, exactly one of voltage "
                                        r"or rank"),
    ("addr,voltage\n5,0.4\n", r"columns addr, voltage; a chip profile has address"),
    ("address,voltage\n", r"no rows"),
])
def test_bad_profiles_are_one_error_and_write_nothing(tmp_path, capsys, text, message):
    src = tmp_path / "chip.csv"
    src.write_text(text)
    with pytest.raises(ConfigError, match=message):
        read_profile(src, 1024)
    assert main(["chip", "import", str(src), "--cells", "1024"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "hwsim chip: error:" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chip.csv"]


def test_rank_form_and_stuck_values(tmp_path):
    """Rank r fails at BER >= r / cells; stuck-at needs the stuck column."""
    src = tmp_path / "r.csv"
    src.write_text("address,rank,stuck\n10,1,1\n3,2,0\n700,3,1\n")
    out = tmp_path / "r.npz"
    assert main(["chip", "import", str(src), "--out", str(out), "--cells", "1000"]) == 0
    chip = load_chip(out, "stuck-at", [0.5, 0.4], [0.001, 0.002])
    assert chip.addresses.tolist() == [3, 10, 700]
    assert chip.thresholds.tolist() == pytest.approx([0.001, 0.0, 0.002])
    assert chip.stuck.tolist() == [0, 1, 1]
    with pytest.raises(ConfigError, match=r"ranks cells up to BER 0.003; the voltage grid "
                                          r"reaches BER 0.004"):
        load_chip(out, "flip", [0.4], [0.004])
    src.write_text("address,rank\n10,1\n")
    assert main(["chip", "import", str(src), "--out", str(out), "--cells", "1000"]) == 0
    with pytest.raises(ConfigError, match="has no stuck values"):
        load_chip(out, "stuck-at", [0.5], [0.001])


def test_npz_profile(tmp_path):
    src = tmp_path / "p.npz"
    np.savez(src, address=np.array([9, 2]), voltage=np.array([0.41, 0.43]))
    arr = read_profile(src, 64)
    assert arr["address"].tolist() == [2, 9] and arr["value"].tolist() == [0.43, 0.41]
    assert float(arr["v_low"]) == 0.41 and (arr["stuck"] == -1).all()
    np.savez(src, address=np.array([9, 2]), voltage=np.array([0.41, np.nan]))
    with pytest.raises(ConfigError, match=r"entry 1, column voltage: nan is not valid"):
        read_profile(src, 64)
