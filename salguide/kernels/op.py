"""The Triton and reference paths as ``torch.library`` custom ops (``salguide::attention`` and its
backward), used while ``torch.compile`` traces: it keeps each as one opaque node with a fake
(shape-only) implementation and a registered autograd formula instead of breaking the graph around it.
Eager calls skip this dispatch (:mod:`.function`); the SDPA path is traced as torch's own ops.

The forward returns four tensors (out, mass, lse, colsum); mass and colsum are empty [0] tensors
when not asked for. ``backend`` is the resolved path, "triton" or "reference" (:mod:`.dispatch`)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .checks import check_values
from .function import reduce_heads
from .reference import equal_count_index, reference_forward
from .reference_backward import reference_backward


@torch.library.custom_op("salguide::attention", mutates_args=())
def attention_op(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    key_mask: Tensor | None,
    key_index: Tensor | None,
    key_bias: Tensor | None,
    target: Tensor | None,
    always_self: bool,
    return_colsum: bool,
    scale: float,
    backend: str,
    validate: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    if validate:
        check_values(q, k, v, key_index, key_bias, target)
    if backend == "triton":
        from .triton_colsum import triton_colsum
        from .triton_common import key_set
        from .triton_forward import triton_forward

        keys = key_set(key_mask, key_index, always_self, q.shape[2])
        out, mass, lse, colsum = triton_forward(q, k, v, keys, key_bias, target, scale, return_colsum)
        if colsum is not None:
            colsum = triton_colsum(q, k, lse, keys, key_bias, scale, colsum)
    else:
        key_mask, key_index = _gathered(key_mask, key_index)
        with torch.no_grad():
            out, mass, lse, colsum = reference_forward(
                q, k, v, key_mask, key_index, key_bias, target, always_self, scale
            )
    return out.contiguous(), _or_empty(mass, lse), lse, _or_empty(colsum if return_colsum else None, lse)


@attention_op.register_fake
def _attention_fake(q, k, v, key_mask, key_index, key_bias, target, always_self, return_colsum, scale, backend,
                    validate) -> tuple[Tensor, Tensor, Tensor, Tensor]:  # fmt: skip
    stats = q.new_empty(q.shape[:3], dtype=_stats_dtype(q))
    empty = q.new_empty(0, dtype=stats.dtype)
    return (
        q.new_empty(q.shape),
        stats.clone() if target is not None else empty,
        stats,
        (stats.clone() if return_colsum else empty.clone()),
    )


@torch.library.custom_op("salguide::attention_backward", mutates_args=())
def attention_backward_op(
    dout: Tensor,
    dmass: Tensor,
    dlse: Tensor,
    q: Tensor,
    k: Tensor,
    v: Tensor,
    out: Tensor,
    mass: Tensor,
    lse: Tensor,
    key_mask: Tensor | None,
    key_index: Tensor | None,
    key_bias: Tensor | None,
    target: Tensor | None,
    always_self: bool,
    scale: float,
    backend: str,
    need_dbias: bool,
    need_dtarget: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Return (dq, dk, dv, dbias, dtarget); dbias/dtarget are empty [0] when not needed."""
    need_dbias = need_dbias and key_bias is not None
    need_dtarget = need_dtarget and target is not None
    if backend == "triton":
        from .triton_backward import triton_backward
        from .triton_common import key_set

        keys = key_set(key_mask, key_index, always_self, q.shape[2])
        dq, dk, dv, dbias, dw = triton_backward(
            dout, dmass, dlse, q, k, v, out, mass if target is not None else None, lse, keys, key_bias,
            target, scale, need_dbias, need_dtarget,
        )  # fmt: skip
    else:
        key_mask, key_index = _gathered(key_mask, key_index)
        dq, dk, dv, dbias, dw = reference_backward(
            dout, dmass, dlse, q, k, v, out, mass, key_mask, key_index, key_bias, target, always_self, scale
        )
    dbias = (
        reduce_heads(dbias, key_bias) if need_dbias and dbias is not None and key_bias is not None else q.new_empty(0)
    )
    dtarget = reduce_heads(dw, target) if need_dtarget and dw is not None and target is not None else q.new_empty(0)
    return dq.to(q.dtype), dk.to(k.dtype), dv.to(v.dtype), dbias, dtarget


@attention_backward_op.register_fake
def _attention_backward_fake(dout, dmass, dlse, q, k, v, out, mass, lse, key_mask, key_index, key_bias, target,
                             always_self, scale, backend, need_dbias, need_dtarget
                             ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:  # fmt: skip
    dbias = key_bias.new_empty(key_bias.shape) if need_dbias and key_bias is not None else q.new_empty(0)
    dtarget = target.new_empty(target.shape) if need_dtarget and target is not None else q.new_empty(0)
    return q.new_empty(q.shape), k.new_empty(k.shape), v.new_empty(v.shape), dbias, dtarget


def _setup_context(ctx: Any, inputs: tuple, output: tuple) -> None:
    q, k, v, key_mask, key_index, key_bias, target, always_self, _, scale, backend, _ = inputs
    out, mass, lse, colsum = output
    ctx.mark_non_differentiable(colsum)  # as in eager mode: column sums carry no gradient
    ctx.save_for_backward(q, k, v, out, mass, lse, key_mask, key_index, key_bias, target)
    ctx.always_self, ctx.scale, ctx.backend = always_self, scale, backend


def _backward(ctx: Any, dout: Tensor, dmass: Tensor, dlse: Tensor, _dcolsum: Tensor) -> tuple:
    q, k, v, out, mass, lse, key_mask, key_index, key_bias, target = ctx.saved_tensors
    need = ctx.needs_input_grad
    dq, dk, dv, dbias, dtarget = attention_backward_op(
        dout, dmass, dlse, q, k, v, out, mass, lse, key_mask, key_index, key_bias, target, ctx.always_self,
        ctx.scale, ctx.backend, need[5], need[6],
    )  # fmt: skip
    dbias = dbias if need[5] and key_bias is not None else None
    dtarget = dtarget if need[6] and target is not None else None
    return dq, dk, dv, None, None, dbias, dtarget, None, None, None, None, None


attention_op.register_autograd(_backward, setup_context=_setup_context)


def _gathered(key_mask: Tensor | None, key_index: Tensor | None) -> tuple[Tensor | None, Tensor | None]:
    """The torch backend gathers the keys of a mask that allows the same number in every sample (as
    DynamicViT-style masks do) instead of computing all N and masking; other masks stay dense."""
    index = equal_count_index(key_mask)
    return (key_mask, key_index) if index is None else (None, index)


def _stats_dtype(q: Tensor) -> torch.dtype:
    return torch.float64 if q.dtype == torch.float64 else torch.float32


def _or_empty(x: Tensor | None, like: Tensor) -> Tensor:
    return like.new_empty(0) if x is None else x
