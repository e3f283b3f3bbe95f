"""Callbacks that wrap or hook the module undo it when ``fit`` raises (``on_exception``), exactly as at
``teardown``, so a retry in the same process behaves like a first run; and the training-step wrapper
restores precisely what was there before (a user's own instance-level ``training_step`` included)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from cpu_trainer import cpu_trainer
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from salguide._lightning import pl
from salguide.attention.loss_modules import ConcentrationLoss
from salguide.attention.policies import EViTPolicy
from salguide.attention.routing import router_of
from salguide.callbacks.attention_loss import AttentionLossCallback
from salguide.callbacks.input_saliency import InputSaliencyCallback
from salguide.callbacks.token_pruning import TokenPruningCallback
from salguide.inputs import RRRLoss
from salguide.models import ClassifierModule
from salguide.models.optim import sgd
from salguide.models.vit import vit_digits


class Boom(RuntimeError):
    pass


class FailAt(pl.Callback):
    """Raise in the training loop at ``batch``, once."""

    def __init__(self, batch: int = 1) -> None:
        self.batch = batch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx == self.batch:
            raise Boom("injected fault")


def loader(side: int, classes: int) -> DataLoader:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(8, 1, side, side, generator=g)
    y = torch.randint(0, classes, (8,), generator=g)
    mask = torch.zeros(8, 1, side, side)
    mask[:, :, : side // 2, : side // 2] = 1
    return DataLoader(TensorDataset(x, y, mask), batch_size=4)


def fit(module, callbacks, side: int = 4, classes: int = 3) -> dict[str, torch.Tensor]:
    trainer = cpu_trainer(max_epochs=1, callbacks=list(callbacks))
    trainer.fit(module, train_dataloaders=loader(side, classes))
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def cnn_module() -> ClassifierModule:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.Tanh(), nn.Linear(8, 3))
    return ClassifierModule(net, optimizer=sgd(lr=0.1, momentum=0.0, weight_decay=0.0), scheduler=None)


def vit_module() -> ClassifierModule:
    torch.manual_seed(0)
    return ClassifierModule(
        vit_digits(depth=2, embed_dim=32), optimizer=sgd(lr=0.1, momentum=0.0, weight_decay=0.0), scheduler=None
    )


def test_input_saliency_wrapper_is_removed_when_fit_raises_and_a_retry_adds_the_penalty_once():
    module = cnn_module()
    with pytest.raises(Boom):
        fit(module, [InputSaliencyCallback(RRRLoss(5.0)), FailAt(1)])
    assert "training_step" not in vars(module)
    # reference: the same module state, retried once with a fresh callback, == a clean module trained once
    # from the state the failed run left behind
    start = {k: v.clone() for k, v in module.state_dict().items()}
    retried = fit(module, [InputSaliencyCallback(RRRLoss(5.0))])
    clean = cnn_module()
    clean.load_state_dict(start)
    once = fit(clean, [InputSaliencyCallback(RRRLoss(5.0))])
    for k in once:
        torch.testing.assert_close(retried[k], once[k], msg=k)


def test_a_users_own_instance_training_step_is_restored_exactly():
    module = cnn_module()
    calls = []

    def my_step(batch, batch_idx):
        calls.append(batch_idx)
        x, y, _ = batch
        return F.cross_entropy(module(x), y)

    module.training_step = my_step
    fit(module, [InputSaliencyCallback(RRRLoss(5.0))])
    assert vars(module)["training_step"] is my_step and calls == [0, 1]
    with pytest.raises(Boom):
        fit(module, [InputSaliencyCallback(RRRLoss(5.0)), FailAt(1)])
    assert vars(module)["training_step"] is my_step


def test_attention_loss_callback_can_be_retried_after_a_failed_fit():
    module = vit_module()
    with pytest.raises(Boom):
        fit(module, [AttentionLossCallback(ConcentrationLoss(1.0, [-1])), FailAt(1)], side=32, classes=10)
    assert "training_step" not in vars(module)
    assert router_of(module.model).recorder is None
    fit(module, [AttentionLossCallback(ConcentrationLoss(1.0, [-1]))], side=32, classes=10)  # no "already active"
    assert router_of(module.model).recorder is None


def test_token_pruning_policy_is_detached_when_fit_raises():
    module = vit_module()
    with pytest.raises(Boom):
        fit(module, [TokenPruningCallback(EViTPolicy([0], 0.5)), FailAt(1)], side=32, classes=10)
    assert router_of(module.model).policy is None
