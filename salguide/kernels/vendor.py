"""torch's own attention kernels (flash on CUDA, the CPU flash kernel on CPU) as autograd Functions
that are fast to first order and still twice differentiable.

``vendor_sdpa(q, k, v, mask, scale)`` returns softmax(scale q k^T over allowed keys) v and, on CPU, the
differentiable log-sum-exp. Its backward is the vendor backward, except when autograd is building a
graph of the gradient (``create_graph=True``, e.g. input-saliency losses such as RRR): inside a
backward, grad mode is on exactly then, and the gradient is recomputed with differentiable dense ops
so that a second backward exists (vendor backwards have no derivative of their own).

The CPU log-sum-exp gradient: with l_i = dL/dlse_i, dL/ds_ij = p_ij (dO_i.v_j - D_i) + l_i p_ij. The
vendor backward computes D_i = dO_i.o_i itself, so one extra column with v = 0, o = -l and dO = 1
turns its D_i into D_i - l_i and leaves everything else unchanged (exact; tested in float64)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from .reference import masked_softmax

_CPU_FLASH = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
_CPU_FLASH_BACKWARD = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu_backward", None)


def vendor_sdpa(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, scale: float) -> tuple[Tensor, Tensor | None]:
    """(out, lse or None). q, k, v: [B, H, N|Nk, E], one width; mask: bool, broadcastable to
    [B, H, N, Nk] (True = allowed) or None. lse is returned (differentiable) on CPU only."""
    if torch.compiler.is_compiling():  # traced as torch's own op; AOT autograd derives its backward
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale), None
    if q.device.type == "cpu" and _CPU_FLASH is not None and _CPU_FLASH_BACKWARD is not None:
        return CpuFlash.apply(q, k, v, mask, scale)
    if not (torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v))):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale), None
    return VendorSdpa.apply(q, k, v, mask, scale), None


def _float_mask(mask: Tensor | None, dtype: torch.dtype) -> Tensor | None:
    if mask is None:
        return None
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill_(~mask, float("-inf"))


def _dense(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, scale: float) -> tuple[Tensor, Tensor]:
    """The same function in differentiable dense torch: (out, lse)."""
    s = scale * q @ k.transpose(-1, -2)
    allowed = torch.ones_like(s, dtype=torch.bool) if mask is None else mask.expand_as(s)
    p, lse = masked_softmax(s, allowed)
    return p @ v, lse


def _twice_differentiable_grads(ctx: Any, grads: tuple[Tensor | None, ...]) -> tuple[Tensor | None, ...]:
    """First-order gradients of q, k, v with their own graph (the create_graph case)."""
    q, k, v, mask = ctx.saved_tensors[:4]
    with torch.enable_grad():
        outs = _dense(q, k, v, mask, ctx.scale)
    pairs = [(o, g) for o, g in zip(outs, grads) if g is not None]
    inputs = [t for t, need in zip((q, k, v), ctx.needs_input_grad) if need]
    got = iter(torch.autograd.grad([o for o, _ in pairs], inputs, [g for _, g in pairs], create_graph=True,
                                   allow_unused=True, materialize_grads=True))  # fmt: skip
    return tuple(next(got) if need else None for need in ctx.needs_input_grad[:3])


class CpuFlash(torch.autograd.Function):
    """The CPU flash kernel (``aten::_scaled_dot_product_flash_attention_for_cpu``) with its log-sum-exp."""

    @staticmethod
    def forward(ctx: Any, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, scale: float) -> tuple[Tensor, Tensor]:
        fmask = _float_mask(mask, q.dtype)
        assert _CPU_FLASH is not None  # vendor_sdpa routes here only when torch has the kernel
        out, lse = _CPU_FLASH(q, k, v, attn_mask=fmask, scale=scale)
        ctx.save_for_backward(q, k, v, mask, out, lse, fmask)
        ctx.scale = scale
        ctx.set_materialize_grads(False)  # an unused lse gets None, not zeros (no extra column then)
        return out, lse

    @staticmethod
    def backward(ctx: Any, dout: Tensor | None, dlse: Tensor | None) -> tuple:
        if torch.is_grad_enabled():
            return (*_twice_differentiable_grads(ctx, (dout, dlse)), None, None)
        q, k, v, _, out, lse, fmask = ctx.saved_tensors
        dout = torch.zeros_like(out) if dout is None else dout
        if dlse is not None:  # the extra column of the module docstring
            q, k, v = (F.pad(t, (0, 1)) for t in (q, k, v))
            out = torch.cat([out, -dlse.to(out.dtype)[..., None]], -1)
            dout = torch.cat([dout, torch.ones_like(out[..., :1])], -1)
        assert _CPU_FLASH_BACKWARD is not None
        dq, dk, dv = _CPU_FLASH_BACKWARD(dout.contiguous(), q, k, v, out, lse, 0.0, False, attn_mask=fmask,
                                         scale=ctx.scale)  # fmt: skip
        width = ctx.saved_tensors[0].shape[-1]
        return dq[..., :width], dk[..., :width], dv[..., :width], None, None


class VendorSdpa(torch.autograd.Function):
    """``F.scaled_dot_product_attention`` (any device): the forward keeps torch's own graph among the
    saved tensors (so it is released, or retained, together with this node's), the first-order
    backward runs it."""

    @staticmethod
    def forward(ctx: Any, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, scale: float) -> Tensor:
        with torch.enable_grad():
            leaves = [t.detach().requires_grad_(t.requires_grad) for t in (q, k, v)]
            out = F.scaled_dot_product_attention(leaves[0], leaves[1], leaves[2], attn_mask=mask, scale=scale)
        ctx.save_for_backward(q, k, v, mask, out, *leaves)
        ctx.scale = scale
        return out.detach()

    @staticmethod
    def backward(ctx: Any, dout: Tensor) -> tuple:
        if torch.is_grad_enabled():
            return (*_twice_differentiable_grads(ctx, (dout, None)), None, None)
        out, *leaves = ctx.saved_tensors[4:]
        need = [t for t in leaves if t.requires_grad]
        got = iter(torch.autograd.grad(out, need, dout, retain_graph=True))
        return (*(next(got) if t.requires_grad else None for t in leaves), None, None)
