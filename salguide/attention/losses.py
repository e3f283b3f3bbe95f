"""Attention losses, functional forms (plain torch; inputs are statistics from an AttentionRecorder).

- concentration: cross-entropy of the CLS attention against a normalised target map (V2P-style Gaussian
  from points / boxes, or an object mask), -sum_j t_j log p_0j.
- background suppression (BAS, Zhai et al., "Background Activation Suppression for Weakly Supervised
  Object Localization", CVPR 2022, applied to attention): attention mass on background tokens, from the
  kernel's differentiable mass with w = background share of each token.
- entropy: mean row entropy / log(N) (minimise to sharpen attention, maximise to spread it).
- diversity (after ADL, Choe & Shim, "Attention-based Dropout Layer", CVPR 2019, which stops a model from
  relying only on the most discriminative part): mean pairwise cosine similarity between the
  head-averaged attention rows of a subset of R query tokens. This is the one loss that needs rows of
  the attention matrix: cost O(B H R N D) time and O(B H R N) memory (not N x N), R = ``num_queries``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from .stats import attention_rows


def _check(name: str, t: Tensor, dims: int) -> None:
    if not isinstance(t, Tensor) or t.dim() != dims:
        raise ValueError(f"{name} must be a tensor with {dims} dims, got {getattr(t, 'shape', type(t).__name__)}")


def concentration_loss(cls_attn: Tensor, target: Tensor, eps: float = 1e-6) -> Tensor:
    """Mean over samples with a non-empty target and heads of -sum_j t_j log(p_0j + eps), t = target / sum.

    cls_attn: [B, H, N] CLS-row attention; target: [B, N] non-negative weights (class token included)."""
    _check("cls_attn", cls_attn, 3)
    _check("target", target, 2)
    if target.shape != (cls_attn.shape[0], cls_attn.shape[2]):
        expected = (cls_attn.shape[0], cls_attn.shape[2])
        raise ValueError(f"target must have shape [B, N] = {expected}, got {tuple(target.shape)}")
    total = target.sum(1, keepdim=True)
    ok = total[:, 0] > 0
    t = target / total.clamp_min(1e-12)
    ce = -(t[:, None] * torch.log(cls_attn + eps)).sum(-1).mean(1)  # [B]
    return (ce * ok).sum() / ok.sum().clamp_min(1)


def background_mass_loss(mass: Tensor, queries: str = "cls") -> Tensor:
    """Mean attention mass on the background: ``mass`` [B, H, N] computed with w = background weights;
    ``queries`` = "cls" (the class token's row) or "all" (every query)."""
    _check("mass", mass, 3)
    if queries == "cls":
        return mass[:, :, 0].mean()
    if queries == "all":
        return mass.mean()
    raise ValueError(f"queries must be 'cls' or 'all', got {queries!r}")


def entropy_loss(entropy: Tensor, queries: str = "cls") -> Tensor:
    """Mean row entropy divided by log N (in [0, 1]); ``entropy`` [B, H, N] from the recorder."""
    _check("entropy", entropy, 3)
    n = entropy.shape[2]
    norm = math.log(n) if n > 1 else 1.0
    e = entropy[:, :, 0] if queries == "cls" else entropy if queries == "all" else None
    if e is None:
        raise ValueError(f"queries must be 'cls' or 'all', got {queries!r}")
    return e.mean() / norm


def diversity_loss(
    q: Tensor,
    k: Tensor,
    lse: Tensor,
    *,
    scale: float,
    num_queries: int = 16,
    key_bias: Tensor | None = None,
    key_mask: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Mean off-diagonal cosine similarity of the head-averaged attention rows of ``num_queries`` random
    query tokens (all of them when N <= num_queries); in [0, 1], lower = more diverse attention."""
    _check("q", q, 4)
    N = q.shape[2]
    if num_queries < 2:
        raise ValueError(f"num_queries must be >= 2, got {num_queries}")
    if N < 2:
        raise ValueError("diversity needs at least two tokens")
    rows = torch.arange(N, device=q.device) if N <= num_queries else torch.randperm(
        N, generator=generator, device="cpu"
    )[:num_queries].to(q.device)
    p = attention_rows(q, k, lse, rows, scale=scale, key_bias=key_bias, key_mask=key_mask,
                       always_self=key_mask is not None).mean(1)  # [B, R, N]
    p = F.normalize(p, dim=-1)
    gram = p @ p.transpose(1, 2)
    R = gram.shape[1]
    off = gram.sum((1, 2)) - gram.diagonal(dim1=1, dim2=2).sum(1)
    return (off / (R * (R - 1))).mean()
