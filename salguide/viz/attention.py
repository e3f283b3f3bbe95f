"""Attention maps and kept-token overlays (PNG via :func:`plot_saliency_overlays`)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from .saliency import plot_saliency_overlays


def tokens_to_image(values: Tensor, positions: Tensor | None, grid: tuple[int, int], size: tuple[int, int]) -> Tensor:
    """Per-token values [B, N] (token 0 = CLS) -> pixel maps [B, H, W]: each patch gets its token's value,
    patches whose token was dropped or merged away get 0 (fused tokens are not drawn)."""
    B, N = values.shape
    gh, gw = grid
    patches = torch.zeros(B, gh * gw + 1, dtype=values.dtype, device=values.device)
    pos = torch.arange(N, device=values.device).expand(B, N) if positions is None else positions
    valid = pos >= 0
    patches.scatter_(1, torch.where(valid, pos, 0), torch.where(valid, values, torch.zeros_like(values)))
    maps = patches[:, 1:].view(B, 1, gh, gw)
    return F.interpolate(maps, size=size, mode="nearest")[:, 0]


def kept_tokens_map(positions: Tensor | None, grid: tuple[int, int], size: tuple[int, int], batch: int) -> Tensor:
    """1 where a patch's own token is still present, 0 where it was pruned or merged away, [B, H, W]."""
    if positions is None:
        return torch.ones(batch, *size)
    return tokens_to_image(torch.ones(positions.shape, dtype=torch.float32), positions.cpu(), grid, size)


def plot_attention_maps(
    images: Tensor,
    maps: Mapping[str, Tensor],
    path: str | os.PathLike,
    labels: Sequence[int] | None = None,
    preds: Sequence[int] | None = None,
    title: str | None = None,
) -> Path:
    """Images and one overlay row per map ([B, H, W] each, e.g. CLS attention per layer, kept tokens)."""
    return plot_saliency_overlays(images, maps, path, labels=labels, preds=preds, title=title)
