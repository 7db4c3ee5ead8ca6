"""Protection fault models (models/protection.py): (72,64) Hsiao SECDED and MSB-K."""
import itertools

import numpy as np
import pytest
import torch
from scipy import stats

from hwsim.models.errors import ConfigError
from hwsim.models.estimate import estimate_accuracy
from hwsim.models.evaluate import StoredWeights, evaluate_under_bit_errors
from hwsim.models.faultplan import FaultPlan
from hwsim.models.faults import PositionSampler, sample_positions
from hwsim.models.networks import create_model
from hwsim.models.protection import (H_COLUMNS, WORD_BITS, Protection, _Words, decode,
                                     encode)
from hwsim.models.quant import quantize_model


def _net(layer_bits=None, bits=4):
    torch.manual_seed(0)
    return quantize_model(create_model("small_cnn", in_channels=1), "normal", bits=bits,
                          layer_bits=layer_bits)


def test_parse_and_errors():
    assert Protection.parse(None).name == "none" and Protection.parse("secded").name == "secded"
    assert Protection.parse("msb:2") == Protection("msb", 2)
    for bad in ("msb:0", "msb:x", "msb:", "ecc", "SECDED", 3):
        with pytest.raises(ConfigError, match="valid: none, secded .*msb:K"):
            Protection.parse(bad)
    assert Protection.parse("secded").stored_bits(65) == 144


def test_code_is_hsiao_and_every_single_error_corrected_every_double_detected():
    cols = [int(c) for c in H_COLUMNS]
    assert len(set(cols)) == WORD_BITS and all(bin(c).count("1") % 2 for c in cols)
    rows = [sum((c >> r) & 1 for c in cols[:64]) for r in range(8)]
    assert rows == [26] * 8  # row-balanced
    rng = np.random.default_rng(0)
    data = rng.integers(0, 2, 64, dtype=np.uint8)
    word = encode(data)
    got, flag = decode(word)
    assert np.array_equal(got, data) and not flag
    singles = np.repeat(word[None], WORD_BITS, 0) ^ np.eye(WORD_BITS, dtype=np.uint8)
    got, flag = decode(singles)
    assert np.array_equal(got, np.repeat(data[None], WORD_BITS, 0)) and not flag.any()
    pairs = list(itertools.combinations(range(WORD_BITS), 2))
    doubles = np.repeat(word[None], len(pairs), 0)
    for n, (a, b) in enumerate(pairs):
        doubles[n, [a, b]] ^= 1
    got, flag = decode(doubles)
    assert flag.all()  # 2556 doubles: all detected, none "corrected"
    assert np.array_equal(got, doubles[:, :64])


def _brute_force_words(n, p, rng):
    """Random 64-bit data words: real encoder, per-bit Bernoulli(p) on all 72 bits, real
    decoder; returns residual data errors per word."""
    data = rng.integers(0, 2, (n, 64), dtype=np.uint8)
    raw = (rng.random((n, WORD_BITS)) < p).astype(np.uint8)
    got, _ = decode(encode(data) ^ raw)
    return (got != data).sum(1)


def _model_words(n, p, rng):
    """The SECDED fault model on a layer of n full words (16 4-bit weights each)."""
    g = _Words(0, 0, 16 * n, 4, p)
    m = int(rng.binomial(g.n, g.q))
    pos = g.realize(sample_positions(g.n, m, rng), rng)
    return np.bincount(pos // 64, minlength=n)


@pytest.mark.parametrize("p", [0.01, 0.04])
def test_secded_residual_model_matches_brute_force_words(p):
    rng = np.random.default_rng(1)
    n = 60_000
    brute, model = _brute_force_words(n, p, rng), _model_words(n, p, rng)
    cats = np.arange(6)  # residual data errors per word 0..4, 5+
    table = np.array([[np.sum(np.minimum(x, 5) == c) for c in cats] for x in (brute, model)])
    table = table[:, table.min(0) > 0]
    assert stats.chi2_contingency(table).pvalue > 1e-3, table
    exact = Protection.parse("secded").residual_ber(p)
    for x in (brute, model):
        rate = x.sum() / (64 * n)
        se = x.std() / np.sqrt(n) / 64
        assert abs(rate - exact) < 4 * se, (rate, exact, se)
    assert (model >= 4).any()  # 3 raw errors miscorrected into 4 appear


def test_residual_ber_formula():
    sec = Protection.parse("secded")
    # small p: a data bit stays wrong iff it and one of the 71 others err: ~ 71 p^2
    assert sec.residual_ber(1e-5) == pytest.approx(71e-10, rel=1e-3)
    assert sec.residual_ber(0.0) == 0.0 and Protection.parse("none").residual_ber(0.01) == 0.01
    assert Protection.parse("msb:2").residual_ber(0.01, bits=4) == pytest.approx(0.005)
    with pytest.raises(ConfigError, match="weight width"):
        Protection.parse("msb:2").residual_ber(0.01)


def test_secded_packing_padding_and_partial_last_word():
    g = _Words(0, 100, 25, 5, 0.01)  # 12 5-bit weights per word, 4 pad columns; 3 words
    assert (g.per_word, g.n) == (12, 3)
    res = np.zeros((3, 72), np.uint8)
    res[0, [0, 7, 60, 63, 70]] = 1  # weight 0 bit 0, weight 1 bit 2, pads, a check bit
    res[2, [4, 5]] = 1  # word 2 holds weight 24 (columns 0-4) only: bit 4 kept, col 5 dropped
    pos = g.to_positions(np.array([0, 1, 2]), res)
    assert pos.tolist() == [100 + 0, 100 + 1 * 5 + 2, 100 + 24 * 5 + 4]
    # expected flips over used columns only, checked against realizations
    rng = np.random.default_rng(2)
    g = _Words(0, 0, 25, 5, 0.05)
    flips = [len(g.realize(sample_positions(g.n, int(rng.binomial(g.n, g.q)), rng), rng))
             for _ in range(5_000)]
    assert abs(np.mean(flips) - g.expected_flips()) < 4 * np.std(flips) / np.sqrt(len(flips))


def test_msb_k_never_flips_top_bits_on_the_integers():
    s = StoredWeights(_net({"features.0": 8}))  # widths 8, 4, 4, 4
    plan = FaultPlan(s, 0.3, "msb:2")
    rng = np.random.default_rng(0)
    sampler = PositionSampler(s.n_bits, rng, 0, "cpu")
    diff_low, total_low = 0, 0
    for _ in range(5):
        flipped = torch.cat([w.reshape(-1) for w in s.flipped(
            plan.positions(plan.draw_counts(rng), sampler, rng))])
        start = 0
        for w_clean, size, b, scale in zip(torch.split(s.ints, s.sizes), s.sizes,
                                           s.layer_bits, s.scales):
            f = torch.round(flipped[start:start + size] / scale).to(torch.int64)
            x = (w_clean.to(torch.int64) % (1 << b)) ^ (f % (1 << b))
            assert int((x >> (b - 2)).abs().sum()) == 0  # top 2 bits never differ
            diff_low += sum(int(((x >> j) & 1).sum()) for j in range(b - 2))
            total_low += size * (b - 2)
            start += size
    assert abs(diff_low / total_low - 0.3) < 0.01
    assert plan.expected_flips() == pytest.approx(
        0.3 * sum(n * (b - 2) for n, b in zip(s.sizes, s.layer_bits)))


def test_none_protection_is_the_default_bit_for_bit(digits):
    model = _net()
    a = evaluate_under_bit_errors(model, digits[1], 2e-3, realizations=3, seed=5)
    b = evaluate_under_bit_errors(model, digits[1], 2e-3, realizations=3, seed=5,
                                  protection="none")
    assert a.accuracies == b.accuracies and a.flips == b.flips


def test_secded_estimates_clean_when_no_word_has_two_errors(digits):
    model = _net()
    s = StoredWeights(model)
    est = estimate_accuracy(model, digits[1], 1e-7, protection="secded", stored=s)
    assert est.estimator == "bound" and est.mean == est.clean
    words = s.n_bits // 64
    assert est.ci95 == pytest.approx(words * stats.binom.sf(1, 72, 1e-7), rel=1e-6)
    # at 1e-3 the plain memory sees ~n_bits/1000 flips, SECDED ~0.07 of them
    plain = FaultPlan(s, 1e-3).expected_flips()
    sec = FaultPlan(s, 1e-3, "secded").expected_flips()
    assert 0.02 * plain < sec < 0.1 * plain


def test_device_sampler_path_with_layers_and_protection(digits):
    """sampler='device' (forced on the CPU: torch positions) works with per-layer rates and
    every protection, and keeps flips inside the named layer."""
    model = _net()
    s = StoredWeights(model)
    for prot in ("none", "msb:1", "secded"):
        r = evaluate_under_bit_errors(model, digits[1], {"features.3": 0.05}, realizations=2,
                                      seed=1, sampler="device", protection=prot)
        assert all(f > 0 for f in r.flips), prot
    plan = FaultPlan(s, {"fc": 0.2}, "msb:1")
    rng = np.random.default_rng(0)
    pos = plan.positions(plan.draw_counts(rng), PositionSampler(s.n_bits, rng, 0, "cpu",
                                                                "device"), rng)
    start = int(s.widths.bit_starts[3])
    assert isinstance(pos, torch.Tensor) and bool(((pos >= start) & ((pos - start) % 4 < 3)).all())
