"""ResNet-18 without torchvision (He et al., "Deep Residual Learning for Image Recognition", CVPR 2016)."""

from __future__ import annotations

import torch
from torch import nn

from salguide.models.cnn import check_input


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with an identity or 1x1 conv-BN projection shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet(nn.Module):
    """ResNet of BasicBlocks; ``small_input`` uses a 3x3 stride-1 stem without max-pool (CIFAR variant)."""

    def __init__(
        self, blocks: tuple[int, ...], num_classes: int = 10, in_channels: int = 3, small_input: bool = True
    ) -> None:
        super().__init__()
        if int(num_classes) < 1 or int(in_channels) < 1:
            raise ValueError(f"num_classes and in_channels must be >= 1, got {num_classes}, {in_channels}")
        self.in_channels = in_channels
        if small_input:
            stem = [nn.Conv2d(in_channels, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True)]
        else:
            stem = [
                nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False),
                nn.BatchNorm2d(64),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(3, stride=2, padding=1),
            ]
        self.stem = nn.Sequential(*stem)
        stages, c_in = [], 64
        for i, n in enumerate(blocks):
            c_out = 64 * 2**i
            first = BasicBlock(c_in, c_out, stride=2 if i else 1)
            stages.append(nn.Sequential(first, *(BasicBlock(c_out, c_out) for _ in range(n - 1))))
            c_in = c_out
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.in_channels)
        x = self.layer4(self.layer3(self.layer2(self.layer1(self.stem(x)))))
        return self.fc(self.pool(x).flatten(1))


def resnet18(num_classes: int = 10, in_channels: int = 3, small_input: bool = True) -> ResNet:
    """ResNet-18: BasicBlock stages [2, 2, 2, 2] with 64-128-256-512 channels."""
    return ResNet((2, 2, 2, 2), num_classes=num_classes, in_channels=in_channels, small_input=small_input)
