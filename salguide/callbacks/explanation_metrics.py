"""Explanation metrics on a fixed set of validation images, logged at the end of validation epochs."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from salguide._checks import as_int
from salguide._lightning import Callback
from salguide.callbacks._strategy import refuse_sharded
from salguide.data.loaders import first_samples
from salguide.data.protocols import mask_semantics_of
from salguide.evaluation import relevant_region
from salguide.metrics import evaluate_explanations


def fixed_val_batch(trainer: Any, n: int) -> tuple[Tensor, ...]:
    """The first ``n`` validation samples (x, y[, mask]) as plain (non-inference) CPU tensors."""
    loader = trainer.datamodule.val_dataloader() if trainer.datamodule is not None else trainer.val_dataloaders
    if isinstance(loader, (list, tuple)):
        loader = loader[0]
    try:
        return first_samples(loader, n)
    except RuntimeError:
        raise RuntimeError("the validation dataloader is empty") from None


class ExplanationMetricsCallback(Callback):
    """Deletion / insertion AUC, pointing game and energy in the ground-truth mask of ``method``'s maps on
    the first ``num_samples`` validation images, logged as ``{prefix}/<metric>`` every ``every_n_epochs``.

    The mask semantics come from the datamodule's ``mask_semantics`` (or ``mask_semantics``).
    """

    def __init__(
        self,
        method: str = "gradient",
        num_samples: int = 128,
        steps: int = 16,
        every_n_epochs: int = 1,
        method_kwargs: dict[str, Any] | None = None,
        mask_semantics: str | None = None,
        prefix: str = "val_expl",
    ) -> None:
        self.method, self.num_samples, self.steps = (
            method,
            as_int(num_samples, "num_samples", 1),
            as_int(steps, "steps", 1),
        )
        self.every_n_epochs, self.method_kwargs = as_int(every_n_epochs, "every_n_epochs", 1), dict(method_kwargs or {})
        self.mask_semantics, self.prefix = mask_semantics, prefix
        self.history: list[dict[str, float]] = []
        self._batch: tuple[Tensor, ...] | None = None

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        refuse_sharded(
            self,
            trainer,
            "explanations run extra forwards and input gradients of the whole module "
            "outside the strategy's wrapper; untested with sharded parameters (FSDP, DeepSpeed)",
        )

    def on_validation_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        if trainer.sanity_checking or (trainer.current_epoch + 1) % self.every_n_epochs:
            return
        if self._batch is None:
            self._batch = fixed_val_batch(trainer, self.num_samples)
        x, y = self._batch[0].to(pl_module.device), self._batch[1].to(pl_module.device)
        region = None
        if len(self._batch) > 2:
            by = type(self).__name__
            sem = self.mask_semantics or mask_semantics_of(trainer.datamodule, by=by) or "relevant"
            region = relevant_region(self._batch[2], sem).to(pl_module.device)
        values = evaluate_explanations(
            pl_module, x, y, region, method=self.method, steps=self.steps, method_kwargs=self.method_kwargs
        )
        self.history.append({"epoch": trainer.current_epoch, **values})
        pl_module.log_dict({f"{self.prefix}/{k}": v for k, v in values.items()})

    def state_dict(self) -> dict[str, Any]:
        return {"history": list(self.history)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = list(state_dict.get("history", []))
