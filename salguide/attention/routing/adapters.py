"""Route an existing model's attention through salguide.kernels: ``route(model)``, undone by ``unroute(model)``.

Supported: salguide's own ViT (already routed), models with timm's ``VisionTransformer`` layout whose
blocks and attention modules are timm's pre-norm ``Block`` and plain ``Attention`` (or classes declared
with :func:`~salguide.attention.routing.proof.declare_timm_layout`; ``timm_layout.py``), and the Hugging
Face ViTs listed in ``hf.HF_ATTENTION`` (``hf.py``). Anything route() cannot prove it reproduces is refused
(post-norm blocks, gated or differential attention, RoPE, BEiT, ...), and every routed layer is compared
with the original on a small random input before the model is accepted.
"""

from __future__ import annotations

from torch import nn

from .router import Router
from .timm_layout import is_timm_layout, route_timm

SUPPORTED = (
    "salguide.models.VisionTransformer",
    "timm-layout ViTs: model.blocks[i] with norm1, attn.qkv (nn.Linear), attn.proj, attn.num_heads, norm2, mlp, "
    "of timm's pre-norm Block and plain Attention classes (see salguide.attention.routing.proof)",
    "Hugging Face ViTs using transformers' attention registry (ViT, DeiT, Dinov2, ViT-MSN, I-JEPA; see hf.HF_ATTENTION)",
)


def route(model: nn.Module, backend: str | None = None) -> nn.Module:
    """Make ``model``'s attention run through :func:`salguide.kernels.attention` (in place; returns it)."""
    if isinstance(getattr(model, "salguide_router", None), Router):
        return model
    if is_timm_layout(model):
        return route_timm(model, backend)
    from .hf import is_hf_model, route_hf  # imports transformers: only when a model is not timm-layout

    if is_hf_model(model):
        return route_hf(model, backend)
    raise TypeError(
        f"cannot route the attention of {type(model).__name__}: supported models are\n  - " + "\n  - ".join(SUPPORTED)
    )
