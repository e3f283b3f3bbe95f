"""The neutral base of the training-signal losses: an auxiliary penalty that joins the task loss once.

``AuxiliaryLoss`` is what the input-saliency losses (``salguide.inputs``: RRR, SGT, energy) and the attention
losses (``salguide.attention``: concentration, BAS, entropy, diversity) share: a validated ``weight``, what
the batch mask must mark (``mask_semantics``), a ``penalty(model, x, y, mask, logits)`` that can be added to
any loss, and ``loss(model, x, y, mask)`` = cross-entropy + penalty with one forward of the model. A
family adapts two hooks: ``prepare_input`` (input saliency needs ``x`` to require grad) and ``arm`` (a
context entered around the model's forward, e.g. the attention recorder). One callback,
``salguide.callbacks.AuxiliaryLossCallback``, adds any of them to an unmodified LightningModule's loss.
"""

from __future__ import annotations

import math
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any, ClassVar

import torch.nn.functional as F
from torch import Tensor, nn

from salguide._checks import check_labels

MASK_SEMANTICS = ("irrelevant", "relevant", "none")


@dataclass
class AuxiliaryLossOutput:
    """``loss = task_loss + penalty`` (penalty already weighted) and the logits of the clean input."""

    loss: Tensor
    task_loss: Tensor
    penalty: Tensor
    logits: Tensor


def as_logits(out: object) -> object:
    """The logits in a model's output: a tensor itself, or the ``.logits`` of an output object such as
    transformers' ``ImageClassifierOutput``; anything else unchanged (``check_logits_shape`` then names it)."""
    logits = getattr(out, "logits", None)
    return logits if not isinstance(out, Tensor) and isinstance(logits, Tensor) else out


def check_logits_shape(logits: Any, batch: int, where: str) -> None:
    if not isinstance(logits, Tensor) or logits.ndim != 2 or logits.shape[0] != batch:
        shape = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
        raise ValueError(f"{where}: the model must return logits of shape [B={batch}, num_classes], got {shape}")


class AuxiliaryLoss(nn.Module):
    """A weighted penalty (subclasses implement ``penalty``, weight included).

    ``mask_semantics`` says what the batch mask must mark: ``"irrelevant"`` (inputs that must not matter,
    RRR), ``"relevant"`` (the object region: energy, attention concentration, BAS) or ``"none"`` (no mask).
    ``needs_input_grad``: the penalty differentiates with respect to the input, so a callback makes the
    batch input require grad before the user's step runs.
    """

    mask_semantics: ClassVar[str] = "none"
    name: ClassVar[str] = "auxiliary_loss"
    needs_input_grad: ClassVar[bool] = False

    def __init__(self, weight: float = 1.0) -> None:
        super().__init__()
        if not (isinstance(weight, (int, float)) and math.isfinite(weight) and weight >= 0):
            raise ValueError(f"{type(self).__name__}: weight must be a finite number >= 0, got {weight!r}")
        self.weight = float(weight)

    def check_mask(self, mask: Tensor | None) -> None:
        if self.mask_semantics != "none" and mask is None:
            raise ValueError(
                f"{type(self).__name__} needs a mask marking the {self.mask_semantics} region of the input; batches "
                "must be (x, y, mask)"
            )

    def prepare_input(self, x: Tensor) -> Tensor:
        """The input the forward of :meth:`forward` runs on (``x`` itself here)."""
        return x

    def arm(self, model: Any, x: Any, mask: Tensor | None) -> AbstractContextManager[Any]:
        """A context entered around the model's forward and the penalty (nothing here)."""
        return nullcontext()

    def penalty(
        self, model: Any, x: Tensor, y: Tensor, mask: Tensor | None = None, logits: Tensor | None = None
    ) -> Tensor:
        """``weight * penalty``; ``logits`` of ``model(x)`` from the same step share its forward when given."""
        raise NotImplementedError

    def forward(self, model: Any, x: Tensor, y: Tensor, mask: Tensor | None = None) -> AuxiliaryLossOutput:
        """Cross-entropy plus the weighted penalty, with one forward of ``model`` on ``x``."""
        self.check_mask(mask)
        if isinstance(x, Tensor) and x.shape[0] == 0:
            raise ValueError(f"{type(self).__name__}: the batch is empty (a loss over no samples is undefined)")
        x = self.prepare_input(x)
        with self.arm(model, x, mask):
            logits = as_logits(model(x))
            check_logits_shape(logits, x.shape[0], type(self).__name__)
            check_labels(y, logits, type(self).__name__)
            task = F.cross_entropy(logits, y)  # type: ignore[arg-type]
            pen = self.penalty(model, x, y, mask, logits)  # type: ignore[arg-type]
        return AuxiliaryLossOutput(task + pen, task, pen, logits)  # type: ignore[arg-type]
