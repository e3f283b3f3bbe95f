"""Base class of the input-saliency losses: one forward shared by the task loss and the penalty."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch.nn.functional as F
from torch import Tensor, nn

from ._common import Model, as_logits, check_logits, grad_input


@dataclass
class InputLossOutput:
    """``loss = task_loss + penalty`` (penalty already weighted) and the logits of the clean input."""

    loss: Tensor
    task_loss: Tensor
    penalty: Tensor
    logits: Tensor


class InputLoss(nn.Module):
    """A weighted saliency penalty. Subclasses implement ``_penalty`` (unweighted).

    ``mask_semantics`` says what the mask must mark: ``"irrelevant"`` (inputs that must not matter, RRR),
    ``"relevant"`` (the object region, energy) or ``"none"`` (no mask used).
    """

    mask_semantics: ClassVar[str] = "none"
    name: ClassVar[str] = "input_loss"

    def __init__(self, weight: float = 1.0) -> None:
        super().__init__()
        if not (isinstance(weight, (int, float)) and math.isfinite(weight) and weight >= 0):
            raise ValueError(f"{type(self).__name__}: weight must be a finite number >= 0, got {weight!r}")
        self.weight = float(weight)

    def _penalty(self, model: Model, x: Tensor, y: Tensor, mask: Tensor | None, logits: Tensor) -> Tensor:
        raise NotImplementedError

    def penalty(
        self, model: Model, x: Tensor, y: Tensor, mask: Tensor | None = None, logits: Tensor | None = None
    ) -> Tensor:
        """``weight * penalty``. ``logits`` may be passed when they were computed as ``model(x)`` with ``x``
        requiring grad (the forward is then shared); otherwise the penalty runs its own forward."""
        if self.mask_semantics != "none" and mask is None:
            raise ValueError(
                f"{type(self).__name__} needs a mask marking the {self.mask_semantics} inputs; batches must be "
                "(x, y, mask)"
            )
        if logits is None or not x.requires_grad:
            x = grad_input(x, type(self).__name__)
            logits = model(x)
        logits = as_logits(logits)
        check_logits(logits, x.shape[0], type(self).__name__)
        if self.weight == 0:
            return logits.sum() * 0.0
        return self.weight * self._penalty(model, x, y, mask, logits)

    def forward(self, model: Model, x: Tensor, y: Tensor, mask: Tensor | None = None) -> InputLossOutput:
        """Cross-entropy plus the weighted penalty, with one forward of ``model`` on ``x``."""
        xg = grad_input(x, type(self).__name__)
        logits = as_logits(model(xg))
        check_logits(logits, xg.shape[0], type(self).__name__)
        task = F.cross_entropy(logits, y)
        pen = self.penalty(model, xg, y, mask, logits)
        return InputLossOutput(task + pen, task, pen, logits)
