"""A multilayer perceptron on flattened images (the network of Ross et al.'s DecoyMNIST experiments, IJCAI 2017)."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn


def mlp(in_features: int, hidden: Sequence[int] = (50, 50), num_classes: int = 10) -> nn.Sequential:
    """``Flatten`` then ``Linear`` + ``ReLU`` per hidden width, then a linear layer to ``num_classes`` logits."""
    widths = [int(in_features), *(int(h) for h in hidden)]
    if min(widths) < 1 or int(num_classes) < 1:
        raise ValueError(
            f"mlp sizes must be >= 1, got in_features={in_features}, hidden={list(hidden)}, num_classes={num_classes}"
        )
    layers: list[nn.Module] = [nn.Flatten()]
    for w_in, w_out in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(w_in, w_out), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(widths[-1], int(num_classes)))
