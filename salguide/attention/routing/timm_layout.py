"""Forwards for modules with timm's ViT attribute layout, routed through salguide.kernels.

``Attention``: ``qkv``, ``num_heads``, ``scale`` (or head_dim**-0.5), optional ``q_norm``, ``k_norm``,
``norm``, ``attn_drop``, ``proj``, ``proj_drop``. ``Block``: ``norm1``, ``attn``, ``norm2``, ``mlp`` and
optional ``ls1``, ``ls2``, ``drop_path1``, ``drop_path2``. salguide's ViT uses these as its own forwards;
:func:`route_timm` (called by :func:`salguide.attention.route`) binds them onto a timm ``VisionTransformer``'s
modules after :mod:`~salguide.attention.routing.proof` accepted its classes.
"""

from __future__ import annotations

import functools
from typing import Any

from torch import Tensor, nn

from .proof import check_same_outputs, check_timm_blocks, eval_outputs
from .routed import routed_attention
from .router import Router, attach_router, unroute

_IDENTITY = nn.Identity()


def _opt(module: Any, name: str) -> Any:
    return getattr(module, name, None) or _IDENTITY


def check_arguments(where: str, attn_mask: Tensor | None, kwargs: dict[str, Any]) -> None:
    """Refuse forward arguments the routed forwards would otherwise ignore (e.g. Eva's ``rope``)."""
    if attn_mask is not None:
        raise ValueError(f"routed {where} does not take attn_mask; use a token policy's key mask instead")
    for name, value in kwargs.items():
        if value is None or (name == "is_causal" and value is False):
            continue
        raise ValueError(
            f"routed {where} cannot honour the forward argument {name}={type(value).__name__}: it computes plain "
            "softmax attention of x only (supported: attn_mask=None, is_causal=False)"
        )


def attention_forward(attn: Any, x: Tensor, attn_mask: Tensor | None = None, **kwargs: Any) -> Tensor:
    """timm ``Attention.forward`` with the softmax attention done by the routed kernel call."""
    check_arguments("attention", attn_mask, kwargs)
    B, N, C = x.shape
    H = attn.num_heads
    qkv = attn.qkv(x).reshape(B, N, 3, H, -1).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)
    q, k = _opt(attn, "q_norm")(q), _opt(attn, "k_norm")(k)
    scale = float(getattr(attn, "scale", q.shape[-1] ** -0.5))
    o = routed_attention(attn.salguide_router, attn.salguide_index, q, k, v, scale)
    o = o.transpose(1, 2).reshape(B, N, -1)
    o = _opt(attn, "norm")(o)
    return _opt(attn, "proj_drop")(attn.proj(o))


def block_forward(block: Any, x: Tensor, attn_mask: Tensor | None = None, **kwargs: Any) -> Tensor:
    """timm ``Block.forward``; the token policy (EViT / DynamicViT / ToMe) acts between attention and MLP."""
    check_arguments("block", attn_mask, kwargs)
    x = x + _opt(block, "drop_path1")(_opt(block, "ls1")(block.attn(block.norm1(x))))
    router = block.attn.salguide_router
    if router.policy is not None:
        x = router.policy.after_attention(block.attn.salguide_index, x, router.state, block.training)
    return x + _opt(block, "drop_path2")(_opt(block, "ls2")(block.mlp(block.norm2(x))))


def is_timm_layout(model: Any) -> bool:
    blocks: Any = getattr(model, "blocks", None)
    if not isinstance(blocks, (nn.Sequential, nn.ModuleList)) or len(blocks) == 0:
        return False
    need_block, need_attn = ("norm1", "norm2", "mlp", "attn"), ("qkv", "proj", "num_heads")
    return all(
        all(hasattr(b, n) for n in need_block)
        and all(hasattr(b.attn, n) for n in need_attn)
        and isinstance(getattr(b.attn, "qkv", None), nn.Linear)
        for b in blocks
    )


class BoundForward:
    """``fn`` bound to ``module`` as its forward; unlike ``types.MethodType`` of a function that is not a
    class attribute, it pickles (``ddp_spawn``, loader workers)."""

    def __init__(self, fn: Any, module: nn.Module) -> None:
        self.fn, self.module = fn, module

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(self.module, *args, **kwargs)


def _restore_timm(saved: list) -> None:
    for b, fb, fa in saved:
        for m, f in ((b, fb), (b.attn, fa)):
            vars(m).pop("forward", None)
            if f is not None:
                m.forward = f
        for name in ("salguide_router", "salguide_index"):
            vars(b.attn).pop(name, None)


def route_timm(model: Any, backend: str | None = None) -> nn.Module:
    """Bind the routed forwards onto ``model.blocks`` (classes checked first, outputs compared after)."""
    check_timm_blocks(model.blocks)
    cases = [(b, b.attn.qkv.in_features) for b in model.blocks]
    original = eval_outputs(model, cases)
    saved = [(b, vars(b).get("forward"), vars(b.attn).get("forward")) for b in model.blocks]
    for b in model.blocks:
        b.forward = BoundForward(block_forward, b)
        b.attn.forward = BoundForward(attention_forward, b.attn)
    router = attach_router(model, Router(len(model.blocks), backend))
    router.undo = functools.partial(_restore_timm, saved)
    try:
        check_same_outputs(
            [f"blocks[{i}]" for i in range(len(cases))], original, eval_outputs(model, cases, begin=router.begin)
        )
    except BaseException:
        unroute(model)
        raise
    return model
