"""Zero-code input-saliency losses: ``InputSaliencyCallback(RRRLoss(10.0))`` adds the penalty of a
:class:`salguide.inputs.InputLoss` to an unmodified LightningModule's loss, exactly once per step
(:class:`~salguide.callbacks.auxiliary_loss.AuxiliaryLossCallback`: the batch input is made to require grad
and the logits of the step's own ``self(x)`` are shared with the penalty)."""

from __future__ import annotations

from salguide.inputs import InputLoss

from .auxiliary_loss import AuxiliaryLossCallback, Key


class InputSaliencyCallback(AuxiliaryLossCallback):
    """Add ``input_loss.penalty`` (``RRRLoss``, ``SGTLoss``, ``EnergyLoss``) to the loss ``training_step``
    returns; the arguments are those of :class:`~salguide.callbacks.auxiliary_loss.AuxiliaryLossCallback`."""

    loss_type = InputLoss

    def __init__(
        self,
        input_loss: InputLoss,
        input_key: Key = 0,
        target_key: Key = 1,
        mask_key: Key = 2,
        mask_semantics: str | None = None,
    ) -> None:
        super().__init__(input_loss, input_key, target_key, mask_key, mask_semantics)
