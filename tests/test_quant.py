import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from hwsim.models.errors import ConfigError
from hwsim.models.faults import flip_random_bits, to_unsigned
from hwsim.models.quant import (QConv2d, bfn_noise, create_quantizer, expected_mse, quant_layers,
                                quantize_model)


def test_roundtrip_and_clipping_eqs_3_4():
    q = create_quantizer("wcat", bits=4)
    q.a.data.fill_(0.7)
    scale = 0.7 / 7
    grid = torch.arange(-7, 8) * scale
    assert torch.allclose(q(grid), grid, atol=1e-6)  # representable values survive
    w = torch.tensor([-5.0, -0.7, -0.04, 0.06, 0.3, 0.71, 9.0])
    ints, s = q.integers(w)
    assert s == pytest.approx(scale)
    assert ints.tolist() == [-7, -7, 0, 1, 3, 7, 7]
    assert torch.allclose(q(w), ints.float() * scale)


def test_normal_uses_max_abs_and_never_clips():
    q = create_quantizer("normal", bits=8)
    w = torch.randn(1000)
    ints, s = q.integers(w)
    assert s == pytest.approx(float(w.abs().max()) / 127)
    assert int(ints.abs().max()) == 127
    assert float((q(w) - w).abs().max()) <= s / 2 + 1e-6


def test_wcat_range_gradient_eq5_scaled():
    q = create_quantizer("wcat", bits=4)
    q.a.data.fill_(1.0)
    w = torch.tensor([-3.0, -1.5, -0.2, 0.4, 1.2, 2.0, 0.9, -0.99], requires_grad=True)
    g = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0])
    (q(w) * g).sum().backward()
    # -1 below -a (entries 0, 1), +1 above a (entries 4, 5), 0 inside
    expected = (-1 * 1.0 - 1 * 2.0 + 5.0 + 6.0) / math.sqrt(8)
    assert float(q.a.grad) == pytest.approx(expected)
    assert torch.equal(w.grad, g)  # STE everywhere, inside and outside the range


def test_wcat_penalty_and_inits():
    torch.manual_seed(0)
    w = torch.randn(4000)
    w[0] = 12.0  # an outlier: max-abs init keeps it, MSE inits clip it
    q_max = create_quantizer("wcat", bits=4, init="max", weight_decay_a=0.5)
    q_max.init_from(w)
    assert float(q_max.a.detach()) == pytest.approx(12.0)
    assert float(q_max.penalty().detach()) == pytest.approx(0.25 * 144)
    q_mse = create_quantizer("wcat", bits=4, init="mse")
    q_mse.init_from(w)
    q_ber = create_quantizer("wcat", bits=4, init="ber_mse", init_ber=0.05)
    q_ber.init_from(w)
    a_mse, a_ber = float(q_mse.a.detach()), float(q_ber.a.detach())
    assert 1.0 < a_mse < 6.0
    assert a_ber < a_mse  # bit errors make large ranges costlier (errors scale with a)
    # the MSE optimum beats its neighbours on the objective it minimises
    assert expected_mse(w, a_mse, 4) <= expected_mse(w, 12.0, 4)
    assert expected_mse(w, a_ber, 4, 0.05) <= expected_mse(w, a_mse, 4, 0.05)


def test_expected_mse_under_bit_errors_matches_monte_carlo():
    from hwsim.models.faults import flip_random_bits
    torch.manual_seed(1)
    w = torch.randn(2000)
    a, bits, p = 2.0, 4, 0.05
    q = create_quantizer("wcat", bits=bits)
    q.a.data.fill_(a)
    ints, s = q.integers(w)
    rng = np.random.default_rng(0)
    mc = np.mean([float(((w - flip_random_bits(ints, bits, p, rng)[0].float() * s) ** 2).mean())
                  for _ in range(300)])
    assert expected_mse(w, a, bits, p) == pytest.approx(mc, rel=0.03)


def test_lsq_init_and_gradient_scale():
    torch.manual_seed(0)
    w = torch.randn(500)
    q = create_quantizer("lsq", bits=4)
    q.init_from(w)
    assert float(q.s.detach()) == pytest.approx(2 * float(w.abs().mean()) / math.sqrt(7))
    wq = w.clone().requires_grad_(True)
    q(wq).sum().backward()
    # d/ds of round(clip(w/s))*s is (round(v)-v) inside, +/-Qp outside; times 1/sqrt(N*Qp)
    v = (w / q.s.detach())
    inside = v.abs() <= 7
    raw = torch.where(inside, v.round() - v, torch.sign(v) * 7).sum()
    assert float(q.s.grad) == pytest.approx(float(raw) / math.sqrt(500 * 7), rel=1e-4)
    assert torch.equal(wq.grad, inside.float())


def test_plclip_ranges_on_hand_made_model():
    model = nn.Sequential(nn.Linear(2, 2, bias=False), nn.Linear(2, 2, bias=False))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[4.0, -1.0], [0.5, 0.2]]))
        model[1].weight.copy_(torch.tensor([[1.0, -2.0], [0.1, 0.3]]))
    quantize_model(model, "plclip", bits=4, c=0.1)
    a0, a1 = float(model[0].quantizer.a), float(model[1].quantizer.a)
    assert a0 == pytest.approx(0.1)             # largest layer: c * 4/4
    assert a1 == pytest.approx(0.1 * 2.0 / 4.0)  # c * 2/4
    assert model[0].weight.abs().max().item() == pytest.approx(0.1)
    assert model[1].weight.abs().max().item() == pytest.approx(0.05)
    assert model[1].weight[1, 0].item() == pytest.approx(0.05)  # 0.1 clipped to the range
    assert model[1].weight[1, 1].item() == pytest.approx(0.05)


def test_bfn_is_straight_through_and_noisy():
    torch.manual_seed(0)
    conv = nn.Sequential(nn.Conv2d(3, 8, 3, bias=False))
    quantize_model(conv, "wcat", bits=4, bfn_rate=0.2)
    layer = conv[0]
    assert isinstance(layer, QConv2d)
    layer.train()
    c = torch.randn_like(layer.weight)
    w1 = layer.effective_weight()
    (w1 * c).sum().backward()
    assert torch.equal(layer.weight.grad, c)  # dW~/dW = 1
    w2 = layer.effective_weight()
    assert not torch.equal(w1, w2)  # a fresh realization per forward
    layer.eval()
    assert torch.equal(layer.effective_weight(), layer.effective_weight())  # no noise in eval


def test_bfn_noise_host_draws_are_the_cpu_results_draws_and_device_draws_flip_bits():
    q = create_quantizer("wcat", bits=4)
    w = torch.randn(64, 32, 3, 3)
    q.init_from(w)
    ints, scale = q.integers(w)
    # host (the CPU default): the seed from torch's generator, then numpy's count and
    # positions, exactly as every committed CPU training drew them
    torch.manual_seed(7)
    seed = int(torch.randint(0, 2 ** 62, (1,)))
    flipped, k = flip_random_bits(ints, 4, 0.01, np.random.default_rng(seed))
    torch.manual_seed(7)
    assert torch.equal(bfn_noise(q, w, 0.01), (flipped - ints).float() * scale)
    # device (the GPU default, forced here): the same flip count, positions from a torch
    # generator; exactly k bits differ, each noise value a multiple of the scale
    torch.manual_seed(7)
    noise = bfn_noise(q, w, 0.01, where="device")
    stored = to_unsigned(ints.reshape(-1), 4)
    delta = torch.round(noise.reshape(-1) / scale).to(torch.int32)
    after = to_unsigned(delta + ints.reshape(-1), 4)
    assert sum(bin(int(x)).count("1") for x in stored ^ after) == k
    assert 0 < k < 0.02 * w.numel() * 4
    torch.manual_seed(7)
    assert torch.equal(bfn_noise(q, w, 0.01, where="device"), noise)  # seeded by torch


def test_bad_quantizer_settings_are_clean_errors():
    with pytest.raises(ConfigError, match="from 2 to 8"):
        create_quantizer("normal", bits=9)
    with pytest.raises(ConfigError, match="valid: lsq, normal, plclip, wcat"):
        create_quantizer("nope")
    with pytest.raises(ConfigError, match="init"):
        create_quantizer("wcat", init="zeros")
    with pytest.raises(ConfigError, match="bad parameter"):
        create_quantizer("lsq", c=0.1)


def test_quantize_model_wraps_every_conv_and_linear():
    from hwsim.models import create_model
    m = quantize_model(create_model("resnet20"), "normal", 4)
    names = [n for n, _ in quant_layers(m)]
    assert len(names) == 20 and names[0] == "conv1" and names[-1] == "fc"
