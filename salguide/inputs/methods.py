"""Saliency methods by name, for configs, callbacks and metrics."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor, nn

from .gradcam import grad_cam
from .gradients import gradient_x_input, input_gradient
from .integrated_gradients import integrated_gradients
from .smoothgrad import smoothgrad

SALIENCY_METHODS: dict[str, Callable[..., Tensor]] = {
    "gradient": input_gradient,
    "gradient_x_input": gradient_x_input,
    "smoothgrad": smoothgrad,
    "integrated_gradients": integrated_gradients,
    "gradcam": grad_cam,
}


def saliency_map(method: str, model: nn.Module, x: Tensor, target: Any = None, **kwargs: Any) -> Tensor:
    """Run the saliency method called ``method`` (see ``SALIENCY_METHODS``) with keyword ``kwargs``."""
    if method not in SALIENCY_METHODS:
        raise ValueError(f"unknown saliency method {method!r}; choose one of {sorted(SALIENCY_METHODS)}")
    if method == "gradcam" and "layer" not in kwargs:
        raise ValueError("saliency method 'gradcam' needs layer=<name> (see salguide.inputs.layer_names)")
    return SALIENCY_METHODS[method](model, x, target, **kwargs)
