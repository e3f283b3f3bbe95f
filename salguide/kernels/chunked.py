"""Log-sum-exp and column sums in query chunks under a fixed memory budget (no N x N tensor).

Each chunk of R query rows computes its [B, H, R, L] scores against the key list with the reference's
own masking (:func:`.reference.dense_probs` / :func:`.reference.indexed_probs`), so both follow the
oracle's semantics exactly. A differentiable log-sum-exp checkpoints each chunk: its backward
recomputes one chunk at a time, so memory stays at the budget in the backward too."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from .reference import dense_probs, indexed_probs, per_head

CHUNK_BYTES = 64 * 2**20  # scores and probabilities of one chunk (and their temporaries)


def chunk_rows(B: int, H: int, L: int, itemsize: int) -> int:
    """Query rows per chunk so that about four [B, H, R, L] tensors fit in :data:`CHUNK_BYTES`."""
    return max(1, CHUNK_BYTES // (4 * itemsize * B * H * max(L, 1)))


def _probs(q: Tensor, k: Tensor, key_mask: Tensor | None, key_index: Tensor | None, bias: Tensor | None,
           always_self: bool, scale: float, start: int) -> tuple[Tensor, Tensor]:  # fmt: skip
    if key_index is None:
        return dense_probs(q, k, key_mask, bias, always_self, scale, start)
    p, lse, _ = indexed_probs(q, k, key_index, bias, always_self, scale, start)
    return p, lse


def _lse(q: Tensor, k: Tensor, bias: Tensor | None, key_mask: Tensor | None, key_index: Tensor | None,
         always_self: bool, scale: float, start: int) -> Tensor:  # fmt: skip
    return _probs(q, k, key_mask, key_index, bias, always_self, scale, start)[1]


def chunked_lse(
    q: Tensor, k: Tensor, key_mask: Tensor | None, key_index: Tensor | None, key_bias: Tensor | None,
    always_self: bool, scale: float,
) -> Tensor:  # fmt: skip
    """Log-sum-exp [B, H, N] (float32, float64 for float64 inputs; +inf for rows with no allowed key),
    differentiable in q, k and key_bias."""
    ct = torch.float64 if q.dtype == torch.float64 else torch.float32
    q, k = q.to(ct), k.to(ct)
    bias = None if key_bias is None else per_head(key_bias.to(ct))
    idx = None if key_index is None else key_index.long()
    B, H, N, _ = q.shape
    step = chunk_rows(B, H, k.shape[2] if idx is None else idx.shape[1] + 1, q.element_size())
    grad = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (q, k, bias))
    parts = []
    for start in range(0, N, step):
        args = (q[:, :, start : start + step], k, bias, key_mask, idx, always_self, scale, start)
        parts.append(checkpoint(_lse, *args, use_reentrant=False) if grad else _lse(*args))
    return torch.cat(parts, 2)


@torch.no_grad()
def chunked_colsum(
    q: Tensor,
    k: Tensor,
    key_mask: Tensor | None,
    key_index: Tensor | None,
    key_bias: Tensor | None,
    always_self: bool,
    scale: float,
) -> Tensor:
    """Column sums c_j = sum_i p_ij, [B, H, N] (float32, float64 for float64 inputs), no gradient."""
    ct = torch.float64 if q.dtype == torch.float64 else torch.float32
    q, k = q.to(ct), k.to(ct)
    bias = None if key_bias is None else per_head(key_bias.to(ct))
    idx = None if key_index is None else key_index.long()
    B, H, N, _ = q.shape
    nk = N if idx is None else idx.shape[1]
    colsum = torch.zeros(B, H, nk, dtype=ct, device=q.device)
    own = torch.zeros(B, H, N, dtype=ct, device=q.device)
    step = chunk_rows(B, H, nk + 1, q.element_size())
    for start in range(0, N, step):
        p, _ = _probs(q[:, :, start : start + step], k, key_mask, idx, bias, always_self, scale, start)
        colsum += p[..., :nk].sum(2)
        if idx is not None and always_self:  # the own-key column: query i's weight on key i
            own[:, :, start : start + step] = p[..., nk]
    if idx is None:
        return colsum
    return own.scatter_add(2, idx[:, None, :].expand(B, H, nk), colsum)
