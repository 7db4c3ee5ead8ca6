"""WCAT options for the paper's ablations (issue 21): range gradient scale (Table 1), weight
gradient estimators STE / PWL / MAD (Sec. 4.6, Sakr et al. 2022), and that their defaults
leave existing recipes, checkpoints and gradients exactly as they were."""
import dataclasses
import math
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from hwsim.models.checkpoint import load_checkpoint, read_checkpoint
from hwsim.models.errors import ConfigError
from hwsim.models.quant import canonical_params, create_quantizer, quant_layers, quantize_model
from hwsim.models.train import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
A = 1.0
W = [-3.0, -1.5, -0.2, 0.4, 1.2, 2.0, 0.9, -0.99]
G = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]


def _grads(**params):
    q = create_quantizer("wcat", bits=4, **params)
    q.a.data.fill_(A)
    w = torch.tensor(W, requires_grad=True)
    (q(w) * torch.tensor(G)).sum().backward()
    return w.grad.tolist(), float(q.a.grad)


def test_estimators_on_a_tiny_tensor_against_hand_values():
    # clipped: entries 0, 1 (below -1) and 4, 5 (above 1); eq. (5): -1 - 2 + 5 + 6 = 8
    w_ste, a_ste = _grads(estimator="ste")
    assert w_ste == G  # straight through, clipped weights included
    w_pwl, a_pwl = _grads(estimator="pwl")
    assert w_pwl == [0.0, 0.0, 3.0, 4.0, 0.0, 0.0, 7.0, 8.0]
    w_mad, a_mad = _grads(estimator="mad")  # clipped: g * a/|w|
    assert w_mad == pytest.approx([1 / 3, 2 / 1.5, 3.0, 4.0, 5 / 1.2, 6 / 2.0, 7.0, 8.0])
    assert w_mad[2:4] == [3.0, 4.0] and w_mad[6:] == [7.0, 8.0]  # exactly 1 inside
    # the range gradient does not depend on the weight estimator
    assert a_ste == a_pwl == a_mad == pytest.approx(8 / math.sqrt(8))


def test_grad_scale_one_and_inv_sqrt_n():
    assert _grads(grad_scale=1)[1] == pytest.approx(8.0)
    assert _grads(grad_scale="1")[1] == pytest.approx(8.0)
    assert _grads(grad_scale="inv_sqrt_n")[1] == pytest.approx(8 / math.sqrt(8))
    assert _grads(grad_scale=1, estimator="pwl")[0] == _grads(estimator="pwl")[0]


def test_defaults_are_bit_identical_to_the_original_backward():
    torch.manual_seed(0)
    w = (torch.randn(3, 5, 3, 3) * 0.4).requires_grad_()
    g = torch.randn(3, 5, 3, 3)
    q = create_quantizer("wcat", bits=4)
    q.a.data.fill_(0.5)
    (q(w) * g).sum().backward()
    # the backward as it was before the options: STE weights, eq. (5) / sqrt(N)
    side = (w.detach() > 0.5).float() - (w.detach() < -0.5).float()
    assert torch.equal(w.grad, g)
    assert torch.equal(q.a.grad, ((g * side).sum() / math.sqrt(w.numel())).reshape(()))
    q2 = create_quantizer("wcat", bits=4, grad_scale="inv_sqrt_n", estimator="ste")
    assert (q2.grad_scale, q2.estimator) == (q.grad_scale, q.estimator) == ("inv_sqrt_n", "ste")


def test_bad_options_are_clean_errors():
    with pytest.raises(ConfigError, match=r"grad_scale=0\.5.*valid: 1, inv_sqrt_n"):
        create_quantizer("wcat", grad_scale=0.5)
    with pytest.raises(ConfigError, match=r"grad_scale=True"):
        create_quantizer("wcat", grad_scale=True)
    with pytest.raises(ConfigError, match=r"estimator='sgd'.*valid: ste, pwl, mad"):
        create_quantizer("wcat", estimator="sgd")
    with pytest.raises(ConfigError, match="weight_decay_a"):
        create_quantizer("wcat", weight_decay_a=-1)
    with pytest.raises(ConfigError, match=r"clamp_weights='yes': must be true or false"):
        create_quantizer("wcat", clamp_weights="yes")


def test_clamp_weights_clamps_the_float_weights_into_the_range_after_a_step():
    """clamp_weights: after_step puts every float weight inside [-a, a] (PLClip's in-place
    clamp); without it WCAT leaves the float weights beyond the range alone."""
    from hwsim import api as hw
    for clamp in (False, True):
        torch.manual_seed(0)
        net = nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3))
        hw.quantize(net, "wcat", bits=4, clamp_weights=clamp)
        with torch.no_grad():
            for _, m in quant_layers(net):
                m.quantizer.a.mul_(0.5)  # half of max|W|: a quarter of the weights beyond it
        w0 = [m.weight.detach().clone() for _, m in quant_layers(net)]
        hw.after_step(net)
        for (_, m), w in zip(quant_layers(net), w0):
            a = float(m.quantizer.a)
            if clamp:
                assert float(m.weight.abs().max()) == pytest.approx(a)
                assert torch.equal(m.weight, w.clamp(-a, a))
            else:
                assert torch.equal(m.weight, w) and float(w.abs().max()) > 1.5 * a
    assert "clamp_weights=True" in repr(net[0].quantizer)
    assert canonical_params("wcat", {"clamp_weights": False}) == {}


def test_options_reach_every_layer():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(16, 3))
    quantize_model(model, "wcat", bits=8, init="mse", grad_scale=1, estimator="mad")
    qs = [m.quantizer for _, m in quant_layers(model)]
    assert [(q.bits, q.init, q.grad_scale, q.estimator) for q in qs] == [(8, "mse", "1", "mad")] * 2


def test_recipes_drop_new_options_at_their_default_only():
    assert canonical_params("wcat", {"weight_decay_a": 0.01, "estimator": "ste",
                                     "grad_scale": "inv_sqrt_n"}) == {"weight_decay_a": 0.01}
    kept = {"weight_decay_a": 0.01, "init": "max", "estimator": "mad", "grad_scale": 1}
    assert canonical_params("wcat", kept) == kept  # older keys stay even at their default
    assert canonical_params("plclip", {"c": 0.1}) == {"c": 0.1}
    base = TrainConfig(quantizer="wcat", quantizer_params={"weight_decay_a": 0.01})
    explicit = dataclasses.replace(base, quantizer_params={
        "weight_decay_a": 0.01, "estimator": "ste", "grad_scale": "inv_sqrt_n"})
    assert explicit.recipe() == base.recipe()
    assert explicit.model_config(10, 1)["quantizer"] == base.model_config(10, 1)["quantizer"]
    other = dataclasses.replace(base, quantizer_params={"weight_decay_a": 0.01, "grad_scale": 1})
    assert other.recipe() != base.recipe()


@pytest.mark.parametrize("name", ["wcat", "wcat_bfn"])
def test_committed_checkpoint_loads_evaluates_and_matches_its_recipe(name):
    from hwsim.models.data import load_dataset
    from hwsim.models.evaluate import accuracy
    from hwsim.study import train_config
    from hwsim.study_spec import load_study

    path = ROOT / "studies/results/digits_quickstart/checkpoints" / f"{name}.pt"
    ck = read_checkpoint(path)
    model, cfg = load_checkpoint(path)
    q = quant_layers(model)[0][1].quantizer
    assert (q.grad_scale, q.estimator) == ("inv_sqrt_n", "ste")
    _, test = load_dataset("digits")
    assert accuracy(model, test) == ck["history"][-1]["test_acc"]  # as when it was trained
    study = load_study(ROOT / "studies/digits_quickstart.yaml")
    method = next(m for m in study.methods if m.name == name.replace("_", "+"))
    assert train_config(study, method).recipe() == ck["config"]["train"]
    # the same method stating the new options at their defaults still matches
    method = dataclasses.replace(method, params={**method.params, "estimator": "ste",
                                                 "grad_scale": "inv_sqrt_n"})
    cfg2 = train_config(study, method)
    assert cfg2.recipe() == ck["config"]["train"]
    assert cfg2.model_config(10, 1)["quantizer"] == ck["config"]["quantizer"]


def test_ablation_studies_parse_and_resnet_reuses_the_matching_checkpoint():
    from hwsim.study import train_config
    from hwsim.study_spec import load_study

    for name in ("digits_ablation", "resnet20_ablation"):
        study = load_study(ROOT / "studies" / f"{name}.yaml")
        params = {m.name: m.params for m in study.methods}
        assert params["gs1-l0.0005"] == {"grad_scale": 1, "weight_decay_a": 0.0005}
        assert {m.params.get("estimator", "ste") for m in study.methods} == {"ste", "pwl", "mad"}
        assert {m.params.get("init") for m in study.methods if m.bits == 8} == \
            {"max", "mse", "ber_mse"}
    # resnet20_ablation's gsinv-l0.01 states the new options' defaults explicitly and reuses
    # resnet20_cifar10's wcat+bfn checkpoint: the recipes must be the same
    # and its clamp row reuses clamp.sh's checkpoint (hwsim train flags = the study's recipe)
    for name in ("gsinv-l0.01", "clamp"):
        m = next(m for m in study.methods if m.name == name)
        ck = read_checkpoint(ROOT / m.checkpoint)
        assert train_config(study, m).recipe() == ck["config"]["train"], name


def test_loading_a_ber_mse_checkpoint_skips_the_init_its_state_replaces(monkeypatch):
    """load_checkpoint builds the quantized network without eq. 10's range search (16 s for
    the 8-bit ResNet-20 here, then overwritten): the ranges are the checkpoint's own."""
    import hwsim.models.quant as quant

    def refuse(*a, **k):
        raise AssertionError("best_range called while loading a checkpoint")
    monkeypatch.setattr(quant, "best_range", refuse)
    path = ROOT / "studies/results/resnet20_ablation/checkpoints/init8-ber_mse.pt"
    ck = read_checkpoint(path)
    assert ck["config"]["quantizer"]["params"]["init"] == "ber_mse"
    model, _ = load_checkpoint(path)
    for name, layer in quant_layers(model):
        assert float(layer.quantizer.a) == float(ck["model_state"][f"{name}.quantizer.a"])
    # quantizing a network for training still initialises the ranges (here: max|W|)
    net = quantize_model(nn.Sequential(nn.Linear(4, 3)), "wcat", 4)
    assert float(quant_layers(net)[0][1].quantizer.a) == float(net[0].weight.abs().max())


def test_an_unknown_quantizer_param_is_still_refused_by_name():
    """The checkpoint loader's no-init path takes its flag outside the params: a recipe's
    params named like it are refused as unknown, not taken as the flag."""
    for name in ("init", "init_ranges"):
        with pytest.raises(ConfigError, match="bad parameter"):
            quantize_model(nn.Sequential(nn.Linear(4, 3)), "normal", 4, **{name: False})
