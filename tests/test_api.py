"""The Python API (hwsim/api.py), user models/data in the CLI (models/usercode.py) and the
hwsim.models import name. Energies come from the committed arch/cache (TinyNet has the small
CNN's layer shapes), so nothing is mapped."""
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.nn as nn

import hwsim
from hwsim import api as hw
from hwsim.cli import main
from hwsim.models.checkpoint import load_checkpoint
from hwsim.models.data import load_dataset
from hwsim.models.errors import ConfigError
from hwsim.models.quant import QConv2d, quant_layers

ROOT = Path(__file__).resolve().parent.parent
TINY = textwrap.dedent("""
    import torch.nn as nn
    import torch.nn.functional as F

    class TinyNet(nn.Module):
        input_shape = (1, 8, 8)

        def __init__(self, num_classes=10):
            super().__init__()
            self.c1 = nn.Conv2d(1, 16, 3, padding=1, bias=False)
            self.c2 = nn.Conv2d(16, 32, 3, padding=1, bias=False)
            self.c3 = nn.Conv2d(32, 32, 3, padding=1, bias=False)
            self.b1, self.b2, self.b3 = nn.BatchNorm2d(16), nn.BatchNorm2d(32), nn.BatchNorm2d(32)
            self.fc = nn.Linear(32, num_classes)

        def forward(self, x):
            x = F.relu(self.b1(self.c1(x)))
            x = F.max_pool2d(F.relu(self.b2(self.c2(x))), 2)
            x = x + F.relu(self.b3(self.c3(x)))  # a residual: not one of hwsim's networks
            return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))
""")


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def user_ckpt(tmp_path_factory):
    """A 1-epoch WCAT TinyNet trained through `hwsim train --model tiny.py:TinyNet`."""
    folder = tmp_path_factory.mktemp("user")
    (folder / "tiny.py").write_text(TINY)
    ck = folder / "tiny.pt"
    torch.set_num_threads(2)
    assert main(["train", "--model", f"{folder}/tiny.py:TinyNet", "--quantizer", "wcat",
                 "--epochs", "1", "--out", str(ck), "--no-progress"]) == 0
    return folder, ck


def test_api_and_cli_give_identical_numbers(user_ckpt, capsys, tmp_path):
    folder, ck = user_ckpt
    csv = tmp_path / "r.csv"
    code, _, _ = run(capsys, "sweep", "--checkpoint", ck, "--vmin", 0.40, "--vmax", 0.44,
                     "--step", 0.02, "--realizations", 6, "--seed", 3, "--out", csv,
                     "--no-progress")
    assert code == 0
    cli = pd.read_csv(csv)
    model, _ = load_checkpoint(ck)
    test = load_dataset("digits")[1]
    api = hw.sweep(model, test, voltages=[0.40, 0.42, 0.44], realizations=6, seed=3)
    assert list(api.columns) == list(cli.columns)
    for col in ("ber", "acc_clean", "acc_mean", "acc_std", "energy_uJ", "test_images"):
        assert api[col].tolist() == pytest.approx(cli[col].tolist(), rel=0, abs=0), col
    assert api.acc_clean.iloc[0] > 0.3 and api.test_images.iloc[0] == 360
    # energy: the small CNN's shapes, 4-bit, from the committed cache
    code, out, _ = run(capsys, "energy", "--model", ck, "--json")
    assert code == 0
    e = hw.energy(model)
    assert json.loads(out)["total_uJ"] == e.total_uJ == pytest.approx(1.3763, abs=1e-4)
    assert cli.energy_nominal_uJ.iloc[0] == pytest.approx(e.total_uJ)
    # the same file as --model spec (untrained): same shapes, same energy
    code, out, _ = run(capsys, "energy", "--model", f"{folder}/tiny.py:TinyNet",
                       "--weight-bits", 4, "--json")
    assert code == 0 and json.loads(out)["total_uJ"] == e.total_uJ


def test_user_checkpoint_reloads_identically_and_refuses_without_its_file(user_ckpt, tmp_path):
    folder, ck = user_ckpt
    test = load_dataset("digits")[1]
    a = hwsim.evaluate(load_checkpoint(ck)[0], test, ber=0.01, realizations=4, seed=1)
    b = hwsim.evaluate(load_checkpoint(ck)[0], test, ber=0.01, realizations=4, seed=1)
    assert a.accuracies == b.accuracies and a.flips == b.flips and sum(a.flips) > 0
    cfg = torch.load(ck, weights_only=True)["config"]["model"]
    assert cfg["source"] == {"kind": "file", "path": str(folder / "tiny.py"),
                             "factory": "TinyNet", "kwargs": {}}
    assert cfg["input_shape"] == [1, 8, 8]
    moved = tmp_path / "ck.pt"  # the checkpoint moves, the file is gone
    shutil.copy(ck, moved)
    (folder / "tiny.py").rename(folder / "tiny.bak")
    try:
        with pytest.raises(ConfigError, match=r"model file .*tiny\.py' does not exist"):
            load_checkpoint(moved)
    finally:
        (folder / "tiny.bak").rename(folder / "tiny.py")


def test_cli_refuses_bad_user_specs(capsys, tmp_path):
    (tmp_path / "net.py").write_text("x = 1\n")
    for spec, msg in ((f"{tmp_path}/net.py:Nope", "defines no callable 'Nope'"),
                      (f"{tmp_path}/net.py", "name the factory"),
                      (f"{tmp_path}/gone.py:Net", "does not exist"),
                      ("torchvision:mobilenet_v9", "not a torchvision model")):
        code, _, err = run(capsys, "energy", "--model", spec)
        assert code == 2 and msg in err and len(err.strip().splitlines()) == 1, err
    code, _, err = run(capsys, "train", "--model", "resnet99", "--out", tmp_path / "x.pt")
    assert code == 2 and "file.py:factory" in err and not (tmp_path / "x.pt").exists()


def test_data_factory(tmp_path):
    (tmp_path / "mydata.py").write_text(textwrap.dedent("""
        import torch
        from torch.utils.data import DataLoader, TensorDataset
        def data():
            x = torch.arange(60 * 64, dtype=torch.float32).reshape(60, 1, 8, 8) / 1000
            y = torch.arange(60) % 3
            return TensorDataset(x[:40], y[:40]), DataLoader(TensorDataset(x[40:], y[40:]),
                                                             batch_size=7)
    """))
    train, test = load_dataset(f"{tmp_path}/mydata.py:data")
    assert (len(train), len(test), train.num_classes) == (40, 20, 3)
    x, y = test.tensors()  # used as given: no scaling
    assert x.shape == (20, 1, 8, 8) and float(x[0, 0, 0, 1]) == pytest.approx(40 * 64 / 1000
                                                                              + 0.001)
    assert y.tolist() == [i % 3 for i in range(40, 60)]


def test_mobilenet_v2_depthwise_quantizes_and_evaluates():
    import torchvision
    from hwsim.workload import extract_layers
    torch.manual_seed(0)
    net = torchvision.models.mobilenet_v2(weights=None, num_classes=10)
    hwsim.quantize(net, "wcat", bits=4)
    layers = quant_layers(net)
    assert len(layers) == 53  # 52 convs + the classifier
    depthwise = [m for _, m in layers if isinstance(m, QConv2d) and m.groups > 1]
    assert len(depthwise) == 17 and all(m.groups == m.in_channels for m in depthwise)
    x, y = torch.randn(16, 3, 32, 32), torch.randint(0, 10, (16,))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    r = hwsim.evaluate(net, (x, y), ber=0.01, realizations=2, seed=0)
    assert r.realizations == 2 and min(r.flips) > 1000  # ~2.2M weights x 4 bits x 1%
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    shapes = extract_layers(net, (3, 32, 32), weight_bits=4)
    assert len(shapes) == 53 and len({s.key() for s in shapes}) == 31  # the 31
    assert sum(s.groups > 1 for s in shapes) == 17


def test_unsupported_weight_layers_are_named():
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Conv1d(4, 4, 3), nn.Embedding(5, 4))
    with pytest.raises(ConfigError, match=r"1 \(Conv1d\), 2 \(Embedding\)"):
        hwsim.quantize(net)
    from hwsim.workload import extract_layers
    with pytest.raises(ConfigError, match=r"cannot map .*Conv1d"):
        extract_layers(net, (1, 8, 8))


def test_training_hooks_in_a_users_loop():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    hwsim.quantize(net, "wcat", bits=4, weight_decay_a=0.5)
    a = float(net[1].quantizer.a.detach())
    assert float(hwsim.regularizer(net).detach()) == pytest.approx(0.25 * a * a)
    groups = hwsim.param_groups(net, weight_decay=1e-3)
    assert [g["weight_decay"] for g in groups] == [1e-3, 0.0] and len(groups[1]["params"]) == 1
    clip = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))
    hwsim.quantize(clip, "plclip", bits=4, c=0.1)
    with torch.no_grad():
        clip[0].weight.fill_(3.0)
    hwsim.after_step(clip)  # PLClip re-clips: largest layer to c = 0.1
    assert float(clip[0].weight.detach().abs().max()) == pytest.approx(0.1)


def test_layer_sensitivity_flips_one_layer_at_a_time(capsys):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    hwsim.quantize(net, "normal", bits=4)
    x = torch.randn(50, 1, 8, 8)
    y = net(x).argmax(1)  # labels = the clean predictions: clean accuracy 1
    clean = hwsim.accuracy(net, (x, y))
    assert clean == 1.0
    t = hwsim.layer_sensitivity(net, (x, y), ber=0.0, realizations=2)
    assert capsys.readouterr().err == ""  # no bar unless asked
    assert sorted(t.layer) == ["1", "3"] and sorted(t.weights) == [320, 2048]
    assert t.acc_mean.tolist() == pytest.approx([clean, clean])
    t = hwsim.layer_sensitivity(net, (x, y), ber=0.3, realizations=3, progress=True)
    assert (t.acc_mean < 0.95).all() and t.acc_std.gt(0).any()
    err = capsys.readouterr().err
    assert "layer sensitivity: 100%" in err and "2/2" in err


def test_layer_noise_matches_flipping_the_stored_bits():
    """layer_noise's closed form (ber * step^2 * (4^b - 1) / 3 over the stored weights' mean
    square) against flipping the stored integers' bits through hwsim's own fault code, per
    layer of a mixed-width network; and its two range ratios from the weights directly."""
    import numpy as np
    from hwsim.models.evaluate import StoredWeights
    from hwsim.models.faults import flip_positions, sample_flip_count, sample_positions
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    hwsim.quantize(net, "wcat", bits=4, layer_bits={"3": 8})
    ber, rng = 0.05, np.random.default_rng(0)
    t = hwsim.layer_noise(net, ber)
    assert t.layer.tolist() == ["1", "3"] and t.bits.tolist() == [4, 8]
    stored = StoredWeights(net)
    for row, ints, scale, layer in zip(t.itertuples(), torch.split(stored.ints, stored.sizes),
                                       stored.scales, stored.layers):
        n_bits, w = ints.numel() * row.bits, ints.double()
        err = []
        for _ in range(300):
            pos = sample_positions(n_bits, sample_flip_count(n_bits, ber, rng), rng)
            err.append(float(((flip_positions(ints, row.bits, pos).double() - w) ** 2).mean()))
        assert row.nsr == pytest.approx(np.mean(err) / float((w ** 2).mean()), rel=0.05)
        q = 2 ** (row.bits - 1) - 1
        assert row.range_over_rms == pytest.approx(q / float((w ** 2).mean()) ** 0.5)
        # WCAT starts at max|W|: the range over the std is max|W| / std(W)
        weight = layer.weight.detach().double()
        assert row.range_over_std == pytest.approx(float(weight.abs().max() / weight.std()))
        # the docstring's identity: at 4 bits 85/49 = 1.73 ber per (range/RMS)^2, at 8 1.35
        assert row.nsr == pytest.approx(
            ber * row.range_over_rms ** 2 * (4 ** row.bits - 1) / (3 * q ** 2))
    # noise_summary: the medians of the ratios, the NSRs weighted by the layers' sizes (32*64
    # and 10*32 weights)
    summary = hwsim.noise_summary(net, ber)
    assert summary["nsr"] == pytest.approx((2048 * t.nsr[0] + 320 * t.nsr[1]) / 2368)
    assert summary["range_over_rms"] == pytest.approx(t.range_over_rms.mean())
    assert summary["range_over_std"] == pytest.approx(t.range_over_std.mean())


def test_pareto_accepts_a_hand_made_csv(capsys, tmp_path):
    csv = tmp_path / "mine.csv"
    csv.write_text("label,voltage,ber,acc_clean,acc_mean,acc_ci95,energy_uJ\n"
                   "a,0.8,1e-9,0.90,0.90,0.0,10\na,0.5,1e-3,0.90,0.85,0.01,8\n"
                   "b,0.8,1e-9,0.88,0.88,0.0,9\nb,0.5,1e-3,0.88,0.70,0.02,8.5\n")
    code, out, _ = run(capsys, "pareto", csv, "--out", tmp_path / "r.html")
    assert code == 0 and "4 points, 3 on the frontier" in out
    front = pd.read_csv(tmp_path / "r_frontier.csv")
    assert front.energy_uJ.tolist() == [8, 9, 10] and front.label.tolist() == ["a", "b", "a"]
    assert hw.pareto(pd.read_csv(csv), out=tmp_path / "api.html").equals(front)
    (tmp_path / "bad.csv").write_text("label,voltage,acc_mean,energy_uJ\na,0.8,0.9,10\n")
    code, _, err = run(capsys, "pareto", tmp_path / "bad.csv", "--out", tmp_path / "b.html")
    assert code == 2 and "missing column(s) ber, acc_clean, acc_ci95" in err
    with pytest.raises(ConfigError, match="missing column.*acc_ci95"):
        hw.pareto(pd.DataFrame({"label": ["a"], "voltage": [0.8]}), out=tmp_path / "c.html")
    assert not (tmp_path / "b.html").exists() and not (tmp_path / "c.html").exists()


def test_hwsim_models_is_the_network_side_not_a_copy():
    import hwsim.models.quant
    from hwsim.models import create_model
    from hwsim.models.train import TrainConfig
    assert hwsim.models.quant.__file__.endswith(os.path.join("models", "quant.py"))
    assert create_model is hwsim.models.networks.create_model
    assert TrainConfig is sys.modules["hwsim.models.train"].TrainConfig
    assert hwsim.quantize is hw.quantize and hwsim.evaluate is hw.evaluate
    # one copy of the network side, under one name
    assert not any(m == "models" or m.startswith("models.") for m in sys.modules)


def test_a_users_own_models_package_does_not_shadow_hwsim(tmp_path):
    """A user's models/ package next to their script (first on sys.path) leaves hwsim alone,
    and the network side never imports the hardware side."""
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "__init__.py").write_text("raise ImportError('user models imported')\n")
    script = ("import sys\n"
              "import hwsim.models, hwsim.models.quant\n"
              "assert 'models' not in sys.modules\n"
              "assert not any(m.startswith('hwsim.') and not m.startswith('hwsim.models')\n"
              "               for m in sys.modules), sorted(sys.modules)\n"
              "from hwsim import api\n"
              "print(api.quantize.__module__)\n")
    out = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "hwsim.api"


def test_study_with_a_user_network(tmp_path, monkeypatch):
    """`network: tiny.py:TinyNet` in a study file (relative to it): trained, swept, reported
    like a registry network; a missing file is one error naming it."""
    from hwsim.study import run_study
    from hwsim.study_spec import load_study
    (tmp_path / "tiny.py").write_text(TINY)
    study = tmp_path / "s.yaml"
    study.write_text(f"""name: user
network: tiny.py:TinyNet
training: {{epochs: 1}}
methods: [{{quantizer: wcat, bits: 4, layer_bits: {{c1: 8}}}}]
arch: {ROOT / 'arch/eyeriss_sram.yaml'}
voltages: {{min: 0.45, max: 0.8, step: 0.35}}
monte_carlo: {{realizations: 2}}
""")
    monkeypatch.chdir(ROOT)  # the network path resolves from the study file, not from here
    s = load_study(study)
    assert s.network == f"{tmp_path / 'tiny.py'}:TinyNet"
    table = run_study(s, progress=False, log=lambda line: None)
    ck = load_checkpoint(tmp_path / "results/user/checkpoints/wcat.pt")[1]
    assert ck["model"]["source"]["factory"] == "TinyNet" and ck["quantizer"]["layer_bits"] == \
        {"c1": 8}
    rows = pd.read_csv(tmp_path / "results/user/results.csv")
    assert list(rows.voltage) == [0.45, 0.8] and rows.energy_uJ.iloc[1] > rows.energy_uJ.iloc[0]
    assert list(table["method"]) == ["wcat"]
    study.write_text(study.read_text().replace("tiny.py", "gone.py"))
    with pytest.raises(ConfigError, match=r"network: 'gone.py:TinyNet': file .*gone.py' does not"):
        load_study(study)


def test_timm_network_trains_reloads_and_evaluates(tmp_path, capsys):
    """`--model timm:NAME` (random init, nothing downloaded): trained through the CLI on
    digits (1 input channel passed as timm's in_chans), reloaded from its checkpoint with the
    same numbers, and a name timm does not know is one error line."""
    timm = pytest.importorskip("timm")
    ck = tmp_path / "t.pt"
    (tmp_path / "few.py").write_text(textwrap.dedent("""
        from torch.utils.data import TensorDataset
        from hwsim.models.data import load_dataset
        def data():  # 128 / 64 digits: one quick epoch
            (x, y), (xt, yt) = (d.tensors() for d in load_dataset("digits"))
            return TensorDataset(x[:128], y[:128]), TensorDataset(xt[:64], yt[:64])
    """))
    torch.set_num_threads(2)
    code, _, err = run(capsys, "train", "--model", "timm:test_resnet", "--quantizer", "wcat",
                       "--data", f"{tmp_path}/few.py:data", "--epochs", "1", "--out", ck,
                       "--no-progress")
    assert code == 0, err
    model, cfg = load_checkpoint(ck)
    assert cfg["model"]["source"] == {"kind": "timm", "factory": "test_resnet", "kwargs": {}}
    assert isinstance(model, timm.models.resnet.ResNet) and model.conv1[0].in_channels == 1
    assert len(quant_layers(model)) == sum(
        isinstance(m, (nn.Conv2d, nn.Linear)) for m in model.modules())
    test = load_dataset("digits")[1]
    a = hw.evaluate(model, test, ber=0.01, realizations=3, seed=2)
    b = hw.evaluate(load_checkpoint(ck)[0], test, ber=0.01, realizations=3, seed=2)
    assert a.accuracies == b.accuracies and min(a.flips) > 0 and a.clean > 0.1
    code, _, err = run(capsys, "energy", "--model", "timm:resnet_nope")
    assert code == 2 and "not a timm model name" in err and len(err.strip().splitlines()) == 1


def test_compare_pairs_two_networks_under_the_same_flips():
    torch.manual_seed(0)
    x = torch.randn(80, 1, 8, 8)
    nets = []
    for q in ("normal", "wcat"):
        net = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
        nets.append(hwsim.quantize(net, q, bits=4))
    y = nets[0](x).argmax(1)
    a, b = (hwsim.evaluate(n, (x, y), ber=0.02, realizations=8, seed=5) for n in nets)
    assert a.flips == b.flips  # same layer sizes and widths: the same flipped bits
    d = hwsim.compare(a, b)
    assert d.same_patterns and d.realizations == 8
    assert d.mean == pytest.approx(b.mean - a.mean, abs=1e-12)
    wide = hwsim.quantize(nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(),
                                        nn.Linear(32, 10)), "normal", bits=8)
    assert not hwsim.compare(a, hwsim.evaluate(wide, (x, y), 0.02, 8, seed=5)).same_patterns


def test_precision_scope_changes_inference_and_restores_it():
    from hwsim.models.device import get_inference_precision
    torch.manual_seed(0)
    x = torch.randn(200, 1, 8, 8)
    net = hwsim.quantize(nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(),
                                       nn.Linear(32, 10)), "wcat", bits=4)
    y = net(x).argmax(1)
    a = hwsim.evaluate(net, (x, y), ber=0.02, realizations=4, seed=2)
    with hwsim.precision("bf16"):
        assert get_inference_precision() == "bf16"
        b = hwsim.evaluate(net, (x, y), ber=0.02, realizations=4, seed=2)
    assert get_inference_precision() == "auto" and a.flips == b.flips  # the same flips
    # labels are float32's own predictions; bfloat16 rounding changes only near-ties
    assert a.clean == 1.0 and b.clean > 0.9
    with pytest.raises(hwsim.ConfigError, match="valid: auto, fp32, bf16"):
        with hwsim.precision("half"):
            pass

