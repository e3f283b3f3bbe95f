"""A small convolutional classifier for 8x8 digits and other tiny images."""

from __future__ import annotations

import torch
from torch import nn


def conv_bn_relu(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    """3x3 convolution (no bias) + batch norm + ReLU."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)
    )


class SmallCNN(nn.Module):
    """Four conv-BN-ReLU layers (``width``, ``width``, then ``2*width`` at stride 2), global average pool, linear."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, width: int = 32) -> None:
        super().__init__()
        for name, value in (("num_classes", num_classes), ("in_channels", in_channels), ("width", width)):
            if int(value) < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        self.in_channels = in_channels
        self.features = nn.Sequential(
            conv_bn_relu(in_channels, width),
            conv_bn_relu(width, width),
            conv_bn_relu(width, 2 * width, stride=2),
            conv_bn_relu(2 * width, 2 * width),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.in_channels)
        return self.fc(self.pool(self.features(x)).flatten(1))


def check_input(x: torch.Tensor, in_channels: int) -> None:
    """Raise a ``ValueError`` unless ``x`` is an image batch [B, in_channels, H, W]."""
    if x.ndim != 4 or x.shape[1] != in_channels:
        raise ValueError(f"expected images of shape [B, {in_channels}, H, W], got {tuple(x.shape)}")
