"""Zero-code auxiliary losses (input saliency, attention) for an unmodified LightningModule.

``AuxiliaryLossCallback(loss)`` wraps the module's ``training_step`` for the duration of ``fit``. Each step
it reads the batch's input, target and mask once (inverting the mask when it marks the other region than
the loss needs), makes the input require grad when the penalty differentiates it, enters ``loss.arm``
(e.g. an attention recorder) around the user's step, captures the logits of ``self(x)`` with a forward hook,
and returns the user's loss **plus** ``loss.penalty(...)``. The penalty is therefore part of the loss
Lightning receives, so AMP loss scaling, gradient accumulation (division by ``accumulate_grad_batches``),
gradient clipping and DDP's gradient reduction treat it exactly as if the user had written
``loss + penalty`` by hand - it is added once per step. When the step does not call ``self(x)`` on the
batch tensor itself (e.g. it augments ``x`` first), the penalty runs its own forward on the raw batch
inside the same step (and autocast context). Manual optimisation is refused (there is no returned loss to
extend); call the loss module in your step instead. The wrapper is removed at ``teardown`` and when
``fit`` raises (``on_exception``), restoring exactly the ``training_step`` that was there (the class's, or
a user's own instance-level one).
"""

from __future__ import annotations

from typing import Any, ClassVar

from torch import Tensor

from salguide._lightning import Callback
from salguide.auxiliary import AuxiliaryLoss, as_logits
from salguide.data.protocols import mask_semantics_of
from salguide.inputs import invert

from ._step_wrap import TrainingStepWrapper, map_loss
from ._strategy import refuse_sharded

Key = int | str


class AuxiliaryLossCallback(TrainingStepWrapper, Callback):
    """Add ``loss.penalty`` to the loss that ``training_step`` returns (see module docstring).

    Args:
        loss: an :class:`~salguide.auxiliary.AuxiliaryLoss` (of the subclass's ``loss_type``).
        input_key, target_key, mask_key: where x, y and the mask sit in a batch (indices or dict keys).
        mask_semantics: what the batch mask marks, ``"irrelevant"`` or ``"relevant"``; ``None`` reads the
            datamodule's ``mask_semantics`` (else assumes the loss's). The mask is inverted when it
            differs from what the loss needs.
    """

    loss_type: ClassVar[type[AuxiliaryLoss]] = AuxiliaryLoss

    def __init__(
        self,
        loss: AuxiliaryLoss,
        input_key: Key = 0,
        target_key: Key = 1,
        mask_key: Key = 2,
        mask_semantics: str | None = None,
    ) -> None:
        if not isinstance(loss, self.loss_type):
            raise TypeError(
                f"{type(self).__name__} needs a loss of type {self.loss_type.__name__}, got {type(loss).__name__}"
            )
        if mask_semantics not in (None, "irrelevant", "relevant"):
            raise ValueError(f"mask_semantics must be 'irrelevant', 'relevant' or None, got {mask_semantics!r}")
        self.loss = loss
        self.keys = (input_key, target_key, mask_key)
        self.mask_semantics = mask_semantics
        self._invert = False

    #: why sharded strategies are refused at ``setup`` (a subclass names its own reason)
    sharded_why = (
        "the penalty runs extra forwards and input gradients (double backward for RRR) of the whole "
        "module inside the training step; untested with sharded parameters (FSDP, DeepSpeed)"
    )

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        if stage != "fit":
            return
        refuse_sharded(self, trainer, self.sharded_why)
        self._check_automatic(
            pl_module, "; with manual optimisation add `loss.penalty(self, x, y, mask, logits)` to your loss yourself"
        )
        need = self.loss.mask_semantics
        have = self.mask_semantics or mask_semantics_of(trainer.datamodule, by=type(self).__name__) or need
        self._invert = need != "none" and have != need
        self._wrap(pl_module)

    def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None:
        self._unwrap()

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        self._unwrap()

    def _get(self, batch: Any, key: Key, what: str) -> Any:
        try:
            return batch[key]
        except (KeyError, IndexError, TypeError) as err:
            raise ValueError(
                f"{type(self).__name__}: cannot read the {what} at key {key!r} of a {type(batch).__name__} batch; "
                "set input_key/target_key/mask_key"
            ) from err

    def _step(self, pl_module: Any, original: Any, batch: Any, *args: Any, **kwargs: Any) -> Any:
        loss = self.loss
        x = self._get(batch, self.keys[0], "input")
        y = self._get(batch, self.keys[1], "target")
        mask = self._get(batch, self.keys[2], "mask") if loss.mask_semantics != "none" else None
        if isinstance(mask, Tensor) and self._invert:
            mask = invert(mask)
        if loss.needs_input_grad and isinstance(x, Tensor) and x.is_floating_point() and not x.requires_grad:
            x.requires_grad_(True)
        captured: list[Tensor] = []

        def hook(_: Any, inputs: tuple, out: Any) -> None:
            logits = as_logits(out)  # a tensor, or e.g. transformers' ImageClassifierOutput.logits
            if not captured and inputs and inputs[0] is x and isinstance(logits, Tensor):
                captured.append(logits)

        with loss.arm(pl_module, x, mask):
            handle = pl_module.register_forward_hook(hook)
            try:
                out = original(batch, *args, **kwargs)
            finally:
                handle.remove()
            if out is None:  # the user skipped this batch
                return out
            pen = loss.penalty(pl_module, x, y, mask, captured[0] if captured else None)
        pl_module.log(f"train/{loss.name}_penalty", pen.detach(), on_step=True, on_epoch=True)
        return map_loss(out, lambda user_loss: user_loss + pen)
