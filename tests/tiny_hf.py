"""The tiny Hugging Face models the attention tests route: 4-pixel patches of 1-channel images, 2 layers of
width 32 with 4 heads, 10 classes, eager attention (transformers' reference path)."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

TINY: dict[str, Any] = dict(
    patch_size=4,
    num_channels=1,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=64,
    num_labels=10,
)


def tiny_config(kind: str = "ViT", image_size: int = 32, **extra: Any) -> Any:
    """``transformers.<kind>Config`` of the tiny model (``extra`` on top)."""
    transformers = pytest.importorskip("transformers")
    return getattr(transformers, f"{kind}Config")(image_size=image_size, **TINY, **extra, attn_implementation="eager")


def hf_vit(image_size: int = 32, seed: int | None = None) -> nn.Module:
    """A tiny ``ViTForImageClassification`` in eval mode (initialised after ``torch.manual_seed(seed)``)."""
    transformers = pytest.importorskip("transformers")
    if seed is not None:
        torch.manual_seed(seed)
    return transformers.ViTForImageClassification(tiny_config(image_size=image_size)).eval()
