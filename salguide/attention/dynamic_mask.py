"""DynamicViT-style token masking (Rao et al., "DynamicViT: Efficient Vision Transformers with Dynamic
Token Sparsification", NeurIPS 2021). During training, pruned tokens stay in the tensor but are removed
from every other token's keys (a key mask with always-self, so each pruned token attends only to itself);
at inference they are dropped. The kept tokens compute exactly the same values either way. Here the
keep decision is the top CLS attention (as in EViT), not DynamicViT's learned predictor."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .schedules import check_keep


def topk_key_mask(cls_attn: Tensor, keep: float, alive: Tensor | None = None) -> Tensor:
    """Bool [B, N]: the class token plus the ``ceil(keep * n_alive)`` alive patch tokens with the largest
    head-averaged CLS attention (``alive`` [B, N] bool, default all; every sample must have the same count)."""
    keep = check_keep(keep)
    a = cls_attn.mean(1) if cls_attn.dim() == 3 else cls_attn
    B, N = a.shape
    alive = torch.ones(B, N, dtype=torch.bool, device=a.device) if alive is None else alive
    counts = alive[:, 1:].sum(1)
    n = int(counts[0])
    if not bool((counts == n).all()):
        raise ValueError("every sample must have the same number of alive tokens")
    k = math.ceil(keep * n)
    score = a[:, 1:].masked_fill(~alive[:, 1:], -float("inf"))
    top = score.topk(k, dim=1).indices + 1
    mask = torch.zeros(B, N, dtype=torch.bool, device=a.device)
    mask[:, 0] = True
    return mask.scatter(1, top, True)


def drop_masked(x: Tensor, mask: Tensor, positions: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Gather the tokens where ``mask`` is True (same count per sample), keeping their order."""
    B, N, C = x.shape
    k = int(mask[0].sum())
    if not bool((mask.sum(1) == k).all()):
        raise ValueError("every sample must keep the same number of tokens")
    idx = mask.float().argsort(dim=1, descending=True, stable=True)[:, :k].sort(1).values
    pos = torch.arange(N, device=x.device).expand(B, N) if positions is None else positions
    return x.gather(1, idx[..., None].expand(B, k, C)), pos.gather(1, idx)
