"""What :func:`salguide.kernels.attention_stats` returns."""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor


class AttentionResult(NamedTuple):
    """out [B,H,N,D]; mass [B,H,N] (m_i = sum_j p_ij w_j, differentiable) or None without a target;
    colsum [B,H,N] (c_j = sum_i p_ij, no gradient) or None unless asked for; lse [B,H,N] (natural-log
    log-sum-exp of each query's allowed scores, +inf for rows with no allowed key, differentiable) or
    None unless asked for. mass, colsum and lse are float32 (float64 for float64 inputs)."""

    out: Tensor
    mass: Tensor | None
    colsum: Tensor | None
    lse: Tensor | None


def package(
    out: Tensor, mass: Tensor | None, colsum: Tensor | None, lse: Tensor | None, return_colsum: bool, return_lse: bool
) -> AttentionResult:
    """An :class:`AttentionResult` with None in the fields that were not asked for."""
    return AttentionResult(out, mass, colsum if return_colsum else None, lse if return_lse else None)
