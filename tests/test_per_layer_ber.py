"""Per-layer bit error rates ({layer name: ber}) in evaluate_under_bit_errors and
estimate_accuracy (models/faultplan.py, estimate._strata_groups)."""
import itertools

import numpy as np
import pytest
import torch
from scipy import stats

from hwsim.models.checkpoint import load_checkpoint
from hwsim.models.errors import ConfigError
from hwsim.models.estimate import _strata_groups, estimate_accuracy
from hwsim.models.evaluate import StoredWeights, evaluate_under_bit_errors, hit_rate
from hwsim.models.faultplan import FaultPlan, layer_bers
from hwsim.models.faults import PositionSampler, flip_bits_bernoulli_naive
from hwsim.models.networks import create_model
from hwsim.models.quant import quant_layers, quantize_model


def _net(layer_bits=None):
    torch.manual_seed(0)
    return quantize_model(create_model("small_cnn", in_channels=1), "normal", bits=4,
                          layer_bits=layer_bits)


def _layer_of(stored, pos):
    starts = stored.widths.bit_starts.cpu().numpy()
    return np.searchsorted(starts, np.asarray(pos), side="right") - 1


def test_unknown_layer_and_bad_value_are_one_clear_error():
    s = StoredWeights(_net())
    with pytest.raises(ConfigError, match=r"unknown layer\(s\) 'conv9'.*valid layer names: "
                                          r"features\.0, features\.3, features\.7, fc"):
        FaultPlan(s, {"conv9": 1e-3})
    with pytest.raises(ConfigError, match=r"layer 'fc': bit error rate 0\.7"):
        layer_bers(s.names, {"fc": 0.7})
    assert layer_bers(s.names, {"fc": 1e-3}) == [0.0, 0.0, 0.0, 1e-3]


def test_dict_with_every_layer_equal_is_the_float_bit_for_bit(digits, trained):
    model, _ = load_checkpoint(trained("normal"))
    test = digits[1]
    names = [n for n, _ in quant_layers(model)]
    for ber in (2e-4, 3e-3):  # stratified and plain MC
        a = estimate_accuracy(model, test, ber, max_realizations=12, seed=4)
        b = estimate_accuracy(model, test, {n: ber for n in names}, max_realizations=12, seed=4)
        assert (a.mean, a.ci95, a.realizations, a.estimator) == \
               (b.mean, b.ci95, b.realizations, b.estimator)
    a = evaluate_under_bit_errors(model, test, 5e-3, realizations=4, seed=1)
    b = evaluate_under_bit_errors(model, test, {n: 5e-3 for n in names}, realizations=4, seed=1)
    assert a.accuracies == b.accuracies and a.flips == b.flips and b.ber == {n: 5e-3 for n in names}


def test_per_layer_groups_with_equal_rates_draw_the_float_distribution():
    """Forced through per-layer groups (rates differing by 1e-12), total flips are
    Binomial(n_bits, p) and layers are hit in proportion to their bits."""
    s = StoredWeights(_net({"features.0": 8}))  # mixed widths: 8, 4, 4, 4
    p = 2e-4
    plan = FaultPlan(s, {n: p * (1 + 1e-12 * i) for i, n in enumerate(s.names)})
    assert not plan.whole and len(plan.groups) == 4
    rng = np.random.default_rng(0)
    sampler = PositionSampler(s.n_bits, rng, 0, "cpu")
    totals, per_layer = [], np.zeros(4)
    for _ in range(3000):
        pos = plan.positions(plan.draw_counts(rng), sampler, rng)
        totals.append(len(pos))
        per_layer += np.bincount(_layer_of(s, pos), minlength=4)
    ks = np.arange(0, 40)
    obs = np.bincount(np.minimum(totals, 39), minlength=40)
    exp = stats.binom.pmf(ks, s.n_bits, p) * len(totals)
    exp[-1] += stats.binom.sf(39, s.n_bits, p) * len(totals)
    keep = exp > 5  # pool the sparse tail
    obs_p = np.append(obs[keep], obs[~keep].sum())
    exp_p = np.append(exp[keep], exp[~keep].sum())
    assert stats.chisquare(obs_p, exp_p * obs_p.sum() / exp_p.sum()).pvalue > 1e-3
    bits = np.array(s.sizes) * np.array(s.layer_bits)
    assert stats.chisquare(per_layer, bits / bits.sum() * per_layer.sum()).pvalue > 1e-3


def test_one_faulty_layer_changes_only_that_layer():
    s = StoredWeights(_net())
    plan = FaultPlan(s, {"features.7": 0.1})
    rng = np.random.default_rng(3)
    pos = plan.positions(plan.draw_counts(rng), PositionSampler(s.n_bits, rng, 3, "cpu"), rng)
    assert len(pos) > 0 and set(_layer_of(s, pos)) == {2}
    clean, faulty = s.weights(s.ints), s.flipped(pos)
    changed = [not torch.equal(a, b) for a, b in zip(clean, faulty)]
    assert changed == [False, False, True, False]
    bits = s.sizes[2] * 4
    assert abs(len(pos) - 0.1 * bits) < 5 * np.sqrt(bits * 0.09)


def test_strata_groups_weights_and_exact_conditional_counts():
    ns, qs = [10, 20, 5], [0.05, 0.02, 0.1]
    rng = np.random.default_rng(0)
    kind, w0, strata = _strata_groups(ns, qs, rng, force_mc=False)
    assert kind == "stratified"
    assert w0 + sum(s.weight for s in strata) == pytest.approx(1.0, abs=1e-12)
    assert w0 == pytest.approx(np.prod([(1 - q) ** n for n, q in zip(ns, qs)]), rel=1e-12)
    # stratum K = 2: the allocation's law is prod pmf_g(k_g) over k_1+k_2+k_3 = 2
    allocs = [a for a in itertools.product(range(3), repeat=3) if sum(a) == 2]
    joint = np.array([np.prod([stats.binom.pmf(k, n, q) for k, n, q in zip(a, ns, qs)])
                      for a in allocs])
    assert strata[1].weight == pytest.approx(joint.sum(), rel=1e-9)
    draws = [tuple(strata[1].draw_k()) for _ in range(6000)]
    obs = np.array([draws.count(a) for a in allocs])
    assert stats.chisquare(obs, joint / joint.sum() * len(draws)).pvalue > 1e-3
    assert all(sum(strata[-1].draw_k()) > len(strata) - 1 for _ in range(50))  # the tail


def _brute_force(model, stored, test, bers, reps, seed):
    """Per-bit Bernoulli flips of every layer at its own rate (O(bits) per realization)."""
    x, y = test.tensors()
    gen = torch.Generator().manual_seed(seed)
    parts = torch.split(stored.ints, stored.sizes)
    accs = []
    for _ in range(reps):
        ints = torch.cat([flip_bits_bernoulli_naive(pt, b, p, gen) if p > 0 else pt
                          for pt, b, p in zip(parts, stored.layer_bits, bers)])
        with stored.installed(stored.weights(ints)):
            accs.append(float(hit_rate(model, x, y)))
    a = np.array(accs)
    return a.mean(), a.std(ddof=1) / np.sqrt(len(a))


@pytest.mark.slow
@pytest.mark.parametrize("rates", [{"features.0": 4e-3, "fc": 2e-3},  # stratified
                                   {"features.3": 8e-3, "fc": 3e-2}])  # plain MC
def test_per_layer_mean_matches_brute_force_bernoulli(digits, trained, rates):
    model, _ = load_checkpoint(trained("normal"))
    test = digits[1]
    s = StoredWeights(model)
    est = estimate_accuracy(model, test, rates, max_realizations=200, ci_target=0.003, seed=1)
    assert est.estimator == ("stratified" if "features.0" in rates else "mc")
    ref, se = _brute_force(model, s, test, layer_bers(s.names, rates), 200, seed=2)
    assert est.mean < est.clean - 0.002  # the faults matter
    assert abs(est.mean - ref) < 3.5 * np.hypot(se, est.ci95 / 1.96), (est, ref, se)
