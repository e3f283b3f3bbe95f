"""Attention-guided patch masking for masked image modelling.

- AttMask (Kakogeorgiou et al., "What to Hide from Your Students: Attention-Guided Masked Image
  Modeling", ECCV 2022): from a teacher's CLS attention, mask the most attended patches ("high"), the
  least attended ("low"), or the most attended with a few of them revealed as hints ("hint").
- ACMIL (Zhang et al., "Attention-Challenging Multiple Instance Learning", ECCV 2024), stochastic top-K
  instance masking: each of the K most attended patches is masked with probability ``drop_prob``
  (K defaults to ``round(ratio * P / drop_prob)``, so that ``ratio`` of the patches are hidden on average).
- "random": a uniformly random subset (the baseline).
Masks are bool [B, P] over patches (class token excluded), True = hidden. ``cls_attention_scores`` gives a
teacher's per-patch ranking; ``mask_patches`` / ``patchify`` apply a mask to images.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .recorder import AttentionRecorder

MASK_MODES = ("high", "low", "hint", "acmil", "random")


def _rank_mask(order: Tensor, count: int, P: int) -> Tensor:
    mask = torch.zeros(order.shape[0], P, dtype=torch.bool, device=order.device)
    return mask.scatter(1, order[:, :count], True)


@torch.no_grad()
def cls_attention_scores(model: nn.Module, x: Tensor, layer: int = -1) -> Tensor:
    """[B, P]: attention of the class token to each patch at ``layer`` of a routed ViT, mean over heads
    (the ranking AttMask takes from its teacher; Kakogeorgiou et al., ECCV 2022)."""
    with AttentionRecorder(model, [layer], cls=True) as rec:
        model(x)
    cls = rec[layer].cls
    assert cls is not None  # the recorder was asked for it
    return cls[:, :, 1:].mean(1)


def attention_guided_mask(
    scores: Tensor,
    ratio: float,
    mode: str = "high",
    *,
    hint_ratio: float = 0.1,
    top_k: int | None = None,
    drop_prob: float = 0.5,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Patch mask [B, P] from per-patch attention ``scores`` [B, P] (e.g. teacher CLS attention, head mean).

    ``ratio`` in [0, 1): share of patches hidden (``round(ratio * P)``; for "acmil" the expected count is
    ``drop_prob * top_k``, ``top_k`` defaulting to ``min(P, round(ratio * P / drop_prob))``, i.e. the same
    expected count as the other modes whenever ``drop_prob >= ratio``)."""
    if mode not in MASK_MODES:
        raise ValueError(f"unknown masking mode {mode!r}; choose one of {MASK_MODES}")
    if scores.dim() != 2:
        raise ValueError(f"scores must be [B, P] (patches only), got {tuple(scores.shape)}")
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"mask ratio must lie in [0, 1), got {ratio}")
    B, P = scores.shape
    m = round(ratio * P)
    dev = scores.device

    def rand(*shape: int) -> Tensor:
        return torch.rand(*shape, generator=generator, device="cpu").to(dev)

    if mode == "random":
        return _rank_mask(rand(B, P).argsort(1), m, P)
    if mode == "low":
        return _rank_mask(scores.argsort(1), m, P)
    desc = scores.argsort(1, descending=True)
    if mode == "high":
        return _rank_mask(desc, m, P)
    if mode == "hint":
        if not 0.0 <= hint_ratio < 1.0:
            raise ValueError(f"hint_ratio must lie in [0, 1), got {hint_ratio}")
        h = min(round(hint_ratio * m), P - m)
        top = desc[:, : m + h]  # the m + h most attended; h of them (at random) stay visible
        hidden = top.gather(1, rand(B, m + h).argsort(1)[:, :m])
        return torch.zeros(B, P, dtype=torch.bool, device=dev).scatter(1, hidden, True)
    if not 0.0 <= drop_prob <= 1.0:
        raise ValueError(f"acmil needs drop_prob in [0, 1], got {drop_prob}")
    k = (min(P, round(m / drop_prob)) if drop_prob > 0 else 0) if top_k is None else int(top_k)
    if not 0 <= k <= P:
        raise ValueError(f"acmil needs 0 <= top_k <= {P} and drop_prob in [0, 1], got {top_k}, {drop_prob}")
    return _rank_mask(desc, k, P) & (rand(B, P) < drop_prob)


def mask_patches(x: Tensor, mask: Tensor, grid: tuple[int, int], value: float = 0.0) -> Tensor:
    """Images [B, C, H, W] with the pixels of hidden patches (mask [B, gh*gw]) set to ``value``."""
    B, _, H, W = x.shape
    gh, gw = grid
    if mask.shape != (B, gh * gw):
        raise ValueError(f"mask must have shape [B, P] = {(B, gh * gw)}, got {tuple(mask.shape)}")
    pix = F.interpolate(mask.view(B, 1, gh, gw).float(), size=(H, W), mode="nearest").bool()
    return x.masked_fill(pix, value)


def patchify(x: Tensor, grid: tuple[int, int]) -> Tensor:
    """[B, C, H, W] -> [B, gh*gw, C*ph*pw] (pixels of each patch, row-major)."""
    B, C, H, W = x.shape
    gh, gw = grid
    ph, pw = H // gh, W // gw
    return x.view(B, C, gh, ph, gw, pw).permute(0, 2, 4, 1, 3, 5).reshape(B, gh * gw, C * ph * pw)
