"""Layer extraction: shapes and MAC counts against independent hand counts."""
from __future__ import annotations

import pytest
from torch import nn

from hwsim.workload import LayerShape, extract_layers, total_macs
from hwsim.models.errors import ConfigError


def resnet_cifar_macs(depth: int, num_classes: int = 10) -> int:
    """Independent count for He et al.'s CIFAR ResNet (option A, 16/32/64 channels, 32x32):
    conv1 + per stage (n blocks of two 3x3 convs) + fc; shortcuts have no weights."""
    n = (depth - 2) // 6
    k = 9
    macs = 3 * 16 * k * 32 * 32                      # conv1
    macs += 2 * n * (16 * 16 * k * 32 * 32)          # stage 1: 2n convs 16->16 at 32x32
    macs += (16 * 32 * k * 16 * 16) + (2 * n - 1) * (32 * 32 * k * 16 * 16)  # stage 2
    macs += (32 * 64 * k * 8 * 8) + (2 * n - 1) * (64 * 64 * k * 8 * 8)      # stage 3
    macs += 64 * num_classes                         # fc
    return macs


def test_resnet_formula_is_the_known_number():
    assert resnet_cifar_macs(20) == 40_551_040  # the usual "40.55 M" for ResNet-20


@pytest.mark.parametrize("depth", [20, 32])
def test_resnet_macs_match_hand_count(depth):
    from hwsim.models import create_model
    model = create_model(f"resnet{depth}", num_classes=10)
    layers = extract_layers(model, (3, 32, 32), weight_bits=4)
    assert total_macs(layers) == resnet_cifar_macs(depth)
    n = (depth - 2) // 6
    assert len(layers) == 1 + 6 * n + 1
    assert layers[0].name == "conv1" and layers[-1].kind == "linear"
    assert all(layer.weight_bits == 4 and layer.act_bits == 8 for layer in layers)
    # the stride-2 stage entry: 16 -> 32 channels, 32x32 -> 16x16
    down = [layer for layer in layers if layer.stride == (2, 2)]
    assert [(d.in_channels, d.out_channels, d.input, d.output) for d in down] == [
        (16, 32, (32, 32), (16, 16)), (32, 64, (16, 16), (8, 8))]
    # resnet20 and resnet32 share the same 7 distinct shapes
    assert len({layer.key() for layer in layers}) == 7


def test_subclassed_layers_grouped_and_linear():
    class MyConv(nn.Conv2d):  # like a quantized conv
        pass

    class MyLinear(nn.Linear):
        pass

    net = nn.Sequential(MyConv(4, 8, 3, stride=2, padding=1, groups=2), nn.ReLU(),
                        MyConv(8, 8, 3, padding=1, groups=8), nn.Flatten(), MyLinear(8 * 5 * 5, 3))
    layers = extract_layers(net, (4, 10, 10), weight_bits=8)
    assert [layer.kind for layer in layers] == ["conv", "conv", "linear"]
    g2, dw, fc = layers
    assert (g2.groups, g2.output, g2.stride, g2.padding) == (2, (5, 5), (2, 2), (1, 1))
    assert g2.macs == 8 * (4 // 2) * 9 * 25
    assert dw.macs == 8 * 1 * 9 * 25
    assert fc.macs == 200 * 3 and fc.output == (1, 1)
    assert total_macs(layers) == sum(m.weight.numel() * (25 if m.weight.dim() == 4 else 1)
                                     for m in net if hasattr(m, "weight"))


def test_key_is_stable_and_ignores_the_name():
    a = LayerShape("a", "conv", 16, 16, (3, 3), (32, 32), (32, 32), (1, 1), (1, 1))
    b = LayerShape("b", "conv", 16, 16, (3, 3), (32, 32), (32, 32), (1, 1), (1, 1))
    c = LayerShape("a", "conv", 16, 16, (3, 3), (32, 32), (32, 32), (1, 1), (1, 1),
                   weight_bits=4)
    assert a.key() == b.key() != c.key()
    assert a.key() == "conv:C16:M16:R3x3:P32x32:H32x32:st1x1:pad1x1:g1:wb8:ab8"
    assert LayerShape.from_dict(a.to_dict()) == a


def test_bad_shapes_are_config_errors():
    with pytest.raises(ConfigError, match="groups"):
        LayerShape("x", "conv", 6, 4, (3, 3), (4, 4), (4, 4), groups=4)
    with pytest.raises(ConfigError, match="kind"):
        LayerShape("x", "pool", 6, 4, (3, 3), (4, 4), (4, 4))
    with pytest.raises(ConfigError, match="no nn.Conv2d"):
        extract_layers(nn.Sequential(nn.ReLU()), (1, 4, 4))
