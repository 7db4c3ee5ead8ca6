import math
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import hwsim.sweep as sw
from hwsim.energy import LayerResult, NetworkEnergy
from hwsim.study import check_reused, run_study
from hwsim.study_spec import load_study
from hwsim.workload import LayerShape
from hwsim.models import load_checkpoint
from hwsim.models.checkpoint import read_checkpoint
from hwsim.models.errors import ConfigError
from hwsim.models.estimate import estimate_accuracy
from hwsim.models.evaluate import StoredWeights, evaluate_under_bit_errors

ROOT = Path(__file__).resolve().parent.parent


def fake_energy(*_a, **_k) -> NetworkEnergy:
    """A two-layer energy result (no AccelForge): 3 uJ weight memory + 7 uJ rest at 0.8 V."""
    shape = LayerShape(name="fc", kind="linear", in_channels=4, out_channels=2, kernel=(1, 1),
                       output=(1, 1), input=(1, 1), stride=(1, 1), padding=(0, 0), groups=1,
                       weight_bits=4, act_bits=8)
    layers = [LayerResult(n, shape, {"WeightSRAM": w, "Other": r}, w + r, w, 8, True)
              for n, w, r in (("a", 1.0, 3.0), ("b", 2.0, 4.0))]
    return NetworkEnergy("fake.yaml", "0" * 64, ("WeightSRAM",), 0.8, layers)


@pytest.fixture
def no_mapper(monkeypatch):
    monkeypatch.setattr(sw, "model_energy", fake_energy)


def test_energy_at_nominal_and_v_squared(no_mapper, trained, digits, tmp_path):
    rows = sw.sweep(str(trained("normal")), "unused.yaml", [0.4, 0.8], tmp_path / "r.csv",
                    realizations=4, data=digits[1], progress=False)
    nominal = rows[rows.voltage == 0.8].iloc[0]
    assert nominal.energy_uJ == pytest.approx(10.0) == nominal.energy_nominal_uJ
    low = rows[rows.voltage == 0.4].iloc[0]
    assert low.energy_weight_mem_uJ == pytest.approx(3.0 * 0.25)
    assert low.energy_uJ == pytest.approx(7.0 + 0.75)
    assert sw.energy_sidecar(tmp_path / "r.csv").exists()


def test_sweep_resume_after_crash(no_mapper, trained, digits, tmp_path, monkeypatch):
    ck, grid = str(tmp_path / "wcat.pt"), [0.40, 0.42, 0.44, 0.46]
    shutil.copy(trained("wcat"), ck)
    full = sw.sweep(ck, "x", grid, tmp_path / "full.csv", realizations=6, seed=1,
                    data=digits[1], progress=False)
    calls = {"n": 0}
    real = sw.estimate_accuracy

    def crashing(*a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # killed while computing the third point
        return real(*a, **k)

    monkeypatch.setattr(sw, "estimate_accuracy", crashing)
    with pytest.raises(KeyboardInterrupt):
        sw.sweep(ck, "x", grid, tmp_path / "part.csv", realizations=6, seed=1,
                 data=digits[1], progress=False)
    part = pd.read_csv(tmp_path / "part.csv")
    assert list(part.voltage) == [0.40, 0.42]  # finished points survived intact
    assert not list(tmp_path.glob(".part.csv.*.tmp"))  # no temporary file left behind
    monkeypatch.setattr(sw, "estimate_accuracy", real)
    with pytest.raises(ConfigError, match="--resume"):
        sw.sweep(ck, "x", grid, tmp_path / "part.csv", data=digits[1], progress=False)
    done = sw.sweep(ck, "x", grid, tmp_path / "part.csv", realizations=6, seed=1,
                    resume=True, data=digits[1], progress=False)
    pd.testing.assert_frame_equal(done.reset_index(drop=True), full.reset_index(drop=True),
                                  check_dtype=False)
    # a retrained checkpoint at the same path does not silently inherit the old points
    shutil.copy(trained("normal"), ck)
    with pytest.raises(ConfigError, match="earlier version"):
        sw.sweep(ck, "x", grid + [0.5], tmp_path / "part.csv", resume=True, data=digits[1],
                 progress=False)


@pytest.mark.parametrize("ber", [2e-5, 1e-4, 3e-3])
def test_variance_reduced_estimator_agrees_with_plain_mc(trained, digits, ber):
    model, _ = load_checkpoint(trained("normal"))
    est = estimate_accuracy(model, digits[1], ber, max_realizations=60, seed=3)
    mc = evaluate_under_bit_errors(model, digits[1], ber, realizations=300, seed=4)
    assert est.realizations <= 60
    # the two unbiased estimates differ by less than their combined 99.9% uncertainty
    sigma = math.hypot(est.ci95 / 1.96, mc.ci95 / 1.96)
    assert abs(est.mean - mc.mean) <= 3.3 * sigma + 1e-4
    if ber < 1e-3:  # few flips: stratification must beat plain MC per realization
        assert est.estimator == "stratified"
        assert est.ci95 < mc.ci95 * math.sqrt(300 / est.realizations)


@pytest.mark.parametrize("budget", [2, 4, 6])
def test_small_budgets_are_respected_by_fewer_strata(trained, digits, budget):
    """The stratified pilot (2 per stratum) fits a small realization budget: the strata are
    cut to budget // 2 (the last one the tail K > k), weights still summing to P(K > 0), and
    the estimate agrees with plain MC."""
    from scipy import stats
    from hwsim.models.estimate import _strata
    model, _ = load_checkpoint(trained("normal"))
    n_bits = StoredWeights(model).n_bits
    ber = 4.0 / n_bits  # 4 expected flips: 9 strata without the cap
    kind, w0, strata = _strata(n_bits, ber, np.random.default_rng(0), False, budget // 2)
    assert kind == "stratified" and len(strata) == budget // 2
    assert w0 + sum(s.weight for s in strata) == pytest.approx(1.0, abs=1e-12)
    assert strata[-1].weight == pytest.approx(stats.binom.sf(budget // 2 - 1, n_bits, ber))
    est = estimate_accuracy(model, digits[1], ber, max_realizations=budget, seed=3)
    assert est.estimator == "stratified" and est.realizations == budget
    mc = evaluate_under_bit_errors(model, digits[1], ber, realizations=300, seed=4)
    sigma = math.hypot(est.std / math.sqrt(budget), mc.ci95 / 1.96)
    assert abs(est.mean - mc.mean) <= 4 * sigma + 1e-3


def test_ci_target_stops_early(trained, digits):
    model, _ = load_checkpoint(trained("wcat"))
    est = estimate_accuracy(model, digits[1], 1e-6, max_realizations=50, ci_target=0.005)
    assert est.realizations < 50 and est.ci95 <= 0.005


STUDY = """
name: tiny
seed: 0
data: {name: digits}
network: mlp
training: {epochs: 3, batch_size: 64, lr: 0.05}
methods:
  - {quantizer: normal, bits: 4}
  - {quantizer: wcat, bits: 4, bfn: true}
arch: ARCH
voltages: {min: 0.38, max: 0.42, step: 0.02}
monte_carlo: {realizations: 4, ci_target: 0.01}
bers: [0.01]
results_dir: OUT
reference:
  source: "a paper, Table 1"
  rows:
    - {method: wcat+bfn, clean_acc: 91.88, acc_at_ber: {0.01: 88.62}, bfa_n_flip: 90.2}
"""


def test_study_runs_then_rerun_does_no_work(no_mapper, tmp_path, monkeypatch):
    f = tmp_path / "tiny.yaml"
    f.write_text(STUDY.replace("ARCH", str(ROOT / "arch/eyeriss_sram.yaml"))
                 .replace("OUT", str(tmp_path / "out")))
    from hwsim.study_status import study_status
    before = study_status(load_study(f))  # nothing done yet
    assert list(before.iloc[1]) == ["wcat+bfn", "0/3", "", "0/3", "0/1", "0/0"]
    table = run_study(load_study(f), progress=False, log=lambda s: None)
    out = tmp_path / "out"
    after = study_status(load_study(f))
    assert list(after.iloc[0])[1:] == ["3/3", f"{float(table['clean_acc_%'][0]):.2f}", "3/3",
                                       "1/1", "0/0"]
    assert list(table["method"]) == ["normal", "wcat+bfn"]
    cell = table["acc % at BER 0.01"].iloc[1]
    assert re.fullmatch(r"\d+\.\d\d \+/- \d+\.\d\d", cell)
    df = pd.read_csv(out / "results.csv")
    assert len(df) == 6 and set(df.voltage) == {0.38, 0.40, 0.42}
    for name in ("frontier.csv", "report.html", "summary.md", "checkpoints/normal.pt"):
        assert (out / name).exists(), name
    summary = (out / "summary.md").read_text()
    assert re.search(r"\| +method \| +clean acc % \|", summary)
    assert "- Training: 3 epochs per method, batch 64, SGD lr 0.05 (cosine)" in summary
    assert "- BFA: not run\n" in summary
    assert "- Computed on: device cpu; precision fp32 (the voltage points; training " \
           "precision: each checkpoint's log)\n" in summary
    assert "Published figures for comparison (a paper, Table 1)" in summary
    assert re.search(r"\| +wcat\+bfn \| +91\.88 \| +88\.62 \| +90\.2 \| +\|", summary)
    stamp = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    import hwsim.study as st
    monkeypatch.setattr(st, "train", lambda *a, **k: pytest.fail("retrained"))
    monkeypatch.setattr(sw, "estimate_accuracy", lambda *a, **k: pytest.fail("re-swept"))
    run_study(load_study(f), progress=False, log=lambda s: None)
    assert stamp == {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    # a changed recipe is not silently served by the old checkpoints
    f.write_text(f.read_text().replace("lr: 0.05", "lr: 0.02"))
    with pytest.raises(ConfigError, match="another recipe"):
        run_study(load_study(f), progress=False, log=lambda s: None)


def test_summary_lists_methods_in_study_order_not_sweep_order(tmp_path):
    from hwsim.study import in_study_order
    f = tmp_path / "tiny.yaml"
    f.write_text(STUDY.replace("ARCH", str(ROOT / "arch/eyeriss_sram.yaml")).replace("OUT", "o"))
    swept = pd.DataFrame({"label": ["wcat+bfn", "other", "normal", "wcat+bfn", "normal"],
                          "voltage": [0.4, 0.4, 0.4, 0.5, 0.5]})
    got = in_study_order(swept, load_study(f))
    assert list(got["label"]) == ["normal", "normal", "wcat+bfn", "wcat+bfn"]
    assert list(got["voltage"]) == [0.4, 0.5, 0.4, 0.5]  # each method's rows keep their order


@pytest.mark.parametrize("edit, message", [
    ("quantizer: wcat,", "methods[1].quantizer: 'wcta' is not valid; valid: lsq, normal, plclip, wcat"),
    ("network: mlp", "network: 'mlpp' is not valid; valid:"),
    ("voltages: {min", "voltagez: unknown key (did you mean 'voltages'?)"),
    ("lr: 0.05", "training.lr: -1 is out of range"),
    ("bits: 4, bfn", "methods[1].bits: 9 is out of range [2, 8]"),
    ("bers: [0.01]", "bers[0]: 0.7 is out of range"),
    ("clean_acc: 91.88", "reference.rows[0].clean_acc: 191.88 is out of range [0, 100]"),
    ("seed: 0", "precision: 'fp16' is not valid; valid: auto, fp32, bf16"),
])
def test_study_yaml_errors_name_the_key_path(tmp_path, edit, message):
    text = STUDY.replace("ARCH", str(ROOT / "arch/eyeriss_sram.yaml")).replace("OUT", "o")
    bad = {"quantizer: wcat,": "quantizer: wcta,", "network: mlp": "network: mlpp",
           "voltages: {min": "voltagez: {min", "lr: 0.05": "lr: -1",
           "bits: 4, bfn": "bits: 9, bfn", "bers: [0.01]": "bers: [0.7]",
           "clean_acc: 91.88": "clean_acc: 191.88",
           "seed: 0": "seed: 0\nprecision: fp16"}[edit]
    f = tmp_path / "bad.yaml"
    f.write_text(text.replace(edit, bad))
    with pytest.raises(ConfigError) as e:
        load_study(f)
    assert str(f) in str(e.value) and message in str(e.value)


def test_shipped_quickstart_study_parses():
    s = load_study(ROOT / "studies/digits_quickstart.yaml")
    assert [m.name for m in s.methods] == ["normal", "normal+bfn", "plclip", "plclip+bfn",
                                          "lsq", "lsq+bfn", "wcat", "wcat+bfn"]
    assert s.voltages.min == 0.35 and s.voltages.max == 0.8


def test_negligible_flip_probability_returns_clean_with_bound(trained, digits):
    model, _ = load_checkpoint(trained("wcat"))
    est = estimate_accuracy(model, digits[1], 1e-12, max_realizations=50)
    assert est.estimator == "bound" and est.realizations == 0
    assert est.mean == est.clean and 0 < est.ci95 < 1e-5
    assert est.ci95 == pytest.approx(est.expected_flips, rel=1e-3)  # P(K>0) ~ n p


SHIPPED = sorted(p.stem for p in (ROOT / "studies").glob("*.yaml"))


def test_every_shipped_study_is_listed_in_the_studies_readme():
    readme = (ROOT / "studies" / "README.md").read_text()
    assert len(SHIPPED) >= 6 and [n for n in SHIPPED if f"`{n}.yaml`" not in readme] == []


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_study_parses(name):
    s = load_study(ROOT / "studies" / f"{name}.yaml")
    if s.accelerators:  # issue 19: another study's checkpoints and points on every accelerator
        assert s.name == name and len(s.accelerators) >= 4 and all(
            Path(a).is_file() for a in s.accelerators) and Path(s.accuracy_from).is_file()
        assert all((ROOT / m.checkpoint).is_file() for m in s.methods)
        return
    if s.faults is not None and s.faults.model == "persistent":  # chips on another study's
        # checkpoints (issue 18): e.g. digits_chips, digits_chips_stuck, resnet20_chips
        assert s.faults.model == "persistent" and all((ROOT / m.checkpoint).is_file()
                                                      for m in s.methods)
        return
    if any(not sc.is_default for sc in s.scenarios):  # domains x protection (issue 22) on
        # another study's checkpoints: digits_domains, resnet20_domains(_act)
        # (or trained here from the given baseline, e.g. resnet20_domains_act's wcat+bfn+abfn)
        assert all((ROOT / m.checkpoint).is_file() if m.checkpoint else
                   (ROOT / s.training.init_from).is_file() for m in s.methods)
        assert "domains" in name
        assert Path(s.arch).name == "eyeriss_sram_domains.yaml"
        return
    assert s.name == name and Path(s.arch).is_file() and s.bers == [0.001, 0.01]
    if name.endswith("_ablation"):  # issue 21: WCAT+BFN options only (tests/test_wcat_options)
        assert {m.quantizer for m in s.methods} == {"wcat"} and all(m.bfn for m in s.methods)
        return
    if name.endswith("_8bit"):  # issue 21, Fig. 2: 8 methods at 8 bits, paper BFA protocol
        assert len(s.methods) == 8 and {m.bits for m in s.methods} == {8}
        assert (s.attacks.bfa_seeds, s.attacks.attack_batch) == (10, 64)
        assert all((ROOT / m.checkpoint).is_file() for m in s.methods if m.checkpoint)
        return
    if name == "digits_adversarial":  # issue 21, App. E: K = 0 (given checkpoints), 2, 5, 10
        assert sorted(m.adv_flips for m in s.methods) == [0] * 3 + [2] * 3 + [5] * 3 + [10] * 3
        assert all((ROOT / m.checkpoint).is_file() for m in s.methods if not m.adv_flips)
        assert (s.attacks.bfa_seeds, s.attacks.attack_batch) == (10, 64)
        return
    if name.startswith("resnet") and name != "resnet20_cifar10":  # Fig. 7: two methods, no BFA
        assert s.network == name.split("_")[0] and [m.name for m in s.methods] == \
            ["normal", "wcat+bfn"] and s.attacks.bfa_seeds == 0
        assert s.training.init_from.endswith(f"{name}/checkpoints/float.pt")
    else:
        assert len(s.methods) == 8 and s.attacks.bfa_seeds == 5


def test_rare_flips_meet_the_ci_target_with_the_pilot_alone(trained, digits):
    model, _ = load_checkpoint(trained("normal"))
    n_bits = StoredWeights(model).n_bits
    ber = 0.01 / n_bits  # P(K > 0) ~ 1%: the non-clean strata weigh ~0.01
    est = estimate_accuracy(model, digits[1], ber, max_realizations=50, ci_target=0.005,
                            seed=1)
    assert est.estimator == "stratified"
    assert est.realizations <= 4 and est.ci95 <= 0.005
    assert abs(est.mean - est.clean) <= 0.0101  # at most the non-clean mass away from clean


def test_study_only_runs_the_named_methods_and_leaves_the_report(no_mapper, tmp_path):
    f = tmp_path / "tiny.yaml"
    f.write_text(STUDY.replace("ARCH", str(ROOT / "arch/eyeriss_sram.yaml"))
                 .replace("OUT", str(tmp_path / "out")))
    with pytest.raises(ConfigError, match=r"--only wcta: no such method; valid: normal, wcat\+bfn"):
        run_study(load_study(f), progress=False, log=lambda s: None, only=["wcta"])
    assert run_study(load_study(f), progress=False, log=lambda s: None, only=["wcat+bfn"]) is None
    out = tmp_path / "out"
    assert set(pd.read_csv(out / "results.csv")["label"]) == {"wcat+bfn"}
    assert (out / "checkpoints/wcat_bfn.pt").exists()
    assert not (out / "checkpoints/normal.pt").exists() and not (out / "summary.md").exists()


def test_a_reused_checkpoint_must_hold_its_method(no_mapper, trained, tmp_path):
    """A method pointing at another method's checkpoint (here a 4-bit normal one named
    wcat+bfn at 8 bits) is refused before anything runs, naming the fields that differ."""
    f = tmp_path / "tiny.yaml"
    reused = f"{{quantizer: wcat, bits: 8, bfn: true, checkpoint: {trained('normal')}}}"
    f.write_text(STUDY.replace("ARCH", str(ROOT / "arch/eyeriss_sram.yaml"))
                 .replace("OUT", str(tmp_path / "out"))
                 .replace("{quantizer: wcat, bits: 4, bfn: true}", reused))
    with pytest.raises(ConfigError) as e:
        run_study(load_study(f), progress=False, log=lambda s: None, only=["wcat+bfn"])
    assert str(e.value) == (
        f"{f}: method 'wcat+bfn': checkpoint {str(trained('normal'))!r} does not hold this "
        "method: quantizer 'wcat' (checkpoint: 'normal'); bfn True (checkpoint: False); bits 8 "
        "(checkpoint: 4); make the method's fields match what the checkpoint was trained with, "
        "or point it at the right checkpoint")
    assert not (tmp_path / "out").exists()  # refused before anything is written
    # params compare with the quantizer's defaults filled in: stating a default is the same
    # method, another value is not
    wcat = trained("wcat")
    for params, ok in (("{weight_decay_a: 0.01, init: max}", True),
                       ("{weight_decay_a: 0.001}", False)):
        method = f"{{quantizer: wcat, bits: 4, params: {params}, checkpoint: {wcat}}}"
        f.write_text(STUDY.replace("ARCH", str(ROOT / "arch/eyeriss_sram.yaml"))
                     .replace("OUT", str(tmp_path / "out"))
                     .replace("{quantizer: wcat, bits: 4, bfn: true}", method))
        study = load_study(f)
        if ok:
            check_reused(study, study.methods[1], read_checkpoint(wcat))
            continue
        with pytest.raises(ConfigError, match=r"params \{.*'weight_decay_a': 0\.001.*\} "
                                              r"\(checkpoint: \{.*'weight_decay_a': 0\.01"):
            check_reused(study, study.methods[1], read_checkpoint(wcat))


def test_status_reports_the_baseline_fine_tuning_waits_for(trained, tmp_path):
    import torch
    from hwsim.study_status import baseline_status
    f = tmp_path / "tiny.yaml"
    base = tmp_path / "float.pt"
    f.write_text(STUDY.replace("ARCH", str(ROOT / "arch/eyeriss_sram.yaml")).replace("OUT", "o")
                 .replace("lr: 0.05}", f"lr: 0.05, init_from: {base}}}"))
    assert baseline_status(load_study(f)).endswith("float.pt: missing; train it first (the "
                                                   "study file's header has the command)")
    ck = torch.load(trained(None), weights_only=True)
    wanted = ck["config"]["train"]["epochs"]
    torch.save(ck, base)
    acc = 100 * ck["history"][-1]["test_acc"]
    assert baseline_status(load_study(f)) == \
        f"baseline {base}: {wanted}/{wanted} epochs, test acc {acc:.2f}% (finished)"
    ck["epoch"] = 1
    torch.save(ck, base)
    assert f": 1/{wanted} epochs" in baseline_status(load_study(f))
    assert "(in progress: resume it with hwsim train ... --resume)" in \
        baseline_status(load_study(f))
    f.write_text(f.read_text().replace(f", init_from: {base}", ""))
    assert baseline_status(load_study(f)) is None


def test_study_act_bfn_reaches_the_training_recipe(tmp_path):
    from hwsim.study import train_config
    text = (STUDY.replace("ARCH", str(ROOT / "arch/eyeriss_sram.yaml")).replace("OUT", "o")
            .replace("lr: 0.05}", "lr: 0.05, act_bfn_rate: 0.003}")
            .replace("bfn: true}", "bfn: true, act_bfn: true}"))
    f = tmp_path / "s.yaml"
    f.write_text(text)
    s = load_study(f)
    plain, noisy = (train_config(s, m) for m in s.methods)
    assert plain.act_bfn_rate == 0.0 and "act_bfn_rate" not in plain.recipe()
    assert noisy.act_bfn_rate == 0.003 and noisy.bfn_rate == 0.005
    for good, bad, msg in (("act_bfn: true", "act_bfn: 2", "methods[1].act_bfn: 2 must be true"),
                           ("act_bfn_rate: 0.003", "act_bfn_rate: 0.7",
                            "training.act_bfn_rate: 0.7 is out of range")):
        g = tmp_path / "bad.yaml"
        g.write_text(text.replace(good, bad))
        with pytest.raises(ConfigError) as e:
            load_study(g)
        assert msg in str(e.value)


def test_threads_flag_overrides_the_study_files_training_threads(tmp_path, monkeypatch):
    import hwsim.commands.study as cmd
    from hwsim.cli import main
    f = tmp_path / "s.yaml"
    f.write_text(STUDY.replace("ARCH", str(ROOT / "arch/eyeriss_sram.yaml")).replace("OUT", "o")
                 .replace("lr: 0.05}", "lr: 0.05, threads: 2}"))
    seen = []
    monkeypatch.setattr(cmd, "run_study", lambda study, **k: seen.append(study.training.threads))
    monkeypatch.setattr(cmd, "apply_threads", lambda args: None)  # leave this process's alone
    assert main(["study", str(f), "--no-progress", "--only", "normal"]) == 0
    assert main(["study", str(f), "--no-progress", "--only", "normal", "--threads", "1"]) == 0
    assert seen == [2, 1]


def test_hash_and_label_cells_stay_text(tmp_path):
    """A checkpoint hash of digits only, or digits around one 'e', reads back as the same
    text (pandas alone parses 0123456789012345 as 123456789012345.0 and 1234e56789012345 as
    inf, and the points no longer match their checkpoint: a resume then refused, ~1 run in
    1,000 of the test suite, whose checkpoints can hash differently from run to run)."""
    hashes = ["0123456789012345", "1234e56789012345"]
    df = pd.DataFrame({"checkpoint": ["a.pt", "b.pt"], "checkpoint_sha256": hashes,
                       "label": ["001", "x"], "voltage": [0.4, 0.5]})
    sw.write_rows_atomic(df, tmp_path / "r.csv")
    back = sw.read_rows(tmp_path / "r.csv")
    assert back.checkpoint_sha256.tolist() == hashes and back.label.tolist() == ["001", "x"]
    assert back.voltage.tolist() == [0.4, 0.5]


def test_study_precision_reaches_training_and_evaluation_then_is_restored(tmp_path,
                                                                          monkeypatch):
    import hwsim.study as st
    from hwsim.models.device import get_inference_precision
    f = tmp_path / "s.yaml"
    f.write_text(STUDY.replace("ARCH", str(ROOT / "arch/eyeriss_sram.yaml")).replace("OUT", "o")
                 .replace("seed: 0", "seed: 0\nprecision: bf16"))
    study = load_study(f)
    assert study.precision == "bf16"
    assert "precision" not in st.train_config(study, study.methods[0]).recipe()
    seen = []

    def fake_train(cfg, path, **kw):
        seen.append((kw["precision"], get_inference_precision()))
        raise KeyboardInterrupt  # stop before any sweep

    monkeypatch.setattr(st, "train", fake_train)
    with pytest.raises(KeyboardInterrupt):
        st.run_study(study, progress=False, log=lambda s: None)
    assert seen == [("bf16", "bf16")] and get_inference_precision() == "auto"
    from dataclasses import replace
    with pytest.raises(KeyboardInterrupt):  # auto: float32 training, default inference
        st.run_study(replace(study, precision="auto"), progress=False, log=lambda s: None)
    assert seen[-1] == ("fp32", "auto")


def test_rows_record_device_and_precision_and_a_mixed_resume_is_noted(no_mapper, trained,
                                                                        digits, tmp_path,
                                                                        capsys):
    from hwsim.models.device import precision_scope
    ck, out = str(trained("wcat")), tmp_path / "r.csv"
    sw.sweep(ck, "x", [0.40, 0.42], out, realizations=4, data=digits[1], progress=False)
    assert "note:" not in capsys.readouterr().err
    with precision_scope("bf16"):
        rows = sw.sweep(ck, "x", [0.40, 0.42, 0.44], out, realizations=4, resume=True,
                        data=digits[1], progress=False)
    err = capsys.readouterr().err
    assert "computed with precision fp32; this run adds bf16 points" in err
    assert "with device" not in err  # same device: only the precision differs
    back = sw.read_rows(out)
    assert list(back["precision"]) == ["fp32", "fp32", "bf16"] == list(rows["precision"])
    assert list(back["device"]) == ["cpu"] * 3
    # files written before the columns existed still resume, and their rows stay empty
    old = back.drop(columns=["device", "precision"]).iloc[:2]
    old.to_csv(tmp_path / "old.csv", index=False)
    rows = sw.sweep(ck, "x", [0.40, 0.42, 0.44], tmp_path / "old.csv", realizations=4,
                    resume=True, data=digits[1], progress=False)
    assert rows["precision"].isna().sum() == 2 and rows["precision"].iloc[2] == "fp32"
    assert "note:" not in capsys.readouterr().err  # nothing recorded: nothing to compare


def test_note_mixed_labels_names_each_label_and_column_that_differs(capsys):
    rows = pd.DataFrame({"label": ["a", "a", "b", "b", "c"],
                         "device": ["cpu", "cuda", "cpu", "cpu", None],
                         "precision": ["fp32", "fp32", "fp32", "bf16", None]})
    sw.note_mixed_labels(rows, "r.csv")
    err = capsys.readouterr().err.splitlines()
    assert err == ["note: r.csv holds points of a computed with device cpu, cuda (column device)",
                   "note: r.csv holds points of b computed with precision bf16, fp32 "
                   "(column precision)"]
    sw.note_mixed_labels(rows.drop(columns=["device", "precision"]), "r.csv")  # older files
    assert capsys.readouterr().err == ""


def test_summary_computed_line_names_mixed_and_unrecorded_runs():
    from hwsim.study import _computed_line
    rows = pd.DataFrame({"device": ["cpu", "cuda", None], "precision": ["fp32", "fp32", None]})
    assert _computed_line(rows).startswith(
        "device cpu, cuda (per point: results.csv's device column); precision fp32 (the ")
    assert _computed_line(rows.iloc[2:]) == \
        "not recorded (points computed before hwsim recorded it)"
    assert _computed_line(rows.drop(columns=["device", "precision"])) == _computed_line(None)
