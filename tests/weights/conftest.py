"""Tiny model and forget loader shared by the weight-saliency tests."""

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


class TinyNet(nn.Module):
    """Conv + BatchNorm + Dropout (so eval and train gradients differ), a frozen and an unused layer."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3, padding=1)
        self.bn = nn.BatchNorm2d(3)
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(3 * 4 * 4, 5)
        self.unused = nn.Linear(2, 2)
        self.conv.bias.requires_grad_(False)

    def forward(self, x):
        return self.fc(self.drop(torch.relu(self.bn(self.conv(x)))).flatten(1))


@pytest.fixture
def model():
    torch.manual_seed(0)
    net = TinyNet()
    with torch.no_grad():  # non-trivial running statistics, so eval-mode BatchNorm differs from train
        net.bn.running_mean.uniform_(-0.5, 0.5)
        net.bn.running_var.uniform_(0.5, 2.0)
    return net


@pytest.fixture
def data():
    gen = torch.Generator().manual_seed(1)
    return torch.randn(20, 1, 4, 4, generator=gen), torch.randint(0, 5, (20,), generator=gen)


@pytest.fixture
def loader(data):
    return DataLoader(TensorDataset(*data), batch_size=8)  # batches of 8, 8, 4
