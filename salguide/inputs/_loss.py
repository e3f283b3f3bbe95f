"""Base class of the input-saliency losses: an auxiliary loss whose penalty differentiates the input."""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor

from salguide.auxiliary import AuxiliaryLoss, AuxiliaryLossOutput, as_logits

from ._common import Model, check_logits, grad_input

InputLossOutput = AuxiliaryLossOutput  # the name salguide.inputs has always exported


class InputLoss(AuxiliaryLoss):
    """A weighted saliency penalty. Subclasses implement ``_penalty`` (unweighted) on logits of an ``x`` that
    requires grad (see :class:`~salguide.auxiliary.AuxiliaryLoss` for ``mask_semantics``)."""

    name: ClassVar[str] = "input_loss"
    needs_input_grad: ClassVar[bool] = True

    def _penalty(self, model: Model, x: Tensor, y: Tensor, mask: Tensor | None, logits: Tensor) -> Tensor:
        raise NotImplementedError

    def prepare_input(self, x: Tensor) -> Tensor:
        return grad_input(x, type(self).__name__)

    def penalty(
        self, model: Model, x: Tensor, y: Tensor, mask: Tensor | None = None, logits: Tensor | None = None
    ) -> Tensor:
        """``weight * penalty``. ``logits`` may be passed when they were computed as ``model(x)`` with ``x``
        requiring grad (the forward is then shared); otherwise the penalty runs its own forward."""
        self.check_mask(mask)
        if logits is None or not x.requires_grad:
            x = self.prepare_input(x)
            logits = model(x)
        logits = as_logits(logits)  # type: ignore[assignment]
        check_logits(logits, x.shape[0], type(self).__name__)
        if self.weight == 0:
            return logits.sum() * 0.0
        return self.weight * self._penalty(model, x, y, mask, logits)
