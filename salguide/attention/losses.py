"""Attention losses, functional forms (plain torch; inputs are statistics from an AttentionRecorder).

- concentration: cross-entropy of the CLS attention against a normalised target map (V2P-style Gaussian
  from points / boxes, or an object mask), -sum_j t_j log p_0j; or of every query's row, in closed form
  from q, k and the kernel's log-sum-exp: -sum_j t_j log p_ij = lse_i - sum_j t_j s_ij (O(B H N D)).
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

from .stats import _acc, attention_rows


def _check(name: str, t: Tensor, dims: int) -> None:
    if not isinstance(t, Tensor) or t.dim() != dims:
        raise ValueError(f"{name} must be a tensor with {dims} dims, got {getattr(t, 'shape', type(t).__name__)}")


def _check_weights(name: str, t: Tensor) -> None:
    if t.numel() and not bool((torch.isfinite(t) & (t >= 0)).all()):
        raise ValueError(f"{name} must hold finite weights >= 0 (NaN, inf or negative entries found)")


def concentration_loss(cls_attn: Tensor, target: Tensor, eps: float = 1e-6) -> Tensor:
    """Mean over samples with a non-empty target and heads of -sum_j t_j log(p_0j + eps), t = target / sum.

    cls_attn: [B, H, N] CLS-row attention; target: [B, N] non-negative weights (class token included)."""
    _check("cls_attn", cls_attn, 3)
    _check("target", target, 2)
    if target.shape != (cls_attn.shape[0], cls_attn.shape[2]):
        expected = (cls_attn.shape[0], cls_attn.shape[2])
        raise ValueError(f"target must have shape [B, N] = {expected}, got {tuple(target.shape)}")
    _check_weights("target", target)
    total = target.sum(1, keepdim=True)
    ok = total[:, 0] > 0
    t = target / total.clamp_min(1e-12)
    ce = -(t[:, None] * torch.log(cls_attn + eps)).sum(-1).mean(1)  # [B]
    return (ce * ok).sum() / ok.sum().clamp_min(1)


def concentration_loss_all(
    q: Tensor,
    k: Tensor,
    lse: Tensor,
    target: Tensor,
    *,
    scale: float,
    key_bias: Tensor | None = None,
    key_mask: Tensor | None = None,
    row_weights: Tensor | None = None,
) -> Tensor:
    """:func:`concentration_loss` for every query row: mean over samples with a non-empty target, heads
    and (alive) queries i of -sum_j t_j log p_ij, t = target / sum, exactly (no eps and no N x N):
    log p_ij = s_ij - lse_i with s_ij = scale q_i.k_j + bias_j, so the row's loss is
    lse_i - scale q_i.(sum_j t_j k_j) - sum_j t_j bias_j.

    q, k: [B, H, N, D]; lse: [B, H, N] of the kernel call with the same keys; target: [B, N] >= 0;
    key_bias: [B, N] added to the scores; key_mask: bool [B, N] (masked keys get no target weight and
    masked queries are left out); row_weights: [B, N] >= 0 weights of the query rows in the mean
    (default 1 each; e.g. only the class token and the object's tokens)."""
    _check("q", q, 4)
    _check("k", k, 4)
    _check("lse", lse, 3)
    _check("target", target, 2)
    B, _, N, _ = q.shape
    if target.shape != (B, N):
        raise ValueError(f"target must have shape [B, N] = {(B, N)}, got {tuple(target.shape)}")
    _check_weights("target", target)
    dt = torch.promote_types(q.dtype, torch.float32)  # float32, or float64 for float64 inputs
    t = target.to(dt)
    alive = torch.ones(B, N, dtype=torch.bool, device=q.device) if key_mask is None else key_mask.bool()
    t = t * alive
    total = t.sum(1, keepdim=True)
    ok = total[:, 0] > 0
    t = t / total.clamp_min(1e-12)
    kbar = torch.einsum("bn,bhnd->bhd", t, k.to(dt))  # target-weighted key per head
    row = lse.to(dt) - scale * torch.einsum("bhnd,bhd->bhn", q.to(dt), kbar)  # [B, H, N]
    if key_bias is not None:
        row = row - (t * key_bias.to(dt)).sum(1)[:, None, None]
    w = alive.to(dt) if row_weights is None else alive.to(dt) * _row_weights(row_weights, B, N).to(dt)
    per_sample = (row.mean(1) * w).sum(1) / w.sum(1).clamp_min(1e-12)  # mean over heads, weighted over queries
    ok = ok & (w.sum(1) > 0)
    return (per_sample * ok).sum() / ok.sum().clamp_min(1)


def _row_weights(w: Tensor, B: int, N: int) -> Tensor:
    if not isinstance(w, Tensor) or w.shape != (B, N):
        raise ValueError(f"row_weights must have shape [B, N] = {(B, N)}, got {tuple(getattr(w, 'shape', ()))}")
    if bool((w < 0).any()):
        raise ValueError("row_weights must be >= 0")
    return w.float()


def background_mass_loss(mass: Tensor, queries: str = "cls", row_weights: Tensor | None = None) -> Tensor:
    """Mean attention mass on the background: ``mass`` [B, H, N] computed with w = background weights;
    ``queries`` = "cls" (the class token's row), "all" (every query) or "weighted" (rows weighted by
    ``row_weights`` [B, N] >= 0, e.g. the class token and the object's tokens; samples with no weight
    do not count)."""
    _check("mass", mass, 3)
    if queries == "weighted":
        if row_weights is None:
            raise ValueError("queries='weighted' needs row_weights [B, N]")
        w = _row_weights(row_weights, mass.shape[0], mass.shape[2]).to(mass.device)
        total = w.sum(1)
        per_sample = (_acc(mass).mean(1) * w).sum(1) / total.clamp_min(1e-12)
        ok = total > 0
        return (per_sample * ok).sum() / ok.sum().clamp_min(1)
    if queries == "cls":
        return mass[:, :, 0].mean()
    if queries == "all":
        return mass.mean()
    raise ValueError(f"queries must be 'cls', 'all' or 'weighted', got {queries!r}")


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
    rows = (
        torch.arange(N, device=q.device)
        if N <= num_queries
        else torch.randperm(N, generator=generator, device="cpu")[:num_queries].to(q.device)
    )
    p = attention_rows(
        q, k, lse, rows, scale=scale, key_bias=key_bias, key_mask=key_mask, always_self=key_mask is not None
    ).mean(1)  # [B, R, N]
    p = F.normalize(p, dim=-1)
    gram = p @ p.transpose(1, 2)
    R = gram.shape[1]
    off = gram.sum((1, 2)) - gram.diagonal(dim1=1, dim2=2).sum(1)
    return (off / (R * (R - 1))).mean()
