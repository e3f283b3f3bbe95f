"""Offline datasets as Lightning DataModules: unlearning splits (digits, CIFAR-10) and annotated
shortcut data for input-saliency training (DecoyDigits, synthetic scenes)."""

from salguide.data.cifar10 import CIFAR10DataModule
from salguide.data.decoy_digits import DecoyDigitsDataModule
from salguide.data.digits import DigitsDataModule
from salguide.data.forget import ForgetDataModule
from salguide.data.scenes import SyntheticScenesDataModule
from salguide.data.splits import forget_split, ta_indices
from salguide.data.tensors import IndexedTensorDataset

__all__ = [
    "CIFAR10DataModule",
    "DecoyDigitsDataModule",
    "DigitsDataModule",
    "ForgetDataModule",
    "IndexedTensorDataset",
    "SyntheticScenesDataModule",
    "forget_split",
    "ta_indices",
]
