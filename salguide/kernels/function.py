"""The Triton kernels as a plain ``torch.autograd.Function`` for eager mode (no ``torch.library``
dispatch on the way; the custom op in :mod:`.op` stays for ``torch.compile``). The key set built for
the forward is carried to the backward. When autograd builds a graph of the gradient
(``create_graph=True``; grad mode is on inside a backward exactly then) the backward recomputes the
gradients with the differentiable torch reference instead, so input-saliency losses (RRR, gradient
energy) can differentiate them again."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .reference import reference_forward


class TritonAttention(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any, q: Tensor, k: Tensor, v: Tensor, key_bias: Tensor | None, target: Tensor | None,
        key_mask: Tensor | None, key_index: Tensor | None, always_self: bool, scale: float, want_colsum: bool,
    ) -> tuple[Tensor, Tensor | None, Tensor, Tensor | None]:  # fmt: skip
        from .triton_colsum import triton_colsum
        from .triton_common import key_set
        from .triton_forward import triton_forward

        keys = key_set(key_mask, key_index, always_self, q.shape[2])
        out, mass, lse, colsum = triton_forward(q, k, v, keys, key_bias, target, scale, want_colsum)
        if colsum is not None:
            colsum = triton_colsum(q, k, lse, keys, key_bias, scale, colsum)
            ctx.mark_non_differentiable(colsum)
        ctx.save_for_backward(q, k, v, key_bias, target, out, mass, lse, keys.index, keys.count, keys.own,
                              key_mask, key_index)  # fmt: skip
        ctx.always_self, ctx.scale = always_self, scale
        return out, mass, lse, colsum

    @staticmethod
    def backward(ctx: Any, dout: Tensor, dmass: Tensor | None, dlse: Tensor, _dcolsum: Any) -> tuple:
        from .triton_backward import triton_backward
        from .triton_common import KeySet

        q, k, v, key_bias, target, out, mass, lse, index, count, own, key_mask, key_index = ctx.saved_tensors
        need = ctx.needs_input_grad
        if torch.is_grad_enabled():
            grads = reference_grads(ctx, (dout, dmass, dlse), q, k, v, key_bias, target, key_mask, key_index)
        else:
            dmass = torch.zeros_like(lse) if target is not None and dmass is None else dmass
            grads = triton_backward(
                dout, dmass, dlse, q, k, v, out, mass, lse, KeySet(index, count, own), key_bias, target,
                ctx.scale, need[3], need[4],
            )  # fmt: skip
            dbias, dw = grads[3:]
            dbias = None if dbias is None or key_bias is None else reduce_heads(dbias, key_bias)
            grads = (*grads[:3], dbias, None if dw is None or target is None else reduce_heads(dw, target))
        grads = tuple(g.to(t.dtype) if g is not None and t is not None else None for g, t in
                      zip(grads, (q, k, v, key_bias, target)))  # fmt: skip
        return (*(g if n else None for g, n in zip(grads, need)), None, None, None, None, None)


def reference_grads(
    ctx: Any, grads: tuple[Tensor | None, ...], q: Tensor, k: Tensor, v: Tensor, key_bias: Tensor | None,
    target: Tensor | None, key_mask: Tensor | None, key_index: Tensor | None,
) -> tuple[Tensor | None, ...]:  # fmt: skip
    """Gradients of (q, k, v, key_bias, target) recomputed by autograd of the reference, with a graph."""
    with torch.enable_grad():
        out, mass, lse, _ = reference_forward(q, k, v, key_mask, key_index, key_bias, target, ctx.always_self,
                                              ctx.scale)  # fmt: skip
        lse = torch.where(torch.isfinite(lse), lse, 0.0)  # rows without keys (+inf) have no gradient
    pairs = [(o, g) for o, g in zip((out, mass, lse), grads) if o is not None and g is not None]
    inputs = [t for t, need in zip((q, k, v, key_bias, target), ctx.needs_input_grad) if need and t is not None]
    got = iter(torch.autograd.grad([o for o, _ in pairs], inputs, [g for _, g in pairs], create_graph=True,
                                   allow_unused=True, materialize_grads=True))  # fmt: skip
    return tuple(next(got) if need and t is not None else None
                 for t, need in zip((q, k, v, key_bias, target), ctx.needs_input_grad))  # fmt: skip


def reduce_heads(per_head: Tensor, like: Tensor) -> Tensor:
    """A float32 [B, H, N] per-head gradient in the shape and dtype of ``like`` ([B, N] or [B, H, N])."""
    return (per_head.sum(1) if like.dim() == 2 else per_head).to(like.dtype)
