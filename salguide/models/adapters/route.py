"""Route an existing model's attention through salguide.kernels: ``route(model)``.

Supported: salguide's own ViT (already routed), models with timm's ``VisionTransformer`` layout whose
blocks and attention modules are timm's pre-norm ``Block`` and plain ``Attention`` (or classes declared
with :func:`~salguide.models.adapters.proof.declare_timm_layout`), and the Hugging Face ViTs listed in
``hf.HF_ATTENTION``. Anything route() cannot prove it reproduces is refused (post-norm blocks, gated or
differential attention, RoPE, BEiT, ...), and every routed layer is compared with the original on a small
random input before the model is accepted. ``unroute(model)`` restores the original forwards.
"""

from __future__ import annotations

import functools
from typing import Any

from torch import Tensor, nn

from salguide.attention.router import Router

from .proof import check_same_outputs, check_timm_blocks, eval_outputs
from .timm_layout import attention_forward, block_forward

SUPPORTED = (
    "salguide.models.VisionTransformer",
    "timm-layout ViTs: model.blocks[i] with norm1, attn.qkv (nn.Linear), attn.proj, attn.num_heads, norm2, mlp, "
    "of timm's pre-norm Block and plain Attention classes (see salguide.models.adapters.proof)",
    "Hugging Face ViTs using transformers' attention registry (ViT, DeiT, Dinov2, ViT-MSN, I-JEPA; see hf.HF_ATTENTION)",
)


def attach_router(model: nn.Module, router: Router, blocks: Any = None) -> Router:
    """Attach ``router`` to ``model`` and to each timm-layout block / attention module (index = position)."""
    blocks = model.blocks if blocks is None else blocks
    for i, block in enumerate(blocks):
        block.attn.salguide_router, block.attn.salguide_index = router, i
    model.salguide_router = router
    router.hook = model.register_forward_pre_hook(begin_forward, with_kwargs=True)
    return router


def begin_forward(model: nn.Module, args: Any, kwargs: dict[str, Any]) -> None:
    """Forward pre-hook of a routed model: reset its router's per-forward state and note the spatial size
    of the image input (the first positional argument or ``pixel_values``), from which ``token_grid``
    takes the patch grid (a module-level function, so that the model still pickles, e.g. for ``ddp_spawn``)."""
    x = args[0] if args else kwargs.get("pixel_values")
    model.salguide_router.begin(tuple(x.shape[-2:]) if isinstance(x, Tensor) and x.dim() == 4 else None)


def route(model: nn.Module, backend: str | None = None) -> nn.Module:
    """Make ``model``'s attention run through :func:`salguide.kernels.attention` (in place; returns it)."""
    if isinstance(getattr(model, "salguide_router", None), Router):
        return model
    if _is_timm_layout(model):
        return _route_timm(model, backend)
    from .hf import is_hf_model, route_hf

    if is_hf_model(model):
        return route_hf(model, backend)
    raise TypeError(
        f"cannot route the attention of {type(model).__name__}: supported models are\n  - "
        + "\n  - ".join(SUPPORTED)
    )


def unroute(model: nn.Module) -> nn.Module:
    """Undo :func:`route` (restores the original forwards / attention implementation)."""
    router = getattr(model, "salguide_router", None)
    undo = getattr(router, "undo", None)
    if undo is None:
        raise ValueError(f"{type(model).__name__} was not routed by salguide.models.adapters.route")
    undo()
    router.hook.remove()
    del model.salguide_router
    return model


def _is_timm_layout(model: nn.Module) -> bool:
    blocks = getattr(model, "blocks", None)
    if not isinstance(blocks, (nn.Sequential, nn.ModuleList)) or len(blocks) == 0:
        return False
    need_block, need_attn = ("norm1", "norm2", "mlp", "attn"), ("qkv", "proj", "num_heads")
    return all(
        all(hasattr(b, n) for n in need_block)
        and all(hasattr(b.attn, n) for n in need_attn)
        and isinstance(b.attn.qkv, nn.Linear)
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


def _route_timm(model: nn.Module, backend: str | None) -> nn.Module:
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
        check_same_outputs([f"blocks[{i}]" for i in range(len(cases))], original,
                           eval_outputs(model, cases, begin=router.begin))
    except BaseException:
        unroute(model)
        raise
    return model
