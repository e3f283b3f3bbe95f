"""Wrap a LightningModule's ``training_step`` for one ``fit`` and restore exactly what was there afterwards.

The one mechanism of the callbacks that change the loss an unmodified module returns
(``AuxiliaryLossCallback`` and its input-saliency / attention subclasses, ``DiffusionUnlearningCallback``):
the new term joins the returned loss, so AMP scaling, gradient accumulation, clipping and DDP see one loss.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor

from salguide._checks import check_finite_loss


class TrainingStepWrapper:
    """Mixin: ``_wrap(pl_module)`` routes ``training_step`` through ``self._step(pl_module, original, batch, ...)``;
    ``_unwrap()`` restores the class's method or a user's own instance-level one (call it at teardown and
    on_exception, so a failed fit leaves no wrapper behind)."""

    _module: Any = None
    _saved: tuple[bool, Any] = (False, None)  # (had an instance-level training_step, its value)

    def _step(self, pl_module: Any, original: Any, batch: Any, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError

    def _check_automatic(self, pl_module: Any, manual_hint: str = "") -> None:
        """Refuse manual optimisation: there is no returned loss to extend."""
        if not pl_module.automatic_optimization:
            raise RuntimeError(
                f"{type(self).__name__} needs automatic optimisation (training_step returns the loss){manual_hint}"
            )

    def _wrap(self, pl_module: Any) -> None:
        self._unwrap()
        own = vars(pl_module)
        self._saved = ("training_step" in own, own.get("training_step"))
        original = pl_module.training_step  # bound method of the class (or a user's instance override)

        def training_step(batch: Any, *args: Any, **kwargs: Any) -> Any:
            out = self._step(pl_module, original, batch, *args, **kwargs)
            where = f"{type(self).__name__} at step {pl_module.global_step}"
            check_finite_loss(out.get("loss") if isinstance(out, dict) else out, where)
            return out

        pl_module.training_step = training_step
        self._module = pl_module

    def _unwrap(self) -> None:
        if self._module is not None:
            had, previous = self._saved
            if had:
                vars(self._module)["training_step"] = previous
            else:
                vars(self._module).pop("training_step", None)
            self._module, self._saved = None, (False, None)


def map_loss(out: Any, fn: Callable[[Tensor], Tensor]) -> Any:
    """``training_step``'s output with its loss replaced by ``fn(loss)`` (a tensor, or a dict with ``"loss"``)."""
    if isinstance(out, Tensor):
        return fn(out)
    if isinstance(out, dict) and "loss" in out:
        return {**out, "loss": fn(out["loss"])}
    raise TypeError(f"training_step returned {type(out).__name__}; expected a loss tensor or a dict with 'loss'")
