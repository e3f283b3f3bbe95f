"""Random-label unlearning (RL) on an unmodified LightningModule, by rewriting each training batch.

The module's ``training_step`` keeps computing its ordinary cross-entropy on ``(x, y)``; this callback
appends forget samples carrying fixed random labels to every retain batch in ``on_train_batch_start``
(see ``salguide.unlearning.random_labels``). Combined with ``WeightSaliencyCallback`` this is SalUn
(Fan et al., ICLR 2024).

Under DDP every rank draws the same random label for a forget sample (SalUn draws one per sample); which
forget samples a rank mixes in, and how many, come from a stream seeded by (seed, rank, epoch), so a
fit resumed at an epoch boundary continues exactly, on every rank, and the callback pickles (ddp_spawn).
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import Dataset

from salguide._checks import as_int
from salguide._lightning import Callback
from salguide._rng import Generator, stream_seed
from salguide.data.protocols import ClassBatch, ForgetSetData, require
from salguide.unlearning.random_labels import draw_random_labels, forget_count


class RandomLabelCallback(Callback):
    """Mix forget samples with random labels into every retain batch.

    Args:
        forget_dataset: dataset of ``(x, y, ...)`` samples to forget; default ``trainer.datamodule.forget_dataset``.
        num_classes: number of classes; default ``trainer.datamodule.num_classes``.
        n_retain: size of the retain set the trainer iterates, for the mixing proportion; default the size of
            the training dataloader's dataset.
        seed: seeds the random labels (the same on every rank) and the per-(rank, epoch) forget-sample stream.
        exclude_true: never draw a sample's true label (SalUn draws uniformly over all classes).
    """

    def __init__(
        self,
        forget_dataset: Dataset | None = None,
        num_classes: int | None = None,
        n_retain: int | None = None,
        seed: int = 0,
        exclude_true: bool = False,
    ) -> None:
        self.forget_dataset = forget_dataset
        self.num_classes = None if num_classes is None else as_int(num_classes, "num_classes", 1)
        self.n_retain = None if n_retain is None else as_int(n_retain, "n_retain", 0)
        self.seed = as_int(seed, "seed")
        self.exclude_true = exclude_true
        self._x: torch.Tensor | None = None
        self._labels: torch.Tensor | None = None
        self._order: torch.Tensor = torch.empty(0, dtype=torch.long)
        self._cursor = 0
        self._rank = 0
        self._gen = Generator()
        self._loaded_state: dict[str, Any] | None = None

    # ---- set-up ----------------------------------------------------------------------------------
    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        forget, num_classes = self.forget_dataset, self.num_classes
        if forget is None or num_classes is None:
            dm: ForgetSetData = require(getattr(trainer, "datamodule", None), ForgetSetData, by="RandomLabelCallback",
                                        need="forget data" if forget is None else "num_classes",
                                        instead="pass forget_dataset=... and num_classes=...")  # fmt: skip
            if forget is None and dm.forget_dataset is None:
                raise ValueError(
                    f"RandomLabelCallback needs forget data: {type(dm).__name__}.forget_dataset is None (built "
                    "without a forget split?); pass forget_dataset=... or give the datamodule a forget split"
                )
            forget = dm.forget_dataset if forget is None else forget
            num_classes = dm.num_classes if num_classes is None else num_classes
        assert forget is not None  # the datamodule's forget set, checked above
        if len(forget) == 0:  # type: ignore[arg-type]  # a map-style Dataset with __len__
            raise ValueError("the forget set is empty: nothing to unlearn")
        if num_classes is None:
            raise ValueError("RandomLabelCallback needs num_classes (argument or datamodule.num_classes)")
        samples = [forget[i] for i in range(len(forget))]  # type: ignore[arg-type]
        self._x = torch.stack([torch.as_tensor(s[0]) for s in samples])
        true = torch.as_tensor([int(s[1]) for s in samples])
        state, self._loaded_state = self._loaded_state, None
        if state is not None:  # resumed: the checkpoint's seed and labels win
            self.seed = int(state.get("seed", self.seed))
        self._labels = draw_random_labels(true, int(num_classes), Generator(self.seed), self.exclude_true)
        if state is not None:
            if state["labels"] is None or len(state["labels"]) != len(self._labels):
                raise ValueError("checkpointed random labels do not match the forget set of this run")
            self._labels = state["labels"]
        self._rank = int(trainer.global_rank)

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        self._gen.manual_seed(stream_seed(self.seed, self._rank, trainer.current_epoch))
        self._order, self._cursor = torch.empty(0, dtype=torch.long), 0

    def _retain_size(self, trainer: Any) -> int:
        if self.n_retain is not None:
            return self.n_retain
        loader = trainer.train_dataloader
        dataset = getattr(loader, "dataset", None)
        if dataset is None:
            raise ValueError("cannot infer the retain-set size from the train dataloader; pass n_retain=")
        return len(dataset)

    # ---- per batch -------------------------------------------------------------------------------
    def _loaded(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._x is None or self._labels is None:
            raise RuntimeError("RandomLabelCallback: the forget set is not loaded (on_fit_start has not run)")
        return self._x, self._labels

    def _next_indices(self, n: int) -> torch.Tensor:
        out = []
        while n > 0:
            if self._cursor >= len(self._order):
                self._order = torch.randperm(len(self._loaded()[1]), generator=self._gen)
                self._cursor = 0
            take = self._order[self._cursor : self._cursor + n]
            self._cursor += len(take)
            n -= len(take)
            out.append(take)
        return torch.cat(out)

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: ClassBatch, batch_idx: int) -> None:
        if not isinstance(batch, list) or len(batch) != 2:
            raise TypeError(
                "RandomLabelCallback rewrites the batch in place and needs a list [x, y] (PyTorch's default "
                f"collate of (x, y) samples gives one); got {type(batch).__name__} of length {len(batch)}"
            )
        x, y = batch[0], batch[1]
        forget_x, labels = self._loaded()
        n = forget_count(len(y), len(labels), self._retain_size(trainer), self._gen)
        if n == 0:
            return
        idx = self._next_indices(n)
        batch[0] = torch.cat([x, forget_x[idx].to(device=x.device, dtype=x.dtype)])
        batch[1] = torch.cat([y, labels[idx].to(device=y.device, dtype=y.dtype)])

    # ---- checkpointing ---------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The seed (the per-epoch streams derive from it) and the labels; a resumed fit keeps both."""
        return {"seed": self.seed, "labels": self._labels}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._loaded_state = state_dict
