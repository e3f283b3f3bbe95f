"""Public entry points: ``attention`` (the output) and ``attention_stats`` (output, mass, colsum, lse)."""

from __future__ import annotations

import torch
from torch import Tensor

from .checks import check_inputs, check_values
from .dispatch import case_of, resolve_backend, resolve_validate
from .function import TritonAttention
from .op import attention_op
from .reference import reference_forward
from .result import AttentionResult, package
from .sdpa import sdpa_attention


def attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    key_mask: Tensor | None = None,
    key_index: Tensor | None = None,
    key_bias: Tensor | None = None,
    always_self: bool = False,
    scale: float | None = None,
    backend: str | None = None,
    validate: bool | None = None,
) -> Tensor:
    """Softmax attention o_i = sum_j p_ij v_j, p_ij = softmax_j(scale q_i.k_j + b_j) over allowed keys
    (the key-subset use follows DynamicViT, Rao et al. 2021, EViT, Liang et al. 2022, and ToMe's size
    bias, Bolya et al. 2023). Returns out [B, H, N, D]; :func:`attention_stats` also returns the mass,
    column sums and log-sum-exp.

    Args:
        q, k, v: [B, H, N, D], one float dtype and device.
        key_mask: bool [B, N], True = key may be attended. Any subset.
        key_index: int [B, Nk], distinct positions in [0, N): each sample attends only to these keys.
            Mutually exclusive with ``key_mask``.
        key_bias: float [B, N] or [B, H, N] added to the scores of each key (e.g. ToMe's log size).
        always_self: query i may also attend to key i, whether or not it is masked out / listed.
        scale: score scale, default D**-0.5.
        backend: "auto" | "sdpa" | "triton" | "reference"; None reads ``SALGUIDE_ATTENTION_BACKEND``
            (else "auto"). See :mod:`salguide.kernels.dispatch`.
        validate: check the data (NaN/inf, key_index range and duplicates, target range) at the cost of
            one device sync; None: on for CPU tensors, on CUDA only with ``SALGUIDE_ATTENTION_VALIDATE=1``.
            Shapes, dtypes and devices are always checked.

    A query with no allowed key gets out 0 and zero gradients. In eager mode every path is differentiable
    twice (``create_graph=True`` recomputes the gradient with differentiable torch ops); under
    ``torch.compile`` there is no double backward (AOT autograd does not support it).
    """
    return _run(q, k, v, key_mask, key_index, key_bias, always_self, None, False, False, scale, backend,
                validate).out  # fmt: skip


def attention_stats(
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
    validate: bool | None = None,
) -> AttentionResult:
    """:func:`attention` that also returns the differentiable attention mass m_i = sum_j p_ij w_j
    (docs/methods/attention_kernel.md), the column sums and the log-sum-exp.

    Args (besides those of :func:`attention`):
        target: per-key weights w in [0, 1], [B, N] or [B, H, N]; asks for ``mass``.
        return_colsum: also return c_j = sum_i p_ij (attention received; no gradient).
        return_lse: also return the log-sum-exp of each query's scores (differentiable).

    Returns an :class:`AttentionResult` (out, mass, colsum, lse) with None in the fields not asked
    for. A query with no allowed key gets out 0, mass 0, colsum contribution 0, lse +inf and zero
    gradients.
    """
    return _run(q, k, v, key_mask, key_index, key_bias, always_self, target, return_colsum, return_lse, scale,
                backend, validate)  # fmt: skip


def _run(
    q: Tensor, k: Tensor, v: Tensor, key_mask: Tensor | None, key_index: Tensor | None, key_bias: Tensor | None,
    always_self: bool, target: Tensor | None, return_colsum: bool, return_lse: bool, scale: float | None,
    backend: str | None, validate: bool | None,
) -> AttentionResult:  # fmt: skip
    scale = check_inputs(q, k, v, key_mask, key_index, key_bias, target, always_self, scale)
    case = case_of(key_mask, key_index, key_bias, target, always_self, return_colsum, return_lse)
    path = resolve_backend(backend, q, case)
    check = resolve_validate(validate, q)
    compiling = torch.compiler.is_compiling()
    if check and not compiling:
        check_values(q, k, v, key_index, key_bias, target)
    if path == "sdpa":
        out, mass, lse, colsum = sdpa_attention(q, k, v, key_mask, key_index, key_bias, target, always_self, scale,
                                                return_colsum, return_lse)  # fmt: skip
    elif compiling:  # one opaque custom op while torch.compile traces
        out, mass, lse, colsum = attention_op(q, k, v, key_mask, key_index, key_bias, target, always_self,
                                              return_colsum, scale, path, check)  # fmt: skip
        mass = mass if target is not None else None
    elif path == "triton":
        out, mass, lse, colsum = TritonAttention.apply(q, k, v, key_bias, target, key_mask, key_index, always_self,
                                                       scale, return_colsum)  # fmt: skip
    else:  # the dense oracle, differentiated by autograd
        out, mass, lse, colsum = reference_forward(q, k, v, key_mask, key_index, key_bias, target, always_self, scale)
        colsum = colsum.detach()
    return package(out, mass, colsum, lse, return_colsum, return_lse)
