"""Explain a batch and score the explanations, safely from anywhere (validation runs in inference mode)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from salguide.inputs.masks import to_pixel_map
from salguide.inputs.methods import saliency_map

from .deletion import DeletionAUC, InsertionAUC
from .energy import EnergyInMask
from .pointing import PointingGame


def explain(model: nn.Module, x: Tensor, target: Tensor | None, method: str = "gradient", **kwargs: Any) -> Tensor:
    """Detached pixel saliency map [B, H, W] of ``method``; works under ``no_grad``/``inference_mode``
    (it re-enables autograd on a clone of ``x``) and leaves the model's mode and ``.grad`` alone."""
    with torch.inference_mode(False), torch.enable_grad():
        xc = x.clone()
        tc = target.clone() if target is not None else None
        attr = saliency_map(method, model, xc, tc, create_graph=False, **kwargs)
    return to_pixel_map(attr.detach())


def evaluate_explanations(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    region: Tensor | None = None,
    *,
    method: str = "gradient",
    steps: int = 16,
    method_kwargs: dict[str, Any] | None = None,
) -> dict[str, float]:
    """Deletion / insertion AUC (always) and pointing game / energy in mask (when ``region`` marks the
    relevant pixels) of ``method``'s maps for the true classes ``y``."""
    smap = explain(model, x, y, method, **(method_kwargs or {}))
    with torch.inference_mode(False), torch.no_grad():
        xc, yc = x.clone(), y.clone()
        out: dict[str, float] = {}
        curves: tuple[tuple[str, DeletionAUC | InsertionAUC], ...] = (
            ("deletion_auc", DeletionAUC(steps)),
            ("insertion_auc", InsertionAUC(steps)),
        )
        for name, curve in curves:
            curve.update(model, xc, smap, yc)
            out[name] = float(curve.compute())
        if region is not None:
            maps: tuple[tuple[str, PointingGame | EnergyInMask], ...] = (
                ("pointing_game", PointingGame()),
                ("energy_in_mask", EnergyInMask()),
            )
            for name, metric in maps:
                metric.update(smap, region.clone())
                out[name] = float(metric.compute())
    return out
