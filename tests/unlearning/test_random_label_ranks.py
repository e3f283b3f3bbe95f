"""RandomLabelCallback under DDP: every rank gives a forget sample the same random label (SalUn draws one
per sample), ranks mix in different forget samples, and the callback pickles (ddp_spawn)."""

from __future__ import annotations

import pickle
from types import SimpleNamespace

import torch
from torch.utils.data import TensorDataset

from salguide.callbacks import RandomLabelCallback
from salguide.unlearning.random_labels import draw_random_labels

N_FORGET, N_RETAIN, C = 40, 200, 10


def _rank_view(rank: int, seed: int = 4) -> tuple[RandomLabelCallback, list[int]]:
    """The callback as rank ``rank`` of 2 sets it up; the forget samples it appends to one retain batch."""
    forget = TensorDataset(-1.0 - torch.arange(N_FORGET).float(), torch.arange(N_FORGET) % C)
    trainer = SimpleNamespace(
        global_rank=rank,
        current_epoch=0,
        datamodule=SimpleNamespace(forget_dataset=forget, num_classes=C),
        train_dataloader=SimpleNamespace(dataset=range(N_RETAIN)),
    )
    cb = pickle.loads(pickle.dumps(RandomLabelCallback(seed=seed)))  # as ddp_spawn ships it to the rank
    cb.on_fit_start(trainer, None)
    cb.on_train_epoch_start(trainer, None)
    batch = [torch.arange(N_RETAIN).float(), torch.zeros(N_RETAIN, dtype=torch.long)]
    cb.on_train_batch_start(trainer, None, batch, 0)
    return cb, [int(-x - 1) for x in batch[0][N_RETAIN:]]


def test_ranks_agree_on_labels_and_draw_their_own_forget_samples():
    (cb0, seen0), (cb1, seen1) = _rank_view(0), _rank_view(1)
    expected = draw_random_labels(torch.arange(N_FORGET) % C, C, torch.Generator().manual_seed(4))
    assert torch.equal(cb0.state_dict()["labels"], expected)
    assert torch.equal(cb1.state_dict()["labels"], expected)
    assert len(seen0) == len(seen1) == N_FORGET  # b |F| / |R| = 200 * 40 / 200, an integer: no rounding
    assert seen0 != seen1  # each rank's own stream of forget samples
    assert sorted(seen0) == sorted(seen1) == list(range(N_FORGET))  # one pass over the forget set each
