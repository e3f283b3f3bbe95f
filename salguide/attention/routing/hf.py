"""Hugging Face transformers adapter: registers ``"salguide"`` in transformers' attention registry
(``transformers.AttentionInterface``) and switches a model to it.

Only the attention computation is replaced (the model keeps its own projections). That is the same
function only for attention modules that pass no mask or bias to the attention function, so route()
accepts the classes in ``HF_ATTENTION`` and refuses the rest (BEiT and Data2Vec-Vision add a relative
position bias through the mask; causal models) before any forward; each routed module is then compared
with the original on a small random input. The routed model gets its own copy of its config, so models
that shared the config object keep their attention implementation. ``output_attentions=True`` returns the
attention weights (computed densely, only when asked). Attention statistics and losses work on it; token
policies (EViT, DynamicViT, ToMe) need timm's block layout and are refused.
"""

from __future__ import annotations

import copy
import functools
from typing import Any

import torch
from torch import Tensor, nn

from .proof import check_same_outputs, eval_outputs
from .routed import routed_attention
from .router import Router, begin_forward, unroute

NAME = "salguide"
HF_ATTENTION = {  # plain softmax attention, no mask or bias passed (transformers >= 5), tested against eager
    "transformers.models.vit.modeling_vit.ViTAttention",
    "transformers.models.deit.modeling_deit.DeiTAttention",
    "transformers.models.dinov2.modeling_dinov2.Dinov2Attention",
    "transformers.models.dinov2_with_registers.modeling_dinov2_with_registers.Dinov2WithRegistersAttention",
    "transformers.models.vit_msn.modeling_vit_msn.ViTMSNAttention",
    "transformers.models.ijepa.modeling_ijepa.IJepaAttention",
}


def is_hf_model(model: nn.Module) -> bool:
    cfg = getattr(model, "config", None)
    return cfg is not None and hasattr(cfg, "_attn_implementation") and hasattr(model, "set_attn_implementation")


def hf_attention(
    module: Any,
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attention_mask: Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs: Any,
) -> tuple[Tensor, Tensor | None]:
    """transformers attention-interface function: [B, H, N, D] in, ([B, N, H, D], no weights) out."""
    if attention_mask is not None:
        raise ValueError("salguide attention: attention_mask is not supported (ViTs have none)")
    if dropout:
        raise ValueError(f"salguide attention: attention dropout ({dropout}) is not supported; set it to 0")
    router = getattr(module, "salguide_router", None)
    if router is None:
        raise ValueError(f"{type(module).__name__} was not routed; call salguide.attention.route(model)")
    scale = query.shape[-1] ** -0.5 if scaling is None else float(scaling)
    out = routed_attention(router, module.salguide_index, query, key, value, scale)
    weights = None
    if kwargs.get("output_attentions", getattr(getattr(module, "config", None), "output_attentions", False)):
        # asked for the [B, H, N, N] weights (as eager attention returns them): computed only then
        s = torch.matmul(query, key.transpose(-1, -2)) * scale
        weights = s.softmax(-1, dtype=torch.float32).to(query.dtype)
    return out.transpose(1, 2).contiguous(), weights


def _attention_modules(model: nn.Module) -> list[Any]:
    return [m for m in model.modules() if hasattr(m, "is_causal") and hasattr(m, "scaling") and hasattr(m, "config")]


def route_hf(model: Any, backend: str | None = None) -> nn.Module:
    mods = _attention_modules(model)
    if not mods:
        raise TypeError(f"{type(model).__name__}: found no attention modules using transformers' attention registry")
    causal = [type(m).__name__ for m in mods if m.is_causal]
    if causal:
        raise TypeError(f"{type(model).__name__}: causal attention ({causal[0]}) is not supported")
    unknown = sorted({type(m).__name__ for m in mods if f"{type(m).__module__}.{type(m).__name__}" not in HF_ATTENTION})
    if unknown:
        raise TypeError(
            f"route() cannot prove that it reproduces {type(model).__name__}'s attention ({', '.join(unknown)}); "
            f"supported Hugging Face attention classes: {', '.join(sorted(c.rsplit('.', 1)[1] for c in HF_ATTENTION))}"
        )
    cases = [(m, m.config.hidden_size) for m in mods]
    original = eval_outputs(model, cases)
    shared = _own_config(model)
    router = Router(len(mods), backend)
    router.supports_tokens = False
    for i, m in enumerate(mods):
        m.salguide_router, m.salguide_index = router, i
    model.set_attn_implementation(NAME)
    model.salguide_router = router
    router.hook = model.register_forward_pre_hook(begin_forward, with_kwargs=True)
    router.undo = functools.partial(_restore, shared, mods)
    try:
        check_same_outputs(
            [f"{type(m).__name__} #{i}" for i, m in enumerate(mods)],
            original,
            eval_outputs(model, cases, begin=router.begin),
        )
    except BaseException:
        unroute(model)
        raise
    return model


def _own_config(model: nn.Module) -> list[tuple[nn.Module, Any]]:
    """Give ``model`` a private deep copy of its config (sub-configs included), so switching its attention
    implementation does not switch other models built from the same config object; returns what to restore."""
    memo: dict[int, Any] = {}
    copy.deepcopy(model.config, memo)
    shared = []
    for m in model.modules():
        cfg = vars(m).get("config")
        if cfg is not None and id(cfg) in memo:
            shared.append((m, cfg))
            m.config = memo[id(cfg)]
    return shared


def _restore(shared: list, mods: list) -> None:
    """Undo :func:`route_hf`: the original config objects come back (a module-level function, so the routed
    model still pickles)."""
    for m, cfg in shared:
        m.config = cfg
    for m in mods:
        for name in ("salguide_router", "salguide_index"):
            vars(m).pop(name, None)


try:  # registered on import, so that a routed model unpickled in a fresh process (ddp_spawn) runs too
    from transformers import AttentionInterface
except ImportError:  # pragma: no cover - transformers is optional
    pass
else:
    AttentionInterface.register(NAME, hf_attention)
