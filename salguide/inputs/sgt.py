"""Saliency-guided training (SGT).

Ismail, Corrada Bravo & Feizi, "Improving Deep Learning Interpretability by Saliency Guided Training",
NeurIPS 2021: mask the k % input features of lowest saliency |d f_y / d x| by random values from the
input range, and add lambda * KL(softmax f(x) || softmax f(x_masked)) to the task loss. The masking
saliency is not differentiated through (no double backward).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from ._common import Model
from ._loss import InputLoss
from .gradients import gradient_from_logits


def mask_lowest(x: Tensor, saliency: Tensor, fraction: float, *, generator: torch.Generator | None = None) -> Tensor:
    """Copy of ``x`` (detached) whose ``floor(fraction * D)`` lowest-saliency features per sample (D =
    features per sample) are replaced by uniform random values in that sample's [min, max]."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"mask_lowest: fraction must lie in [0, 1], got {fraction}")
    if saliency.shape != x.shape:
        raise ValueError(f"mask_lowest: saliency shape {tuple(saliency.shape)} differs from input {tuple(x.shape)}")
    flat = x.detach().flatten(1)
    k = int(math.floor(fraction * flat.shape[1]))
    if k == 0:
        return x.detach().clone()
    idx = saliency.detach().flatten(1).topk(k, dim=1, largest=False, sorted=False).indices  # ties: any order
    lo, hi = flat.amin(1, keepdim=True), flat.amax(1, keepdim=True)
    u = torch.rand(
        (flat.shape[0], k), generator=generator, dtype=flat.dtype, device=generator.device if generator else flat.device
    )
    out = flat.clone()
    out.scatter_(1, idx, lo + (hi - lo) * u.to(flat.device))
    return out.view_as(x)


def sgt_kl(logits: Tensor, masked_logits: Tensor) -> Tensor:
    """KL(softmax(logits) || softmax(masked_logits)), mean over the batch."""
    return F.kl_div(F.log_softmax(masked_logits, -1), F.log_softmax(logits, -1), reduction="batchmean", log_target=True)


class SGTLoss(InputLoss):
    """``weight * KL(f(x) || f(mask_lowest(x)))`` with saliency |d logit_y / d x| (Ismail et al., 2021)."""

    mask_semantics = "none"
    name = "sgt"

    def __init__(self, weight: float = 1.0, fraction: float = 0.5, seed: int | None = None) -> None:
        super().__init__(weight)
        if not 0.0 < fraction < 1.0:
            raise ValueError(f"SGTLoss: fraction (share of features masked) must lie in (0, 1), got {fraction}")
        self.fraction = float(fraction)
        self._gen = torch.Generator().manual_seed(seed) if seed is not None else None

    def _penalty(self, model: Model, x: Tensor, y: Tensor, mask: Tensor | None, logits: Tensor) -> Tensor:
        sal = gradient_from_logits(logits, x, y, create_graph=False).abs()
        masked = mask_lowest(x, sal, self.fraction, generator=self._gen)
        return sgt_kl(logits, model(masked))
