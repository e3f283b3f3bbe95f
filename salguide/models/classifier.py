"""A plain image-classification LightningModule: cross-entropy, accuracy, an optimiser factory.

It is deliberately ordinary: salguide's unlearning methods reach it through callbacks (random labels,
weight-saliency masks) so that the same callbacks work on a user's own LightningModule.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from salguide._checks import as_finite, check_finite_loss, check_labels
from salguide._lightning import pl

from .optim import OptimizerFactory, SchedulerFactory, check_factories, cosine, module_optimizers, sgd


class ClassifierModule(pl.LightningModule):
    """Wrap ``net`` (logits out) for training with cross-entropy.

    Args:
        net: any ``nn.Module`` mapping a batch of inputs to logits (kept as ``self.model``).
        optimizer: ``optimizer(params) -> torch.optim.Optimizer``, e.g. ``functools.partial(torch.optim.AdamW,
            lr=1e-3)`` (a ``_partial_`` node in ``model.optimizer``); default SGD, lr 0.05, momentum 0.9, wd 5e-4.
        scheduler: ``scheduler(optimizer)`` or ``None``; one with a ``max_epochs`` argument (default
            ``salguide.models.optim.cosine``) runs over the Trainer's ``max_epochs``. Stepped each epoch.
        l1_alpha: weight of an L1 penalty on all parameters, decayed linearly to 0 over the run
            (the ``l1-sparse`` unlearning method of Jia et al., NeurIPS 2023); 0 disables it.
        loss_sign: +1 for descent, -1 for gradient ascent (the GA unlearning baseline).
    """

    def __init__(
        self,
        net: nn.Module,
        optimizer: OptimizerFactory | None = None,
        scheduler: SchedulerFactory | None = cosine,
        l1_alpha: float = 0.0,
        loss_sign: float = 1.0,
    ) -> None:
        super().__init__()
        if not isinstance(net, nn.Module):
            raise TypeError(f"ClassifierModule needs a torch.nn.Module as net, got {type(net).__name__}")
        if loss_sign not in (1.0, -1.0):
            raise ValueError(f"loss_sign must be +1 or -1, got {loss_sign}")
        as_finite(l1_alpha, "l1_alpha")
        check_factories(optimizer, scheduler, "ClassifierModule")
        self.model = net
        self.make_optimizer = optimizer if optimizer is not None else sgd()
        self.make_scheduler = scheduler
        # the factories are not hyper-parameters: checkpoints stay loadable with weights_only=True
        self.save_hyperparameters(ignore=["net", "optimizer", "scheduler"])

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
        check_labels(y, logits, "ClassifierModule.training_step")
        ce = F.cross_entropy(logits, y)
        loss = self.hparams["loss_sign"] * ce
        l1 = self._l1_weight()
        if l1:
            loss = loss + l1 * sum(p.abs().sum() for p in self.parameters() if p.requires_grad)
        acc = (logits.argmax(-1) == y).float().mean()
        self.log_dict({"train/loss": loss.detach(), "train/ce": ce.detach(), "train/acc": acc}, prog_bar=True)
        return check_finite_loss(loss, f"ClassifierModule at step {self.global_step}")

    def _eval_step(self, batch: Any, stage: str) -> None:
        x, y = batch[0], batch[1]
        logits = self(x)
        check_labels(y, logits, f"ClassifierModule {stage} step")
        self.log_dict(
            {f"{stage}/loss": F.cross_entropy(logits, y), f"{stage}/acc": (logits.argmax(-1) == y).float().mean()},
            prog_bar=stage == "val",
        )

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def configure_optimizers(self) -> Any:
        return module_optimizers(self)
