"""Per-layer weight-memory voltages: hwsim/voltages.py (the search), hwsim/assignments.py (its
files) and `hwsim optimize-voltages`."""
from __future__ import annotations

import json
import numpy as np
import pytest
import yaml

from hwsim.ber import BerModel
from hwsim.cli import main
from hwsim.models.checkpoint import load_checkpoint
from hwsim.models.errors import ConfigError
from hwsim.models.estimate import Estimate
from hwsim.models.evaluate import evaluate_under_bit_errors
from hwsim.models.quant import quant_layers
from hwsim.sweep import model_energy, sweep_points
from hwsim.assignments import evaluate_assignment, read_assignment
from hwsim.voltages import (Evaluator, assignment_seed, domain_energy, greedy, layer_energies,
                            optimize, parse_grid)

ARCH = "arch/eyeriss_sram.yaml"


def test_greedy_spends_the_budget_where_energy_is():
    # layer a: 3x the energy of b, equally sensitive -> a goes lower first
    sens = {"a": {0.8: 0.0, 0.6: 0.0, 0.5: 0.004, 0.4: 0.02},
            "b": {0.8: 0.0, 0.6: 0.001, 0.5: 0.004, 0.4: 0.02}}
    e = {"a": 3.0, "b": 1.0}
    assert greedy(sens, e, 0.8, 0.005) == {"a": 0.5, "b": 0.6}
    assert greedy(sens, e, 0.8, 0.0) == {"a": 0.6, "b": 0.8}  # free moves only
    assert greedy(sens, e, 0.8, 0.01) == {"a": 0.5, "b": 0.5}
    # noisy (non-monotone) drops are made monotone: 0.4 cannot look better than 0.5
    noisy = {"a": {0.8: 0.0, 0.5: 0.008, 0.4: 0.001}}
    assert greedy(noisy, {"a": 1.0}, 0.8, 0.005) == {"a": 0.8}
    assert domain_energy({"a": 0.4, "b": 0.8}, e, 0.8) == pytest.approx(3 * 0.25 + 1)


def _fake_estimate(model, xy, ber, *, max_realizations, ci_target, seed, stored, clean,
                   progress):
    """Accuracy falls with each layer's BER and, beyond the sum of the single-layer drops,
    with an interaction term, so the additive prediction is optimistic (forces tightening)."""
    bers = ber if isinstance(ber, dict) else {n: ber for n in stored.names}
    drops = [min(1.0, 2.0 * b ** 0.5) for b in bers.values()]
    joint = sum(drops) + 3 * sum(d1 * d2 for i, d1 in enumerate(drops) for d2 in drops[i + 1:])
    mean = clean - min(joint, clean)
    return Estimate(ber, clean, mean, 0.0, 0.001, max_realizations, "fake", 0.0)


def test_optimize_tightens_verifies_and_beats_uniform(trained, digits):
    model, _ = load_checkpoint(trained("normal"))
    ev = Evaluator(model, digits[1], BerModel(), estimate=_fake_estimate)
    energies = dict(zip(ev.layers, [0.01, 0.3, 0.6, 0.09]))
    grid = parse_grid("0.36:0.80:0.01")
    res = optimize(ev, energies, 0.8, grid, 0.01, realizations=5, sens_realizations=2)
    assert res.source == "greedy"
    assert ev.clean - res.chosen.est.mean <= 0.01  # the accepted assignment verified
    assert any(not a["passed"] for a in res.attempts)  # the additive budget had to tighten
    assert res.uniform.energy_uJ == pytest.approx(
        sum(energies.values()) * (res.uniform.volts[ev.layers[0]] / 0.8) ** 2)
    assert res.chosen.energy_uJ < res.uniform.energy_uJ
    assert res.saving == pytest.approx(1 - res.chosen.energy_uJ / res.uniform.energy_uJ)
    # the best uniform voltage: passes, and one grid step lower fails
    v = res.uniform.volts[ev.layers[0]]
    lower = ev(dict.fromkeys(ev.layers, round(v - 0.01, 6)), 0, 5)
    assert ev.clean - res.uniform.est.mean <= 0.01 < ev.clean - lower.mean
    # the cheaper layer-specific choice: the biggest bank sits lowest
    assert res.chosen.volts[ev.layers[2]] <= min(res.chosen.volts.values()) + 1e-9


def test_uniform_assignment_equals_the_sweep_point(trained, digits):
    path = trained("normal")
    model, config = load_checkpoint(path)
    test = digits[1]
    energy = model_energy(ARCH, model, 4, progress=False)
    row = sweep_points(model, config, test, energy, [0.42], ber_model=BerModel(),
                       realizations=12, seed=3, progress=False)[0]
    names = [n for n, _ in quant_layers(model)]
    est = evaluate_assignment(dict.fromkeys(names, 0.42), path, seed=3, realizations=12,
                              data=test)
    assert row["acc_mean"] < row["acc_clean"]  # a point with real bit errors
    assert (est.mean, est.ci95, est.realizations) == (row["acc_mean"], row["acc_ci95"],
                                                      row["realizations"])
    assert sum(layer_energies(energy, names).nominal().values()) * (0.42 / 0.8) ** 2 == \
        pytest.approx(row["energy_weight_mem_uJ"], rel=1e-12)
    assert assignment_seed(3, dict.fromkeys(names, 0.42)) == 3 * 1_000_003 + 420000


def test_assignment_errors(trained, digits, tmp_path):
    path = trained("normal")
    bad = tmp_path / "a.yaml"
    bad.write_text(yaml.safe_dump({"layers": {"features.0": {"voltage": 0.5},
                                              "conv9": {"voltage": 0.5}}}))
    with pytest.raises(ConfigError, match=r"'conv9' is not a quantized layer.*features\.0"):
        evaluate_assignment(bad, path, data=digits[1])
    bad.write_text(yaml.safe_dump({"layers": {"features.0": 0.5}}))
    with pytest.raises(ConfigError, match=r"'features\.3' .* has no voltage"):
        evaluate_assignment(bad, path, data=digits[1])
    bad.write_text(yaml.safe_dump({"layers": {"features.0": {"voltage": 0.05}}}))
    with pytest.raises(ConfigError, match="outside the supported supply range"):
        read_assignment(bad)
    bad.write_text("!!python/object/apply:os.system ['echo hi']")
    with pytest.raises(ConfigError, match="not a YAML text file"):
        read_assignment(bad)
    for text in ("0.1:0.8:0.01", "0.4:1.2:0.01", "a:b:c", "0.4:0.8"):
        with pytest.raises(ConfigError, match="grid|vmin|vmax|voltage"):
            parse_grid(text)


def test_cli_errors_are_one_line(trained, tmp_path, capsys):
    out = tmp_path / "assign.yaml"
    base = ["optimize-voltages", "--checkpoint", str(trained("normal")), "--out", str(out),
            "--no-progress"]
    assert main(base + ["--grid", "0.1:0.8:0.01"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "outside the supported supply range" in err
    with pytest.raises(SystemExit) as e:
        main(base + ["--max-drop", "0"])
    assert e.value.code == 2
    assert main(["optimize-voltages", "--checkpoint", str(tmp_path / "none.pt"),
                 "--no-progress"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.slow
def test_optimize_voltages_end_to_end_verified(trained, digits, tmp_path, capsys):
    ckpt = trained("normal")
    out = tmp_path / "assign.yaml"
    assert main(["optimize-voltages", "--checkpoint", str(ckpt), "--arch", ARCH,
                 "--max-drop", "1.0", "--grid", "0.38:0.50:0.02", "--realizations", "20",
                 "--sens-realizations", "4", "--seed", "2", "--out", str(out),
                 "--no-progress"]) == 0
    assert "saving vs uniform" in capsys.readouterr().out
    doc = yaml.safe_load(out.read_text())
    acc, uni = doc["accuracy"], doc["uniform"]
    assert doc["seed"] == 2 and doc["command"].startswith("hwsim optimize-voltages")
    assert acc["clean"] - acc["mean"] <= 0.01 and acc["ci95"] > 0
    assert uni["accuracy"]["clean"] - uni["accuracy"]["mean"] <= 0.01
    assert doc["energy_weight_domain_uJ"] <= uni["energy_weight_domain_uJ"]
    assert doc["saving_vs_uniform"] == pytest.approx(
        1 - doc["energy_weight_domain_uJ"] / uni["energy_weight_domain_uJ"])
    assert sum(l["energy_uJ"] for l in doc["layers"].values()) == pytest.approx(
        doc["energy_weight_domain_uJ"])
    # the file evaluates to the recorded numbers (same seed mapping)...
    est = evaluate_assignment(out, ckpt, seed=2, realizations=20, data=digits[1])
    assert est.mean == pytest.approx(acc["mean"], abs=1e-12)
    # ...and an independent Monte Carlo check (other seed, plain MC) agrees within the CIs
    model, _ = load_checkpoint(ckpt)
    bers = {n: l["ber"] for n, l in doc["layers"].items()}
    indep = evaluate_under_bit_errors(model, digits[1], bers, realizations=40, seed=99)
    assert abs(indep.mean - acc["mean"]) <= 2 * (indep.ci95 + acc["ci95"]) + 1e-9
    assert indep.mean >= acc["clean"] - 0.01 - 2 * indep.ci95


def test_interrupted_sensitivity_resumes_to_the_uninterrupted_result(digits, tmp_path):
    """optimize-voltages saves each measured layer's sensitivity beside --out; a killed run
    resumed with the same settings measures only the missing layers and writes the document
    an uninterrupted run writes; other settings measure again; the partial file goes at the
    end."""
    from hwsim.models.estimate import estimate_accuracy
    from hwsim.assignments import optimize_voltages, partial_sensitivity_file
    ckpt = str(ROOT / "studies/results/digits_quickstart/checkpoints/normal.pt")
    kw = dict(seed=0, realizations=5, sens_realizations=2, data=digits[1], progress=False)
    grid = parse_grid("0.38:0.50:0.02")
    whole = optimize_voltages(ckpt, ARCH, 1.0, grid, out=tmp_path / "a.yaml", **kw)
    assert not partial_sensitivity_file(tmp_path / "a.yaml").exists()
    last = list(whole["layers"])[-1]
    measured = []

    def killed_at(layer):
        def est(model, xy, ber, **k):
            if isinstance(ber, dict) and len(ber) == 1:
                measured.append(next(iter(ber)))
                if layer in ber:
                    raise KeyboardInterrupt  # killed while measuring `layer`
            return estimate_accuracy(model, xy, ber, **k)
        return est
    out = tmp_path / "b.yaml"
    with pytest.raises(KeyboardInterrupt):
        optimize_voltages(ckpt, ARCH, 1.0, grid, out=out, estimate=killed_at(last), **kw)
    part = json.loads(partial_sensitivity_file(out).read_text())
    assert list(part["layers"]) == list(whole["layers"])[:-1] and not out.exists()
    first = list(whole["layers"])[0]
    assert {float(v): d * 100 for v, d in part["layers"][first].items()} == pytest.approx(
        whole["sensitivity_drop_points"][first], abs=1e-12)
    measured.clear()
    resumed = optimize_voltages(ckpt, ARCH, 1.0, grid, out=out, estimate=killed_at(None),
                                **kw)
    assert set(measured) == {last}  # only the missing layer measured
    assert resumed["sensitivity_drop_points"] == whole["sensitivity_drop_points"]
    assert resumed["layers"] == whole["layers"] and resumed["accuracy"] == whole["accuracy"]
    assert not partial_sensitivity_file(out).exists()
    # a partial file of other settings (seed) is not reused
    (tmp_path / "c.yaml.sensitivity.partial.json").write_text(json.dumps(part))
    import hwsim.assignments as ha
    seen = {}
    orig = ha.sensitivity
    ha.sensitivity = lambda *a, **k: seen.update(done=dict(a[6])) or orig(*a, **k)
    try:
        with pytest.raises(KeyboardInterrupt):
            optimize_voltages(ckpt, ARCH, 1.0, grid, out=tmp_path / "c.yaml",
                              estimate=killed_at(first), **(kw | {"seed": 1}))
    finally:
        ha.sensitivity = orig
    assert seen["done"] == {}


def test_sensitivity_from_reuses_the_recorded_uniform_points(digits, tmp_path, monkeypatch):
    """A run from --sensitivity-from with the same seed and verification settings takes the
    recorded uniform points instead of evaluating them again (same best uniform); other
    verification settings evaluate them."""
    import hwsim.voltages as hv
    from hwsim.assignments import optimize_voltages
    ckpt = str(ROOT / "studies/results/digits_quickstart/checkpoints/normal.pt")
    kw = dict(seed=0, realizations=5, sens_realizations=2, data=digits[1], progress=False)
    grid = parse_grid("0.38:0.50:0.02")
    first = optimize_voltages(ckpt, ARCH, 1.0, grid, out=tmp_path / "a.yaml", **kw)
    assert len(first["uniform_points"]) >= 2 and first["verification"]["realizations"] == 5
    uniform_calls = []
    orig = hv.verify

    def counting(ev, volts, *a, **k):
        if len(set(volts.values())) == 1:
            uniform_calls.append(volts)
        return orig(ev, volts, *a, **k)
    monkeypatch.setattr(hv, "verify", counting)
    again = optimize_voltages(ckpt, ARCH, 1.0, grid, sensitivity_from=tmp_path / "a.yaml",
                              sens_model="flips", **kw)
    assert uniform_calls == [] and again["uniform"] == first["uniform"]
    assert again["uniform_points"] == first["uniform_points"]
    optimize_voltages(ckpt, ARCH, 1.0, grid, sensitivity_from=tmp_path / "a.yaml",
                      **(kw | {"realizations": 6}))
    assert uniform_calls


def test_per_layer_energy_uses_the_domain_law_with_leakage():
    """voltages.py prices an assignment with the domains' own law (Domain.factor): with a
    leakage share it equals hwsim.domain_energy.price of the same per-layer voltages, and a
    uniform assignment equals the uniform price, for two weight domains with different laws."""
    from hwsim.domain_energy import price
    from hwsim.domains import Domain
    from hwsim.energy import LayerResult, NetworkEnergy
    from hwsim.voltages import LayerEnergies, layer_energies
    from hwsim.workload import LayerShape

    shape = LayerShape("l", "conv", 4, 4, (3, 3), (4, 4), (4, 4), weight_bits=8)
    doms = (Domain("weights", ("WM",), ("weight",), leakage_share=0.4),
            Domain("pe", ("PE",), ("weight",), v_nominal=0.9),
            Domain("acts", ("ACT",), ("input", "output"), leakage_share=0.5))
    ne = NetworkEnergy(arch_file="x.yaml", arch_sha256="0" * 64, weight_memory=("WM", "PE"),
                       v_nominal=0.8, domains=doms)
    for name, (wm, pe) in (("a", (30.0, 5.0)), ("b", (10.0, 2.0)), ("a#2", (4.0, 1.0))):
        ne.layers.append(LayerResult(name, shape, {"WM": wm, "PE": pe, "ACT": 7.0, "MAC": 9.0},
                                     wm + pe + 16.0, wm + pe, shape.macs, cached=True))
    law = layer_energies(ne, ["a", "b"])
    assert [d.name for d in law.domains] == ["weights", "pe"]
    assert law.nominal() == {"a": 40.0, "b": 12.0}  # 'a#2' is another call of layer a
    volts = {"a": 0.5, "b": 0.6}
    got = domain_energy(volts, law, 0.8)
    want = price(ne, {"weights": {"a": 0.5, "a#2": 0.5, "b": 0.6},
                      "pe": {"a": 0.5, "a#2": 0.5, "b": 0.6}})
    assert got == pytest.approx(want["domains"]["weights"]["uJ"] + want["domains"]["pe"]["uJ"],
                                rel=1e-12)
    # by hand: weights (0.6 (V/0.8)^2 + 0.4 V/0.8), pe (V/0.9)^2
    g = lambda v: 0.6 * (v / 0.8) ** 2 + 0.4 * v / 0.8
    assert got == pytest.approx(34 * g(0.5) + 10 * g(0.6) + 6 * (0.5 / 0.9) ** 2
                                + 2 * (0.6 / 0.9) ** 2, rel=1e-12)
    uni = price(ne, {"weights": 0.55, "pe": 0.55})
    assert domain_energy(dict.fromkeys("ab", 0.55), law, 0.8) == pytest.approx(
        uni["domains"]["weights"]["uJ"] + uni["domains"]["pe"]["uJ"], rel=1e-12)
    # the leakage share moves the search too: the greedy's saving per move is the domain law's
    sens = {"a": {0.8: 0.0, 0.5: 0.0}, "b": {0.8: 0.0, 0.5: 0.0}}
    assert greedy(sens, law, 0.8, 0.0) == {"a": 0.5, "b": 0.5}
    # a plain {layer: uJ} is one leakage-free domain: exactly sum_l E_l (V_l / V_nom)^2
    plain = LayerEnergies.of({"a": 3.0, "b": 1.0}, 0.8)
    assert plain.total({"a": 0.4, "b": 0.8}) == 3.0 * (0.4 / 0.8) ** 2 + 1.0 * (0.8 / 0.8) ** 2


def test_sensitivity_on_a_seeded_subset_verification_on_all(trained, digits):
    """--sens-images: step 1 sees n images drawn by the seed; verification and the uniform
    baseline still evaluate the whole test set."""
    model, _ = load_checkpoint(trained("normal"))
    sizes = []

    def counting(model, xy, ber, **kw):
        sizes.append((len(xy[1]), isinstance(ber, dict) and len(ber) == 1))
        return _fake_estimate(model, xy, ber, **kw)
    ev = Evaluator(model, digits[1], BerModel(), estimate=counting)
    total = len(ev.xy[1])
    sub = ev.subset(100, seed=3)
    assert len(sub.xy[1]) == 100 and sub.layers == ev.layers
    assert (sub.xy[1] == ev.subset(100, seed=3).xy[1]).all()  # the seed fixes the draw
    assert not (sub.xy[0] == ev.subset(100, seed=4).xy[0]).all()
    assert ev.subset(total) is ev
    for bad in (0, total + 1, 2.5):
        with pytest.raises(ConfigError, match=rf"sens-images {bad!r}: must be an integer in "
                                              rf"1\.\.{total}"):
            ev.subset(bad)
    energies = dict(zip(ev.layers, [0.01, 0.3, 0.6, 0.09]))
    optimize(ev, energies, 0.8, parse_grid("0.36:0.80:0.02"), 0.01, realizations=5,
             sens_realizations=2, sens_ev=sub)
    single = {n for n, one_layer in sizes if one_layer}
    joint = {n for n, one_layer in sizes if not one_layer}
    assert single == {100} and joint == {total}


def test_cli_sens_images_larger_than_the_test_set_is_one_line(trained, tmp_path, capsys):
    out = tmp_path / "assign.yaml"
    assert main(["optimize-voltages", "--checkpoint", str(trained("normal")), "--out",
                 str(out), "--no-progress", "--sens-images", "100000"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "sens-images 100000: must be an integer in 1.." in err
    assert not out.exists()


def test_cli_eval_assignment_reproduces_the_committed_digits_result(capsys):
    """`hwsim eval --assignment` evaluates a committed optimize-voltages result to its recorded
    accuracy (same seeds) and weight-domain energy (same law), on the committed checkpoint."""
    import json
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    path = root / "studies/results/digits_voltages/normal.yaml"
    doc = yaml.safe_load(path.read_text())
    assert main(["eval", "--checkpoint", str(root / doc["checkpoint"]), "--assignment", str(path),
                 "--arch", ARCH, "--realizations", "50", "--seed", "0", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    acc = doc["accuracy"]
    assert out["mean"] == pytest.approx(acc["mean"], abs=1e-12)
    assert out["ci95"] == pytest.approx(acc["ci95"], rel=1e-9)
    assert out["realizations"] == acc["realizations"] == 50
    assert out["energy_weight_domain_uJ"] == pytest.approx(doc["energy_weight_domain_uJ"],
                                                           rel=1e-9)
    assert out["energy_weight_domain_nominal_uJ"] == pytest.approx(
        doc["energy_weight_domain_nominal_uJ"], rel=1e-9)


def test_cli_eval_assignment_errors_and_warning(trained, tmp_path, capsys):
    ckpt = str(trained("normal"))
    good = tmp_path / "a.yaml"
    model, _ = load_checkpoint(ckpt)
    names = [n for n, _ in quant_layers(model)]
    good.write_text(yaml.safe_dump({"checkpoint": "other.pt", "checkpoint_sha256": "0" * 16,
                                    "layers": {n: {"voltage": 0.5} for n in names}}))
    base = ["eval", "--checkpoint", ckpt]
    cases = [(["--assignment", str(good), "--ber", "0.01"], "give one"),
             (["--arch", ARCH], "needs --assignment"),
             (["--ci-target", "0.01"], "needs --assignment"),
             (["--assignment", str(good), "--realizations", "1"], "at least 2"),
             (["--assignment", str(tmp_path / "none.yaml")], "none.yaml")]
    for extra, msg in cases:
        assert main(base + extra) == 2, extra
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and msg in err, (extra, err)
    bad = tmp_path / "b.yaml"
    bad.write_text(yaml.safe_dump({"layers": {names[0]: 0.1}}))
    assert main(base + ["--assignment", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "layers." + names[0] in err and "outside the supported supply range" in err
    # another checkpoint's assignment still evaluates, with a warning naming both
    assert main(base + ["--assignment", str(good), "--realizations", "4", "--json"]) == 0
    cap = capsys.readouterr()
    assert "optimised for other.pt" in cap.err and ckpt in cap.err
    assert 0 < yaml.safe_load(cap.out)["mean"] <= 1



ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]
DIGITS_ASSIGNMENT = ROOT / "studies/results/digits_voltages/normal.yaml"
ASSIGN_STUDY = """
name: per_layer
seed: 0
data: {name: digits}
network: small_cnn
methods:
  - {name: normal, quantizer: normal, bits: 4, checkpoint: ROOT/studies/results/digits_quickstart/checkpoints/normal.pt}
  - {name: wcat+bfn, quantizer: wcat, bits: 4, bfn: true, params: {weight_decay_a: 0.01}, checkpoint: ROOT/studies/results/digits_quickstart/checkpoints/wcat_bfn.pt}
arch: ROOT/arch/eyeriss_sram.yaml
voltages: {min: 0.5, max: 0.5, step: 0.01}
monte_carlo: {realizations: 50, ci_target: 1.0e-9}  # all 50, as the committed verification
results_dir: OUT
assignments:
  - {method: normal, file: ASSIGN}
"""


def _assign_study(tmp_path, assign=DIGITS_ASSIGNMENT, text=ASSIGN_STUDY):
    f = tmp_path / "per_layer.yaml"
    f.write_text(text.replace("ROOT", str(ROOT)).replace("OUT", str(tmp_path / "out"))
                 .replace("ASSIGN", str(assign)))
    return f


def test_study_evaluates_a_per_layer_assignment_beside_its_sweeps(tmp_path, monkeypatch):
    """A study's `assignments:` add one row per assignment to results.csv (the committed
    digits assignment reproduces its recorded accuracy and weight-domain energy), listed in
    the summary and status; a rerun does nothing; a changed assignment file is an error."""
    import shutil
    import pandas as pd
    from hwsim.study import run_study
    from hwsim.study_spec import load_study
    from hwsim.study_status import study_status
    own = tmp_path / "normal.yaml"
    shutil.copy(DIGITS_ASSIGNMENT, own)
    f = _assign_study(tmp_path, own)
    assert list(study_status(load_study(f))["per-layer points"]) == ["0/1", "0/0"]
    run_study(load_study(f), progress=False, log=lambda s: None)
    out = tmp_path / "out"
    df = pd.read_csv(out / "results.csv")
    assert set(df["label"]) == {"normal", "wcat+bfn", "normal [per-layer]"}
    row = df[df["label"] == "normal [per-layer]"].iloc[0]
    doc = yaml.safe_load(own.read_text())
    assert row["acc_mean"] == pytest.approx(doc["accuracy"]["mean"], abs=1e-12)
    assert row["energy_weight_mem_uJ"] == pytest.approx(doc["energy_weight_domain_uJ"], rel=1e-9)
    assert row["voltage"] == min(v["voltage"] for v in doc["layers"].values())
    uniform = df[df["label"] == "normal"].iloc[0]  # outside the weight memory: the same energy
    assert row["energy_uJ"] - row["energy_weight_mem_uJ"] == pytest.approx(
        uniform["energy_uJ"] - uniform["energy_weight_mem_uJ"], rel=1e-9)
    summary = (out / "summary.md").read_text()
    assert "normal [per-layer]" in summary and "lowest layer voltage" in summary
    assert list(study_status(load_study(f))["per-layer points"]) == ["1/1", "0/0"]
    side = json.loads((out / "results.energy.json").read_text())["normal [per-layer]"]
    assert side["assignment"] == {k: v["voltage"] for k, v in sorted(doc["layers"].items())}
    stamp = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}

    def no_data(*a, **k):
        raise AssertionError("a kept per-layer row needs no test set")
    monkeypatch.setattr("hwsim.assignments.checkpoint_test_data", no_data)
    run_study(load_study(f), progress=False, log=lambda s: None)
    assert stamp == {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    doc["layers"]["fc"]["voltage"] = 0.45
    own.write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError, match="the assignment changed"):
        run_study(load_study(f), progress=False, log=lambda s: None)


def test_kept_per_layer_row_is_matched_by_its_voltages_not_only_its_energy(tmp_path):
    """Two layers of equal energy swapping voltages keep the total energy and the lowest
    voltage: the sidecar's recorded voltages tell the kept row apart; a row written before
    the sidecar recorded them is matched by energy and lowest voltage."""
    from hwsim.assignments import _same_assignment
    out = tmp_path / "results.csv"
    row = {"energy_uJ": 2.0, "voltage": 0.40}
    old = {"a": 0.40, "b": 0.50, "c": 0.60}
    swapped = {"a": 0.40, "b": 0.60, "c": 0.50}
    (tmp_path / "results.energy.json").write_text(json.dumps(
        {"m [per-layer]": {"layers": [], "assignment": old}}))
    assert _same_assignment(out, "m [per-layer]", row, dict(old), 2.0)
    assert not _same_assignment(out, "m [per-layer]", row, swapped, 2.0)
    (tmp_path / "results.energy.json").write_text(json.dumps({"m [per-layer]": {"layers": []}}))
    assert _same_assignment(out, "m [per-layer]", row, swapped, 2.0)  # older sidecar
    assert not _same_assignment(out, "m [per-layer]", row, swapped, 2.1)
    assert not _same_assignment(out, "m [per-layer]", row, {"a": 0.41, "b": 0.5}, 2.0)


@pytest.mark.parametrize("old, new, message", [
    ("{method: normal, file:", "{method: lsq, file:",
     "assignments[0].method: 'lsq' is not a method of this study; valid: normal, wcat+bfn"),
    ("file: ASSIGN}", "file: nowhere.yaml}", "assignments[0].file: 'nowhere.yaml' does not exist"),
    ("  - {method: normal, file: ASSIGN}", "  - {method: normal, file: ASSIGN}\n"
     "  - {method: normal, file: ASSIGN}",
     "assignments[1].label: 'normal [per-layer]' is already the label"),
    ("  - {method: normal, file: ASSIGN}", "  - {method: normal, file: ASSIGN, label: normal}",
     "assignments[0].label: 'normal' is already the label"),
    ("  - {method: normal, file: ASSIGN}\n", "  []\n", "assignments: must be a non-empty list"),
])
def test_study_assignment_errors_name_the_key(tmp_path, old, new, message):
    from hwsim.study_spec import load_study
    assert old in ASSIGN_STUDY
    f = _assign_study(tmp_path, text=ASSIGN_STUDY.replace(old, new))
    with pytest.raises(ConfigError) as e:
        load_study(f)
    assert str(f) in str(e.value) and message in str(e.value)


def test_study_assignment_file_with_a_bad_voltage_is_one_error(tmp_path):
    from hwsim.study_spec import load_study
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"layers": {"fc": 0.1}}))
    with pytest.raises(ConfigError, match=r"assignments\[0\]\.file: .*layers\.fc\.voltage 0\.1"):
        load_study(_assign_study(tmp_path, bad))


def test_cli_sweep_assignment_writes_one_row_and_refuses_grid_flags(tmp_path, capsys):
    import pandas as pd
    out = tmp_path / "r.csv"
    ckpt = str(ROOT / "studies/results/digits_quickstart/checkpoints/normal.pt")
    base = ["sweep", "--checkpoint", ckpt, "--assignment", str(DIGITS_ASSIGNMENT), "--out",
            str(out), "--realizations", "50", "--no-progress"]
    assert main(base) == 0
    assert "normal [per-layer]: accuracy 99.19%" in capsys.readouterr().out
    df = pd.read_csv(out)
    assert list(df["label"]) == ["normal [per-layer]"] and df["realizations"][0] == 50
    assert main(base) == 2  # already there: as a sweep, --resume keeps it
    assert "pass --resume" in capsys.readouterr().err
    assert main(base + ["--resume"]) == 0 and len(pd.read_csv(out)) == 1
    for extra, flag in ((["--vmin", "0.4"], "--vmin"), (["--domains", "weights"], "--domains"),
                        (["--protection", "secded"], "--protection")):
        assert main(base + extra) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and f"--assignment with {flag}" in err


def test_flip_model_fits_one_damage_per_flip_coefficient():
    """flip_model: drops exactly c x n eps(V) are returned as they are (c recovered from the
    Monte Carlo points; the bound-only points follow the same line), and one lucky noisy
    point no longer lets a layer go low as the measured (monotone) curve does."""
    from hwsim.voltages import BOUND_SHARE, flip_model, monotone
    bm, n, c = BerModel(), 20000, 2e-5
    grid = [0.50, 0.48, 0.46, 0.44, 0.42, 0.40]
    exact = {v: c * n * bm.ber(v) for v in grid}
    fit = flip_model(exact, n, bm, 0.01)
    assert all(fit[v] == pytest.approx(exact[v], rel=1e-12) for v in grid)
    noisy = dict(exact) | {0.42: 0.0}  # one realization without a harmful flip
    assert monotone(noisy)[0.42] < exact[0.42] / 3  # measured: 0.42 costs only 0.44's drop
    fit = flip_model(noisy, n, bm, 0.01)
    lam = {v: n * bm.ber(v) for v in grid}
    mc = [v for v in grid if -np.expm1(n * np.log1p(-bm.ber(v))) >= BOUND_SHARE * 0.01]
    slope = sum(noisy[v] for v in mc) / sum(lam[v] for v in mc)
    assert fit[0.42] == pytest.approx(slope * lam[0.42]) and fit[0.42] > exact[0.42] / 2
    assert flip_model({0.8: 1e-9}, n, bm, 0.01) == {0.8: 1e-9}  # bound only: as measured


def test_flips_ceiling_spreads_voltages_only_where_sensitivity_differs():
    """Equal layers: the continuous per-layer optimum is the uniform voltage (saving 0); a
    100x more sensitive layer sits higher and the others lower, saving energy at the same
    modelled drop; a budget no voltage meets gives None."""
    from hwsim.voltages import LayerEnergies, continuous_optimum, flips_ceiling
    bm = BerModel()
    law = LayerEnergies.of({"a": 1.0, "b": 1.0, "c": 1.0}, 0.8)
    same = flips_ceiling(dict.fromkeys("abc", 1.0), law, bm, 0.8, 0.01)
    assert abs(same["saving_vs_uniform"]) < 1e-3
    assert same["layer_voltages"][0] == same["layer_voltages"][1] == same["uniform_voltage"]
    k = {"a": 100.0, "b": 1.0, "c": 1.0}
    c = flips_ceiling(k, law, bm, 0.8, 0.01)
    assert c["saving_vs_uniform"] > 0.01
    e, volts = continuous_optimum(k, law, bm, 0.8, 0.01)
    assert volts["a"] > volts["b"] == volts["c"] and e == pytest.approx(c["energy_uJ"])
    assert sum(k[n] * bm.ber(v) for n, v in volts.items()) <= 0.01
    assert law.total(volts) == pytest.approx(e)
    assert flips_ceiling(dict.fromkeys("abc", 1e12), law, bm, 0.8, 0.01) is None


def test_sensitivity_from_reuses_a_recorded_run(tmp_path):
    """--sensitivity-from: the committed digits run's sensitivity, reused with the same
    settings, reproduces its assignment and accuracy without measuring it again; another
    grid, a larger max drop or another checkpoint is one error."""
    import hwsim.assignments as ha
    from hwsim.assignments import optimize_voltages
    doc = yaml.safe_load(DIGITS_ASSIGNMENT.read_text())
    ckpt = str(ROOT / doc["checkpoint"])
    grid = parse_grid("0.36:0.80:0.01")
    orig = ha.sensitivity
    ha.sensitivity = lambda *a, **k: pytest.fail("sensitivity measured again")
    try:
        got = optimize_voltages(ckpt, str(ROOT / ARCH), 1.0, grid, seed=0, realizations=50,
                                sensitivity_from=DIGITS_ASSIGNMENT, progress=False)
    finally:
        ha.sensitivity = orig
    assert {n: l["voltage"] for n, l in got["layers"].items()} == \
        {n: l["voltage"] for n, l in doc["layers"].items()}
    assert got["accuracy"]["mean"] == pytest.approx(doc["accuracy"]["mean"], abs=1e-12)
    assert got["sensitivity_from"] == str(DIGITS_ASSIGNMENT)
    assert got["sensitivity_images"] == 360  # recorded before --sens-images: all of them
    ceil = got["ceiling_flips_model"]  # studies/results/resnet20_voltages/ceiling.py: 6.0%
    assert ceil["saving_vs_uniform"] == pytest.approx(0.0597, abs=5e-4)
    assert ceil["layer_voltages"] == pytest.approx([0.405, 0.471])
    bad = [(dict(grid=parse_grid("0.36:0.80:0.02")), "grid"),
           (dict(max_drop_points=2.0), "max drop 1.0 points, less than 2"),
           (dict(checkpoint=str(ROOT / "studies/results/digits_quickstart/checkpoints/"
                                       "wcat_bfn.pt")), "checkpoint_sha256")]
    for change, msg in bad:
        kw = dict(checkpoint=ckpt, grid=grid, max_drop_points=1.0) | change
        with pytest.raises(ConfigError, match=msg):
            optimize_voltages(kw["checkpoint"], str(ROOT / ARCH), kw["max_drop_points"],
                              kw["grid"], sensitivity_from=DIGITS_ASSIGNMENT, progress=False)
