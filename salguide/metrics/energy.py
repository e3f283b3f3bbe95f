"""Energy in the ground-truth mask (Wang et al., "Score-CAM", CVPR-W 2020: energy-based pointing game)."""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric

from salguide.inputs.energy import energy_in_mask


class EnergyInMask(Metric):
    """Mean over samples of sum(|s| * M) / sum(|s|) for pixel maps s [B, H, W] (higher is better)."""

    total: Tensor  # metric states (add_state)
    count: Tensor  # metric states (add_state)

    full_state_update = False
    higher_is_better = True

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.add_state("total", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0), dist_reduce_fx="sum")

    def update(self, saliency: Tensor, region: Tensor) -> None:
        share = energy_in_mask(saliency.detach(), region)
        self.total += share.double().sum().to(self.total.device)
        self.count += share.numel()

    def compute(self) -> Tensor:
        if int(self.count) == 0:
            raise ValueError(f"{type(self).__name__}: no sample was scored (update() was never called)")
        return (self.total / self.count.clamp_min(1)).float()
