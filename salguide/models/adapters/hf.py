"""Hugging Face transformers adapter: registers ``"salguide"`` in transformers' attention registry
(``transformers.AttentionInterface``) and switches a model to it.

Only the attention computation is replaced (the model keeps its own projections), so the routed model
computes the same function. Attention statistics and losses work on it; token policies (EViT,
DynamicViT, ToMe) need timm's block layout and are refused.
"""

from __future__ import annotations

import functools
from typing import Any

from torch import Tensor, nn

from salguide.attention.routed import routed_attention
from salguide.attention.router import Router

from .route import begin_forward

NAME = "salguide"


def is_hf_model(model: nn.Module) -> bool:
    cfg = getattr(model, "config", None)
    return cfg is not None and hasattr(cfg, "_attn_implementation") and hasattr(model, "set_attn_implementation")


def hf_attention(
    module: nn.Module,
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attention_mask: Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs: Any,
) -> tuple[Tensor, None]:
    """transformers attention-interface function: [B, H, N, D] in, ([B, N, H, D], no weights) out."""
    if attention_mask is not None:
        raise ValueError("salguide attention: attention_mask is not supported (ViTs have none)")
    if dropout:
        raise ValueError(f"salguide attention: attention dropout ({dropout}) is not supported; set it to 0")
    router = getattr(module, "salguide_router", None)
    if router is None:
        raise ValueError(f"{type(module).__name__} was not routed; call salguide.models.adapters.route(model)")
    scale = query.shape[-1] ** -0.5 if scaling is None else float(scaling)
    out = routed_attention(router, module.salguide_index, query, key, value, scale)
    return out.transpose(1, 2).contiguous(), None


def _attention_modules(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if hasattr(m, "is_causal") and hasattr(m, "scaling") and hasattr(m, "config")]


def route_hf(model: nn.Module, backend: str | None = None) -> nn.Module:
    mods = _attention_modules(model)
    if not mods:
        raise TypeError(f"{type(model).__name__}: found no attention modules using transformers' attention registry")
    causal = [type(m).__name__ for m in mods if m.is_causal]
    if causal:
        raise TypeError(f"{type(model).__name__}: causal attention ({causal[0]}) is not supported")
    before = model.config._attn_implementation
    router = Router(len(mods), backend)
    router.supports_tokens = False
    for i, m in enumerate(mods):
        m.salguide_router, m.salguide_index = router, i
    model.set_attn_implementation(NAME)
    model.salguide_router = router
    router.hook = model.register_forward_pre_hook(begin_forward)

    router.undo = functools.partial(_restore, model, before or "eager", mods)
    return model


def _restore(model: nn.Module, implementation: str, mods: list) -> None:
    """Undo :func:`route_hf` (a module-level function, so the routed model still pickles)."""
    model.set_attn_implementation(implementation)
    for m in mods:
        for name in ("salguide_router", "salguide_index"):
            vars(m).pop(name, None)


try:  # registered on import, so that a routed model unpickled in a fresh process (ddp_spawn) runs too
    from transformers import AttentionInterface
except ImportError:  # pragma: no cover - transformers is optional
    pass
else:
    AttentionInterface.register(NAME, hf_attention)
