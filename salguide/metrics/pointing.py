"""Pointing game (Zhang et al., "Top-down Neural Attention by Excitation Backprop", ECCV 2016).

A hit when the saliency maximum lies in the ground-truth region, dilated by ``tolerance`` pixels
(a square neighbourhood here; the paper used a 15-pixel radius). Samples with an empty region are
skipped. Score = hits / (hits + misses).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import Metric

from salguide.inputs.masks import pixel_mask


def pointing_game_hits(saliency: Tensor, region: Tensor, tolerance: int = 0) -> tuple[Tensor, Tensor]:
    """``(hit [B] bool, valid [B] bool)`` for pixel maps [B, H, W]; ties go to the first maximum."""
    if saliency.ndim != 3:
        raise ValueError(f"saliency must be a pixel map [B, H, W], got shape {tuple(saliency.shape)}")
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    if saliency.numel() and not bool(torch.isfinite(saliency).all()):
        raise ValueError("saliency contains NaN or inf: its maximum is undefined")
    b, h, w = saliency.shape
    m = pixel_mask(region, b, (h, w), "pointing_game") > 0.5
    if tolerance:
        m = F.max_pool2d(m[:, None].float(), 2 * tolerance + 1, stride=1, padding=tolerance)[:, 0] > 0.5
    peak = saliency.reshape(b, -1).argmax(1)
    hit = m.reshape(b, -1).gather(1, peak[:, None]).squeeze(1)
    return hit, m.reshape(b, -1).any(1)


class PointingGame(Metric):
    """Pointing-game accuracy over all updates (higher is better)."""

    hits: Tensor  # metric states (add_state)
    count: Tensor  # metric states (add_state)

    full_state_update = False
    higher_is_better = True

    def __init__(self, tolerance: int = 0, **kwargs: object) -> None:
        super().__init__(**kwargs)
        if tolerance < 0:
            raise ValueError(f"tolerance must be >= 0, got {tolerance}")
        self.tolerance = int(tolerance)
        self.add_state("hits", default=torch.tensor(0), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0), dist_reduce_fx="sum")

    def update(self, saliency: Tensor, region: Tensor) -> None:
        hit, valid = pointing_game_hits(saliency, region, self.tolerance)
        self.hits += (hit & valid).sum().to(self.hits.device)
        self.count += valid.sum().to(self.count.device)

    def compute(self) -> Tensor:
        if int(self.count) == 0:
            raise ValueError(
                f"{type(self).__name__}: no sample was scored (update() was never called, or every region was empty)"
            )
        return self.hits.float() / self.count.clamp_min(1).float()
