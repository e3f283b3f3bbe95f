"""Models (no torchvision, no timm): a small CNN, ResNet-18, ViTs with timm's attribute layout whose
attention runs through ``salguide.kernels``, and the ClassifierModule that trains them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from .classifier import ClassifierModule
from .cnn import SmallCNN
from .resnet import ResNet, resnet18
from .vit import VisionTransformer, vit_digits, vit_small_patch16

MODELS: dict[str, Callable[..., nn.Module]] = {
    "small_cnn": SmallCNN,
    "resnet18": resnet18,
    "vit_digits": vit_digits,
    "vit_small_patch16": vit_small_patch16,
}


def build_model(name: str, **kwargs: Any) -> nn.Module:
    """Build the model registered as ``name`` (see ``MODELS``) with keyword arguments ``kwargs``."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; valid names: {sorted(MODELS)}")
    return MODELS[name](**kwargs)


__all__ = [
    "MODELS",
    "ClassifierModule",
    "ResNet",
    "SmallCNN",
    "VisionTransformer",
    "build_model",
    "resnet18",
    "vit_digits",
    "vit_small_patch16",
]
