"""Forwards for modules with timm's ViT attribute layout, routed through salguide.kernels.

``Attention``: ``qkv``, ``num_heads``, ``scale`` (or head_dim**-0.5), optional ``q_norm``, ``k_norm``,
``norm``, ``attn_drop``, ``proj``, ``proj_drop``. ``Block``: ``norm1``, ``attn``, ``norm2``, ``mlp`` and
optional ``ls1``, ``ls2``, ``drop_path1``, ``drop_path2``. salguide's ViT uses these as its own forwards;
:func:`salguide.models.adapters.route` binds them onto a timm ``VisionTransformer``'s modules.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from salguide.attention.routed import routed_attention

_IDENTITY = nn.Identity()


def _opt(module: nn.Module, name: str) -> Any:
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


def attention_forward(attn: nn.Module, x: Tensor, attn_mask: Tensor | None = None, **kwargs: Any) -> Tensor:
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


def block_forward(block: nn.Module, x: Tensor, attn_mask: Tensor | None = None, **kwargs: Any) -> Tensor:
    """timm ``Block.forward``; the token policy (EViT / DynamicViT / ToMe) acts between attention and MLP."""
    check_arguments("block", attn_mask, kwargs)
    x = x + _opt(block, "drop_path1")(_opt(block, "ls1")(block.attn(block.norm1(x))))
    router = block.attn.salguide_router
    if router.policy is not None:
        x = router.policy.after_attention(block.attn.salguide_index, x, router.state, block.training)
    return x + _opt(block, "drop_path2")(_opt(block, "ls2")(block.mlp(block.norm2(x))))
