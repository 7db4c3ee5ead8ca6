import numpy as np
import pytest
import torch
from scipy import stats

from hwsim.models.faults import (flip_bits_bernoulli_naive, flip_positions, flip_random_bits,
                           from_unsigned, sample_positions, to_unsigned)


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_p1_gives_bitwise_not_and_p0_nothing(bits):
    q = (1 << (bits - 1)) - 1
    ints = torch.arange(-q, q + 1, dtype=torch.int16)
    rng = np.random.default_rng(0)
    flipped, k = flip_random_bits(ints, bits, 1.0, rng)
    assert k == ints.numel() * bits
    assert torch.equal(flipped, (~ints).to(torch.int16))  # NOT x = -x-1 in two's complement
    same, k0 = flip_random_bits(ints, bits, 0.0, rng)
    assert k0 == 0 and torch.equal(same, ints)


def test_flip_can_reach_most_negative_value():
    # 0111 (7) with its sign bit flipped is 1111 (-1); 0000 -> 1000 is -8 = -2^(b-1)
    out = flip_positions(torch.tensor([0], dtype=torch.int16), 4, np.array([3]))
    assert int(out[0]) == -8


def test_twos_complement_roundtrip():
    x = torch.arange(-8, 8)
    assert torch.equal(to_unsigned(x, 4), torch.tensor(list(range(8, 16)) + list(range(8))))
    assert torch.equal(from_unsigned(to_unsigned(x, 4), 4), x.to(torch.int32))


def test_flip_rate_and_uniform_positions():
    bits, p = 8, 1e-2
    ints = torch.zeros(256_000, dtype=torch.int16)  # 2.05e6 bits
    rng = np.random.default_rng(1)
    n = ints.numel() * bits
    flipped, k = flip_random_bits(ints, bits, p, rng)
    sigma = np.sqrt(n * p * (1 - p))
    assert abs(k - n * p) < 4 * sigma
    u = to_unsigned(flipped, bits)
    per_bit = torch.stack([((u >> j) & 1).sum() for j in range(bits)]).numpy()
    assert per_bit.sum() == k  # each sampled position flipped exactly once
    # bit positions within a word are uniform
    assert stats.chisquare(per_bit).pvalue > 1e-3
    # and positions across the tensor are uniform (64 equal blocks)
    hits = (u != 0).reshape(64, -1).sum(1).numpy()
    assert stats.chisquare(hits).pvalue > 1e-3


def test_positions_independent_like_bernoulli():
    """Pairs of positions: P(both flipped) ~ p^2, as under independent Bernoulli draws,
    and the count distribution matches the naive per-bit sampler's."""
    bits, p, trials = 4, 0.2, 20_000
    ints = torch.zeros(2, dtype=torch.int16)  # 8 bits
    rng = np.random.default_rng(2)
    both = first = 0
    counts = []
    for _ in range(trials):
        f, k = flip_random_bits(ints, bits, p, rng)
        u = to_unsigned(f, bits)
        b0, b5 = int(u[0]) & 1, (int(u[1]) >> 1) & 1
        first += b0
        both += b0 & b5
        counts.append(k)
    assert abs(first / trials - p) < 4 * np.sqrt(p * (1 - p) / trials)
    assert abs(both / trials - p * p) < 4 * np.sqrt(p * p * (1 - p * p) / trials)
    gen = torch.Generator().manual_seed(0)
    popcount = lambda u: int(sum(((u >> j) & 1).sum() for j in range(bits)))
    naive = [popcount(to_unsigned(flip_bits_bernoulli_naive(ints, bits, p, gen), bits))
             for _ in range(5000)]
    assert stats.ks_2samp(counts, naive).pvalue > 1e-3


def test_sample_positions_distinct():
    rng = np.random.default_rng(3)
    pos = sample_positions(10_000, 5_000, rng)
    assert len(np.unique(pos)) == 5_000 and pos.min() >= 0 and pos.max() < 10_000
