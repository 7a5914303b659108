"""Models the benchmarks use: an MLP, a small CNN, and a CIFAR-style ResNet-18 with a width knob.

Each factory takes the input shape `(C, H, W)` or `(D,)` and the number of classes. Any other
`nn.Module` works through the Python API; these are only the built-in choices.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from unlearnkit.checkpoint import digest
from unlearnkit.registry import MODELS


@MODELS.register("mlp")
def mlp(in_shape: tuple[int, ...], num_classes: int, width: int = 128) -> nn.Module:
    """Two hidden layers of `width` units."""
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(in_shape), width), nn.ReLU(),
                         nn.Linear(width, width), nn.ReLU(), nn.Linear(width, num_classes))


@MODELS.register("cnn")
def small_cnn(in_shape: tuple[int, ...], num_classes: int, width: int = 32) -> nn.Module:
    """Two conv blocks (conv-BN-ReLU-pool) and a two-layer head."""
    c, h, w = in_shape
    return nn.Sequential(
        nn.Conv2d(c, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(2 * width * (h // 4) * (w // 4), 128), nn.ReLU(), nn.Linear(128, num_classes))


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet18(nn.Module):
    """ResNet-18, CIFAR variant: 3×3 stem, no max-pool; stage widths `width`·(1, 2, 4, 8)."""

    def __init__(self, in_channels: int = 3, num_classes: int = 10, width: int = 64) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        layers, cin = [], width
        for i, stride in enumerate((1, 2, 2, 2)):
            cout = width * 2**i
            layers.append(nn.Sequential(BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)))
            cin = cout
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


@MODELS.register("resnet18")
def resnet18(in_shape: tuple[int, ...], num_classes: int, width: int = 64) -> nn.Module:
    """ResNet-18, CIFAR variant (3x3 stem, no max-pool), stage widths width·(1, 2, 4, 8)."""
    return ResNet18(in_shape[0], num_classes, width)


def build_model(name: str, in_shape: tuple[int, ...], num_classes: int, **kwargs: int) -> nn.Module:
    return MODELS[name](in_shape, num_classes, **kwargs)


def device_of(model: nn.Module) -> torch.device:
    """The device of the model's first parameter."""
    return next(model.parameters()).device


def weights_fingerprint(model: nn.Module) -> str:
    """A short digest of a model's weights and buffers: which trained model this is."""
    return digest(*model.state_dict().values())


def num_outputs(model: nn.Module, example: torch.Tensor) -> int:
    """The size of the model's output on one example (checks a model fits a dataset)."""
    was = model.training
    model.eval()
    with torch.no_grad():
        out = model(example[:1].to(next(model.parameters()).device))
    model.train(was)
    return int(out.shape[-1])
