"""Energy model: voltage scaling, arch-file errors, CACTI, and a live AccelForge mapping."""
from __future__ import annotations

import math
from pathlib import Path

import pytest

from hwsim import accelforge_backend as backend
from hwsim.energy import (LayerResult, NetworkEnergy, cache_key, network_energy,
                          scaled_energy, scaled_weight_memory, voltage_factor)
from hwsim.workload import LayerShape, extract_layers
from hwsim.models.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
ARCH = ROOT / "arch" / "eyeriss_sram.yaml"
TINY = LayerShape("tiny", "conv", in_channels=4, out_channels=4, kernel=(3, 3),
                  output=(4, 4), input=(4, 4), stride=(1, 1), padding=(1, 1))


def _net(wm=30.0, rest=70.0, v_nominal=0.8) -> NetworkEnergy:
    shape = LayerShape("l", "conv", 4, 4, (3, 3), (4, 4), (4, 4))
    ne = NetworkEnergy(arch_file="x.yaml", arch_sha256="0" * 64, weight_memory=("WM",),
                       v_nominal=v_nominal)
    ne.layers.append(LayerResult("l", shape, {"WM": wm, "Other": rest}, wm + rest, wm,
                                 shape.macs, cached=True))
    return ne


# ------------------------------------------------------------------ voltage scaling

def test_scaled_energy_exact_at_nominal():
    ne = _net()
    assert scaled_energy(ne, 0.8) == pytest.approx(100.0, rel=1e-15)
    assert scaled_energy(ne, 0.8, v_nominal=0.8) == ne.total_uJ
    assert ne.weight_share == pytest.approx(0.3)


@pytest.mark.parametrize("v", [0.4, 0.55, 0.7, 1.0])
def test_weight_memory_scales_with_v_squared(v):
    ne = _net(wm=30.0, rest=70.0)
    assert scaled_weight_memory(ne, v) == pytest.approx(30.0 * (v / 0.8) ** 2, rel=1e-12)
    assert scaled_energy(ne, v) == pytest.approx(30.0 * (v / 0.8) ** 2 + 70.0, rel=1e-12)
    # halving V quarters the weight-memory part, the rest is untouched
    assert scaled_energy(ne, 0.4) - 70.0 == pytest.approx(30.0 / 4)
    assert voltage_factor(v, 0.8) == pytest.approx((v / 0.8) ** 2)


@pytest.mark.parametrize("bad", [0, -0.1, float("nan"), "abc", None])
def test_bad_voltage_is_config_error(bad):
    with pytest.raises(ConfigError, match="voltage"):
        scaled_energy(_net(), bad)


def test_cli_rejects_nonpositive_voltage(capsys):
    from hwsim.cli import main
    assert main(["energy", "--model", "mlp", "--voltage", "0"]) == 2
    assert "voltage" in capsys.readouterr().err


# ------------------------------------------------------------------ arch-file errors

def _write(tmp_path, text, name="arch.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_shipped_arch_loads():
    d, info = backend.load_arch(ARCH)
    assert info.weight_memory == ("WeightSRAM",)
    assert info.v_nominal == 0.8
    assert "hwsim" not in d and "arch" in d
    assert {"WeightSRAM", "ActivationSRAM", "GlobalBuffer", "MAC"} <= set(info.components)


def test_missing_arch_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        backend.load_arch(tmp_path / "nope.yaml")


def test_malformed_yaml_names_file(tmp_path):
    p = _write(tmp_path, "hwsim: {weight_memory: [A]\narch:\n  nodes: [\n")
    with pytest.raises(ConfigError, match=r"arch\.yaml.*malformed YAML"):
        backend.load_arch(p)


def test_unknown_weight_memory_component(tmp_path):
    text = ARCH.read_text().replace("weight_memory: [WeightSRAM]", "weight_memory: [WSRAM]")
    with pytest.raises(ConfigError, match=r"hwsim\.weight_memory.*WSRAM"):
        backend.load_arch(_write(tmp_path, text))


def test_missing_weight_memory_and_bad_v_nominal(tmp_path):
    text = ARCH.read_text()
    with pytest.raises(ConfigError, match=r"hwsim\.weight_memory is missing"):
        backend.load_arch(_write(tmp_path, text.replace("  weight_memory: [WeightSRAM]\n", "")))
    with pytest.raises(ConfigError, match=r"hwsim\.v_nominal must be > 0"):
        backend.load_arch(_write(tmp_path, text.replace("v_nominal: 0.8", "v_nominal: -1"), "b.yaml"))


def test_invalid_accelforge_field_names_file_and_field(tmp_path):
    # a typo'd field inside a node: AccelForge (pydantic) rejects it; we name file + field
    text = ARCH.read_text().replace("size: 2 * 1024 * 1024", "sise: 2 * 1024 * 1024", 1)
    p = _write(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        backend.map_layer(p, TINY)
    msg = str(e.value)
    assert str(p) in msg and "sise" in msg


# ------------------------------------------------------------------ CACTI

def test_cacti_sram_energy_is_positive():
    small = backend.sram_read_energy_pJ(16 * 1024, width_bits=64)
    big = backend.sram_read_energy_pJ(8 * 1024 * 1024, width_bits=64, n_banks=16)
    assert 0.1 < small < big < 1000.0  # pJ per 64-bit read at 65 nm
    assert math.isfinite(big)


# ------------------------------------------------------------------ einsum encoding

def test_layer_workload_einsums():
    wl, _ = backend.layer_workload(TINY)
    assert wl["einsums"][0]["einsum"] == \
        "O[m, p, q] = I[c, H: p + r, W: q + s] * Wt[m, c, r, s]"
    dw = LayerShape("dw", "conv", 8, 8, (3, 3), (4, 4), (8, 8), (2, 2), (1, 1), groups=8,
                    weight_bits=4)
    wl, _ = backend.layer_workload(dw)
    assert wl["einsums"][0]["einsum"] == \
        "O[g, p, q] = I[g, H: p * 2 + r, W: q * 2 + s] * Wt[g, r, s]"
    assert wl["bits_per_value"] == {"I": 8, "O": 8, "Wt": 4}
    fc = LayerShape("fc", "linear", 64, 10, (1, 1), (1, 1), (1, 1))
    assert backend.layer_workload(fc)[0]["einsums"][0]["einsum"] == "O[m] = I[c] * Wt[m, c]"


# ------------------------------------------------------------------ live mapping

@pytest.mark.slow
def test_live_mapping_and_cache_roundtrip(tmp_path):
    ne = network_energy(ARCH, [TINY], progress=False, cache_dir=tmp_path)
    layer = ne.layers[0]
    assert not layer.cached
    macs = 4 * 4 * 9 * 16
    assert ne.macs == macs
    # per-MAC energy in a sane range for a 65 nm accelerator (MAC alone is ~1.3 pJ)
    assert 1.5 < ne.total_uJ * 1e6 / macs < 50
    assert set(layer.components_uJ) >= {"WeightSRAM", "MAC", "GlobalBuffer"}
    assert 0 < ne.weight_memory_uJ < ne.total_uJ
    # WeightSRAM: every weight is read at least once, 64 bits per access
    e_read = backend.sram_read_energy_pJ(8 * 1024 * 1024, 64, n_banks=16)
    min_wm_uJ = math.ceil(TINY.n_weights * 8 / 64) * e_read * 1e-6
    assert ne.weight_memory_uJ >= 0.9 * min_wm_uJ
    # second call: from the cache, identical numbers, no mapping
    again = network_energy(ARCH, [TINY, TINY], progress=False, cache_dir=tmp_path)
    assert again.layers[0].cached and again.layers[1].cached
    assert again.layers[0].components_uJ == layer.components_uJ
    assert again.total_uJ == pytest.approx(2 * ne.total_uJ, rel=1e-15)
    assert (tmp_path / "energy.json").is_file()
    assert cache_key(ne.arch_sha256, TINY) .startswith(ne.arch_sha256 + "|conv:C4:M4")


# ------------------------------------------------------------------ committed cache

@pytest.mark.parametrize("net,bits", [(n, b) for n in ("small_cnn", "mlp", "resnet20",
                                                       "resnet56") for b in (4, 8)])
def test_committed_cache_covers_shipped_networks(net, bits, monkeypatch):
    """arch/cache answers the shipped networks without mapping (regenerate: arch/README.md)."""
    from hwsim.models import create_model, input_shape

    from hwsim.workload import extract_layers

    def no_mapping(*a, **k):
        raise AssertionError("arch/cache/energy.json is stale or incomplete: run "
                             "`hwsim energy --fill-cache` (see arch/README.md)")
    monkeypatch.setattr(backend, "map_layer", no_mapping)
    layers = extract_layers(create_model(net, num_classes=10), input_shape(net),
                            weight_bits=bits)
    ne = network_energy(ARCH, layers, progress=False)
    assert all(layer.cached for layer in ne.layers)
    assert ne.total_uJ > 0 and 0 < ne.weight_share < 1
    assert ne.components_uJ["WeightSRAM"] == pytest.approx(ne.weight_memory_uJ)


def test_arch_hash_ignores_comments_and_hwsim_section(tmp_path):
    from hwsim.accelforge_backend import arch_sha256
    base = ROOT / "arch" / "eyeriss_sram.yaml"
    text = base.read_text()
    variant = tmp_path / "v.yaml"
    variant.write_text("# a new comment\n" + text.replace(
        "weight_memory: [WeightSRAM]", "weight_memory: [WeightSRAM, WeightScratchpad]"))
    assert arch_sha256(variant) == arch_sha256(base)
    assert arch_sha256(ROOT / "arch" / "eyeriss_sram_wspad.yaml") == arch_sha256(base)
    changed = tmp_path / "c.yaml"
    changed.write_text(text.replace("tech_node: 65e-9", "tech_node: 45e-9", 1))
    assert arch_sha256(changed) != arch_sha256(base)


def test_scaled_domain_variant_is_served_from_cache(monkeypatch):
    """eyeriss_sram_wspad.yaml maps nothing; only the weight-memory split changes."""
    from hwsim import accelforge_backend as backend
    from hwsim.models import create_model, input_shape
    monkeypatch.setattr(backend, "map_layer", lambda *a, **k: pytest.fail("mapped"))
    layers = extract_layers(create_model("resnet20"), input_shape("resnet20"), weight_bits=4)
    a = network_energy(ROOT / "arch" / "eyeriss_sram.yaml", layers, progress=False)
    b = network_energy(ROOT / "arch" / "eyeriss_sram_wspad.yaml", layers, progress=False)
    assert a.total_uJ == b.total_uJ
    assert b.weight_memory_uJ == pytest.approx(
        a.weight_memory_uJ + a.components_uJ["WeightScratchpad"])


# ------------------------------------------------------------------ committed cache

@pytest.mark.parametrize("arch", sorted(p.name for p in (ROOT / "arch").glob("*.yaml")))
def test_committed_cache_holds_every_shipped_network_on_every_shipped_arch(arch):
    """Issue 19 item 5: each shipped network x weight width is mapped once and committed,
    so no shipped (arch, network) pair maps on a fresh clone (an arch file edited without
    `hwsim energy --fill-cache` fails here)."""
    from hwsim.commands.energy import SHIPPED_BITS, SHIPPED_NETWORKS, layers_of
    from hwsim.energy import EnergyCache, cache_path_for
    path = ROOT / "arch" / arch
    _, info = backend.load_arch(path, accelforge_loader=False)
    cache = EnergyCache(cache_path_for(path))
    missing = []
    for net in SHIPPED_NETWORKS:
        for bits in SHIPPED_BITS:
            _, _, layers = layers_of(net, bits, 8)
            missing += [f"{net}/{bits}:{x.name}" for x in layers
                        if cache.get(cache_key(info.sha256, x, True)) is None]
    assert missing == []
