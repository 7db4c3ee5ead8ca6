"""Transient activation bit errors (models/activations.py) and activation BFN training."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from hwsim.models.activations import (ActScale, activation_faults, add_activation_bfn,
                                      calibrate_activations, evaluate_under_activation_faults,
                                      flip_stored, sample_distinct)
from hwsim.models.checkpoint import load_checkpoint, method_name
from hwsim.models.errors import ConfigError
from hwsim.models.evaluate import accuracy
from hwsim.models.train import TrainConfig, train


@pytest.fixture(scope="module")
def model(trained):
    m, _ = load_checkpoint(trained("normal"))
    return m


def test_quantization_only_changes_accuracy_slightly(model, digits):
    _, test = digits
    clean = accuracy(model, test)
    r = evaluate_under_activation_faults(model, test, 0.0, realizations=2)
    assert r.clean == clean and r.flips == [0, 0]
    assert r.accuracies[0] == r.accuracies[1]  # p = 0: deterministic storage, no faults
    # measured: 8-bit max-calibrated activations move the digits model by <= 0.3 points
    assert abs(r.mean - clean) <= 0.01
    # and they really are quantized: the first layer sees integers times its scale
    scales = calibrate_activations(model, test)
    seen = []
    first = dict(model.named_modules())["features.0"]
    with activation_faults(model, 0.0, scales):  # runs after the storage hook
        h = first.register_forward_pre_hook(lambda m, a: seen.append(a[0].clone()))
        model(test.tensors()[0][:8])
    h.remove()
    sc = scales["features.0"]
    q = seen[-1] / sc.scale
    assert sc.signed and torch.allclose(q, q.round(), atol=1e-3)
    assert q.abs().max() <= 127


def test_flip_count_is_binomial_and_positions_distinct():
    gen = torch.Generator().manual_seed(3)
    sc = ActScale(0.1, signed=False, bits=8)
    ints = torch.randint(0, 256, (500,), generator=gen, dtype=torch.int32)
    n, p = ints.numel() * 8, 0.004
    ks, per_bit = [], np.zeros(8)
    for _ in range(3000):
        out, k = flip_stored(ints, sc, p, gen)
        diff = (out ^ ints).numpy()
        bits = np.unpackbits(diff.astype(np.uint8)[:, None], axis=1)
        assert bits.sum() == k  # k distinct bits flipped, nothing else
        per_bit += bits.sum(0)
        ks.append(k)
    ks = np.asarray(ks)
    assert abs(ks.mean() - n * p) < 4 * np.sqrt(n * p * (1 - p) / len(ks))
    assert ks.var(ddof=1) == pytest.approx(n * p * (1 - p), rel=0.1)
    # chi-square of the counts against Binomial(n, p), tails pooled
    edges = np.arange(6, 27)
    obs = [np.sum(ks < 6)] + [np.sum(ks == e) for e in edges[:-1]] + [np.sum(ks >= 26)]
    exp = [stats.binom.cdf(5, n, p)] + list(stats.binom.pmf(edges[:-1], n, p)) + \
        [stats.binom.sf(25, n, p)]
    exp = np.asarray(exp) * len(ks)
    assert stats.chisquare(obs, exp).pvalue > 1e-3
    # every bit position equally likely
    assert stats.chisquare(per_bit).pvalue > 1e-3


def test_signed_flips_are_twos_complement():
    gen = torch.Generator().manual_seed(0)
    sc = ActScale(1.0, signed=True, bits=8)
    ints = torch.tensor([0, -1, 5, -127], dtype=torch.int32)
    out, k = flip_stored(ints, sc, 0.5, gen)
    assert k > 0 and out.min() >= -128 and out.max() <= 127
    pattern = lambda t: torch.remainder(t, 256)
    assert int(sum(bin(int(v)).count("1") for v in pattern(out) ^ pattern(ints))) == k
    assert len(sample_distinct(10, 10, gen)) == 10
    assert len(torch.unique(sample_distinct(1000, 900, gen))) == 900


def test_transient_seeded_and_model_unchanged(model, digits):
    _, test = digits
    x = test.tensors()[0][:64]
    scales = calibrate_activations(model, test)
    before = model(x).detach()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with activation_faults(model, 0.02, scales, seed=5) as c:
        a1, a2 = model(x).detach(), model(x).detach()
    assert not torch.equal(a1, a2)  # a fresh pattern every forward pass
    assert c.total_flips > 0
    assert c.total_flips == pytest.approx(0.02 * sum(c.bits.values()), rel=0.2)
    with activation_faults(model, 0.02, scales, seed=5):
        b1 = model(x).detach()
    assert torch.equal(a1, b1)  # same seed, same faults
    assert all(not m._forward_pre_hooks for m in model.modules())
    assert torch.equal(model(x).detach(), before)
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


def test_evaluation_with_weight_faults_reproducible(model, digits):
    _, test = digits
    kw = dict(weight_ber=0.005, realizations=4, seed=1)
    r1 = evaluate_under_activation_faults(model, test, 0.01, **kw)
    r2 = evaluate_under_activation_faults(model, test, 0.01, **kw)
    act_only = evaluate_under_activation_faults(model, test, 0.01, realizations=4, seed=1)
    assert r1.accuracies == r2.accuracies and r1.flips == r2.flips
    assert r1.ci95 > 0 and r1.mean < r1.clean
    assert r1.flips == act_only.flips  # activation draws do not depend on weight draws
    assert r1.mean <= act_only.mean + 0.02
    with pytest.raises(ConfigError, match="no quantized layer named 'nope'"):
        evaluate_under_activation_faults(model, test, {"nope": 0.1}, realizations=1)


def test_act_bfn_training_option(digits, tmp_path):
    base = TrainConfig(quantizer="normal", epochs=1, batch_size=64, lr=0.05)
    assert "act_bfn_rate" not in base.recipe()  # default recipes read as before
    assert "act_bfn_rate" not in base.model_config(10, 1)["quantizer"]
    with pytest.raises(ConfigError, match="act_bfn_rate"):
        TrainConfig(quantizer="normal", act_bfn_rate=0.7).validate()
    with pytest.raises(ConfigError, match="needs a quantizer"):
        TrainConfig(act_bfn_rate=0.01).validate()
    plain = train(base, tmp_path / "a.pt", progress=False, log=lambda s: None, data=digits)
    noisy_cfg = TrainConfig(quantizer="normal", epochs=1, batch_size=64, lr=0.05,
                            act_bfn_rate=0.02)
    noisy = train(noisy_cfg, tmp_path / "b.pt", progress=False, log=lambda s: None,
                  data=digits)
    again = train(noisy_cfg, tmp_path / "c.pt", progress=False, log=lambda s: None,
                  data=digits)
    assert noisy["config"]["quantizer"]["act_bfn_rate"] == 0.02
    assert method_name(noisy["config"]) == "normal+abfn"
    diff = [not torch.equal(plain["model_state"][k], noisy["model_state"][k])
            for k in plain["model_state"]]
    assert any(diff)  # the noise changed training
    assert all(torch.equal(noisy["model_state"][k], again["model_state"][k])
               for k in noisy["model_state"])  # seeded
    m, _ = load_checkpoint(tmp_path / "b.pt")
    assert all(not mod._forward_pre_hooks for mod in m.modules())
    hooks = add_activation_bfn(m, 0.1)
    m.eval()
    x = digits[1].tensors()[0][:16]
    assert torch.equal(m(x), m(x))  # eval mode: no noise
    for h in hooks:
        h.remove()
