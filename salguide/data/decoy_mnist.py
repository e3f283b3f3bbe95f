"""Decoy (Fashion-)MNIST: RRR's DecoyMNIST built from local IDX files (Ross, Hughes & Doshi-Velez, IJCAI 2017).

As in RRR's ``decoy_mnist.py``: a 4x4 patch in a uniformly random corner of each 28x28 image, of shade
``255 - 25 y`` in training (it gives the label away) and the shade of a uniformly random class at
test. The patch is the annotation of inputs that must **not** matter (``mask_semantics =
"irrelevant"``). Regimes as in :mod:`salguide.data.decoy_digits`: ``train`` (shade encodes y),
``test`` (random shade; the "clean" reference for training), ``clean`` (no patch; the mask still marks
a random corner). Images stay uint8 with the patch painted in; samples are ``(x [1, H, W] in [0, 1],
y, mask [1, H, W])``. The validation split is a stratified, seeded share of the training files.
"""

from __future__ import annotations

import math
import os

import torch
from torch.utils.data import Dataset

from salguide.data.annotated import ThreeSplitDataModule
from salguide.data.decoy_digits import REGIMES, check_regimes
from salguide.data.mnist import (
    NUM_CLASSES,
    FashionMNISTDataModule,
    IDXDataModule,
    MNISTDataModule,
    check_sizes,
    stratified_pick,
)


def decoy_shade_u8(y: torch.Tensor) -> torch.Tensor:
    """RRR's training shade of class ``y``: ``255 - 25 y`` (uint8)."""
    return (255 - 25 * y.long()).to(torch.uint8)


def corner_masks(h: int, w: int, patch_size: int) -> torch.Tensor:
    """[4, 1, h, w] float masks of a ``patch_size`` square in corner 0 TL, 1 TR, 2 BL, 3 BR."""
    if not 1 <= patch_size <= min(h, w) // 2:
        raise ValueError(f"patch_size must lie in [1, {min(h, w) // 2}] for {h}x{w} images, got {patch_size}")
    masks = torch.zeros((4, 1, h, w))
    p = patch_size
    masks[0, :, :p, :p] = masks[1, :, :p, w - p :] = masks[2, :, h - p :, :p] = masks[3, :, h - p :, w - p :] = 1.0
    return masks


class DecoyDataset(Dataset):
    """``(x / 255, y, corner mask)`` per sample, from uint8 images [N, 1, H, W] whose patch is painted in."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, corners: torch.Tensor, patch_size: int) -> None:
        self.x, self.y, self.corners = images, labels, corners.long()
        self.masks = corner_masks(images.shape[-2], images.shape[-1], patch_size)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.x[i].float() / 255.0, self.y[i], self.masks[self.corners[i]]


def decoy_dataset(
    images: torch.Tensor, labels: torch.Tensor, regime: str, patch_size: int, generator: torch.Generator
) -> DecoyDataset:
    """Paint the patches of ``regime`` into uint8 ``images`` (a copy); draws a corner and a random class
    per sample from ``generator`` (in that order, whatever the regime)."""
    if regime not in REGIMES:
        raise ValueError(f"unknown decoy regime {regime!r}; choose one of {REGIMES}")
    n = len(labels)
    corner = torch.randint(0, 4, (n,), generator=generator)
    random_class = torch.randint(0, NUM_CLASSES, (n,), generator=generator)
    x = images
    if regime != "clean":
        patch = corner_masks(images.shape[-2], images.shape[-1], patch_size).bool()[corner]
        shade = decoy_shade_u8(labels if regime == "train" else random_class).view(n, 1, 1, 1)
        x = torch.where(patch, shade, images)
    return DecoyDataset(x, labels, corner, patch_size)


class DecoyIDXDataModule(ThreeSplitDataModule):
    """Train/val/test splits of (x, y, patch mask) from the IDX files of ``source`` (see the module doc).

    ``train_regime``: ``train`` (decoy), ``test`` (random shades: the clean reference) or ``clean`` (no
    patch); ``val_regime``: ``test`` or ``train``; the test split always has random shades.
    ``train_size`` / ``test_size``: stratified, seeded subsets of the files' splits (the validation
    share is taken from the training subset).
    """

    source: type[IDXDataModule] = FashionMNISTDataModule
    mask_semantics = "irrelevant"

    def __init__(
        self,
        data_dir: str | os.PathLike | None = None,
        batch_size: int = 64,
        patch_size: int = 4,
        seed: int = 0,
        val_fraction: float = 0.1,
        train_regime: str = "train",
        val_regime: str = "test",
        train_size: int | None = None,
        test_size: int | None = None,
        num_workers: int = 0,
    ) -> None:
        super().__init__(batch_size, seed, num_workers)
        if not 0.0 < float(val_fraction) < 1.0:
            raise ValueError(f"val_fraction must lie in the open interval (0, 1), got {val_fraction}")
        check_regimes(train_regime, val_regime)
        if not 1 <= int(patch_size) <= 14:
            raise ValueError(f"patch_size must lie in [1, 14] for 28x28 images, got {patch_size}")
        check_sizes(train_size, test_size)
        self.data_dir = self.source.resolve_dir(data_dir)
        self.patch_size, self.val_fraction = int(patch_size), float(val_fraction)
        self.train_regime, self.val_regime = train_regime, val_regime
        self.train_size, self.test_size = train_size, test_size
        self.class_names = self.source.class_names

    @property
    def input_shape(self) -> tuple[int, int, int]:
        if not isinstance(self.train_dataset, DecoyDataset):
            raise RuntimeError(f"{type(self).__name__}.setup() must run before its data is used")
        c, h, w = self.train_dataset.x.shape[1:]
        return int(c), int(h), int(w)

    def setup(self, stage: str | None = None) -> None:
        if self.train_dataset is not None:
            return
        files = self.source.read_files(self.data_dir, self.seed, self.train_size, self.test_size)
        (x, y), (test_x, test_y) = files["train"], files["test"]
        va, tr = stratified_pick(y, math.ceil(self.val_fraction * len(y)), self.seed)
        gen = torch.Generator().manual_seed(self.seed)
        self.train_dataset = decoy_dataset(x[tr], y[tr], self.train_regime, self.patch_size, gen)
        self.val_dataset = decoy_dataset(x[va], y[va], self.val_regime, self.patch_size, gen)
        self.test_dataset = decoy_dataset(test_x, test_y, "test", self.patch_size, gen)


class DecoyFashionMNISTDataModule(DecoyIDXDataModule):
    """Decoy Fashion-MNIST: Debian's ``dataset-fashion-mnist`` files (or ``data_dir``) with RRR's decoy."""

    source = FashionMNISTDataModule


class DecoyMNISTDataModule(DecoyIDXDataModule):
    """RRR's DecoyMNIST from the user's local MNIST IDX files in ``data_dir``."""

    source = MNISTDataModule
