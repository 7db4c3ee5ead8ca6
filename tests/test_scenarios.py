"""Scenarios (hwsim/scenario.py): which voltage domains a sweep drives and their protection,
through hwsim sweep / the API / study files, on the committed digits checkpoints and the
committed energy cache (arch/eyeriss_sram_domains.yaml shares eyeriss_sram.yaml's mappings)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

from hwsim.ber import BerModel
from hwsim.cli import main
from hwsim.energy import scaled_energy
from hwsim.models.errors import ConfigError
from hwsim.scenario import Scenario, series_ber
from hwsim.study_spec import load_study

ROOT = Path(__file__).resolve().parent.parent
CK = ROOT / "studies" / "results" / "digits_quickstart" / "checkpoints"
DOMAINS = ROOT / "arch" / "eyeriss_sram_domains.yaml"


def sweep(capsys, out, *extra, ck="wcat_bfn.pt", volts=(0.40, 0.44)):
    code = main(["sweep", "--checkpoint", str(CK / ck), "--arch", str(DOMAINS),
                 "--vmin", str(volts[0]), "--vmax", str(volts[1]), "--step", "0.04",
                 "--realizations", "8", "--seed", "1", "--out", str(out), "--no-progress",
                 "--resume", *extra])
    err = capsys.readouterr().err
    assert code == 0, err
    return pd.read_csv(out)


def test_series_rate_of_copies():
    assert series_ber(0.01, 1) == 0.01 and series_ber(0.01, 0) == 0.0
    assert series_ber(0.01, 2) == pytest.approx(2 * 0.01 * 0.99, rel=1e-12)
    # brute force: a bit through 3 memories flipping independently
    g = torch.Generator().manual_seed(0)
    flips = (torch.rand(3, 2_000_000, generator=g) < 0.05).sum(0) % 2
    assert float(flips.float().mean()) == pytest.approx(series_ber(0.05, 3), abs=5e-4)


def test_protection_and_domains_are_separate_labelled_rows(capsys, tmp_path):
    torch.set_num_threads(2)
    out = tmp_path / "r.csv"
    base = sweep(capsys, out)
    sweep(capsys, out, "--protection", "msb:2")
    sweep(capsys, out, "--protection", "secded")
    df = sweep(capsys, out, "--domains", "weights")
    labels = list(dict.fromkeys(df["label"]))
    assert labels == ["wcat+bfn", "wcat+bfn [msb:2]", "wcat+bfn [secded]",
                      "wcat+bfn [weights]"]
    at = df.set_index(["label", "voltage"])
    none, msb, ecc = (at.loc[(lab, 0.40)] for lab in labels[:3])
    # the default scenario drives every weight-holding domain: here the WeightSRAM and the
    # PE weight scratchpads; the BER column is eq. 11 at V
    assert base["protection"].tolist() == ["none", "none"]
    assert base["domains"].tolist() == ["weights+pe_weights"] * 2
    assert none["ber"] == pytest.approx(BerModel().ber(0.40), rel=1e-12)
    # MSB protection: fewer wrong bits, better accuracy, more energy; SECDED likewise
    assert msb["expected_flips"] < none["expected_flips"] / 1.5
    assert ecc["expected_flips"] < none["expected_flips"]
    assert msb["acc_mean"] > none["acc_mean"] and msb["energy_uJ"] > none["energy_uJ"]
    assert ecc["energy_uJ"] > none["energy_uJ"] > 0
    assert none["saving_vs_nominal"] == pytest.approx(
        1 - none["energy_uJ"] / none["energy_nominal_uJ"], rel=1e-9)
    # one weight memory at V instead of two in series: half the exposure, more energy
    one = at.loc[(labels[3], 0.40)]
    assert one["energy_uJ"] > none["energy_uJ"] and one["ber"] == none["ber"]
    assert none["expected_flips"] == pytest.approx(
        one["expected_flips"] * series_ber(one["ber"], 2) / one["ber"], rel=1e-9)
    assert one["domains"] == "weights"


def test_activation_domain_adds_activation_faults(capsys, tmp_path):
    out = tmp_path / "a.csv"
    torch.set_num_threads(2)
    w = sweep(capsys, out, "--domains", "weights", volts=(0.40, 0.40))
    a = sweep(capsys, out, "--domains", "activations", volts=(0.40, 0.40))
    wa = sweep(capsys, out, "--domains", "weights,activations", volts=(0.40, 0.40))
    rows = {r.label: r for r in wa.itertuples()}
    only_w, only_a, both = (rows["wcat+bfn [weights]"], rows["wcat+bfn [activations]"],
                            rows["wcat+bfn [weights+activations]"])
    assert only_a.expected_flips == 0 and only_a.estimator == "mc"  # weights stay clean
    assert only_a.acc_mean < only_a.acc_clean  # activations at BER(0.40 V) ~ 1e-2 do hurt
    assert both.acc_mean < only_w.acc_mean
    assert both.energy_uJ < only_w.energy_uJ and both.energy_uJ < only_a.energy_uJ
    assert len(w) == 1 and len(a) == 2


def test_scenarios_in_a_study_file(tmp_path):
    study = tmp_path / "s.yaml"
    text = ("name: s\nnetwork: small_cnn\narch: {arch}\n"
            "methods: [{{name: normal, quantizer: normal, bits: 4}}]\n{extra}")
    study.write_text(text.format(arch=DOMAINS, extra=(
        "scenarios: [{}, {protection: secded}, {domains: [weights, activations]}]\n")))
    s = load_study(study)
    assert s.scenarios == [Scenario(), Scenario((), "secded"),
                           Scenario(("weights", "activations"), "none")]
    assert [sc.label("normal") for sc in s.scenarios] == [
        "normal", "normal [secded]", "normal [weights+activations]"]
    for extra, msg in (("scenarios: [{domains: [nope]}]\n",
                        r"scenarios\[0\]\.domains: nope: not a domain"),
                       ("scenarios: [{protection: ecc}]\n", r"scenarios\[0\]: .*ecc"),
                       ("scenarios: [{}, {}]\n", r"scenarios\[1\]: listed twice"),
                       ("scenarios: [{volts: 1}]\n", r"scenarios\[0\]\.volts: unknown key")):
        study.write_text(text.format(arch=DOMAINS, extra=extra))
        with pytest.raises(ConfigError, match=msg):
            load_study(study)


def test_unknown_domain_on_the_command_line_is_one_line(capsys, tmp_path):
    code = main(["sweep", "--checkpoint", str(CK / "normal.pt"), "--arch", str(DOMAINS),
                 "--domains", "weights,nope", "--out", str(tmp_path / "x.csv"),
                 "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "nope" in err and "its domains: weights, pe_weights, activations" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "x.csv").exists()


def test_default_scenario_energy_is_scaled_energy():
    from hwsim.api import energy
    from hwsim.models.checkpoint import load_checkpoint
    model, _ = load_checkpoint(CK / "normal.pt")
    ne = energy(model, str(DOMAINS))
    cols = Scenario().energy_columns(ne, 0.45)
    assert cols["energy_uJ"] == scaled_energy(ne, 0.45)


def test_api_evaluate_takes_layer_rates_protection_and_activation_faults():
    from hwsim import api as hw
    from hwsim.models.checkpoint import load_checkpoint
    from hwsim.models.data import load_dataset
    from hwsim.models.quant import quant_layers
    model, _ = load_checkpoint(CK / "normal.pt")
    test = load_dataset("digits")[1]
    first = quant_layers(model)[0][0]
    plain = hw.evaluate(model, test, ber=2e-2, realizations=4, seed=3)
    one = hw.evaluate(model, test, ber={first: 2e-2}, realizations=4, seed=3)
    msb = hw.evaluate(model, test, ber=2e-2, realizations=4, seed=3, protection="msb:2")
    act = hw.evaluate(model, test, ber=0.0, realizations=4, seed=3, act_ber=2e-2)
    assert sum(one.flips) < sum(plain.flips) / 5 and sum(msb.flips) < sum(plain.flips)
    assert msb.mean > plain.mean and act.mean < act.clean
    with pytest.raises(ConfigError, match="protection 'ecc'"):
        hw.evaluate(model, test, ber=1e-2, protection="ecc")
