"""Base of the annotated shortcut datasets (DecoyDigits, synthetic scenes): seeded, stratified
train/val/test splits of ``(x, y, annotation mask)`` built from scikit-learn's digits."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

from salguide._checks import as_int
from salguide._lightning import LightningDataModule
from salguide.data.digits import digit_images
from salguide.data.loaders import seeded_loader
from salguide.data.splits import split_indices

NUM_CLASSES = 10


class ThreeSplitDataModule(LightningDataModule):
    """``train_dataset`` / ``val_dataset`` / ``test_dataset`` (set by ``setup``) served by seeded loaders
    (only the training loader shuffles)."""

    num_classes = NUM_CLASSES
    mask_semantics: str  # "irrelevant" (inputs that must not matter) or "relevant" (the object)

    def __init__(self, batch_size: int, seed: int, num_workers: int) -> None:
        super().__init__()
        self.batch_size, self.seed = as_int(batch_size, "batch_size", 1), as_int(seed, "seed")
        self.num_workers = as_int(num_workers, "num_workers", 0)
        self.train_dataset: Dataset | None = None
        self.val_dataset: Dataset | None = None
        self.test_dataset: Dataset | None = None

    def _loader(self, ds: Dataset | None, shuffle: bool, trainer: object = None) -> DataLoader:
        if ds is None:
            raise RuntimeError("call setup() before asking for a dataloader")
        return seeded_loader(ds, self.batch_size, shuffle=shuffle, seed=self.seed, num_workers=self.num_workers,
                             trainer=trainer)  # fmt: skip

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_dataset, True, self.trainer)  # batch_size is the global batch under DDP

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_dataset, False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_dataset, False)


class AnnotatedDigitsDataModule(ThreeSplitDataModule, ABC):
    """Subclasses turn the digits of each split into a ``TensorDataset`` of (x, y, mask) in ``_build``."""

    def __init__(
        self, batch_size: int, image_size: int, digit_size: int, seed: int, test_fraction: float,
        val_fraction: float, num_workers: int,
    ) -> None:  # fmt: skip
        super().__init__(batch_size, seed, num_workers)
        image_size, digit_size = as_int(image_size, "image_size"), as_int(digit_size, "digit_size")
        if not 8 <= digit_size <= image_size:
            raise ValueError(
                f"need 8 <= digit_size <= image_size, got digit_size={digit_size}, image_size={image_size}"
            )
        for name, v in (("test_fraction", test_fraction), ("val_fraction", val_fraction)):
            if not 0.0 < float(v) < 1.0:
                raise ValueError(f"{name} must lie in the open interval (0, 1), got {v}")
        self.image_size, self.digit_size = int(image_size), int(digit_size)
        self.test_fraction, self.val_fraction = float(test_fraction), float(val_fraction)

    @abstractmethod
    def _build(
        self, digits: torch.Tensor, labels: torch.Tensor, splits: tuple[np.ndarray, np.ndarray, np.ndarray],
        gen: torch.Generator,
    ) -> tuple[TensorDataset, TensorDataset, TensorDataset]:  # fmt: skip
        """The train, val and test datasets from all digits, their labels and the split indices."""

    def setup(self, stage: str | None = None) -> None:
        if self.train_dataset is not None:
            return
        digits, labels = digit_images(self.digit_size)
        splits = split_indices(labels, self.seed, self.test_fraction, self.val_fraction)
        gen = torch.Generator().manual_seed(self.seed)
        self.train_dataset, self.val_dataset, self.test_dataset = self._build(digits, labels, splits, gen)
