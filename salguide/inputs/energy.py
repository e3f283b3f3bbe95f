"""Energy-in-mask: the share of saliency inside a ground-truth region, and a penalty on the rest.

The share is Score-CAM's "energy-based pointing game" (Wang et al., "Score-CAM", CVPR-W 2020); as a
training penalty it is 1 - share, the fraction of saliency energy outside the object region.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._common import Model
from ._loss import InputLoss
from .gradcam import grad_cam
from .gradients import gradient_from_logits
from .masks import pixel_mask, to_pixel_map

ENERGY_SALIENCY = ("gradient", "gradient_x_input", "gradcam")


def energy_in_mask(saliency: Tensor, region: Tensor, eps: float = 1e-12) -> Tensor:
    """Per-sample share ``sum(s * M) / sum(s)`` of a pixel map ``s = |saliency|`` ([B, H, W]) inside the
    region ``M``; samples with no saliency at all get share 0."""
    if saliency.ndim != 3:
        raise ValueError(f"energy_in_mask: saliency must be a map [B, H, W], got shape {tuple(saliency.shape)}")
    s = saliency.abs()
    m = pixel_mask(region, s.shape[0], tuple(s.shape[1:]), "energy_in_mask").to(s)
    total = s.flatten(1).sum(1)
    return (s * m).flatten(1).sum(1) / total.clamp_min(eps)


class EnergyLoss(InputLoss):
    """``weight * mean(1 - energy_in_mask)``; the mask marks the **relevant** (object) region.

    ``saliency`` is ``"gradient"``, ``"gradient_x_input"`` (channels summed in absolute value) or
    ``"gradcam"`` (needs ``layer``), all for the true class and differentiable.
    """

    mask_semantics = "relevant"
    name = "energy"

    def __init__(self, weight: float = 1.0, saliency: str = "gradient", layer: str | None = None) -> None:
        super().__init__(weight)
        if saliency not in ENERGY_SALIENCY:
            raise ValueError(f"EnergyLoss: unknown saliency {saliency!r}; choose one of {ENERGY_SALIENCY}")
        if saliency == "gradcam" and not layer:
            raise ValueError("EnergyLoss: saliency='gradcam' needs layer=<name>")
        self.saliency, self.layer = saliency, layer

    def _penalty(self, model: Model, x: Tensor, y: Tensor, mask: Tensor | None, logits: Tensor) -> Tensor:
        assert mask is not None
        if self.saliency == "gradcam":
            assert isinstance(model, torch.nn.Module) and self.layer
            smap = grad_cam(model, x, y, layer=self.layer)
        else:
            g = gradient_from_logits(logits, x, y, create_graph=True)
            smap = to_pixel_map(x * g if self.saliency == "gradient_x_input" else g)
        return (1.0 - energy_in_mask(smap, mask)).mean()
