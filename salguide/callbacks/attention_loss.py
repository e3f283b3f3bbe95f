"""Zero-code attention losses for an unmodified LightningModule.

``AttentionLossCallback(BackgroundSuppressionLoss(1.0))`` is :class:`InputSaliencyCallback` (the same
training-step wrapper: the penalty joins the returned loss exactly once, so AMP, gradient accumulation,
clipping and DDP see ``loss + penalty``) with one addition: an :class:`AttentionRecorder` is armed around
the user's step, so the statistics come from the model's own forward (no second forward). The module
must contain a routed ViT (salguide's ``VisionTransformer`` or ``salguide.models.adapters.route(model)``).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from salguide.attention.loss_modules import AttentionLoss
from salguide.inputs import invert

from .input_saliency import InputSaliencyCallback, Key


class AttentionLossCallback(InputSaliencyCallback):
    """Add ``attention_loss.penalty`` to the loss that ``training_step`` returns (see module docstring)."""

    def __init__(
        self,
        attention_loss: AttentionLoss,
        input_key: Key = 0,
        target_key: Key = 1,
        mask_key: Key = 2,
        mask_semantics: str | None = None,
    ) -> None:
        if not isinstance(attention_loss, AttentionLoss):
            raise TypeError(
                f"attention_loss must be a salguide.attention.AttentionLoss, got {type(attention_loss).__name__}"
            )
        super().__init__(attention_loss, input_key, target_key, mask_key, mask_semantics)

    sharded_why = ("the attention recorder hooks the routed ViT's blocks and the penalty reads whole attention "
                   "matrices; untested with sharded parameters (FSDP, DeepSpeed)")

    def _step(self, pl_module: Any, original: Any, batch: Any, *args: Any, **kwargs: Any) -> Any:
        loss: AttentionLoss = self.input_loss  # type: ignore[assignment]
        mask = self._get(batch, self.keys[2], "mask") if loss.mask_semantics != "none" else None
        if isinstance(mask, Tensor) and self._invert:
            mask = invert(mask)
        with loss.recorder(pl_module, mask, self._get(batch, self.keys[0], "input")):
            return super()._step(pl_module, original, batch, *args, **kwargs)
