"""Mixed precision (issue 17 item 4): per-layer weight bits in quantize, faults, energy,
chips layout, checkpoints, study YAML and the CLI. Energies come from the committed
arch/cache (the small CNN at 4 and 8 bits); nothing is mapped."""
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn as nn

from hwsim import accelforge_backend as backend
from hwsim import api as hw
from hwsim.cli import main
from hwsim.study_spec import load_study
from hwsim.models.checkpoint import load_checkpoint
from hwsim.models.chips import Layout, model_layout
from hwsim.models.data import load_dataset
from hwsim.models.errors import ConfigError
from hwsim.models.evaluate import StoredWeights
from hwsim.models.faults import flip_positions, sample_flip_count, sample_positions
from hwsim.models.networks import create_model
from hwsim.models.quant import layer_widths, split_widths

ARCH = Path(__file__).resolve().parent.parent / "arch" / "eyeriss_sram.yaml"
EIGHT = {"features.0": 8, "fc": 8}  # first conv and last linear at 8 bits, the rest at 4


def mixed_cnn(seed=0):
    torch.manual_seed(seed)
    return hw.quantize(create_model("small_cnn", num_classes=10, in_channels=1), "wcat",
                       bits=4, layer_bits=EIGHT)


@pytest.fixture
def no_mapping(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("a layer shape was mapped: it should come from arch/cache")
    monkeypatch.setattr(backend, "map_layer", refuse)


def test_quantize_per_layer_bits_dict_callable_and_errors():
    net = mixed_cnn()
    assert layer_widths(net) == {"features.0": 8, "features.3": 4, "features.7": 4, "fc": 8}
    assert split_widths(net) == (4, EIGHT)
    full = dict(layer_widths(net))
    torch.manual_seed(0)
    by_dict = hw.quantize(create_model("small_cnn", in_channels=1), "wcat", bits=full)
    assert layer_widths(by_dict) == full
    by_fn = hw.quantize(create_model("small_cnn", in_channels=1), "normal",
                        bits=lambda name, m: 8 if isinstance(m, nn.Linear) else None)
    assert layer_widths(by_fn) == {"features.0": 4, "features.3": 4, "features.7": 4, "fc": 8}
    plain = create_model("small_cnn", in_channels=1)
    with pytest.raises(ConfigError, match=r"layer_bits: no Conv2d/Linear layer named 'conv9'"):
        hw.quantize(plain, bits=4, layer_bits={"conv9": 8})
    with pytest.raises(ConfigError, match=r"bits of layer 'fc': 9: .* from 2 to 8"):
        hw.quantize(plain, bits=4, layer_bits={"fc": 9})
    with pytest.raises(ConfigError, match=r"bits: layer 'features.3' has no width"):
        hw.quantize(plain, bits={"features.0": 8, "features.7": 4, "fc": 4})
    assert not any(hasattr(m, "quantizer") for m in plain.modules())  # nothing half-done


def test_uniform_numbering_is_unchanged():
    """One width: the mixed-width code is not used and the flips are the plain i*b+j ones."""
    torch.manual_seed(0)
    net = hw.quantize(create_model("small_cnn", in_channels=1), "wcat", bits=4)
    s = StoredWeights(net)
    assert s.bits == 4 and s.coding == 4 and s.n_bits == 4 * s.ints.numel()
    pos = sample_positions(s.n_bits, 500, np.random.default_rng(1))
    assert torch.equal(flip_positions(s.ints, 4, pos), flip_positions(s.ints, s.widths, pos))


def _layer_flips(stored, flipped):
    """Per layer: number of differing bits (within its width) and whether every flipped
    integer stays in its width's two's-complement range."""
    out, start = [], 0
    for size, b in zip(stored.sizes, stored.layer_bits):
        a, f = stored.ints[start:start + size].int(), flipped[start:start + size].int()
        in_range = bool(((f >= -(1 << (b - 1))) & (f < (1 << (b - 1)))).all())
        diff = (a % (1 << b)) ^ (f % (1 << b))
        out.append((sum(int(((diff >> j) & 1).sum()) for j in range(b)), in_range))
        start += size
    return out


def test_mixed_sampler_stays_inside_each_width_and_counts_per_stored_bit():
    net = mixed_cnn()
    s = StoredWeights(net)
    assert s.bits is None and s.layer_bits == [8, 4, 4, 8]
    assert s.n_bits == sum(n * b for n, b in zip(s.sizes, s.layer_bits)) != 4 * s.ints.numel()
    # every single bit flipped: each integer's pattern is inverted within its own width
    every = flip_positions(s.ints, s.coding, np.arange(s.n_bits))
    assert torch.equal(every, -s.ints - 1)
    rng, p, reps = np.random.default_rng(7), 0.02, 200
    per_layer, total = np.zeros(4), []
    for _ in range(reps):
        k = sample_flip_count(s.n_bits, p, rng)
        flips = _layer_flips(s, flip_positions(s.ints, s.coding,
                                               sample_positions(s.n_bits, k, rng)))
        assert all(ok for _, ok in flips)  # never a bit >= the layer's width
        assert sum(n for n, _ in flips) == k  # distinct positions: k bits differ
        per_layer += [n for n, _ in flips]
        total.append(k)
    expect = p * np.array(s.sizes) * np.array(s.layer_bits) * reps
    sd = np.sqrt(expect * (1 - p))
    assert np.all(np.abs(per_layer - expect) < 4 * sd), (per_layer, expect)
    mean_k, n_bits = np.mean(total), s.n_bits
    assert abs(mean_k - p * n_bits) < 4 * np.sqrt(n_bits * p * (1 - p) / reps)
    assert abs(mean_k - p * 4 * s.ints.numel()) > 10 * np.sqrt(n_bits * p / reps)
    # evaluate draws K over the same sum(n_l * b_l) bits
    test = load_dataset("digits")[1]
    r = hw.evaluate(net, test, ber=p, realizations=30, seed=2)
    assert abs(np.mean(r.flips) - p * n_bits) < 4 * np.sqrt(n_bits * p / 30)


def test_mixed_energy_differs_only_in_the_wider_layers(no_mapping):
    mixed = mixed_cnn()
    e4 = hw.energy(hw.quantize(create_model("small_cnn", in_channels=1), bits=4))
    e8 = hw.energy(hw.quantize(create_model("small_cnn", in_channels=1), bits=8))
    em = hw.energy(mixed)
    for l4, l8, lm in zip(e4.layers, e8.layers, em.layers):
        want = l8 if lm.name in EIGHT else l4
        assert lm.shape.weight_bits == (8 if lm.name in EIGHT else 4)
        assert lm.total_uJ == want.total_uJ and lm.weight_memory_uJ == want.weight_memory_uJ
        assert (l4.total_uJ != l8.total_uJ)  # the width does change these layers' energy
    assert e4.total_uJ < em.total_uJ < e8.total_uJ
    assert hw.energy(mixed, weight_bits=4).total_uJ == e4.total_uJ  # an explicit width: all


def test_chip_layout_packs_each_width_in_its_own_words():
    net = mixed_cnn()
    lay = model_layout(net, word_bits=64)
    s = StoredWeights(net)
    sizes = s.sizes  # 8-bit run, 4-bit run (two layers), 8-bit run
    assert lay.segments == ((sizes[0], 8), (sizes[1] + sizes[2], 4), (sizes[3], 8))
    words = [-(-sizes[0] // 8), -(-(sizes[1] + sizes[2]) // 16), -(-sizes[3] // 8)]
    assert lay.words == sum(words) and lay.n_bits == s.n_bits
    pos = np.arange(s.n_bits)
    addr = lay.address(pos)
    assert len(np.unique(addr)) == len(pos) and addr.max() < lay.used_bits
    assert np.array_equal(lay.logical(addr), pos)  # round trip
    # first weight of the 4-bit run starts a fresh word; weight 0 bit 7 is column 7
    first4 = sizes[0] * 8
    assert lay.address([first4])[0] == words[0] * 64 and lay.address([7])[0] == 7
    assert lay.logical([words[0] * 64 - 1])[0] == (-1 if sizes[0] % 8 else first4 - 1)
    # one width: the plain layout, bit for bit
    uni = Layout(1000, 4, 64)
    p = np.arange(4000)
    assert np.array_equal(Layout(1000, 4, 64, None, ((1000, 4),)).address(p), uni.address(p))


def _train(capsys, out, *extra):
    code = main(["train", "--model", "small_cnn", "--quantizer", "wcat", "--bits", "4",
                 "--epochs", "1", "--seed", "0", "--out", str(out), "--no-progress", *extra])
    capsys.readouterr()
    return code


def test_checkpoint_round_trip_and_api_cli_agree(capsys, tmp_path, no_mapping):
    ck = tmp_path / "mixed.pt"
    assert _train(capsys, ck, "--layer-bits", "features.0=8,fc=8") == 0
    cfg = torch.load(ck, weights_only=True)["config"]
    assert cfg["quantizer"]["layer_bits"] == EIGHT and cfg["train"]["layer_bits"] == EIGHT
    model, _ = load_checkpoint(ck)
    assert split_widths(model) == (4, EIGHT)
    test = load_dataset("digits")[1]
    a = hw.evaluate(model, test, ber=0.01, realizations=4, seed=1)
    b = hw.evaluate(load_checkpoint(ck)[0], test, ber=0.01, realizations=4, seed=1)
    assert a.accuracies == b.accuracies and a.flips == b.flips and sum(a.flips) > 0
    csv = tmp_path / "r.csv"
    assert main(["sweep", "--checkpoint", str(ck), "--vmin", "0.40", "--vmax", "0.42",
                 "--step", "0.02", "--realizations", "4", "--seed", "3", "--out", str(csv),
                 "--no-progress"]) == 0
    cli = pd.read_csv(csv)
    api = hw.sweep(model, test, voltages=[0.40, 0.42], realizations=4, seed=3)
    for col in ("ber", "acc_clean", "acc_mean", "acc_std", "energy_uJ", "bits"):
        assert api[col].tolist() == cli[col].tolist(), col
    capsys.readouterr()
    assert main(["energy", "--model", str(ck), "--json"]) == 0
    e = json.loads(capsys.readouterr().out)["total_uJ"]
    assert e == hw.energy(model).total_uJ == pytest.approx(cli.energy_nominal_uJ.iloc[0])
    assert e != hw.energy(model, weight_bits=4).total_uJ
    # a uniform checkpoint records no layer_bits at all (reads as before)
    uni = tmp_path / "uni.pt"
    assert _train(capsys, uni) == 0
    cfg = torch.load(uni, weights_only=True)["config"]
    assert "layer_bits" not in cfg["quantizer"] and "layer_bits" not in cfg["train"]


def test_cli_layer_bits_errors(capsys, tmp_path):
    assert _train(capsys, tmp_path / "x.pt", "--layer-bits", "fc=12") == 2
    assert _train(capsys, tmp_path / "x.pt", "--layer-bits", "nope=8") == 2
    assert not (tmp_path / "x.pt").exists()


STUDY = """
name: mixed
network: small_cnn
arch: {arch}
methods:
  - {{quantizer: wcat, bits: 4, layer_bits: {lb}}}
"""


def test_study_yaml_layer_bits(tmp_path):
    f = tmp_path / "s.yaml"
    f.write_text(STUDY.format(arch=ARCH, lb="{features.0: 8, fc: 8}"))
    s = load_study(f)
    assert s.methods[0].layer_bits == EIGHT
    from hwsim.study import train_config
    cfg = train_config(s, s.methods[0])
    assert cfg.layer_bits == EIGHT and cfg.recipe()["layer_bits"] == EIGHT
    for bad, msg in (("{conv1: 8}", r"methods\[0\]\.layer_bits\.conv1: small_cnn has no"),
                     ("{fc: 9}", r"methods\[0\]\.layer_bits\.fc: 9 is out of range"),
                     ("[8]", r"methods\[0\]\.layer_bits: must be a mapping")):
        f.write_text(STUDY.format(arch=ARCH, lb=bad))
        with pytest.raises(ConfigError, match=msg):
            load_study(f)
    f.write_text(STUDY.format(arch=ARCH, lb="null"))
    assert "layer_bits" not in train_config(load_study(f), load_study(f).methods[0]).recipe()


def test_chip_on_a_mixed_model_errs_inside_the_widths():
    from hwsim.models.chips import evaluate_chip, sample_chip
    from hwsim.models.faults import to_unsigned
    net = mixed_cnn()
    s, lay = StoredWeights(net), model_layout(net)
    chip = sample_chip(3, lay.used_bits, 0.05, "stuck-at")
    unsigned = s.widths.to_unsigned(s.ints).numpy()
    pos = chip.erring(lay, unsigned, 0.05)
    i, j = lay.weight_bit(pos)
    width = np.repeat(s.layer_bits, s.sizes)
    assert len(pos) and np.all(j < width[i]) and pos.max() < s.n_bits
    # stuck-at: a cell errs only where its stuck value differs from the stored bit
    cells = np.searchsorted(chip.addresses, lay.address(pos))
    assert np.all(chip.stuck[cells] != ((unsigned[i] >> j) & 1))
    # ~ q * p of the stored bits err (q = 0.5)
    assert abs(len(pos) - 0.025 * s.n_bits) < 5 * np.sqrt(0.025 * s.n_bits)
    test = load_dataset("digits")[1]
    accs, counts = evaluate_chip(net, test, [0.0, 0.05], chip, lay)
    assert counts == [0, len(pos)] and accs[0] == hw.accuracy(net, test)
    assert to_unsigned(s.ints[:5], 8).tolist() == unsigned[:5].tolist()  # 8-bit first layer
