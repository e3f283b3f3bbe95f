"""Models (no torchvision, no timm): a small CNN, ResNet-18, ViTs with timm's attribute layout whose
attention runs through ``salguide.kernels``, and the ClassifierModule that trains them."""

from __future__ import annotations

from .classifier import ClassifierModule
from .cnn import SmallCNN
from .mlp import mlp
from .optim import cosine, sgd
from .resnet import ResNet, resnet18
from .vit import VisionTransformer, vit_digits, vit_small_patch16

__all__ = [
    "ClassifierModule",
    "ResNet",
    "SmallCNN",
    "VisionTransformer",
    "cosine",
    "mlp",
    "resnet18",
    "sgd",
    "vit_digits",
    "vit_small_patch16",
]
