"""Issue 22 leftovers at run time: the tech-node warning of sweep / study / optimize-voltages
(once per run) and SECDED pricing from the energy cache without CACTI."""
from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import pytest
import torch

from hwsim import accelforge_backend as backend
from hwsim import domains
from hwsim.ber import BerModel
from hwsim.cli import main
from hwsim.domain_energy import access_pJ, codec_pJ, price
from hwsim.energy import EnergyCache, access_key, cache_path_for, network_energy
from hwsim.models.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
CK = ROOT / "studies" / "results" / "digits_quickstart" / "checkpoints"
DOMAINS = ROOT / "arch" / "eyeriss_sram_domains.yaml"


def _warnings(err: str) -> list[str]:
    return [line for line in err.splitlines() if "hwsim: warning: the arch's energies" in line]


def _no_mapping(*a, **k):
    raise AssertionError("the committed energy cache should answer (no AccelForge mapping)")


@pytest.fixture
def fresh_warnings(monkeypatch):
    monkeypatch.setattr(domains, "_WARNED", set())
    monkeypatch.setattr(backend, "map_layer", _no_mapping)


# ------------------------------------------------------------------ tech-node warning

def test_sweep_warns_once_per_run_not_per_point(fresh_warnings, capsys, tmp_path):
    torch.set_num_threads(1)
    out = tmp_path / "r.csv"
    code = main(["sweep", "--checkpoint", str(CK / "normal.pt"), "--arch", str(DOMAINS),
                 "--vmin", "0.44", "--vmax", "0.48", "--step", "0.02", "--realizations", "4",
                 "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert len(out.read_text().strip().splitlines()) == 1 + 3  # three points...
    lines = _warnings(err)
    assert len(lines) == 1, err  # ...one warning
    assert "tech_node 65 nm" in lines[0] and "22 nm FDX" in lines[0]


def test_sweep_warning_names_the_swept_domain_and_skips_own_fits(fresh_warnings, tmp_path,
                                                                capsys):
    base = ["sweep", "--checkpoint", str(CK / "normal.pt"), "--vmin", "0.7", "--vmax", "0.7",
            "--realizations", "2", "--no-progress"]
    assert main(base + ["--arch", str(DOMAINS), "--domains", "activations", "--out",
                        str(tmp_path / "a.csv")]) == 0
    lines = _warnings(capsys.readouterr().err)
    assert len(lines) == 1 and "domain 'activations'" in lines[0]
    domains._WARNED.clear()
    fit = tmp_path / "fit.yaml"
    BerModel(a=-30.0, b=40.0, c=0.0, source="my 65 nm chip").save(fit)
    assert main(base + ["--arch", str(DOMAINS), "--ber-model", str(fit), "--out",
                        str(tmp_path / "b.csv")]) == 0
    assert _warnings(capsys.readouterr().err) == []  # the user's own BER model
    # an error stays one line: no warning before it
    assert main(base + ["--arch", str(DOMAINS), "--out", str(tmp_path / "a.csv"),
                        "--domains", "activations"]) == 2
    err = capsys.readouterr().err.strip()
    assert "already holds points" in err and err.count("\n") == 0


def test_study_and_optimize_voltages_warn_once(fresh_warnings, tmp_path, capsys,
                                               monkeypatch):
    study = tmp_path / "s.yaml"
    study.write_text(f"name: s\nseed: 0\ndata: {{name: digits}}\nnetwork: small_cnn\n"
                     f"arch: {DOMAINS}\nresults_dir: out\n"
                     "methods: [{name: normal, quantizer: normal, bits: 4, checkpoint: "
                     f"{CK / 'normal.pt'}}}]\n"
                     "voltages: {min: 0.46, max: 0.50, step: 0.02}\n"
                     "monte_carlo: {realizations: 2}\n"
                     "scenarios: [{}, {protection: msb:2}, {domains: [activations]}]\n")
    assert main(["study", str(study), "--no-progress"]) == 0
    rows = (tmp_path / "out" / "results.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + 3 * 3  # three scenarios x three voltages...
    assert len(_warnings(capsys.readouterr().err)) == 1  # ...one warning

    domains._WARNED.clear()
    # a missing checkpoint stays a one-line error, with no warning before it
    assert main(["optimize-voltages", "--checkpoint", str(tmp_path / "no.pt"), "--arch",
                 str(DOMAINS), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert "does not exist" in err and err.count("\n") == 0

    import hwsim.assignments as ha

    def stop(*a, **k):
        raise ConfigError("stopped after the warning")
    monkeypatch.setattr(ha, "optimize", stop)  # after the energy, before any evaluation
    assert main(["optimize-voltages", "--checkpoint", str(CK / "normal.pt"), "--arch",
                 str(DOMAINS), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert len(_warnings(err)) == 1 and "domain 'weights'" in err


# ------------------------------------------------------------------ SECDED without CACTI

def _cached_net():
    """ResNet-free: small_cnn's 8-bit shapes, from the committed cache only."""
    from hwsim.models import create_model, input_shape
    from hwsim.workload import extract_layers
    layers = extract_layers(create_model("small_cnn", num_classes=10), input_shape("small_cnn"),
                            weight_bits=8)
    return network_energy(DOMAINS, layers, progress=False)


def test_secded_price_without_cacti_equals_cacti(monkeypatch):
    monkeypatch.setattr(backend, "map_layer", _no_mapping)
    ne = _cached_net()
    comps = ("WeightSRAM", "WeightScratchpad", "ActivationSRAM", "GlobalBuffer")
    # the unblocked value: CACTI itself, with the arch's WeightSRAM (8 Mbit, 16 banks, 65 nm)
    cacti = backend.sram_read_energy_pJ(8 * 1024 * 1024, 64, 65e-9, 16)
    volts = {"weights": 0.5, "pe_weights": 0.5, "activations": 0.6}
    access_pJ.cache_clear()
    monkeypatch.setitem(sys.modules, "hwcomponents_cacti", None)  # CACTI is not installed
    with pytest.raises(ImportError):
        importlib.import_module("hwcomponents_cacti")
    blocked = price(ne, volts, "secded")
    assert access_pJ(str(DOMAINS), "WeightSRAM") == pytest.approx(cacti, rel=1e-12)
    monkeypatch.delitem(sys.modules, "hwcomponents_cacti")
    access_pJ.cache_clear()
    given = {c: access_pJ(str(DOMAINS), c) for c in comps}
    explicit = price(ne, volts, {d: {"kind": "secded", "access_pJ": given} for d in volts})
    assert blocked["total_uJ"] == pytest.approx(explicit["total_uJ"], rel=1e-12)
    w = blocked["domains"]["weights"]
    assert w["codec_uJ"] == pytest.approx(
        w["nominal_uJ"] * 1e6 / cacti * codec_pJ(65e-9) * 1e-6, rel=1e-9)
    assert all(blocked["domains"][d]["codec_uJ"] > 0 for d in volts)


def test_uncached_access_without_cacti_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HWSIM_ENERGY_CACHE", str(tmp_path / "cache"))
    arch = tmp_path / "mine.yaml"
    arch.write_text(DOMAINS.read_text().replace("size: 8 * 1024 * 1024", "size: 4 * 1024 * 1024"))
    access_pJ.cache_clear()
    monkeypatch.setitem(sys.modules, "hwcomponents_cacti", None)
    with pytest.raises(ConfigError) as e:
        access_pJ(str(arch), "WeightSRAM")
    msg = str(e.value)
    assert "\n" not in msg and "hwcomponents_cacti" in msg and "WeightSRAM" in msg
    assert "--fill-cache" in msg and not (tmp_path / "cache" / "energy.json").exists()
    # with CACTI: computed once, cached under the spec hash, then served without it
    monkeypatch.delitem(sys.modules, "hwcomponents_cacti")
    access_pJ.cache_clear()
    e64 = access_pJ(str(arch), "WeightSRAM")
    want = backend.sram_read_energy_pJ(4 * 1024 * 1024, 64, 65e-9, 16)
    assert e64 == pytest.approx(want, rel=1e-12)
    sha = backend.arch_sha256(arch)
    assert EnergyCache(cache_path_for(arch)).get_access(access_key(sha, "WeightSRAM")) == e64
    access_pJ.cache_clear()
    monkeypatch.setitem(sys.modules, "hwcomponents_cacti", None)
    assert access_pJ(str(arch), "WeightSRAM") == e64


def test_committed_cache_has_every_shipped_domain_access_energy():
    entries = json.loads((ROOT / "arch" / "cache" / "energy.json").read_text())["entries"]
    for arch in sorted((ROOT / "arch").glob("*.yaml")):
        _, info = backend.load_arch(arch, accelforge_loader=False)
        for d in info.domains:
            for c in d.components:
                v = entries.get(access_key(info.sha256, c))
                assert v and v["access_pJ"] > 0, f"{arch.name}: {c} (hwsim energy --fill-cache)"
