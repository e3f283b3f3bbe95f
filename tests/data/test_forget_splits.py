"""Seeded forget/retain splits and the TA test indices, checked against naive numpy selections."""

import numpy as np
import pytest
import torch

from salguide.data.splits import forget_split, ta_indices

LABELS = torch.tensor([0, 1, 2, 0, 1, 2, 0, 3, 3, 1, 2, 0])


def test_class_split_selects_exactly_that_class():
    forget, retain = forget_split(LABELS, "class", forget_class=2)
    assert forget.tolist() == np.flatnonzero(LABELS.numpy() == 2).tolist()
    assert retain.tolist() == np.flatnonzero(LABELS.numpy() != 2).tolist()
    assert forget.dtype == retain.dtype == torch.long


def test_random_split_size_seed_and_partition():
    labels = torch.arange(1000) % 10
    f0, r0 = forget_split(labels, "random", forget_ratio=0.1, seed=0)
    f0b, _ = forget_split(labels, "random", forget_ratio=0.1, seed=0)
    f1, _ = forget_split(labels, "random", forget_ratio=0.1, seed=1)
    assert f0.numel() == 100 and r0.numel() == 900
    assert torch.equal(f0, f0b)
    assert not torch.equal(f0, f1)
    assert sorted(torch.cat([f0, r0]).tolist()) == list(range(1000))


def test_no_forgetting_keeps_everything():
    forget, retain = forget_split(LABELS, None)
    assert forget.numel() == 0 and retain.tolist() == list(range(len(LABELS)))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(forget="class", forget_class=7), "class 7 is not in the training set"),
        (dict(forget="random", forget_ratio=0.0), r"open interval \(0, 1\)"),
        (dict(forget="random", forget_ratio=1.0), r"open interval \(0, 1\)"),
        (dict(forget="random", forget_ratio=-0.2), r"open interval \(0, 1\)"),
        (dict(forget="random", forget_ratio=0.01), "rounds to 0"),
        (dict(forget="classes"), "unknown forget mode"),
    ],
)
def test_bad_split_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        forget_split(LABELS, **kwargs)


def test_forgetting_the_whole_train_set_is_refused():
    with pytest.raises(ValueError, match="retain set would be empty"):
        forget_split(torch.zeros(5, dtype=torch.long), "class", forget_class=0)


def test_ta_indices_remove_the_forgotten_class_only_in_class_mode():
    assert ta_indices(LABELS, "class", 0).tolist() == np.flatnonzero(LABELS.numpy() != 0).tolist()
    assert ta_indices(LABELS, "random", 0).tolist() == list(range(len(LABELS)))
    with pytest.raises(ValueError, match="only class 0"):
        ta_indices(torch.zeros(3, dtype=torch.long), "class", 0)
