"""Per-token target maps for attention losses: pixel masks pooled onto the patch grid, and Gaussian
targets from points or boxes (the V2P-style targets of the issue: a Gaussian bump at the annotated
location, its width set by the box size). Token 0 is the class token (weight ``cls_weight``)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from salguide._checks import as_finite


def _pair(v: Any) -> tuple[int, int]:
    """An int or a (height, width) pair as (int, int)."""
    return (int(v[0]), int(v[1])) if isinstance(v, (tuple, list)) else (int(v), int(v))


def _geometry(model: Any) -> tuple[tuple[int, int], tuple[int, int]] | None:
    """(patch size, configured grid) of a timm-layout (``patch_embed``) or Hugging Face (``config``) ViT."""
    pe: Any = getattr(model, "patch_embed", None)
    if getattr(pe, "grid_size", None) is not None and getattr(pe, "patch_size", None) is not None:
        return _pair(pe.patch_size), _pair(pe.grid_size)
    cfg = getattr(model, "config", None)
    if cfg is not None and hasattr(cfg, "image_size") and hasattr(cfg, "patch_size"):
        patch, size = _pair(cfg.patch_size), _pair(cfg.image_size)
        return patch, (size[0] // patch[0], size[1] // patch[1])
    return None


def token_grid(model: Any, x: Tensor | None = None) -> tuple[int, int]:
    """The patch grid (rows, cols) of a timm-layout or Hugging Face ViT for the input ``x`` [B, C, H, W]:
    (H // patch, W // patch). Without ``x``: the grid of the routed model's latest forward input (so
    ``interpolate_pos_encoding`` / dynamic image sizes are followed), else the configured image size
    (an int or a (height, width) pair)."""
    owners = [model] + [m for m in getattr(model, "modules", lambda: [])() if m is not model]
    found = next((g for g in map(_geometry, owners) if g is not None), None)
    if found is None:
        raise ValueError(f"cannot find the patch grid of {type(model).__name__} (no patch_embed.grid_size or config)")
    patch, grid = found
    size = (
        tuple(x.shape[-2:]) if x is not None else getattr(getattr(model, "salguide_router", None), "input_size", None)
    )
    if size is None:
        return grid
    if size[0] % patch[0] or size[1] % patch[1]:
        raise ValueError(f"an input of {size[0]}x{size[1]} pixels does not tile {patch[0]}x{patch[1]} patches")
    return size[0] // patch[0], size[1] // patch[1]


def with_cls(patch_weights: Tensor, cls_weight: float = 0.0) -> Tensor:
    """Prepend the class token's weight: [B, P] -> [B, 1 + P]."""
    return torch.cat([patch_weights.new_full((patch_weights.shape[0], 1), cls_weight), patch_weights], 1)


def token_target(mask: Tensor, grid: tuple[int, int], cls_weight: float = 0.0) -> Tensor:
    """Share of each patch covered by a pixel mask [B, H, W] or [B, 1, H, W] in [0, 1] -> [B, 1 + gh*gw]."""
    if mask.dim() == 4 and mask.shape[1] == 1:
        mask = mask[:, 0]
    if mask.dim() != 3:
        raise ValueError(f"target mask must have shape [B, H, W] or [B, 1, H, W], got {tuple(mask.shape)}")
    gh, gw = grid
    H, W = mask.shape[-2:]
    if H % gh or W % gw:
        raise ValueError(f"target mask of size {H}x{W} does not tile the {gh}x{gw} patch grid")
    pooled = F.avg_pool2d(mask[:, None].float(), (H // gh, W // gw))[:, 0]
    return with_cls(pooled.flatten(1), cls_weight).clamp(0, 1)


def gaussian_from_points(points: Tensor, grid: tuple[int, int], sigma: float | Tensor = 0.1) -> Tensor:
    """exp(-|c - p|^2 / 2 sigma^2) at patch centres c for points [B, 2] = (y, x) in [0, 1]; sigma in units of
    the image side ([B, 2] per axis, or a number). Returns [B, gh*gw] in (0, 1] (peak 1 at the point)."""
    if points.dim() != 2 or points.shape[1] != 2:
        raise ValueError(f"points must have shape [B, 2] (y, x in [0, 1]), got {tuple(points.shape)}")
    gh, gw = grid
    cy = (torch.arange(gh, device=points.device, dtype=torch.float32) + 0.5) / gh
    cx = (torch.arange(gw, device=points.device, dtype=torch.float32) + 0.5) / gw
    sig = torch.as_tensor(sigma, dtype=torch.float32, device=points.device).expand(points.shape[0], 2)
    if not bool(((sig > 0) & torch.isfinite(sig)).all()):
        raise ValueError(f"sigma must be finite and > 0, got {sigma!r}")
    dy = (cy[None, :] - points[:, :1].float()) / sig[:, :1]  # [B, gh]
    dx = (cx[None, :] - points[:, 1:].float()) / sig[:, 1:]  # [B, gw]
    return torch.exp(-0.5 * (dy[:, :, None] ** 2 + dx[:, None, :] ** 2)).flatten(1)


def gaussian_from_boxes(boxes: Tensor, grid: tuple[int, int], width: float = 0.5) -> Tensor:
    """Gaussian targets for boxes [B, 4] = (y0, x0, y1, x1) in [0, 1]: centred on the box, sigma = width x
    half the box side per axis. Returns [B, gh*gw]."""
    if boxes.dim() != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must have shape [B, 4] (y0, x0, y1, x1 in [0, 1]), got {tuple(boxes.shape)}")
    size = boxes[:, 2:] - boxes[:, :2]
    if (size <= 0).any():
        raise ValueError("boxes must have y1 > y0 and x1 > x0")
    as_finite(width, "width", positive=True)
    return gaussian_from_points((boxes[:, :2] + boxes[:, 2:]) / 2, grid, (width * size / 2).clamp_min(1e-3))


def mask_boxes(mask: Tensor) -> Tensor:
    """Bounding boxes [B, 4] (y0, x0, y1, x1 in [0, 1]) of pixel masks [B, (1,) H, W]; empty masks get the
    whole image."""
    if not isinstance(mask, Tensor) or mask.dim() not in (3, 4) or (mask.dim() == 4 and mask.shape[1] != 1):
        raise ValueError(
            f"mask_boxes needs pixel masks [B, H, W] or [B, 1, H, W], got {getattr(mask, 'shape', mask)!r}"
        )
    m = mask[:, 0] if mask.dim() == 4 else mask
    H, W = m.shape[-2:]
    rows, cols = m.flatten(2).amax(2) > 0, m.amax(1) > 0  # [B, H], [B, W]

    def span(any_: Tensor, n: int) -> tuple[Tensor, Tensor]:
        idx = torch.arange(n, device=m.device).expand_as(any_)
        lo = torch.where(any_, idx, n).amin(1)
        hi = torch.where(any_, idx + 1, 0).amax(1)
        empty = ~any_.any(1)
        return torch.where(empty, 0, lo).float() / n, torch.where(empty, n, hi).float() / n

    y0, y1 = span(rows, H)
    x0, x1 = span(cols, W)
    return torch.stack([y0, x0, y1, x1], 1)
