"""AuxiliaryLossCallback, the one mechanism behind InputSaliencyCallback and AttentionLossCallback: it reads
the batch's mask once per step, shares the step's forward and adds the penalty once."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from salguide.attention import ConcentrationLoss
from salguide.auxiliary import AuxiliaryLoss
from salguide.callbacks import AttentionLossCallback, AuxiliaryLossCallback, InputSaliencyCallback
from salguide.inputs import InputLoss, RRRLoss
from salguide.models import ClassifierModule
from salguide.models.optim import sgd
from salguide.models.vit import vit_digits


class CountingBatch(list):
    """A list batch that counts how often each key is read."""

    def __init__(self, items: list) -> None:
        super().__init__(items)
        self.reads: Counter = Counter()

    def __getitem__(self, key):
        self.reads[key] += 1
        return super().__getitem__(key)


def step(callback: AuxiliaryLossCallback, net: nn.Module, batch: CountingBatch) -> torch.Tensor:
    module = ClassifierModule(net, optimizer=sgd(lr=0.1, momentum=0.0, weight_decay=0.0), scheduler=None)
    module.log = lambda *args, **kwargs: None  # no Trainer here
    forwards = []
    module.register_forward_pre_hook(lambda *_: forwards.append(1))
    callback._wrap(module)
    try:
        out = module.training_step(batch, 0)
    finally:
        callback._unwrap()
    assert "training_step" not in vars(module)
    assert len(forwards) == 1  # the penalty shares the step's forward
    return out


def test_input_loss_reads_the_mask_once_and_adds_the_penalty_once() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    x, y = torch.rand(4, 1, 4, 4), torch.tensor([0, 1, 2, 0])
    mask = torch.zeros(4, 1, 4, 4)
    mask[..., :2, :2] = 1
    batch = CountingBatch([x.clone(), y, mask])
    out = step(InputSaliencyCallback(RRRLoss(3.0)), net, batch)
    assert batch.reads[2] == 1
    xr = x.clone().requires_grad_(True)
    logits = net(xr)
    expected = F.cross_entropy(logits, y) + RRRLoss(3.0).penalty(net, xr, y, mask, logits)
    torch.testing.assert_close(out, expected)


def test_attention_loss_reads_the_mask_once_and_adds_the_penalty_once() -> None:
    torch.manual_seed(0)
    vit = vit_digits(depth=2, embed_dim=32)
    x, y = torch.rand(2, 1, 32, 32), torch.tensor([3, 7])
    mask = torch.zeros(2, 1, 32, 32)
    mask[..., 4:20, 8:24] = 1
    batch = CountingBatch([x, y, mask])
    out = step(AttentionLossCallback(ConcentrationLoss(2.0, [-1])), vit, batch)
    assert batch.reads[2] == 1
    assert not x.requires_grad  # an attention penalty does not differentiate the input
    ref = ConcentrationLoss(2.0, [-1])(vit, x, y, mask)
    torch.testing.assert_close(out, ref.loss)


def test_the_base_is_neutral_and_each_callback_takes_its_family() -> None:
    assert issubclass(InputLoss, AuxiliaryLoss) and issubclass(type(ConcentrationLoss()), AuxiliaryLoss)
    assert not isinstance(ConcentrationLoss(), InputLoss)
    with pytest.raises(TypeError, match="InputSaliencyCallback needs a loss of type InputLoss, got ConcentrationLoss"):
        InputSaliencyCallback(ConcentrationLoss())
    with pytest.raises(TypeError, match="AttentionLossCallback needs a loss of type AttentionLoss, got RRRLoss"):
        AttentionLossCallback(RRRLoss())
    AuxiliaryLossCallback(RRRLoss())  # the generic callback takes either
    AuxiliaryLossCallback(ConcentrationLoss())
