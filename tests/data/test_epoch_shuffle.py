"""``EpochShuffle``: a permutation per epoch from (seed, epoch); under DDP, shards of one process's order
and a share of the global batch per process."""

from __future__ import annotations

import pytest
import torch
from test_loaders_resume import FakeTrainer, _digits, _train_loader
from torch.utils.data import TensorDataset

from salguide.data.loaders import EpochShuffle


def _perm(n: int, seed: int) -> list[int]:  # the reference: torch's DistributedSampler rule, seed + epoch
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()


def test_epoch_order_depends_only_on_seed_and_epoch():
    ds = TensorDataset(torch.arange(50))
    assert list(EpochShuffle(ds, 3, trainer=FakeTrainer(current_epoch=2))) == _perm(50, 5)
    plain = EpochShuffle(ds, 3)  # a plain loop: every pass is the next epoch
    assert [list(plain), list(plain)] == [_perm(50, 3), _perm(50, 4)]
    plain.set_epoch(7)
    assert list(plain) == _perm(50, 10)


def test_two_processes_split_one_process_order_and_global_batch():
    dm = _digits()
    n = len(dm.retain_dataset)
    one = _train_loader(dm, FakeTrainer(current_epoch=3))
    ranks = [_train_loader(dm, FakeTrainer(2, r, 3)) for r in (0, 1)]
    order = list(one.sampler)
    assert order == _perm(n, 1 + 3)
    padded = order + order[: len(order) % 2]  # DistributedSampler pads to a multiple of the world size
    assert [list(r.sampler) for r in ranks] == [padded[0::2], padded[1::2]]
    assert [r.batch_size for r in ranks] == [32, 32] and one.batch_size == 64
    assert len(ranks[0]) == len(one)  # as many optimizer steps per epoch as in one process
    with pytest.raises(ValueError, match="data.batch_size=63 is the global batch"):
        _train_loader(_digits(63), FakeTrainer(2, 0))
