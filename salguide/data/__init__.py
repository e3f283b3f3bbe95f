"""Offline datasets as Lightning DataModules with seeded forget/retain/test splits for unlearning."""

from salguide.data.cifar10 import CIFAR10DataModule
from salguide.data.digits import DigitsDataModule
from salguide.data.forget import ForgetDataModule
from salguide.data.splits import forget_split, ta_indices
from salguide.data.tensors import IndexedTensorDataset

__all__ = [
    "CIFAR10DataModule",
    "DigitsDataModule",
    "ForgetDataModule",
    "IndexedTensorDataset",
    "forget_split",
    "ta_indices",
]
