"""`hwsim arch check` and the shipped accelerator library (arch/*.yaml): committed cache,
full component names, DRAM / idle weight-memory warnings, one-line errors."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from hwsim import accelforge_backend as backend
from hwsim.cli import main
from hwsim.commands.arch import REFERENCE_LAYER, dram_warnings
from hwsim.energy import cache_key

ROOT = Path(__file__).resolve().parent.parent
EYERISS = ROOT / "arch" / "eyeriss_sram.yaml"
CACHE = json.loads((ROOT / "arch" / "cache" / "energy.json").read_text())["entries"]


@pytest.fixture
def no_mapping(monkeypatch):
    """Fail the test if anything would run AccelForge's mapper."""
    def boom(*a, **k):
        raise AssertionError("mapped a layer that should come from the cache")
    monkeypatch.setattr(backend, "map_layer", boom)


@pytest.fixture
def fake_mapper(monkeypatch, tmp_path):
    """map_layer stand-in: energies from the shape; `zero` names components spending 0."""
    zero: set[str] = set()

    def fake(arch_file, layer, *, fast=True, mapper=None):
        e = float(layer.macs)
        comps = {"WeightSRAM": 0.0 if "WeightSRAM" in zero else 0.25 * e,
                 "ActivationSRAM": 0.5 * e, "MAC": 1.25 * e}
        return backend.LayerEnergy(layer=layer.name, key=layer.key(), components_pJ=comps,
                                   total_pJ=sum(comps.values()),
                                   weight_memory_pJ=comps["WeightSRAM"], macs=layer.macs)
    monkeypatch.setattr(backend, "map_layer", fake)
    monkeypatch.setenv("HWSIM_ENERGY_CACHE", str(tmp_path / "cache"))
    return zero


def _arch(tmp_path, text, name="mine.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


@pytest.mark.parametrize("name", ["eyeriss_sram", "simba_sram", "nvdla_sram", "tpu_sram",
                                  "simba_sram_22nm", "nvdla_sram_22nm", "tpu_sram_22nm"])
def test_shipped_arch_check_from_committed_cache(name, no_mapping, capsys):
    arch = ROOT / "arch" / f"{name}.yaml"
    _, info = backend.load_arch(arch, accelforge_loader=False)
    entry = CACHE[cache_key(info.sha256, REFERENCE_LAYER)]
    assert main(["arch", "check", name, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["cached"] and out["macs"] == REFERENCE_LAYER.macs == 2_359_296
    assert out["pJ_per_MAC"] == pytest.approx(entry["total_pJ"] / entry["macs"])
    assert out["weight_memory_pJ"] == pytest.approx(entry["components_pJ"]["WeightSRAM"])
    assert 0 < out["weight_share"] < 1 and out["warnings"] == []


def test_shipped_library_is_cached():
    """Every shipped arch has ResNet-20's 8-bit shapes (arch check's layer among them) in
    the committed cache, so ResNet-20/32/44/56 and `hwsim arch check NAME` cost nothing."""
    from hwsim import models
    from hwsim.workload import extract_layers

    layers = extract_layers(models.create_model("resnet20", num_classes=10), (3, 32, 32))
    assert len({layer.key() for layer in layers}) == 7
    assert REFERENCE_LAYER.key() in {layer.key() for layer in layers}
    for arch in sorted((ROOT / "arch").glob("*.yaml")):
        _, info = backend.load_arch(arch, accelforge_loader=False)
        missing = [la.key() for la in layers if cache_key(info.sha256, la) not in CACHE]
        assert not missing, f"{arch.name}: not in arch/cache/energy.json: {missing}"


@pytest.mark.parametrize("name", ["simba_sram", "nvdla_sram", "tpu_sram"])
def test_22nm_variant_differs_only_in_node(name):
    """Same arch: section but tech_node; CACTI at 22 nm makes every layer far cheaper."""
    def spec(p):
        d, _ = backend.load_arch(p, accelforge_loader=False)
        d["arch"]["extra_attributes_for_all_component_models"].pop("tech_node")
        return d
    a65, a22 = ROOT / "arch" / f"{name}.yaml", ROOT / "arch" / f"{name}_22nm.yaml"
    assert spec(a65) == spec(a22)
    e = [CACHE[cache_key(backend.load_arch(a, accelforge_loader=False)[1].sha256,
                         REFERENCE_LAYER)] for a in (a65, a22)]
    assert 0.1 < e[1]["total_pJ"] / e[0]["total_pJ"] < 0.3
    assert e[1]["components_pJ"]["WeightSRAM"] < 0.3 * e[0]["components_pJ"]["WeightSRAM"]


def test_table_has_full_component_names(no_mapping, capsys):
    assert main(["arch", "check", str(EYERISS)]) == 0
    cap = capsys.readouterr()
    assert cap.err == ""
    _, info = backend.load_arch(EYERISS, accelforge_loader=False)
    entry = CACHE[cache_key(info.sha256, REFERENCE_LAYER)]
    lines = cap.out.splitlines()
    for comp in ["ActivationSRAM", "InputScratchpad", "WeightScratchpad", "OutputScratchpad"]:
        row = next(ln for ln in lines if ln.split()[0] == comp)  # full name, not cut to 12
        assert float(row.split()[2]) == pytest.approx(
            entry["components_pJ"][comp] / entry["macs"], abs=1e-4)
    wm = next(ln for ln in lines if ln.startswith("weight memory"))
    share = entry["components_pJ"]["WeightSRAM"] / entry["total_pJ"] * 100
    assert f"{share:.1f}% of total" in wm


def test_energy_table_has_full_component_names(no_mapping, capsys):
    # hwsim energy used to cut component names to 12 characters
    assert main(["energy", "--model", "resnet20", "--arch", str(EYERISS),
                 "--no-progress"]) == 0
    head = capsys.readouterr().out.splitlines()[1].split()
    assert {"ActivationSRAM", "WeightScratchpad", "OutputScratchpad"} <= set(head)


def test_check_maps_and_caches_a_new_arch(tmp_path, fake_mapper, capsys):
    arch = _arch(tmp_path, EYERISS.read_text())
    assert main(["arch", "check", str(arch), "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert not first["cached"] and first["pJ_per_MAC"] == pytest.approx(2.0)
    assert first["weight_share"] == pytest.approx(0.125)
    assert main(["arch", "check", str(arch), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["cached"]
    assert (tmp_path / "cache" / "energy.json").is_file()


def test_warns_when_weight_memory_spends_nothing(tmp_path, fake_mapper, capsys):
    fake_mapper.add("WeightSRAM")
    assert main(["arch", "check", str(_arch(tmp_path, EYERISS.read_text()))]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "warning" in err[0] and "WeightSRAM spends no energy" in err[0]


def test_dram_weight_memory(tmp_path, fake_mapper, capsys):
    # AccelForge's examples keep weights in DRAM; naming it the weight memory is the trap:
    # a DRAM class is refused (load_arch), an SRAM of unbounded size is warned about
    dram = EYERISS.read_text().replace(
        "component_class: SmartBufferSRAM\n    size: 8 * 1024 * 1024 # 8 Mbit\n"
        "    extra_attributes_for_component_model: {width: 64, n_banks: 16}",
        "component_class: LPDDR4\n    size: inf", 1)
    assert "LPDDR4" in dram
    assert main(["arch", "check", str(_arch(tmp_path, dram))]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "hwsim.weight_memory" in err and "LPDDR4" in err
    huge = EYERISS.read_text().replace("size: 8 * 1024 * 1024 # 8 Mbit", "size: inf", 1)
    assert main(["arch", "check", str(_arch(tmp_path, huge, "huge.yaml"))]) == 0
    err = capsys.readouterr().err
    assert "WeightSRAM looks like DRAM (size inf bits (unbounded))" in err


def test_dram_warning_on_size_alone():
    arch = {"arch": {"nodes": [{"name": "Big", "component_class": "SmartBufferSRAM",
                                "size": "2 * 1024 * 1024 * 1024"},
                               {"name": "Ok", "component_class": "SmartBufferSRAM",
                                "size": "8 * 1024 * 1024"},
                               {"name": "Expr", "size": "depth * 8"}]}}
    w = dram_warnings(arch, ["Big", "Ok", "Expr"])
    assert len(w) == 1 and "Big looks like DRAM (size 2 * 1024 * 1024 * 1024 bits)" in w[0]


@pytest.mark.parametrize("edit, fragments", [
    (("weight_memory: [WeightSRAM]", "weight_memory: [WSRAM]"),
     ["hwsim.weight_memory", "WSRAM"]),
    (("size: 2 * 1024 * 1024", "sise: 2 * 1024 * 1024"), ["sise"]),
    (("v_nominal: 0.8", "v_nominal: fast"), ["hwsim.v_nominal", "fast"]),
])
def test_bad_file_is_one_line_naming_the_field(tmp_path, no_mapping, capsys, edit, fragments):
    text = EYERISS.read_text().replace(*edit, 1)
    arch = _arch(tmp_path, text)
    assert main(["arch", "check", str(arch)]) == 2
    cap = capsys.readouterr()
    err = cap.err.strip()
    assert cap.out == "" and "\n" not in err and err.startswith("hwsim arch: error:")
    assert str(arch) in err
    for f in fragments:
        assert f in err


def test_missing_file_and_missing_action(tmp_path, capsys):
    assert main(["arch", "check", str(tmp_path / "nope.yaml")]) == 2
    assert "no such arch file" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["arch"])
    assert e.value.code == 2
