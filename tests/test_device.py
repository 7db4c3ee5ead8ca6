"""--device: names are checked up front; on a CUDA machine, GPU training and evaluation
follow the CPU recipe (same draws, CPU checkpoints), and sweeps and attacks on the GPU (flips
drawn on the device) agree with the CPU statistically. The cuda tests skip without a GPU;
tests that need hwsim's optional pieces skip where those are not installed
(benchmarks/gpu_check.sh runs this file on a bare GPU machine)."""
import argparse
import copy
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats

from hwsim.models import evaluate_under_bit_errors, load_checkpoint
from hwsim.models.attacks import bfa_nflip
from hwsim.models.tbfa import tbfa
from hwsim.models.device import check_device_name, resolve_device
from hwsim.models.errors import ConfigError
from hwsim.models.estimate import estimate_accuracy
from hwsim.models.faults import PositionSampler, sample_positions_on
from hwsim.models.quant import bfn_noise, create_quantizer
from hwsim.models.train import TrainConfig, train

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_device_names():
    assert resolve_device(None) == torch.device("cpu")
    assert resolve_device(" CPU ") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    for bad, msg in [("gpu", "valid: cpu, cuda, cuda:N, auto"), ("cuda:x", "cuda or cuda:N")]:
        with pytest.raises(ConfigError, match=msg):
            resolve_device(bad)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_a_gpu_is_a_clean_error(digits, tmp_path):
    with pytest.raises(ConfigError, match="sees no CUDA GPU"):
        train(TrainConfig(epochs=1), tmp_path / "x.pt", progress=False, log=lambda s: None,
              data=digits, device="cuda")
    assert not (tmp_path / "x.pt").exists()


@cuda
def test_gpu_training_and_evaluation_match_the_cpu(digits, tmp_path):
    cfg = TrainConfig(quantizer="wcat", bfn_rate=5e-3, epochs=4, batch_size=64, lr=0.05, seed=0)
    runs = {}
    for dev in ("cpu", "cuda"):
        ck = train(cfg, tmp_path / f"{dev}.pt", progress=False, log=lambda s: None, data=digits,
                   device=dev)
        assert all(t.device.type == "cpu" for t in ck["model_state"].values())
        runs[dev] = ck["history"][-1]["test_acc"]
    # same recipe and seeds; BFN's flip positions drawn on the GPU, float rounding of cuDNN
    assert runs["cuda"] >= 0.85 and abs(runs["cuda"] - runs["cpu"]) <= 0.03

    model, _ = load_checkpoint(tmp_path / "cuda.pt")  # a GPU checkpoint loads on the CPU
    cpu = evaluate_under_bit_errors(model, digits[1], 0.01, realizations=10, seed=3)
    gpu = evaluate_under_bit_errors(model.to("cuda"), digits[1], 0.01, realizations=10, seed=3,
                                    sampler="host")
    assert gpu.flips == cpu.flips  # identical bit-error patterns (host draws, copied over)
    assert gpu.clean == pytest.approx(runs["cuda"])
    assert np.abs(np.subtract(gpu.accuracies, cpu.accuracies)).max() <= 2 / len(digits[1])


@cuda
def test_bfn_draws_its_flips_on_the_gpu():
    q = create_quantizer("wcat", bits=4).cuda()
    w = torch.randn(64, 32, 3, 3, device="cuda")
    q.init_from(w)
    torch.manual_seed(7)
    noise = bfn_noise(q, w, 0.01)  # the GPU default: device draws
    torch.manual_seed(7)
    assert noise.device.type == "cuda" and torch.equal(noise, bfn_noise(q, w, 0.01, "device"))
    _, scale = q.integers(w)
    changed = int((noise != 0).sum())  # k ~ 0.01 * 73,728 bits, at most one change per flip
    assert 400 < changed < 1000 and torch.allclose(noise / scale, torch.round(noise / scale))


# ----------------------------------------------------------------------------- flips drawn on
# the device: the GPU default, forced here on the CPU (same code, a CPU torch generator)

def test_device_names_are_checked_without_a_gpu():
    assert check_device_name(" CUDA:1 ") == "cuda:1" and check_device_name("auto") == "auto"
    for bad in ("cuda:", "cuda:-1", "gpu", 3, None):
        with pytest.raises(ConfigError, match="device"):
            check_device_name(bad)


def test_device_sampler_draws_distinct_uniform_positions():
    gen = torch.Generator().manual_seed(5)
    n, k = 4000, 300
    draws = [sample_positions_on(n, k, gen) for _ in range(200)]
    for d in draws:
        assert d.dtype == torch.int64 and len(d) == k and len(torch.unique(d)) == k
        assert 0 <= int(d.min()) and int(d.max()) < n
    counts = np.bincount(torch.cat(draws).numpy(), minlength=n)  # 15 expected per position
    assert stats.chisquare(counts).pvalue > 1e-3
    assert stats.chisquare(np.bincount(torch.cat(draws).numpy() % 4)).pvalue > 1e-3
    again = sample_positions_on(n, k, torch.Generator().manual_seed(5))
    assert torch.equal(again, draws[0])  # seeded: a point is reproducible
    assert len(sample_positions_on(n, 0, gen)) == 0
    assert torch.equal(sample_positions_on(5, 9, gen), torch.arange(5))


def test_sampler_is_host_on_the_cpu_unless_forced():
    rng = np.random.default_rng(0)
    assert PositionSampler(100, rng, 0, "cpu").where == "host"
    forced = PositionSampler(100, rng, 0, "cpu", "device")
    assert forced.where == "device" and isinstance(forced(7), torch.Tensor)
    with pytest.raises(ConfigError, match="flip sampler 'gpu': valid: host, device"):
        PositionSampler(100, rng, 0, "cpu", "gpu")


def agree(a_mean, a_ci, b_mean, b_ci, slack=0.0) -> bool:
    """Two unbiased estimates within their combined 99.9% uncertainty (plus `slack`)."""
    return abs(a_mean - b_mean) <= 3.3 * math.hypot(a_ci / 1.96, b_ci / 1.96) + slack + 1e-4


def test_device_sampler_agrees_with_host_draws(trained, digits):
    model, _ = load_checkpoint(trained("normal"))
    for ber in (3e-4, 5e-3):
        host = estimate_accuracy(model, digits[1], ber, max_realizations=40, seed=1)
        dev = estimate_accuracy(model, digits[1], ber, max_realizations=40, seed=1,
                                sampler="device")
        assert dev.estimator == host.estimator and dev.realizations == host.realizations
        assert agree(host.mean, host.ci95, dev.mean, dev.ci95), (ber, host, dev)
    host = evaluate_under_bit_errors(model, digits[1], 0.01, realizations=30, seed=2)
    dev = evaluate_under_bit_errors(model, digits[1], 0.01, realizations=30, seed=2,
                                    sampler="device")
    assert dev.flips[0] == host.flips[0]  # K comes from the numpy generator either way
    assert dev.accuracies != host.accuracies  # other positions
    assert agree(host.mean, host.ci95, dev.mean, dev.ci95)


# ----------------------------------------------------------------------------- --device on
# sweep, study and attack

STUDY = """
name: tiny
data: {name: digits}
network: mlp
training: {epochs: 1}
methods: [{quantizer: normal}]
arch: ARCH
DEVICE
"""


def study_file(tmp_path, device_line: str):
    arch = Path(__file__).resolve().parent.parent / "arch" / "eyeriss_sram.yaml"
    f = tmp_path / "tiny.yaml"
    f.write_text(STUDY.replace("ARCH", str(arch)).replace("DEVICE", device_line))
    return f


def test_study_device_key_flag_and_routing(tmp_path, monkeypatch, capsys):
    load_study = pytest.importorskip("hwsim.study_spec").load_study
    st = pytest.importorskip("hwsim.study")
    cmd = pytest.importorskip("hwsim.commands.study")
    assert load_study(study_file(tmp_path, "")).device == "cpu"
    f = study_file(tmp_path, "device: CUDA:1")
    assert load_study(f).device == "cuda:1"  # checked for syntax only: any machine reads it
    with pytest.raises(ConfigError, match=r"tiny.yaml: device: 'gpu': valid: cpu, cuda"):
        load_study(study_file(tmp_path, "device: gpu"))
    seen = []
    monkeypatch.setattr(cmd, "run_study", lambda study, **k: seen.append(study.device))
    f = study_file(tmp_path, "device: cuda:1")
    for argv, want in ((["--device", "cpu"], "cpu"), ([], "cuda:1")):
        cmd.run(command_args(cmd, ["study", str(f), "--only", "normal", *argv]))
        assert seen[-1] == want  # the flag overrides the study file
    calls = []
    monkeypatch.setattr(st, "train", lambda *a, **k: calls.append(("train", k["device"])))
    monkeypatch.setattr(st, "sweep", lambda *a, **k: calls.append(("sweep", k["device"])))
    study = load_study(study_file(tmp_path, "device: auto"))
    assert st.run_study(study, progress=False, log=lambda s: None, only=["normal"]) is None
    assert calls == [("train", "auto"), ("sweep", "auto")]


def command_args(module, argv: list[str]):
    """argv parsed by one hwsim.commands module's parser (hwsim.cli loads them all)."""
    p = argparse.ArgumentParser()
    module.register(p.add_subparsers())
    return p.parse_args(argv)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_sweep_study_attack_on_cuda_without_a_gpu_fail_before_any_work(trained, tmp_path,
                                                                        capsys):
    main = pytest.importorskip("hwsim.cli").main
    ck = str(trained("normal"))
    out = tmp_path / "out"
    f = study_file(tmp_path, f"results_dir: {out.name}")
    for argv in (["sweep", "--checkpoint", ck, "--out", str(out / "r.csv"), "--device", "cuda"],
                 ["attack", "bfa", "--checkpoint", ck, "--device", "cuda:0"],
                 ["attack", "tbfa", "--checkpoint", ck, "--source", "1", "--target", "2",
                  "--device", "cuda"],
                 ["study", str(f), "--device", "cuda"]):
        code = main(argv)
        err = capsys.readouterr().err
        assert code == 2 and "sees no CUDA GPU" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()  # nothing written, not even the sweep's energy sidecar


# ----------------------------------------------------------------------------- on a GPU: the
# fast path agrees with the CPU statistically (flips drawn on the device, large batches)

def fake_energy(*_a, **_k):
    from hwsim.energy import LayerResult, NetworkEnergy
    from hwsim.workload import LayerShape
    shape = LayerShape(name="fc", kind="linear", in_channels=4, out_channels=2, kernel=(1, 1),
                       output=(1, 1), input=(1, 1), stride=(1, 1), padding=(0, 0), groups=1,
                       weight_bits=4, act_bits=8)
    layers = [LayerResult("a", shape, {"WeightSRAM": 1.0, "Other": 3.0}, 4.0, 1.0, 8, True)]
    return NetworkEnergy("fake.yaml", "0" * 64, ("WeightSRAM",), 0.8, layers)


@cuda
def test_gpu_sweep_agrees_with_cpu(trained, digits, tmp_path, monkeypatch):
    model, _ = load_checkpoint(trained("normal"))
    for ber in (1e-4, 3e-3, 2e-2):
        cpu = estimate_accuracy(model, digits[1], ber, max_realizations=50, seed=5)
        gpu = estimate_accuracy(copy.deepcopy(model).cuda(), digits[1], ber,
                                max_realizations=50, seed=5)
        assert gpu.clean == pytest.approx(cpu.clean, abs=1.5 / len(digits[1]))
        assert agree(cpu.mean, cpu.ci95, gpu.mean, gpu.ci95, 2 / len(digits[1])), (cpu, gpu)
    sw = pytest.importorskip("hwsim.sweep")
    monkeypatch.setattr(sw, "model_energy", fake_energy)
    rows = {dev: sw.sweep(str(trained("wcat")), "fake.yaml", [0.38, 0.41, 0.44],
                          tmp_path / f"{dev}.csv", realizations=40, seed=0, data=digits[1],
                          progress=False, device=dev) for dev in ("cpu", "cuda")}
    for a, b in zip(rows["cpu"].itertuples(), rows["cuda"].itertuples()):
        assert (a.voltage, a.ber, a.energy_uJ) == (b.voltage, b.ber, b.energy_uJ)
        assert abs(a.acc_clean - b.acc_clean) <= 1.5 / len(digits[1])
        assert agree(a.acc_mean, a.acc_ci95, b.acc_mean, b.acc_ci95, 2 / len(digits[1])), (a, b)
    # each row records where it ran (float16 autocast by default on the GPU)
    assert {(r.device, r.precision) for r in rows["cpu"].itertuples()} == {("cpu", "fp32")}
    assert {(r.device, r.precision) for r in rows["cuda"].itertuples()} == {("cuda", "fp16")}


@cuda
def test_gpu_attacks_agree_with_cpu(trained, digits, capsys):
    model, _ = load_checkpoint(trained("normal"))
    cpu = bfa_nflip(model, digits[1], seeds=3, max_flips=200, seed=0)
    gpu = bfa_nflip(copy.deepcopy(model).cuda(), digits[1], seeds=3, max_flips=200, seed=0)
    assert all(cpu["reached"]) and all(gpu["reached"])
    n = len(digits[1]) - 128
    assert gpu["clean_accuracies"] == pytest.approx(cpu["clean_accuracies"], abs=1.5 / n)
    # the same search: only float rounding can break a near-tie between two bits differently
    assert abs(gpu["n_flip_mean"] - cpu["n_flip_mean"]) <= max(3.0, 0.25 * cpu["n_flip_mean"])
    cpu = tbfa(model, digits[1], 3, 8, seeds=2, max_flips=100)
    gpu = tbfa(copy.deepcopy(model).cuda(), digits[1], 3, 8, seeds=2, max_flips=100)
    assert all(gpu["reached"]) and gpu["asr_mean"] >= 0.99
    assert abs(gpu["n_flip_mean"] - cpu["n_flip_mean"]) <= max(3.0, 0.25 * cpu["n_flip_mean"])
    attack = pytest.importorskip("hwsim.commands.attack")  # not hwsim.cli: it needs plotly
    args = command_args(attack, ["attack", "tbfa", "--checkpoint", str(trained("normal")),
                                 "--source", "3", "--target", "8", "--seeds", "1",
                                 "--max-flips", "100", "--device", "cuda", "--json",
                                 "--no-progress"])
    assert args.func(args) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["reached"] == [True] and res["asr_mean"] >= 0.99
