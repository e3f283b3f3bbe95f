"""DataLoaders of the library's datamodules: a shuffle seeded by (seed, epoch), and the global batch.

``EpochShuffle`` draws epoch ``e``'s order from ``seed + e`` alone (PyTorch's ``DistributedSampler`` rule),
reading ``e`` from the trainer when one is attached. A run resumed from an end-of-epoch checkpoint
therefore sees the order an uninterrupted run sees (rebuilding a loader with a generator seeded once
replays epoch 0; Lightning also creates the first iterator of a resumed fit before it calls
``set_epoch``). Under DDP each of the ``world`` processes takes every ``world``-th index of that order
and a ``batch_size / world`` share of the batch, so the global batch and the number of optimizer
steps per epoch are those of one process.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler


class EpochShuffle(DistributedSampler):
    """A permutation per epoch from ``(seed, epoch)``; rank ``rank`` of ``num_replicas`` gets its shard.

    The epoch is ``trainer.current_epoch`` when a trainer is given, else the value of ``set_epoch``,
    which each pass advances by one (so a plain loop also gets a new order every epoch). A
    ``DistributedSampler``, so Lightning does not wrap it again under DDP.
    """

    def __init__(self, dataset: Dataset, seed: int, num_replicas: int = 1, rank: int = 0, trainer: Any = None) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=int(seed))
        self.trainer = trainer

    def __iter__(self) -> Iterator[int]:
        if self.trainer is not None:
            self.epoch = int(self.trainer.current_epoch)
        order = super().__iter__()
        self.epoch += 1
        return order


def first_samples(loader: Any, n: int | None = None) -> tuple[Any, ...]:
    """The first ``n`` samples (all with ``n=None``) a loader yields, as one tensor per batch field
    (x, y[, mask]), read batch by batch and made plain tensors (usable in autograd also when the loader
    ran under inference mode); a RuntimeError for an empty loader."""
    parts: list[list[Any]] = []
    got = 0
    with torch.inference_mode(False):
        for batch in loader:
            items = list(batch) if isinstance(batch, (list, tuple)) else [batch]
            if not parts:
                parts = [[] for _ in items]
            for store, item in zip(parts, items):
                store.append(item.clone())
            got += len(items[0])
            if n is not None and got >= n:
                break
    if not parts:
        raise RuntimeError("the dataloader is empty")
    return tuple(torch.cat(p)[:n] for p in parts)


def world_of(trainer: Any) -> tuple[int, int]:
    """``(world size, global rank)`` of ``trainer`` (``(1, 0)`` without one)."""
    if trainer is None:
        return 1, 0
    return int(trainer.world_size), int(trainer.global_rank)


def per_device_batch(batch_size: int, world: int) -> int:
    """``batch_size`` is the global batch: each of ``world`` processes loads an equal share of it."""
    if batch_size % world:
        raise ValueError(
            f"data.batch_size={batch_size} is the global batch and must split evenly over the {world} "
            f"training processes; choose a multiple of {world}"
        )
    return batch_size // world


def seeded_loader(
    dataset: Dataset, batch_size: int, *, shuffle: bool, seed: int, num_workers: int = 0, trainer: Any = None
) -> DataLoader:
    """A loader over ``dataset``; shuffled by ``EpochShuffle``. With ``trainer``: a training loader whose
    ``batch_size`` is split over the trainer's processes."""
    world, rank = world_of(trainer)
    sampler = EpochShuffle(dataset, seed, world, rank, trainer) if shuffle else None
    return DataLoader(
        dataset,
        batch_size=per_device_batch(batch_size, world),
        sampler=sampler,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
    )
