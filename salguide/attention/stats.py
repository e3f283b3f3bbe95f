"""Attention statistics without the N x N matrix.

Any single row of the attention matrix is p_ij = exp(s_ij - lse_i), an O(N D) computation per row,
from the kernel's log-sum-exp or, without it, as a one-query softmax (how the CLS row is computed
for the recorder and token policies). The entropy of every row, H_i = lse_i - sum_j p_ij s_ij, needs
sum_j p_ij s_ij = scale q_i . (sum_j p_ij k_j) + sum_j p_ij b_j: one kernel call whose values are
[v, k, b] (queries and keys zero-padded to the same width) returns it alongside the layer output, so
no N x N tensor exists. :class:`AttentionStats` holds what one routed layer recorded.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from salguide.kernels import AttentionResult, attention_stats
from salguide.kernels.checks import check_inputs


@dataclass
class AttentionStats:
    """Statistics of one layer, [B, H, N] each (None when not asked for). ``q``/``k`` are the layer's
    queries and keys [B, H, N, D] (for row-level losses), ``scale`` their score scale, ``key_bias`` and
    ``key_mask`` the key set the layer used, ``positions`` the original index of each token (None when
    no token was moved)."""

    mass: Tensor | None = None
    colsum: Tensor | None = None
    cls: Tensor | None = None
    lse: Tensor | None = None
    entropy: Tensor | None = None
    q: Tensor | None = None
    k: Tensor | None = None
    scale: float = 1.0
    key_bias: Tensor | None = None
    key_mask: Tensor | None = None
    positions: Tensor | None = None


def _acc(t: Tensor) -> Tensor:
    """``t`` in the accumulation precision: float32 for half / bfloat16 / float32, float64 kept."""
    return t.to(torch.promote_types(t.dtype, torch.float32))


def _scores_rows(q_rows: Tensor, k: Tensor, scale: float, key_bias: Tensor | None) -> Tensor:
    """Scores [B, H, R, N] of the query rows q_rows [B, H, R, D] against all keys."""
    s = scale * torch.einsum("bhrd,bhnd->bhrn", _acc(q_rows), _acc(k))
    if key_bias is not None:
        s = s + _acc((key_bias[:, None] if key_bias.dim() == 2 else key_bias)[:, :, None, :])
    return s


def attention_rows(
    q: Tensor,
    k: Tensor,
    lse: Tensor | None,
    rows: Tensor,
    *,
    scale: float,
    key_bias: Tensor | None = None,
    key_mask: Tensor | None = None,
    always_self: bool = False,
) -> Tensor:
    """Rows ``rows`` (long [R], shared by the batch) of the attention matrix, [B, H, R, N], from the
    log-sum-exp of a kernel call with the same keys, or (``lse=None``) as a softmax of those rows.
    Cost O(B H R N D); differentiable. float32 for half and float32 inputs, float64 for float64 inputs."""
    scale = check_inputs(q, k, k, key_mask, None, key_bias, None, always_self, scale)  # shapes only: no sync
    if lse is not None and (not isinstance(lse, Tensor) or tuple(lse.shape) != tuple(q.shape[:3])):
        got = tuple(lse.shape) if isinstance(lse, Tensor) else type(lse).__name__
        raise ValueError(f"lse must be the kernel's log-sum-exp [B, H, N] = {tuple(q.shape[:3])}, got {got}")
    if not isinstance(rows, Tensor) or rows.dim() != 1 or rows.is_floating_point() or rows.dtype == torch.bool:
        raise ValueError(f"rows must be a 1-D integer tensor of query indices, got {getattr(rows, 'shape', rows)!r}")
    return _rows(q, k, lse, rows, scale, key_bias, key_mask, always_self)


def _rows(
    q: Tensor,
    k: Tensor,
    lse: Tensor | None,
    rows: Tensor,
    scale: float,
    key_bias: Tensor | None,
    key_mask: Tensor | None,
    always_self: bool,
) -> Tensor:
    """``attention_rows`` without its argument checks (for inputs a kernel call has just checked)."""
    s = _scores_rows(q[:, :, rows], k, scale, key_bias)
    allowed = None
    if key_mask is not None:
        allowed = key_mask[:, None, None, :].expand(-1, 1, len(rows), -1)
        if always_self:
            own = torch.zeros_like(allowed)
            own[:, 0, torch.arange(len(rows), device=q.device), rows] = True
            allowed = allowed | own
    if lse is None:
        if allowed is not None:
            s = s.masked_fill(~allowed, float("-inf"))
        top = s.amax(-1, keepdim=True).detach().clamp_min(torch.finfo(s.dtype).min)  # finite for empty rows
        e = torch.exp(s - top)
        return e / e.sum(-1, keepdim=True).clamp_min(torch.finfo(s.dtype).tiny)
    p = torch.exp(s - lse[:, :, rows, None].to(s.dtype))  # lse = +inf (empty row) gives 0
    return p if allowed is None else p * allowed


def cls_attention(
    q: Tensor,
    k: Tensor,
    lse: Tensor | None = None,
    *,
    scale: float,
    key_bias: Tensor | None = None,
    key_mask: Tensor | None = None,
    always_self: bool = False,
) -> Tensor:
    """CLS-row attention p_0j, [B, H, N] (token 0 is the class token); a one-query softmax unless the
    kernel's ``lse`` is given."""
    rows = torch.zeros(1, dtype=torch.long, device=q.device)
    return attention_rows(q, k, lse, rows, scale=scale, key_bias=key_bias, key_mask=key_mask, always_self=always_self)[
        :, :, 0
    ]


def layer_cls_attention(
    q: Tensor, k: Tensor, scale: float, key_bias: Tensor | None, key_mask: Tensor | None, always_self: bool
) -> Tensor:
    """``cls_attention`` (one-query softmax) of a routed layer's q and k, which its kernel call has checked."""
    rows = torch.zeros(1, dtype=torch.long, device=q.device)
    return _rows(q, k, None, rows, scale, key_bias, key_mask, always_self)[:, :, 0]


def attention_with_entropy(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    scale: float,
    key_mask: Tensor | None = None,
    key_bias: Tensor | None = None,
    always_self: bool = False,
    target: Tensor | None = None,
    return_colsum: bool = False,
    backend: str | None = None,
    validate: bool | None = None,
) -> tuple[AttentionResult, Tensor]:
    """One kernel call returning the usual :class:`AttentionResult` (with lse) and the entropy of every
    attention row, [B, H, N] (float32; float64 for float64 inputs), differentiable (0 for rows with no allowed key)."""
    B, H, N, D = q.shape
    cols = [v, k]
    if key_bias is not None:
        b = key_bias[:, None] if key_bias.dim() == 2 else key_bias
        cols.append(b.to(v.dtype).expand(B, H, N)[..., None])
    vv = torch.cat(cols, -1)
    pad = vv.shape[-1] - D
    qq = torch.nn.functional.pad(q, (0, pad))
    kk = torch.nn.functional.pad(k, (0, pad))
    res = attention_stats(
        qq,
        kk,
        vv,
        key_mask=key_mask,
        key_bias=key_bias,
        always_self=always_self,
        target=target,
        return_colsum=return_colsum,
        return_lse=True,
        scale=scale,
        backend=backend,
        validate=validate,
    )
    assert res.lse is not None
    o = res.out
    expected = scale * (_acc(q) * _acc(o[..., D : 2 * D])).sum(-1)
    if key_bias is not None:
        expected = expected + _acc(o[..., 2 * D])
    lse = res.lse.to(expected.dtype)
    finite = torch.isfinite(lse)
    entropy = torch.where(finite, torch.nan_to_num(lse, posinf=0.0) - expected, torch.zeros_like(expected))
    return res._replace(out=o[..., :D]), entropy
