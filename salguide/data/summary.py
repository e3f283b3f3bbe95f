"""What a datamodule holds, as plain rows and tensors: per-split class counts and a per-class sample pick
(the data tables and sample grids that ``DataSamplesCallback`` logs)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

SPLITS = ("train", "val", "forget", "retain", "test", "full_test")


def dataset_labels(dataset: Any) -> torch.Tensor:
    """Labels of a salguide dataset (``targets`` / ``y``), a ``TensorDataset`` or any map-style dataset."""
    for attr in ("targets", "y"):
        if isinstance(getattr(dataset, attr, None), torch.Tensor):
            return getattr(dataset, attr)
    if hasattr(dataset, "tensors"):
        return dataset.tensors[1]
    return torch.as_tensor([int(dataset[i][1]) for i in range(len(dataset))])


def split_datasets(datamodule: Any) -> dict[str, Any]:
    """The ``<split>_dataset`` attributes of ``datamodule`` that are set, in ``SPLITS`` order."""
    found = {s: getattr(datamodule, f"{s}_dataset", None) for s in SPLITS}
    return {s: ds for s, ds in found.items() if ds is not None}


def class_count_rows(datamodule: Any, class_names: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """One row per (split, class): ``split``, ``class``, ``name``, ``count`` (classes absent from a split: 0)."""
    labels = {s: dataset_labels(ds).long() for s, ds in split_datasets(datamodule).items()}
    if not labels:
        raise ValueError(f"{type(datamodule).__name__} has no datasets yet: call setup() first")
    k = max(int(y.max()) + 1 for y in labels.values() if y.numel())
    if class_names is not None:
        k = max(k, len(class_names))
    names = list(class_names) if class_names is not None else [str(c) for c in range(k)]
    rows = []
    for split, y in labels.items():
        counts = torch.bincount(y, minlength=k)
        rows += [
            {"split": split, "class": c, "name": names[c] if c < len(names) else str(c), "count": int(counts[c])}
            for c in range(k)
        ]
    return rows


def per_class_samples(dataset: Any, per_class: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """The first ``per_class`` samples of every class in ``dataset`` order: images [K, C, H, W], labels [K]
    (sorted by class) and, for annotated (x, y, mask) data, the masks [K, 1, H, W] (else None)."""
    if int(per_class) < 1:
        raise ValueError(f"per_class must be >= 1, got {per_class}")
    y = dataset_labels(dataset).long()
    picks = [i for c in y.unique().tolist() for i in (y == c).nonzero().flatten()[:per_class].tolist()]
    samples = [dataset[i] for i in picks]
    x = torch.stack([s[0] for s in samples])
    labels = torch.stack([torch.as_tensor(s[1]) for s in samples]).long()
    masks = torch.stack([s[2] for s in samples]) if len(samples[0]) > 2 else None
    return x, labels, masks
