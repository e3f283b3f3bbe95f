"""Base LightningDataModule with seeded forget/retain/test splits for machine unlearning.

Splits follow the SalUn evaluation protocol (Fan et al., "SalUn: Empowering Machine Unlearning via
Gradient-based Weight Saliency", ICLR 2024): class-wise forgetting removes one class from the train set
and from the TA test set; random forgetting removes a random share of the train set.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

import torch
from torch.utils.data import DataLoader

from salguide._checks import as_int
from salguide._lightning import LightningDataModule
from salguide.data.loaders import seeded_loader
from salguide.data.splits import check_forget_args, forget_split, ta_indices
from salguide.data.tensors import IndexedTensorDataset, check_images

TRAIN_ON = ("full", "retain", "forget")
Transform = Callable[[torch.Tensor], torch.Tensor]


class ForgetDataModule(LightningDataModule, ABC):
    """Holds ``train_x, train_y, test_x, test_y`` (from ``_load``) and serves unlearning splits.

    After ``setup()``: ``train_dataset`` (full train), ``forget_dataset``, ``retain_dataset`` (``None``
    when ``forget=None``), ``test_dataset`` (TA set: test without the forgotten class in class-wise mode),
    ``full_test_dataset`` and ``forget_indices`` (into the train set). ``train_dataloader()`` serves the split
    named by ``train_on``; only it applies ``train_transform`` (augmentation), so evaluation and saliency
    scoring on ``forget_dataset``/``retain_dataset`` are deterministic.
    """

    #: class count when it is known without loading data (lets configs build the model before ``setup()``)
    known_num_classes: int | None = None

    def __init__(
        self,
        batch_size: int = 64,
        seed: int = 0,
        forget: str | None = "class",
        forget_class: int = 0,
        forget_ratio: float = 0.1,
        num_workers: int = 0,
        train_on: str = "full",
    ) -> None:
        super().__init__()
        batch_size, num_workers = as_int(batch_size, "batch_size", 1), as_int(num_workers, "num_workers", 0)
        forget_class = as_int(forget_class, "forget_class")
        check_forget_args(forget, forget_class, forget_ratio)
        self.batch_size, self.num_workers, self.seed = batch_size, num_workers, as_int(seed, "seed")
        self.forget, self.forget_class, self.forget_ratio = forget, forget_class, float(forget_ratio)
        self.train_on = train_on
        self._ready = False

    @abstractmethod
    def _load(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return ``(train_x, train_y, test_x, test_y)``: images [N, C, H, W] and int64 labels [N]."""

    def eval_transform(self) -> Transform | None:
        """Per-sample map from a stored image to float32 normalised input; ``None``: stored that way already."""
        return None

    def train_transform(self) -> Transform | None:
        """Per-sample transform of the training loader; override to add augmentation."""
        return self.eval_transform()

    @property
    def train_on(self) -> str:
        """Which split ``train_dataloader`` serves: ``"full"``, ``"retain"`` or ``"forget"``."""
        return self._train_on

    @train_on.setter
    def train_on(self, value: str) -> None:
        if value not in TRAIN_ON:
            raise ValueError(f"train_on must be one of {TRAIN_ON}, got {value!r}")
        self._train_on = value

    def setup(self, stage: str | None = None) -> None:
        """Load data and build the splits once; later calls return immediately."""
        if self._ready:
            return
        train_x, train_y, test_x, test_y = self._load()
        check_images(train_x, train_y, "train")
        check_images(test_x, test_y, "test")
        if train_x.shape[1:] != test_x.shape[1:]:
            raise ValueError(
                f"train images {tuple(train_x.shape[1:])} and test images {tuple(test_x.shape[1:])} differ in shape"
            )
        forget_idx, retain_idx = forget_split(
            train_y, self.forget, forget_class=self.forget_class, forget_ratio=self.forget_ratio, seed=self.seed
        )
        self.train_x, self.train_y, self.test_x, self.test_y = train_x, train_y, test_x, test_y
        self.forget_indices, self.retain_indices = forget_idx, retain_idx
        view = self.eval_transform()
        self.train_dataset = IndexedTensorDataset(train_x, train_y, None, view)
        self.forget_dataset = IndexedTensorDataset(train_x, train_y, forget_idx, view) if self.forget else None
        self.retain_dataset = IndexedTensorDataset(train_x, train_y, retain_idx, view) if self.forget else None
        self.full_test_dataset = IndexedTensorDataset(test_x, test_y, None, view)
        ta = ta_indices(test_y, self.forget, self.forget_class)
        self.test_dataset = IndexedTensorDataset(test_x, test_y, ta, view)
        self._ready = True

    @property
    def num_classes(self) -> int:
        """``known_num_classes``, else the largest label + 1 over train and test (needs ``setup()``)."""
        if self.known_num_classes is not None:
            return self.known_num_classes
        self._require_setup()
        return int(max(self.train_y.max(), self.test_y.max())) + 1

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one input; needs ``setup()``."""
        self._require_setup()
        return tuple(self.train_dataset[0][0].shape)  # type: ignore[return-value]

    def _require_setup(self) -> None:
        if not self._ready:
            raise RuntimeError(f"{type(self).__name__}.setup() must run before its data is used")

    def _require_forget(self, split: str) -> None:
        self._require_setup()
        if self.forget is None:
            raise ValueError(f"no {split} split: this datamodule was built with forget=None")

    def _loader(self, dataset: IndexedTensorDataset | None, shuffle: bool, trainer: object = None) -> DataLoader:
        assert dataset is not None  # callers check the split exists (_require_setup / _require_forget)
        return seeded_loader(
            dataset, self.batch_size, shuffle=shuffle, seed=self.seed, num_workers=self.num_workers, trainer=trainer
        )

    def forget_dataloader(self, shuffle: bool = False) -> DataLoader:
        self._require_forget("forget")
        return self._loader(self.forget_dataset, shuffle)

    def retain_dataloader(self, shuffle: bool = True) -> DataLoader:
        self._require_forget("retain")
        return self._loader(self.retain_dataset, shuffle)

    def train_dataloader(self) -> DataLoader:
        self._require_setup()
        if self.train_on != "full":
            self._require_forget(self.train_on)
        indices = {"full": None, "retain": self.retain_indices, "forget": self.forget_indices}[self.train_on]
        dataset = IndexedTensorDataset(self.train_x, self.train_y, indices, self.train_transform())
        return self._loader(dataset, True, self.trainer)  # batch_size is the global batch under DDP

    def val_dataloader(self) -> DataLoader:
        return self.test_dataloader()

    def test_dataloader(self) -> DataLoader:
        self._require_setup()
        return self._loader(self.test_dataset, False)
