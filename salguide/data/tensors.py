"""Checked in-memory tensors and an index view over them that applies a per-sample transform."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.utils.data import Dataset


def check_images(x: torch.Tensor, y: torch.Tensor, name: str) -> None:
    """Raise a ``ValueError`` naming ``name`` unless ``x`` is [N, C, H, W] with N > 0 matching int labels ``y``."""
    if x.ndim != 4:
        raise ValueError(f"{name} images must have shape [N, C, H, W], got {tuple(x.shape)}")
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise ValueError(f"{name} labels must have shape [{x.shape[0]}], got {tuple(y.shape)}")
    if x.shape[0] == 0:
        raise ValueError(f"{name} set is empty")
    if y.dtype != torch.long:
        raise ValueError(f"{name} labels must be int64, got {y.dtype}")
    if int(y.min()) < 0:
        raise ValueError(f"{name} labels must be non-negative, got {int(y.min())}")
    if x.is_floating_point() and not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} images contain NaN or inf")


class IndexedTensorDataset(Dataset):
    """Samples ``(transform(x[i]), y[i])`` for ``i`` in ``indices`` (all rows when ``indices`` is None).

    Shares storage with ``x``/``y`` (no copy per split). ``transform`` maps one stored image to a float32
    normalised tensor; ``None`` means ``x`` is stored that way already.
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        indices: torch.Tensor | None = None,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        self.x, self.y, self.transform = x, y, transform
        self.indices = torch.arange(x.shape[0]) if indices is None else indices.long()

    def __len__(self) -> int:
        return self.indices.numel()

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        j = int(self.indices[i])
        x = self.x[j]
        return (self.transform(x) if self.transform is not None else x), self.y[j]

    @property
    def targets(self) -> torch.Tensor:
        """Labels of this view, in order."""
        return self.y[self.indices]
