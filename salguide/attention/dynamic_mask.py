"""DynamicViT-style token masking (Rao et al., "DynamicViT: Efficient Vision Transformers with Dynamic
Token Sparsification", NeurIPS 2021). During training, pruned tokens stay in the tensor but are removed
from the keys (a key mask with always-self): every token, kept or pruned, attends to the kept tokens and
to itself, as upstream's ``softmax_with_policy`` (raoyongming/DynamicViT: key policy + (1 - policy) * eye);
at inference the pruned tokens are dropped. The kept tokens compute exactly the same values either way.
Deviations: the keep decision is the top CLS attention (as in EViT), not DynamicViT's learned predictor,
and the softmax is exact (upstream adds eps / N to every entry for stability)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .schedules import check_keep


def topk_key_mask(cls_attn: Tensor, keep: float, alive: Tensor | None = None) -> Tensor:
    """Bool [B, N]: the class token plus the ``ceil(keep * n_alive)`` alive patch tokens with the largest
    head-averaged CLS attention (``alive`` [B, N] bool, default all; every sample must have the same count).
    Ties go to the lower token index (``topk`` order is not guaranteed for ties)."""
    keep = check_keep(keep)
    a = cls_attn.mean(1) if cls_attn.dim() == 3 else cls_attn
    B, N = a.shape
    score = a[:, 1:]
    if alive is None:
        n = N - 1
    else:
        if alive.shape != (B, N) or alive.dtype != torch.bool:
            raise ValueError(f"alive must be a bool [B, N] = {(B, N)} mask, got {alive.dtype} {tuple(alive.shape)}")
        counts = alive[:, 1:].sum(1)
        n = int(counts[0])
        if not bool((counts == n).all()):
            raise ValueError("every sample must have the same number of alive tokens")
        score = score.masked_fill(~alive[:, 1:], -float("inf"))
    k = math.ceil(keep * n)
    mask = torch.ones(B, N, dtype=torch.bool, device=a.device)
    if k >= N - 1:
        return mask
    # stable descending sort: equal scores keep index order, so ties are deterministic
    top = score.argsort(dim=1, descending=True, stable=True)[:, :k] + 1
    mask[:, 1:] = False
    return mask.scatter_(1, top, True)


def drop_masked(x: Tensor, mask: Tensor, positions: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Gather the tokens where ``mask`` is True (same count per sample), keeping their order."""
    B, N, C = x.shape
    if mask.dtype != torch.bool or mask.shape != (B, N):
        raise ValueError(f"mask must be a bool tensor [B={B}, N={N}], got a {mask.dtype} tensor {tuple(mask.shape)}")
    k = int(mask[0].sum())
    if not bool((mask.sum(1) == k).all()):
        raise ValueError("every sample must keep the same number of tokens")
    idx = mask.float().argsort(dim=1, descending=True, stable=True)[:, :k].sort(1).values
    pos = torch.arange(N, device=x.device).expand(B, N) if positions is None else positions
    return x.gather(1, idx[..., None].expand(B, k, C)), pos.gather(1, idx)
