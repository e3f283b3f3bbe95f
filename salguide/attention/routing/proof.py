"""What ``route()`` can prove it reproduces, and the numeric check it runs before it accepts a model.

A routed timm-layout model runs salguide's forwards (``timm_layout.py``) instead of each block's and
attention module's own. That is only the same function when the module's class computes exactly timm's
pre-norm ``Block`` / plain ``Attention``: post-norm blocks (timm ``ResPostBlock``), gated attention
(``Attention(gated=True)``), ``DiffAttention`` or Eva blocks with RoPE would silently compute something
else. So a module is accepted only when the class that defines its ``forward`` is on an allow-list (or
was declared with :func:`declare_timm_layout`) and it uses no option the routed forward ignores; then
each routed block is compared with the original on a small random input.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

TIMM_BLOCKS = {
    "timm.models.vision_transformer.Block",
    "salguide.models.vit.Block",
}
TIMM_ATTENTION = {
    "timm.layers.attention.Attention",
    "timm.models.vision_transformer.Attention",  # timm < 1.0 defined it there
    "salguide.models.vit.Attention",
}
_DECLARED: set[type] = set()
CHECK_TOKENS = 7  # tokens of the random input of the numeric check


def declare_timm_layout(*classes: type) -> None:
    """Declare block / attention classes whose ``forward`` computes exactly timm's pre-norm ``Block``
    (``x + ls1(attn(norm1(x)))``, then ``x + ls2(mlp(norm2(x)))``) or plain ``Attention`` (fused ``qkv``,
    optional ``q_norm``/``k_norm``/``norm``, softmax, ``proj``). ``route()`` still checks the outputs."""
    for cls in classes:
        if not isinstance(cls, type) or not issubclass(cls, nn.Module):
            raise TypeError(f"declare_timm_layout takes nn.Module classes, got {cls!r}")
        _DECLARED.add(cls)


def _qualname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def forward_owner(module: nn.Module) -> type | None:
    """The class whose ``forward`` the module runs (None when the instance overrides it)."""
    if "forward" in vars(module):
        return None
    return next(c for c in type(module).__mro__ if "forward" in vars(c))


def supported_text() -> str:
    declared = sorted(_qualname(c) for c in _DECLARED)
    return (
        f"blocks: {', '.join(sorted(TIMM_BLOCKS))}; attention: {', '.join(sorted(TIMM_ATTENTION))}"
        + (f"; declared: {', '.join(declared)}" if declared else "")
        + " (declare a look-alike with salguide.attention.declare_timm_layout)"
    )


def _proven(module: nn.Module, allowed: set[str]) -> bool:
    owner = forward_owner(module)
    return owner is not None and (owner in _DECLARED or _qualname(owner) in allowed)


def check_timm_blocks(blocks: Sequence[Any]) -> None:
    """Refuse blocks / attention modules the routed forwards do not reproduce, naming what is supported."""
    for i, b in enumerate(blocks):
        for module, allowed, where in ((b, TIMM_BLOCKS, f"blocks[{i}]"), (b.attn, TIMM_ATTENTION, f"blocks[{i}].attn")):
            if not _proven(module, allowed):
                how = "an instance-level forward" if forward_owner(module) is None else type(module).__name__
                raise TypeError(
                    f"route() cannot prove that it reproduces {where} ({how}); routed timm-layout models must use "
                    f"supported classes: {supported_text()}"
                )
        if getattr(b.attn, "gate", None) is not None:
            raise TypeError(f"blocks[{i}].attn is gated attention (attn.gate); the routed forward has no output gate")
        p = getattr(getattr(b.attn, "attn_drop", None), "p", 0.0)
        if p:
            raise ValueError(f"blocks[{i}].attn.attn_drop has p = {p}; routed attention has no attention dropout")


def tolerance(dtype: torch.dtype) -> float:
    """Largest accepted max |routed - original| / max |original| (TF32 / half rounding, not a different
    function: the variants refused here differ by O(1))."""
    return 1e-2 if dtype in (torch.float32, torch.float64) else 5e-2


@torch.no_grad()
def eval_outputs(
    model: nn.Module, cases: Sequence[tuple[nn.Module, int]], begin: Callable[[], None] | None = None
) -> list[Tensor]:
    """Output of each (module, width) on the same random [2, CHECK_TOKENS, width] input, in eval mode (module
    modes and the global RNG are left as they were); ``begin`` runs before each call (routed state reset)."""
    modes = [(m, m.training) for m in model.modules()]
    param = next(model.parameters())
    model.eval()
    outs = []
    try:
        for module, width in cases:
            g = torch.Generator().manual_seed(0)
            x = torch.randn(2, CHECK_TOKENS, width, generator=g).to(param.device, param.dtype)
            if begin is not None:
                begin()
            out = module(x)
            outs.append((out[0] if isinstance(out, (tuple, list)) else out).detach())
    finally:
        for m, training in modes:
            m.training = training
    return outs


def check_same_outputs(names: Sequence[str], original: Sequence[Tensor], routed: Sequence[Tensor]) -> None:
    """ValueError naming the first routed output that differs from the original beyond :func:`tolerance`."""
    for name, ref, out in zip(names, original, routed):
        err = float((out.float() - ref.float()).abs().max() / ref.float().abs().max().clamp_min(1e-6))
        if not err <= tolerance(ref.dtype):  # also catches NaN
            raise ValueError(
                f"route(): the routed {name} differs from the original on a random input (max relative error "
                f"{err:.3g} > {tolerance(ref.dtype)}), so routing would change the model; it was left unrouted"
            )
