"""Plain-torch reference for :func:`salguide.kernels.attention`.

It materialises the [B, H, N, Nk] scores, computes in float32 (float64 for float64 inputs) and is
differentiated by autograd, so it checks the Triton kernels independently. ``key_index`` is handled
here by gathering the listed keys (the kernels never gather), ``key_mask`` by masking the dense scores.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .checks import check_inputs
from .result import AttentionResult, package


def attention_reference(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    key_mask: Tensor | None = None,
    key_index: Tensor | None = None,
    key_bias: Tensor | None = None,
    always_self: bool = False,
    target: Tensor | None = None,
    return_colsum: bool = False,
    return_lse: bool = False,
    scale: float | None = None,
) -> AttentionResult:
    """Same contract as :func:`salguide.kernels.attention_stats`, in eager torch autograd (no value
    checks): the dense oracle every other path is tested against."""
    scale = check_inputs(q, k, v, key_mask, key_index, key_bias, target, always_self, scale)
    out, mass, lse, colsum = reference_forward(q, k, v, key_mask, key_index, key_bias, target, always_self, scale)
    return package(out, mass, colsum.detach(), lse, return_colsum, return_lse)


def reference_forward(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    key_mask: Tensor | None,
    key_index: Tensor | None,
    key_bias: Tensor | None,
    target: Tensor | None,
    always_self: bool,
    scale: float,
) -> tuple[Tensor, Tensor | None, Tensor, Tensor]:
    """Return (out [B,H,N,D] in q's dtype, mass [B,H,N] or None, lse [B,H,N], colsum [B,H,N])."""
    dtype = q.dtype
    ct = torch.float64 if dtype == torch.float64 else torch.float32
    q, k, v = q.to(ct), k.to(ct), v.to(ct)
    bias = None if key_bias is None else per_head(key_bias.to(ct))  # [B, 1|H, N]
    w = None if target is None else per_head(target.to(ct))
    if key_index is None:
        out, mass, lse, colsum = _dense(q, k, v, key_mask, bias, w, always_self, scale)
    else:
        out, mass, lse, colsum = _indexed(q, k, v, key_index.long(), bias, w, always_self, scale)
    return out.to(dtype), mass, lse, colsum


def _dense(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    key_mask: Tensor | None,
    bias: Tensor | None,
    w: Tensor | None,
    always_self: bool,
    scale: float,
) -> tuple[Tensor, Tensor | None, Tensor, Tensor]:
    p, lse = dense_probs(q, k, key_mask, bias, always_self, scale)
    mass = None if w is None else (p * w[:, :, None, :]).sum(-1)
    return p @ v, mass, lse, p.sum(-2)


def dense_probs(
    q: Tensor, k: Tensor, key_mask: Tensor | None, bias: Tensor | None, always_self: bool, scale: float,
    start: int = 0,
) -> tuple[Tensor, Tensor]:  # fmt: skip
    """Attention probabilities [B, H, R, N] and lse [B, H, R] of the R query rows ``q`` at positions
    start..start+R (all rows by default); bias is [B, 1|H, N]."""
    R, N = q.shape[2], k.shape[2]
    s = scale * q @ k.transpose(-1, -2)
    if bias is not None:
        s = s + bias[:, :, None, :]
    allowed = torch.ones(R, N, dtype=torch.bool, device=q.device)
    if key_mask is not None:
        allowed = allowed & key_mask[:, None, None, :]
    if always_self:
        positions = torch.arange(N, device=q.device)
        allowed = allowed | (positions[None, :] == positions[start : start + R, None])
    return masked_softmax(s, allowed)


def indexed_probs(
    q: Tensor, k: Tensor, idx: Tensor, bias: Tensor | None, always_self: bool, scale: float, start: int = 0
) -> tuple[Tensor, Tensor, Tensor]:
    """Probabilities [B, H, R, Nk (+1 own-key column with always_self)], lse [B, H, R] and the gathered
    keys [B, H, Nk, D] for the key list ``idx`` [B, Nk] and the R query rows ``q`` at start..start+R."""
    B, H, R, D = q.shape
    nk = idx.shape[1]
    k_sub = k.gather(2, idx[:, None, :, None].expand(B, H, nk, D))
    s = scale * q @ k_sub.transpose(-1, -2)  # [B, H, R, Nk]
    if bias is not None:
        s = s + take_keys(bias, idx)[:, :, None, :]
    allowed = torch.ones(B, 1, R, nk, dtype=torch.bool, device=q.device)
    if always_self:  # the own key joins as one extra column, for queries whose position is not listed
        rows = slice(start, start + R)
        listed = torch.zeros(B, k.shape[2], dtype=torch.bool, device=q.device).scatter(1, idx, True)[:, rows]
        s_own = scale * (q * k[:, :, rows]).sum(-1) + (0 if bias is None else bias[:, :, rows])
        s = torch.cat([s, s_own[..., None]], -1)
        allowed = torch.cat([allowed, ~listed[:, None, :, None]], -1)
    p, lse = masked_softmax(s, allowed)
    return p, lse, k_sub


def _indexed(
    q: Tensor, k: Tensor, v: Tensor, idx: Tensor, bias: Tensor | None, w: Tensor | None, always_self: bool, scale: float
) -> tuple[Tensor, Tensor | None, Tensor, Tensor]:
    B, H, N, D = q.shape
    nk = idx.shape[1]
    p, lse, _ = indexed_probs(q, k, idx, bias, always_self, scale)
    v_sub = v.gather(2, idx[:, None, :, None].expand(B, H, nk, D))
    p_keys = p[..., :nk]
    out = p_keys @ v_sub
    mass = None if w is None else (p_keys * take_keys(w, idx)[:, :, None, :]).sum(-1)
    colsum = torch.zeros(B, H, N, dtype=p.dtype, device=q.device).scatter_add(
        2, idx[:, None, :].expand(B, H, nk), p_keys.sum(-2)
    )
    if always_self:
        p_own = p[..., nk]
        out = out + p_own[..., None] * v
        mass = None if mass is None or w is None else mass + p_own * w
        colsum = colsum + p_own
    return out, mass, lse, colsum


def masked_softmax(s: Tensor, allowed: Tensor) -> tuple[Tensor, Tensor]:
    """Softmax over the last dim restricted to ``allowed``; rows with no allowed entry give p = 0 and
    lse = +inf (so that exp(s - lse) = 0 everywhere), with zero, finite gradients."""
    s = s.masked_fill(~allowed, float("-inf"))
    top = s.amax(-1, keepdim=True).detach()
    top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
    e = torch.exp(s - top)
    z = e.sum(-1, keepdim=True)
    nonempty = z > 0
    z_safe = torch.where(nonempty, z, torch.ones_like(z))
    lse = torch.where(nonempty, top + torch.log(z_safe), torch.full_like(z, float("inf")))
    return e / z_safe, lse.squeeze(-1)


def equal_count_index(key_mask: Tensor | None) -> Tensor | None:
    """The allowed positions of a bool [B, N] key mask as an index [B, n] (ascending) when every sample
    allows the same number 0 < n < N of keys, else None. The torch backend then gathers the n keys
    instead of masking N (DynamicViT-style masks have equal counts), which is exact and cheaper."""
    if key_mask is None or key_mask.dim() != 2:
        return None
    counts = key_mask.sum(1)
    n = int(counts[0]) if counts.numel() else 0
    if not 0 < n < key_mask.shape[1] or not bool((counts == n).all()):
        return None
    return torch.argsort((~key_mask).to(torch.int8), dim=1, stable=True)[:, :n]


def per_head(x: Tensor) -> Tensor:
    return x[:, None, :] if x.dim() == 2 else x


def take_keys(x: Tensor, idx: Tensor) -> Tensor:
    """x [B, 1|H, N] at key positions idx [B, Nk] -> [B, 1|H, Nk]."""
    return x.gather(2, idx[:, None, :].expand(x.shape[0], x.shape[1], idx.shape[1]))
