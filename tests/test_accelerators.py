"""Cross-accelerator studies (hwsim.accelerators): accuracy copied from a source sweep, energy
recomputed per accelerator. No AccelForge: hwsim.sweep.model_energy is a stand-in whose
weight-memory share depends on the arch file."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

import hwsim.sweep as sw
from hwsim.ber import BerModel
from hwsim.accelforge_backend import load_arch
from hwsim.energy import LayerResult, NetworkEnergy
from hwsim.models.errors import ConfigError
from hwsim.pareto import frontier
from hwsim.study import run_study
from hwsim.study_spec import load_study
from hwsim.study_status import study_status
from hwsim.workload import LayerShape

ROOT = Path(__file__).resolve().parent.parent
SHARE = {"eyeriss_sram": (3.0, 7.0), "tpu_sram": (1.0, 9.0), "eyeriss_sram_wspad": (4.0, 6.0)}
GRID = [0.4, 0.45, 0.5, 0.6, 0.7, 0.8]  # the study takes 0.4-0.8 V, step 0.1


def fake_energy(arch, *_a, **_k) -> NetworkEnergy:
    """Two layers, 10 uJ in all, the weight memory's part from SHARE[arch stem]; the weight
    memories are the arch file's own (so eyeriss_sram_wspad has two)."""
    info = load_arch(arch, accelforge_loader=False)[1]
    wm, rest = SHARE[Path(arch).stem]
    shape = LayerShape(name="fc", kind="linear", in_channels=4, out_channels=2, kernel=(1, 1),
                       output=(1, 1), input=(1, 1), stride=(1, 1), padding=(0, 0), groups=1,
                       weight_bits=4, act_bits=8)
    layers = [LayerResult(n, shape, {info.weight_memory[0]: f * wm, "MAC": f * rest},
                          f * (wm + rest), f * wm, 8, True) for n, f in (("a", 0.25), ("b", 0.75))]
    return NetworkEnergy(str(arch), "0" * 64, info.weight_memory, 0.8, layers)


@pytest.fixture(scope="module")
def swept(trained, digits, tmp_path_factory):
    """A digits source study's results folder: normal and WCAT+BFN swept at GRID on eyeriss
    (once per module)."""
    src = tmp_path_factory.mktemp("src") / "results.csv"
    cks = {"normal": trained("normal"), "wcat+bfn": trained("wcat", 0.005)}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sw, "model_energy", fake_energy)
        for name, ck in cks.items():
            sw.sweep(str(ck), str(ROOT / "arch/eyeriss_sram.yaml"), GRID, src, realizations=4,
                     label=name, data=digits[1], progress=False, resume=True)
    return src, cks


@pytest.fixture
def source(swept, monkeypatch, tmp_path):
    """(a copy of the source results.csv with its sidecar, checkpoints); no AccelForge."""
    monkeypatch.setattr(sw, "model_energy", fake_energy)
    src = tmp_path / "src" / "results.csv"
    shutil.copytree(swept[0].parent, src.parent)
    return src, swept[1]


def study_file(tmp_path, src, cks, archs=("eyeriss_sram", "tpu_sram"), extra="",
               vmin=0.4) -> Path:
    f = tmp_path / "cross.yaml"
    acc = ", ".join(str(ROOT / "arch" / f"{a}.yaml") for a in archs)
    f.write_text(f"""name: cross
network: small_cnn
methods:
  - {{name: normal, quantizer: normal, bits: 4, checkpoint: {cks['normal']}}}
  - {{name: wcat+bfn, quantizer: wcat, bits: 4, bfn: true, checkpoint: {cks['wcat+bfn']}}}
accelerators: [{acc}]
accuracy_from: {src}
voltages: {{min: {vmin}, max: 0.8, step: 0.1}}
results_dir: out
{extra}""")
    return f


def test_cross_study_copies_accuracy_and_prices_each_accelerator(source, tmp_path,
                                                                  monkeypatch):
    src, cks = source
    f = study_file(tmp_path, src, cks)
    study = load_study(f)
    assert [Path(a).name for a in study.accelerators] == ["eyeriss_sram.yaml", "tpu_sram.yaml"]
    assert list(study_status(study)["points"]) == ["0/5"] * 4
    table = run_study(study, progress=False, log=lambda s: None)
    out = tmp_path / "out"
    df = pd.read_csv(out / "results.csv")
    s = pd.read_csv(src)
    assert len(df) == 20 and set(df["arch"]) == {"eyeriss_sram", "tpu_sram"}
    for _, r in df.iterrows():
        ref = s[(s["label"] == r["label"].split(" @ ")[0]) & (s["voltage"] == r["voltage"])]
        assert len(ref) == 1
        for c in ("ber", "acc_clean", "acc_mean", "acc_std", "acc_ci95", "realizations",
                  "checkpoint_sha256", "expected_flips"):
            assert r[c] == ref.iloc[0][c], c
        wm, rest = SHARE[r["arch"]]
        e = rest + wm * (r["voltage"] / 0.8) ** 2
        assert r["energy_nominal_uJ"] == pytest.approx(10.0)
        assert r["energy_uJ"] == pytest.approx(e)
        assert r["energy_weight_mem_uJ"] == pytest.approx(e - rest)
        assert r["saving_vs_nominal"] == pytest.approx(1 - e / 10.0)
    nominal = df[df["voltage"] == 0.8]
    assert list(nominal["energy_uJ"]) == pytest.approx([10.0] * 4)
    # the table: V_min is the source's (the same on both accelerators), the saving differs
    t = table.set_index(["accelerator", "method"])
    for m in ("normal", "wcat+bfn"):
        rows = s[s["label"] == m]
        ok = rows[(rows["acc_mean"] >= rows["acc_clean"] - 0.01) & (rows["voltage"] != 0.45)]
        v = float(ok["voltage"].min())
        for a, (wm, rest) in SHARE.items():
            if a == "eyeriss_sram_wspad":
                continue
            row = t.loc[(a, m)]
            assert row["V_min (V)"] == f"{v:.2f}"
            assert row["saving %"] == f"{100 * wm * (1 - (v / 0.8) ** 2) / 10:.1f}"
            assert row["weight-memory share %"] == f"{10 * wm:.1f}"
            assert row["pJ/MAC"] == f"{10e6 / 16:.3f}"
    summary = (out / "summary.md").read_text()
    assert re.search(r"\| eyeriss_sram \| +normal \| 625000\.000 \| +30\.0 \|", summary)
    assert re.search(r"\| +tpu_sram \| wcat\+bfn \| 625000\.000 \| +10\.0 \|", summary)
    assert (out / "report.html").is_file() and (tmp_path / "plotly.min.js").is_file()
    front = pd.read_csv(out / "frontier.csv")  # each accelerator's own Pareto set
    for a in ("eyeriss_sram", "tpu_sram"):
        mine = front[front["arch"] == a]
        assert 0.4 in set(mine["voltage"])  # its cheapest point
        assert list(mine["energy_uJ"]) == list(frontier(df[df["arch"] == a])["energy_uJ"])
    assert list(study_status(study)["points"]) == ["5/5"] * 4
    # a re-run writes nothing
    stamp = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    run_study(load_study(f), progress=False, log=lambda s: None)
    assert stamp == {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}


def test_cross_study_refuses_what_it_cannot_reuse(source, tmp_path):
    src, cks = source
    run = lambda f: run_study(load_study(f), progress=False, log=lambda s: None)
    with pytest.raises(ConfigError, match=r"no point of normal .* at 0\.3 V"):
        run(study_file(tmp_path, src, cks, vmin=0.3))
    # two low-voltage weight memories in series: another weight BER than the source's
    with pytest.raises(ConfigError, match="eyeriss_sram_wspad.yaml: 2 low-voltage weight "
                                          "memories in series"):
        run(study_file(tmp_path, src, cks, archs=("eyeriss_sram_wspad",)))
    with pytest.raises(ConfigError, match="act_bits: 4, but .* 8-bit"):
        run(study_file(tmp_path, src, cks, extra="act_bits: 4\n"))
    other = tmp_path / "ber.yaml"
    BerModel(a=20.0, b=-60.0).save(other)
    with pytest.raises(ConfigError, match="this study's BER model gives"):
        run(study_file(tmp_path, src, cks, extra=f"ber_model: {other}\n"))
    # a checkpoint the source never swept
    s = pd.read_csv(src)
    s[s["label"] != "normal"].to_csv(src, index=False)
    with pytest.raises(ConfigError, match="no unprotected weight-memory points of .*normal"):
        run(study_file(tmp_path, src, cks))


@pytest.mark.parametrize("edit, message", [
    ("arch: x.yaml\n", "arch: not used by a cross-accelerator study"),
    ("bers: [0.01]\n", "bers: not used by a cross-accelerator study"),
])
def test_cross_study_file_errors(source, tmp_path, edit, message):
    src, cks = source
    with pytest.raises(ConfigError, match=message):
        load_study(study_file(tmp_path, src, cks, extra=edit))


def test_cross_study_file_needs_checkpoints_and_a_source(source, tmp_path):
    src, cks = source
    f = study_file(tmp_path, src, cks)
    text = f.read_text()
    f.write_text(text.replace(f", checkpoint: {cks['normal']}", ""))
    with pytest.raises(ConfigError, match=r"methods\[0\]\.checkpoint: required"):
        load_study(f)
    f.write_text(text.replace(f"accuracy_from: {src}\n", ""))
    with pytest.raises(ConfigError, match="accuracy_from: a cross-accelerator study needs both"):
        load_study(f)
    f.write_text(text.replace(f"accuracy_from: {src}", f"accuracy_from: {src}.missing"))
    with pytest.raises(ConfigError, match="accuracy_from: .*no such results CSV"):
        load_study(f)
    f.write_text(text.replace("tpu_sram", "eyeriss_sram"))
    with pytest.raises(ConfigError, match=r"accelerators\[1\]: .* listed twice"):
        load_study(f)
