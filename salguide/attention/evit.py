"""EViT token reorganisation (Liang et al., "Not All Patches Are What You Need: Expediting Vision
Transformers via Token Reorganizations", ICLR 2022): keep the ``ceil(keep * (N - 1))`` patch tokens with the
largest head-averaged CLS attention, fuse the rest into one token.

As in the official code (youweiliang/evit, ``Block.forward``) the fused token is the CLS-attention-weighted
*sum* of the inattentive tokens, Σ_j a_j x_j, not divided by Σ_j a_j (``fuse="sum"``, the default);
``fuse="mean"`` divides by the weights' sum (an attention-weighted average, whose scale does not shrink
with the attention the dropped tokens receive). Deliberate deviation: kept tokens stay in their original
order (upstream orders them by attention); attention and the MLP are permutation-equivariant and the
class token stays first, so the model computes the same function."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .schedules import check_keep

FUSE_MODES = ("sum", "mean", "drop")


def fuse_mode(fuse: bool | str) -> str:
    """``fuse`` as one of FUSE_MODES (True: "sum", upstream's rule; False: "drop")."""
    if isinstance(fuse, bool):
        return "sum" if fuse else "drop"
    if fuse not in FUSE_MODES:
        raise ValueError(f"EViT fuse must be one of {FUSE_MODES} (or True / False), got {fuse!r}")
    return fuse


def evit_reorganize(
    x: Tensor, cls_attn: Tensor, keep: float, positions: Tensor | None = None, fuse: bool | str = "sum"
) -> tuple[Tensor, Tensor]:
    """x [B, N, C] (token 0 = CLS), cls_attn [B, H, N] or [B, N]. Returns (tokens [B, 1 + k (+1), C],
    positions [B, 1 + k (+1)]: original index of each token, -1 for the fused one). Kept tokens stay in
    their original order. ``fuse``: "sum" (upstream), "mean" or "drop" (see the module docstring)."""
    keep = check_keep(keep)
    mode = fuse_mode(fuse)
    B, N, C = x.shape
    a = cls_attn.mean(1) if cls_attn.dim() == 3 else cls_attn
    if a.shape != (B, N):
        raise ValueError(f"cls_attn must cover the {N} tokens of x, got {tuple(cls_attn.shape)}")
    pos = torch.arange(N, device=x.device).expand(B, N) if positions is None else positions
    k = math.ceil(keep * (N - 1))
    if k >= N - 1:
        return x, pos
    patch_a = a[:, 1:]
    top = patch_a.topk(k, dim=1).indices.sort(1).values + 1  # [B, k] token indices
    kept_x = x.gather(1, top[..., None].expand(B, k, C))
    out, out_pos = [x[:, :1], kept_x], [pos[:, :1], pos.gather(1, top)]
    if mode != "drop":
        dropped = torch.ones(B, N, dtype=torch.bool, device=x.device)
        dropped[:, 0] = False
        dropped.scatter_(1, top, False)
        w = (a * dropped).to(x.dtype)
        fused = (w[..., None] * x).sum(1, keepdim=True)
        if mode == "mean":
            fused = fused / w.sum(1, keepdim=True)[..., None].clamp_min(1e-12)
        out.append(fused)
        out_pos.append(torch.full((B, 1), -1, dtype=pos.dtype, device=x.device))
    return torch.cat(out, 1), torch.cat(out_pos, 1)
