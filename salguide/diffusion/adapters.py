"""PEFT LoRA adapters on the UNet: weight saliency and the mask act on the adapter weights only.

``add_lora`` freezes every parameter of the module (``requires_grad=False``) and injects LoRA
(Hu et al., ICLR 2022) into the UNet's attention projections and ResNet convolutions with ``peft``; only
the adapters train. ``diffusion_saliency_mask``/``diffusion_ant_mask`` (``trainable_only=True``) then score
and mask just the adapter parameters, and ``WeightSaliencyCallback(mask, strict=False)`` enforces the mask
on them; the base weights receive no gradient and are not in the optimizer, so they stay bit-identical.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from salguide._checks import as_int

TARGETS = ("to_q", "to_k", "to_v", "to_out.0", "conv1", "conv2")


def add_lora(
    module: nn.Module,
    rank: int = 4,
    alpha: float | None = None,
    target_modules: Sequence[str] = TARGETS,
    submodule: str = "unet",
) -> nn.Module:
    """Freeze ``module`` and add LoRA adapters (rank ``rank``, scale ``alpha / rank``) to ``module.<submodule>``."""
    from peft import LoraConfig, inject_adapter_in_model

    r = as_int(rank, "rank", 1)
    try:
        target = module.get_submodule(submodule)
    except AttributeError:
        raise ValueError(f"{type(module).__name__} has no submodule {submodule!r} to add LoRA adapters to") from None
    for p in module.parameters():
        p.requires_grad_(False)
    scale = float(alpha if alpha is not None else r)  # peft annotates lora_alpha as int; a float scale works
    config = LoraConfig(
        r=r,
        lora_alpha=scale,  # type: ignore[arg-type]
        target_modules=list(target_modules),
        lora_dropout=0.0,
        init_lora_weights=True,
    )
    inject_adapter_in_model(config, target)
    names = adapter_names(module)
    if not names:
        raise ValueError(f"no module of {submodule!r} matched target_modules={list(target_modules)}")
    for name, p in module.named_parameters():
        p.requires_grad_(name in names)
    return module


def adapter_names(module: nn.Module) -> set[str]:
    """Names of the LoRA adapter parameters of ``module``."""
    return {n for n, _ in module.named_parameters() if ".lora_" in n}


__all__ = ["add_lora", "adapter_names", "TARGETS"]
