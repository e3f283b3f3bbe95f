"""Zero-code attention losses: ``AttentionLossCallback(BackgroundSuppressionLoss(1.0))`` adds the penalty of a
:class:`salguide.attention.AttentionLoss` to an unmodified LightningModule's loss, exactly once per step
(:class:`~salguide.callbacks.auxiliary_loss.AuxiliaryLossCallback`). The loss's recorder is armed around the
user's step, so the statistics come from the model's own forward (no second forward). The module must
contain a routed ViT (salguide's ``VisionTransformer`` or ``salguide.attention.route(model)``).
"""

from __future__ import annotations

from salguide.attention.loss_modules import AttentionLoss

from .auxiliary_loss import AuxiliaryLossCallback, Key


class AttentionLossCallback(AuxiliaryLossCallback):
    """Add ``attention_loss.penalty`` to the loss ``training_step`` returns; the arguments are those of
    :class:`~salguide.callbacks.auxiliary_loss.AuxiliaryLossCallback`."""

    loss_type = AttentionLoss
    sharded_why = (
        "the attention recorder hooks the routed ViT's blocks and the penalty reads whole attention "
        "matrices; untested with sharded parameters (FSDP, DeepSpeed)"
    )

    def __init__(
        self,
        attention_loss: AttentionLoss,
        input_key: Key = 0,
        target_key: Key = 1,
        mask_key: Key = 2,
        mask_semantics: str | None = None,
    ) -> None:
        super().__init__(attention_loss, input_key, target_key, mask_key, mask_semantics)
