"""AttentionLossCallback == the attention penalty written by hand (one forward per step);
TokenPruningCallback follows its schedule and detaches."""

from __future__ import annotations

import pytest
import torch
from cpu_trainer import cpu_trainer
from torch.utils.data import DataLoader, TensorDataset

from salguide._lightning import pl
from salguide.attention.loss_modules import AttentionLoss, BackgroundSuppressionLoss, ConcentrationLoss
from salguide.attention.policies import EViTPolicy
from salguide.attention.routing import router_of
from salguide.callbacks.attention_loss import AttentionLossCallback
from salguide.callbacks.token_pruning import TokenPruningCallback
from salguide.models import ClassifierModule
from salguide.models.optim import sgd
from salguide.models.vit import vit_digits


def data(n: int = 12) -> DataLoader:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, 1, 32, 32, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    mask = torch.zeros(n, 1, 32, 32)
    mask[:, :, 4:20, 8:24] = 1
    return DataLoader(TensorDataset(x, y, mask), batch_size=4)


def vit() -> torch.nn.Module:
    torch.manual_seed(0)
    return vit_digits(depth=2, embed_dim=32)


def opts() -> dict:
    return dict(optimizer=sgd(lr=0.5, momentum=0.0, weight_decay=0.0), scheduler=None)


class HandWritten(ClassifierModule):
    def __init__(self, model: torch.nn.Module, loss: AttentionLoss) -> None:
        super().__init__(model, **opts())
        self.attn_loss = loss

    def training_step(self, batch, batch_idx):
        x, y, mask = batch
        out = self.attn_loss(self, x, y, mask)
        return out.loss


def fit(module, callbacks=(), **kw):
    trainer = cpu_trainer(max_epochs=1, callbacks=list(callbacks), **kw)
    trainer.fit(module, train_dataloaders=data())
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


@pytest.mark.parametrize(
    "make_loss",
    [lambda: BackgroundSuppressionLoss(5.0, [0, 1], "all"), lambda: ConcentrationLoss(2.0, [-1])],
    ids=["bas", "concentration"],
)
def test_callback_equals_hand_written_loss_with_one_forward_per_step(make_loss) -> None:
    plain = ClassifierModule(vit(), **opts())
    calls = []
    plain.model.register_forward_pre_hook(lambda *_: calls.append(1))
    zero_code = fit(plain, [AttentionLossCallback(make_loss())], accumulate_grad_batches=2)
    assert len(calls) == 3  # 12 samples / batch 4: one forward per step, shared with the penalty
    by_hand = fit(HandWritten(vit(), make_loss()), accumulate_grad_batches=2)
    baseline = fit(ClassifierModule(vit(), **opts()), accumulate_grad_batches=2)
    for k in by_hand:
        torch.testing.assert_close(zero_code[k], by_hand[k], atol=1e-6, rtol=1e-5)
    assert any(not torch.allclose(zero_code[k], baseline[k]) for k in baseline)
    assert router_of(plain.model).recorder is None


def test_callback_refuses_non_attention_losses() -> None:
    from salguide.inputs import RRRLoss

    with pytest.raises(TypeError, match="AttentionLoss"):
        AttentionLossCallback(RRRLoss(1.0))


def test_token_pruning_callback_schedule_and_detach() -> None:
    module = ClassifierModule(vit(), **opts())
    seen = []

    class Spy(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            seen.append(router_of(pl_module.model).policy.keep)

    cb = TokenPruningCallback(EViTPolicy([0], 0.5), warmup_steps=2, schedule="linear")
    fit(module, [cb, Spy()])
    assert seen == [1.0, 0.75, 0.5]
    assert router_of(module.model).policy is None
    assert cb.state_dict() == {"keep": 0.5, "target": 0.5, "policy": "evit"}
    with pytest.raises(TypeError, match="TokenPolicy"):
        TokenPruningCallback("evit")
