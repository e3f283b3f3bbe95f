"""The zero-code path (InputSaliencyCallback on an unmodified module) == adding the term by hand."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from cpu_trainer import cpu_trainer
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from salguide._lightning import pl
from salguide.callbacks.input_saliency import InputSaliencyCallback
from salguide.inputs import InputLoss, RRRLoss, SGTLoss
from salguide.models import ClassifierModule
from salguide.models.optim import sgd


def data(n: int = 16) -> DataLoader:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, 1, 4, 4, generator=g)
    y = torch.randint(0, 3, (n,), generator=g)
    mask = torch.zeros(n, 1, 4, 4)
    mask[:, :, :2, :2] = 1
    return DataLoader(TensorDataset(x, y, mask), batch_size=4)


def net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.Tanh(), nn.Linear(8, 3))


class HandWritten(ClassifierModule):
    """What a user would write: CE + loss.penalty in training_step."""

    def __init__(self, model: nn.Module, loss: InputLoss) -> None:
        super().__init__(model, optimizer=sgd(lr=0.1, momentum=0.0, weight_decay=0.0), scheduler=None)
        self.input_loss = loss

    def training_step(self, batch, batch_idx):
        x, y, mask = batch
        x = x.requires_grad_(True)
        logits = self(x)
        return F.cross_entropy(logits, y) + self.input_loss.penalty(self, x, y, mask, logits)


def fit(module: pl.LightningModule, callbacks=(), **kw) -> dict[str, torch.Tensor]:
    trainer = cpu_trainer(max_epochs=1, callbacks=list(callbacks), **kw)
    trainer.fit(module, train_dataloaders=data())
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


@pytest.mark.parametrize("precision,accumulate", [("32-true", 1), ("32-true", 2), ("bf16-mixed", 2)])
@pytest.mark.parametrize("make_loss", [lambda: RRRLoss(5.0), lambda: SGTLoss(1.0, seed=0)], ids=["rrr", "sgt"])
def test_callback_equals_the_hand_written_loss(make_loss, precision, accumulate):
    kw = {"precision": precision, "accumulate_grad_batches": accumulate}
    plain = ClassifierModule(net(), optimizer=sgd(lr=0.1, momentum=0.0, weight_decay=0.0), scheduler=None)
    zero_code = fit(plain, [InputSaliencyCallback(make_loss())], **kw)
    by_hand = fit(HandWritten(net(), make_loss()), **kw)
    baseline = fit(ClassifierModule(net(), optimizer=sgd(lr=0.1, momentum=0.0, weight_decay=0.0), scheduler=None), **kw)
    for k in by_hand:
        torch.testing.assert_close(zero_code[k], by_hand[k], msg=k)
    # and the term really changed training (added once, not zero times)
    assert any(not torch.allclose(zero_code[k], baseline[k]) for k in baseline)
    assert "training_step" not in vars(plain)  # unwrapped after fit


def test_added_exactly_once_per_step():
    """Doubling the weight by hand == the callback with the doubled weight, not the callback twice."""
    module = ClassifierModule(net(), optimizer=sgd(lr=0.1, momentum=0.0, weight_decay=0.0), scheduler=None)
    once = fit(module, [InputSaliencyCallback(RRRLoss(4.0))])
    hand = fit(HandWritten(net(), RRRLoss(4.0)))
    hand_double = fit(HandWritten(net(), RRRLoss(8.0)))
    for k in hand:
        torch.testing.assert_close(once[k], hand[k])
    assert any(not torch.allclose(once[k], hand_double[k]) for k in hand)


def test_inverts_a_relevant_mask_for_rrr_and_refuses_manual_optimisation():
    class Dm(pl.LightningDataModule):
        mask_semantics = "relevant"

        def train_dataloader(self):
            loader = data()
            x, y, m = loader.dataset.tensors
            return DataLoader(TensorDataset(x, y, 1 - m), batch_size=4)

    module = ClassifierModule(net(), optimizer=sgd(lr=0.1, momentum=0.0, weight_decay=0.0), scheduler=None)
    trainer = cpu_trainer(max_epochs=1, callbacks=[InputSaliencyCallback(RRRLoss(5.0))])
    trainer.fit(module, datamodule=Dm())
    ref = fit(HandWritten(net(), RRRLoss(5.0)))
    for k, v in module.state_dict().items():
        torch.testing.assert_close(v, ref[k])

    class Manual(ClassifierModule):
        def __init__(self) -> None:
            super().__init__(net())
            self.automatic_optimization = False

    with pytest.raises(RuntimeError, match="automatic optimisation"):
        fit(Manual(), [InputSaliencyCallback(RRRLoss())])
    with pytest.raises(TypeError, match="InputLoss"):
        InputSaliencyCallback(nn.MSELoss())
