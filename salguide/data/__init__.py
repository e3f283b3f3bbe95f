"""Offline datasets as Lightning DataModules: unlearning splits (digits, CIFAR-10, MNIST and
Fashion-MNIST from IDX files) and annotated shortcut data for input-saliency training (DecoyDigits,
Decoy (Fashion-)MNIST, synthetic scenes)."""

from salguide.data.cifar10 import CIFAR10DataModule
from salguide.data.decoy_digits import DecoyDigitsDataModule
from salguide.data.decoy_mnist import DecoyFashionMNISTDataModule, DecoyMNISTDataModule
from salguide.data.digits import DigitsDataModule
from salguide.data.forget import ForgetDataModule
from salguide.data.idx import read_idx
from salguide.data.mnist import FashionMNISTDataModule, MNISTDataModule
from salguide.data.scenes import SyntheticScenesDataModule
from salguide.data.splits import forget_split, ta_indices
from salguide.data.tensors import IndexedTensorDataset

__all__ = [
    "CIFAR10DataModule",
    "DecoyDigitsDataModule",
    "DecoyFashionMNISTDataModule",
    "DecoyMNISTDataModule",
    "DigitsDataModule",
    "FashionMNISTDataModule",
    "ForgetDataModule",
    "MNISTDataModule",
    "IndexedTensorDataset",
    "SyntheticScenesDataModule",
    "forget_split",
    "read_idx",
    "ta_indices",
]
