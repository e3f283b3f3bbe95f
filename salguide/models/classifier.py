"""A plain image-classification LightningModule: cross-entropy, accuracy, a configurable optimizer.

It is deliberately ordinary: salguide's unlearning methods reach it through callbacks (random labels,
weight-saliency masks) so that the same callbacks work on a user's own LightningModule.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from salguide._lightning import pl

_OPTIMIZERS = ("sgd", "adam", "adamw")


class ClassifierModule(pl.LightningModule):
    """Wrap ``model`` (logits out) for training with cross-entropy.

    Args:
        model: any ``nn.Module`` mapping a batch of inputs to logits.
        lr, momentum, weight_decay: optimizer settings; ``optimizer`` is one of sgd, adam, adamw.
        scheduler: ``"cosine"`` (over ``trainer.max_epochs``) or ``None``.
        l1_alpha: weight of an L1 penalty on all parameters, decayed linearly to 0 over the run
            (the ``l1-sparse`` unlearning method of Jia et al., NeurIPS 2023); 0 disables it.
        loss_sign: +1 for descent, -1 for gradient ascent (the GA unlearning baseline).
    """

    def __init__(
        self,
        model: nn.Module,
        lr: float = 0.05,
        optimizer: str = "sgd",
        momentum: float = 0.9,
        weight_decay: float = 5e-4,
        scheduler: str | None = "cosine",
        l1_alpha: float = 0.0,
        loss_sign: float = 1.0,
    ) -> None:
        super().__init__()
        if optimizer not in _OPTIMIZERS:
            raise ValueError(f"unknown optimizer {optimizer!r}; choose one of {_OPTIMIZERS}")
        if scheduler not in (None, "none", "cosine"):
            raise ValueError(f"unknown scheduler {scheduler!r}; choose 'cosine' or None")
        if loss_sign not in (1.0, -1.0):
            raise ValueError(f"loss_sign must be +1 or -1, got {loss_sign}")
        if lr <= 0:
            raise ValueError(f"lr must be positive, got {lr}")
        self.model = model
        self.save_hyperparameters(ignore=["model"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def _l1_weight(self) -> float:
        """Linearly decaying L1 weight: alpha * (1 - epoch / max_epochs), as in the l1-sparse method."""
        alpha = self.hparams["l1_alpha"]
        if not alpha:
            return 0.0
        max_epochs = max(int(self.trainer.max_epochs or 1), 1)
        return alpha * (1.0 - self.current_epoch / max_epochs)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch[0], batch[1]
        logits = self(x)
        ce = F.cross_entropy(logits, y)
        loss = self.hparams["loss_sign"] * ce
        l1 = self._l1_weight()
        if l1:
            loss = loss + l1 * sum(p.abs().sum() for p in self.parameters() if p.requires_grad)
        acc = (logits.argmax(-1) == y).float().mean()
        self.log_dict({"train/loss": loss.detach(), "train/ce": ce.detach(), "train/acc": acc}, prog_bar=True)
        return loss

    def _eval_step(self, batch: Any, stage: str) -> None:
        x, y = batch[0], batch[1]
        logits = self(x)
        self.log_dict(
            {f"{stage}/loss": F.cross_entropy(logits, y), f"{stage}/acc": (logits.argmax(-1) == y).float().mean()},
            prog_bar=stage == "val",
        )

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def configure_optimizers(self) -> Any:
        hp: Any = self.hparams  # Lightning's AttributeDict
        params = [p for p in self.parameters() if p.requires_grad]
        opt: torch.optim.Optimizer
        if hp.optimizer == "sgd":
            opt = torch.optim.SGD(params, lr=hp.lr, momentum=hp.momentum, weight_decay=hp.weight_decay)
        elif hp.optimizer == "adam":
            opt = torch.optim.Adam(params, lr=hp.lr, weight_decay=hp.weight_decay)
        else:
            opt = torch.optim.AdamW(params, lr=hp.lr, weight_decay=hp.weight_decay)
        if hp.scheduler == "cosine" and self.trainer is not None and self.trainer.max_epochs:
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(int(self.trainer.max_epochs), 1))
            return {"optimizer": opt, "lr_scheduler": sched}
        return opt
