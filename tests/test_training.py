import pytest
import torch

from hwsim.models import evaluate_under_bit_errors, load_checkpoint
from hwsim.models.errors import ConfigError
from hwsim.models.train import TrainConfig, train


@pytest.mark.parametrize("quantizer", ["normal", "plclip", "lsq", "wcat"])
def test_each_quantizer_reaches_90_percent_on_digits(trained, digits, quantizer):
    model, config = load_checkpoint(trained(quantizer))
    assert config["quantizer"]["name"] == quantizer and config["quantizer"]["bits"] == 4
    r = evaluate_under_bit_errors(model, digits[1], 0.0, realizations=2)
    assert r.clean >= 0.90
    assert r.mean == r.clean  # p = 0 changes nothing


def test_wcat_bfn_beats_normal_at_1e_2(trained, digits):
    results = {}
    for q, bfn in (("normal", 0.0), ("wcat", 5e-3)):
        model, _ = load_checkpoint(trained(q, bfn))
        results[q] = evaluate_under_bit_errors(model, digits[1], 1e-2, realizations=30, seed=0)
    assert results["wcat"].mean > results["normal"].mean
    # and by a margin larger than the noise of the estimate
    assert results["wcat"].mean - results["normal"].mean > results["normal"].ci95


def test_evaluation_never_mutates_the_model(trained, digits):
    model, _ = load_checkpoint(trained("wcat"))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    evaluate_under_bit_errors(model, digits[1], 0.05, realizations=3)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(getattr(m, "weight_override", None) is None for m in model.modules())


def test_same_seed_same_result(trained, digits):
    model, _ = load_checkpoint(trained("normal"))
    a = evaluate_under_bit_errors(model, digits[1], 0.02, realizations=5, seed=7)
    b = evaluate_under_bit_errors(model, digits[1], 0.02, realizations=5, seed=7)
    assert a.accuracies == b.accuracies and a.flips == b.flips


def test_resume_equals_uninterrupted_training(digits, tmp_path):
    cfg = TrainConfig(quantizer="lsq", bfn_rate=0.01, epochs=3, batch_size=128, lr=0.05, seed=3)
    full = train(cfg, tmp_path / "full.pt", progress=False, log=lambda s: None, data=digits)
    # simulate a crash after epoch 2: train a 3-epoch run but stop after 2 by resuming a copy
    part = TrainConfig(**{**cfg.__dict__})
    path = tmp_path / "part.pt"
    import hwsim.models.train as mt
    calls = {"n": 0}
    orig = mt.save_atomic

    def crash_after_two(obj, p):
        orig(obj, p)
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt

    mt.save_atomic = crash_after_two
    try:
        with pytest.raises(KeyboardInterrupt):
            train(part, path, progress=False, log=lambda s: None, data=digits)
    finally:
        mt.save_atomic = orig
    resumed = train(part, path, resume=True, progress=False, log=lambda s: None, data=digits)
    assert resumed["epoch"] == 3 and len(resumed["history"]) == 3
    for k, v in full["model_state"].items():
        assert torch.allclose(v.float(), resumed["model_state"][k].float(), atol=1e-6), k
    assert "optimizer_state" not in resumed  # finished checkpoints stay small


def test_checkpoint_is_self_describing(trained):
    ck = torch.load(trained("wcat"), weights_only=True)
    assert ck["config"]["model"] == {"name": "small_cnn", "num_classes": 10, "in_channels": 1}
    assert ck["config"]["data"]["name"] == "digits"
    assert any(k.endswith("quantizer.a") for k in ck["model_state"])


def test_finetune_from_float_checkpoint(trained, digits, tmp_path):
    cfg = TrainConfig(quantizer="wcat", epochs=1, batch_size=64, lr=0.01, seed=0,
                      init_from=str(trained(None)))
    ck = train(cfg, tmp_path / "ft.pt", progress=False, log=lambda s: None, data=digits)
    assert ck["history"][-1]["test_acc"] >= 0.9  # starts from a trained float network


def test_finetune_refuses_a_half_trained_baseline(trained, digits, tmp_path):
    ck = torch.load(trained(None), weights_only=True)
    ck["epoch"] = ck["config"]["train"]["epochs"] - 1  # as written mid-training
    torch.save(ck, tmp_path / "half.pt")
    cfg = TrainConfig(quantizer="wcat", epochs=1, init_from=str(tmp_path / "half.pt"))
    with pytest.raises(ConfigError, match=r"half.pt' is trained for \d+ of its \d+ epochs"):
        train(cfg, tmp_path / "ft.pt", progress=False, log=lambda s: None, data=digits)
    assert not (tmp_path / "ft.pt").exists()


def test_bad_training_config_is_clean_error():
    with pytest.raises(ConfigError, match="valid: .*small_cnn"):
        TrainConfig(model="resnet99").validate()
    with pytest.raises(ConfigError, match="needs a quantizer"):
        TrainConfig(bfn_rate=0.01).validate()


def test_compile_with_bit_flip_noise_is_refused(digits, tmp_path):
    cfg = TrainConfig(quantizer="wcat", bfn_rate=5e-3, epochs=1)
    with pytest.raises(ConfigError, match="recompiles every step"):
        train(cfg, tmp_path / "x.pt", progress=False, log=lambda s: None, data=digits,
              compile=True)
    assert not (tmp_path / "x.pt").exists()


@pytest.mark.slow
def test_compiled_training_writes_a_plain_checkpoint(digits, tmp_path):
    cfg = TrainConfig(epochs=2, batch_size=64, lr=0.05, seed=0)
    ck = train(cfg, tmp_path / "c.pt", progress=False, log=lambda s: None, data=digits,
               compile=True)
    assert not any("_orig_mod" in k for k in ck["model_state"])  # loads without torch.compile
    model, _ = load_checkpoint(tmp_path / "c.pt")
    from hwsim.models.evaluate import accuracy
    assert accuracy(model, digits[1]) == pytest.approx(ck["history"][-1]["test_acc"])
    assert ck["history"][-1]["test_acc"] >= 0.85


def test_bf16_training_runs_the_forward_in_bf16_and_keeps_float32_weights(digits, tmp_path):
    cfg = TrainConfig(quantizer="wcat", bfn_rate=5e-3, epochs=3, batch_size=64, lr=0.05, seed=0)
    quiet = dict(progress=False, log=lambda s: None, data=digits)
    ref = train(cfg, tmp_path / "fp32.pt", **quiet)
    ck = train(cfg, tmp_path / "bf16.pt", precision="bf16", **quiet)
    assert [r["precision"] for r in ck["history"]] == ["bf16"] * 3
    assert all("precision" not in r for r in ref["history"])  # fp32 logs read as before
    assert all(v.dtype in (torch.float32, torch.int64) for v in ck["model_state"].values())
    # the autocast took effect: same seed and data, other rounding, other weights
    w = "features.0.weight"
    assert not torch.equal(ck["model_state"][w], ref["model_state"][w])
    assert ck["history"][-1]["test_acc"] >= 0.9
    assert abs(ck["history"][-1]["test_acc"] - ref["history"][-1]["test_acc"]) < 0.03
    model, _ = load_checkpoint(tmp_path / "bf16.pt")
    from hwsim.models.device import forward_precision
    with forward_precision("cpu", "bf16"):
        assert model(digits[1].images[:4].float()).dtype == torch.bfloat16


def test_unknown_precision_is_refused_before_any_work(digits, tmp_path):
    with pytest.raises(ConfigError, match=r"precision 'fp16': valid: fp32, bf16"):
        train(TrainConfig(epochs=1), tmp_path / "x.pt", progress=False, log=lambda s: None,
              data=digits, precision="fp16")
    assert not (tmp_path / "x.pt").exists()


@pytest.mark.parametrize("native", [True, False])
def test_bf16_on_a_cpu_without_native_bfloat16_is_noted_once(native, monkeypatch, capsys):
    """bf16 autocast emulated on an AVX2 CPU ran ResNet-20 steps 11x slower than fp32: training
    and inference autocasts both say so, once per process; fp32 and native CPUs say nothing."""
    from hwsim.models import device
    from hwsim.models.evaluate import inference_precision
    monkeypatch.setattr(device, "cpu_bf16_native", lambda: native)
    monkeypatch.setattr(device, "_noted_slow_bf16", False)
    with device.forward_precision("cpu", "fp32"):
        pass
    assert capsys.readouterr().err == ""
    with device.precision_scope("bf16"):
        for _ in range(2):
            with device.forward_precision("cpu", "bf16"), inference_precision("cpu"):
                assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16
    err = capsys.readouterr().err
    assert err.count("note: precision bf16 on a CPU without native bfloat16") == (not native)
    if not native:
        assert "use --precision fp32" in err
