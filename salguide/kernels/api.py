"""Public entry point: fused attention with key masks, key subsets, key bias and attention mass."""

from __future__ import annotations

from torch import Tensor

from .checks import check_inputs
from .op import attention_op
from .result import AttentionResult, package


def attention(
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
    backend: str | None = None,
    validate: bool = True,
) -> Tensor | AttentionResult:
    """Softmax attention o_i = sum_j p_ij v_j, p_ij = softmax_j(scale q_i.k_j + b_j) over allowed keys,
    optionally with the differentiable attention mass m_i = sum_j p_ij w_j (DESIGN.md; the key-subset
    use follows DynamicViT, Rao et al. 2021, EViT, Liang et al. 2022, and ToMe's size bias, Bolya et al.
    2023).

    Args:
        q, k, v: [B, H, N, D], one float dtype and device.
        key_mask: bool [B, N], True = key may be attended. Any subset; compacted so masked keys cost nothing.
        key_index: int [B, Nk], distinct positions in [0, N): each sample attends only to these keys
            (never gathered into a copy). Mutually exclusive with ``key_mask``.
        key_bias: float [B, N] or [B, H, N] added to the scores of each key (e.g. ToMe's log size).
        always_self: query i may also attend to key i, whether or not it is masked out / listed.
        target: per-key weights w in [0, 1], [B, N] or [B, H, N]; asks for ``mass``.
        return_colsum: also return c_j = sum_i p_ij (attention received; no gradient).
        return_lse: also return the log-sum-exp of each query's scores (differentiable).
        scale: score scale, default D**-0.5.
        backend: "auto" | "triton" | "reference"; None reads ``SALGUIDE_ATTENTION_BACKEND`` (else "auto").
        validate: check the data (NaN/inf, key_index range and duplicates, target range) at the cost of
            one device sync; shapes, dtypes and devices are always checked.

    Returns:
        ``out`` [B, H, N, D] when neither ``target``, ``return_colsum`` nor ``return_lse`` is given,
        else an :class:`AttentionResult` (out, mass, colsum, lse). A query with no allowed key gets
        out 0, mass 0, colsum contribution 0, lse +inf and zero gradients.
    """
    scale = check_inputs(q, k, v, key_mask, key_index, key_bias, target, always_self, scale)
    out, mass, lse, colsum = attention_op(
        q, k, v, key_mask, key_index, key_bias, target, always_self, return_colsum, scale, backend, validate
    )
    return package(out, mass, colsum, lse, target is not None, return_colsum, return_lse)

