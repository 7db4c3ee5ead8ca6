"""Network registry: create_model(name, num_classes, in_channels).

ResNet-20/32/44/56 follow He et al. 2016's CIFAR design (3 stages of 16/32/64 channels,
n = (depth-2)/6 basic blocks each) with option-A shortcuts: identity, and at stride-2
stage changes a parameter-free subsample + zero channel padding. So every weight the
accelerator stores is a conv or the final linear layer.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .errors import ConfigError
from .registry import Registry

NETWORKS: Registry = Registry("network")


class _ShortcutA(nn.Module):
    def __init__(self, planes: int):
        super().__init__()
        self.pad = planes // 4

    def forward(self, x):
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))


class BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = (_ShortcutA(planes) if stride != 1 or in_planes != planes
                         else nn.Identity())

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    input_shape = (3, 32, 32)
    depth = 20

    def __init__(self, num_classes: int = 10, in_channels: int = 3):
        super().__init__()
        n = (self.depth - 2) // 6
        self.conv1 = nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        layers, in_planes = [], 16
        for planes, stride in ((16, 1), (32, 2), (64, 2)):
            for i in range(n):
                layers.append(BasicBlock(in_planes, planes, stride if i == 0 else 1))
                in_planes = planes
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layers(x)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


for _depth in (20, 32, 44, 56):  # resnet20 ... resnet56: the class differs only in depth
    NETWORKS.register(f"resnet{_depth}")(type(f"ResNet{_depth}", (CifarResNet,), {
        "depth": _depth, "__doc__": f"ResNet-{_depth} for 32x32 inputs, option-A shortcuts."}))


@NETWORKS.register("small_cnn")
class SmallCNN(nn.Module):
    """Digits default: three 3x3 convs (16, 32, 32 channels) with batch-norm, one max-pool,
    global average pool, linear classifier; ~14k weights."""
    input_shape = (1, 8, 8)

    def __init__(self, num_classes: int = 10, in_channels: int = 1):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU())
        self.fc = nn.Linear(32, num_classes)

    def forward(self, x):
        x = self.features(x)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


@NETWORKS.register("mlp")
class MLP(nn.Module):
    """The paper's App. A toy: one hidden layer of 100 ReLU units."""
    input_shape = (1, 8, 8)

    def __init__(self, num_classes: int = 10, in_channels: int = 1, image_size: int = 8,
                 hidden: int = 100):
        super().__init__()
        self.input_shape = (in_channels, image_size, image_size)
        self.fc1 = nn.Linear(in_channels * image_size * image_size, hidden)
        self.fc2 = nn.Linear(hidden, num_classes)

    def forward(self, x):
        return self.fc2(F.relu(self.fc1(torch.flatten(x, 1))))


@NETWORKS.register("resnet18")
class ResNet18(nn.Module):
    """torchvision's ResNet-18 definition, random init (no pretrained download)."""
    input_shape = (3, 224, 224)

    def __init__(self, num_classes: int = 1000, in_channels: int = 3):
        super().__init__()
        import torchvision
        self.net = torchvision.models.resnet18(weights=None, num_classes=num_classes)
        if in_channels != 3:
            self.net.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)

    def forward(self, x):
        return self.net(x)


def create_model(name: str, num_classes: int = 10, in_channels: int | None = None,
                 **kwargs) -> nn.Module:
    cls = NETWORKS.get(name)
    if in_channels is None:
        in_channels = cls.input_shape[0]
    return cls(num_classes=num_classes, in_channels=in_channels, **kwargs)


def input_shape(name_or_model) -> tuple[int, int, int]:
    """(C, H, W) a network expects; for a name, its registered default."""
    if isinstance(name_or_model, str):
        return tuple(NETWORKS.get(name_or_model).input_shape)
    shape = getattr(name_or_model, "input_shape", None)
    if shape is None:
        raise ConfigError(f"{type(name_or_model).__name__} has no input_shape: set "
                          "model.input_shape = (C, H, W) or pass the input shape")
    return tuple(shape)
