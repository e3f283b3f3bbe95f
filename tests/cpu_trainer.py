"""A quiet CPU Trainer for tests (no logger, checkpoints, progress bar or model summary), and the plainest
LightningModule a user could write, to fit with it."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from salguide._lightning import pl

QUIET: dict[str, Any] = dict(
    accelerator="cpu",
    logger=False,
    enable_checkpointing=False,
    enable_progress_bar=False,
    enable_model_summary=False,
)


def cpu_trainer(**kwargs: Any) -> pl.Trainer:
    """``pl.Trainer(**QUIET, **kwargs)`` (``kwargs`` win)."""
    return pl.Trainer(**{**QUIET, **kwargs})


class PlainModule(pl.LightningModule):
    """A user's own module around ``net`` (not salguide's): cross-entropy on ``(x, y, ...)`` batches, SGD lr 0.1."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return nn.functional.cross_entropy(self(batch[0]), batch[1])

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)
