"""SalUn / ANT / ESD / FT as callbacks on a Lightning fit: masked update bit-exact, the loss they return,
hooks undone, pickling, and bad inputs refused before any training."""

import pickle

import lightning.pytorch as L
import pytest
import torch
from cpu_trainer import cpu_trainer
from diff_helpers import T, batches, tiny
from torch.utils.data import DataLoader

from salguide._rng import Generator
from salguide.callbacks import DiffusionUnlearningCallback, WeightSaliencyCallback
from salguide.diffusion import (
    ANTObjective,
    ESDObjective,
    FTObjective,
    SalUnObjective,
    diffusion_ant_mask,
    diffusion_saliency_mask,
)
from salguide.diffusion.adapters import adapter_names, add_lora
from salguide.diffusion.module import adamw
from salguide.models import SmallCNN
from salguide.weights import WeightMask


def fit(module, callbacks, steps=3, retain=None):
    trainer = cpu_trainer(max_steps=steps, callbacks=callbacks)
    data = batches(4, label=None, seed=9) if retain is None else retain
    trainer.fit(module, train_dataloaders=DataLoader(data, batch_size=None))  # one (x, y) batch per item
    return trainer


def snapshot(m):
    return {n: p.detach().clone() for n, p in m.named_parameters()}


def assert_masked_update(before, module, mask):
    changed = 0
    for n, p in module.named_parameters():
        frozen = ~mask[n] if n in mask else torch.ones_like(p, dtype=torch.bool)
        assert torch.equal(p.detach()[frozen].view(torch.int32), before[n][frozen].view(torch.int32)), n
        changed += int((p.detach() != before[n]).sum())
    assert changed > 0


OBJECTIVES = [SalUnObjective(beta=1.0), ANTObjective(), ESDObjective(eta=1.0, beta=0.5)]


@pytest.mark.parametrize("prompt", [False, True], ids=["class", "prompt"])
@pytest.mark.parametrize("objective", OBJECTIVES, ids=lambda o: o.name)
def test_unlearning_keeps_frozen_weights_bit_identical(objective, prompt):
    m = tiny(
        prompt=prompt, optimizer=adamw(weight_decay=0.1)
    )  # AdamW decay would move frozen weights without the guarantee
    forget = batches(2, label=1)
    mask = (
        diffusion_ant_mask(m, forget, 0.3, seeds=(0, 1))
        if objective.name == "ANT"
        else diffusion_saliency_mask(m, forget, 0.3)
    )
    before = snapshot(m)
    cb = DiffusionUnlearningCallback(objective, forget_dataloader=forget, seed=0)
    fit(m, [WeightSaliencyCallback(mask, log_figure=False), cb])
    assert_masked_update(before, m, mask)
    assert "training_step" not in vars(m) and cb._original is None  # wrapper and θ₀ copy dropped at teardown


def test_lora_adapters_only_base_untouched():
    m = add_lora(tiny(), rank=2)
    forget = batches(2, label=1)
    mask = diffusion_saliency_mask(m, forget, 0.5)
    assert set(mask) == adapter_names(m)
    base = {n: p.detach().clone() for n, p in m.named_parameters() if n not in mask}
    before = snapshot(m)
    fit(
        m,
        [
            WeightSaliencyCallback(mask, strict=False, log_figure=False),
            DiffusionUnlearningCallback(SalUnObjective(), forget_dataloader=forget),
        ],
    )
    assert all(torch.equal(p.detach(), base[n]) for n, p in m.named_parameters() if n in base)
    assert_masked_update(before, m, mask)


def test_returned_loss_is_forget_term_plus_beta_retain_term():
    m, forget = tiny(), batches(1, label=2)
    obj = SalUnObjective(beta=0.7)
    cb = DiffusionUnlearningCallback(obj, forget_dataloader=forget, seed=3)
    cb._loader = forget
    m.log = lambda *a, **k: None
    retain = batches(1, label=None, seed=4)[0]
    torch.manual_seed(0)
    got = cb._step(m, m.training_step, retain, 0)
    torch.manual_seed(0)
    x, y = forget[0]
    forget_term = obj.forget_loss(m.eps, None, m.noise_scheduler, 4, 4, x, y, Generator(3))
    want = forget_term + 0.7 * m.training_step(retain, 0)
    torch.testing.assert_close(got, want)


def test_ft_objective_returns_the_users_loss():
    m, forget = tiny(), batches(1, label=2)
    cb = DiffusionUnlearningCallback(FTObjective(), forget_dataloader=forget)
    cb._loader = forget
    m.log = lambda *a, **k: None
    retain = batches(1, label=None, seed=4)[0]
    torch.manual_seed(0)
    got = cb._step(m, m.training_step, retain, 0)
    torch.manual_seed(0)
    torch.testing.assert_close(got, m.training_step(retain, 0))


def test_wrapper_is_removed_when_fit_raises_and_callback_pickles():
    m = tiny()
    cb = DiffusionUnlearningCallback(ESDObjective(), forget_dataloader=batches(1, label=0))

    class Boom(L.Callback):
        def on_train_batch_end(self, *args):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        fit(m, [cb, Boom()])
    assert "training_step" not in vars(m) and cb._original is None
    clone = pickle.loads(pickle.dumps(cb))
    assert isinstance(clone.objective, ESDObjective) and clone._iter is None


def _refused(module, callbacks, match):
    before = snapshot(module)
    with pytest.raises(ValueError, match=match):
        fit(module, callbacks)
    assert all(torch.equal(p, before[n]) for n, p in module.named_parameters())
    assert "training_step" not in vars(module)


def test_bad_inputs_are_refused_before_training():
    m = tiny()
    _refused(
        m,
        [DiffusionUnlearningCallback(SalUnObjective(), forget_dataloader=batches(1, label=6))],
        "forget class 6 is outside the model's forget classes 0..3",
    )
    _refused(m, [DiffusionUnlearningCallback(SalUnObjective(), forget_dataloader=[])], "forget set is empty")
    _refused(
        m,
        [DiffusionUnlearningCallback(SalUnObjective(t_range=(5, T + 5)), forget_dataloader=batches(1))],
        r"t_range=\(5, 25\) lies outside the schedule",
    )
    _refused(
        m,
        [DiffusionUnlearningCallback(ANTObjective(t_split=0), forget_dataloader=batches(1))],
        "t_split=0 must lie strictly inside the schedule",
    )
    cnn_mask = WeightMask({n: torch.ones_like(p, dtype=torch.bool) for n, p in SmallCNN(4).named_parameters()})
    _refused(
        m,
        [
            WeightSaliencyCallback(cnn_mask, log_figure=False),
            DiffusionUnlearningCallback(SalUnObjective(), forget_dataloader=batches(1)),
        ],
        "mask",
    )
    with pytest.raises(ValueError, match="eta"):
        ESDObjective(eta=0)


def test_a_module_without_the_protocol_is_refused():
    class Plain(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(2, 2)

        def training_step(self, batch, i):
            return self.lin(batch[0]).sum()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    with pytest.raises(ValueError, match=r"not a diffusion model for salguide: it lacks \['eps'"):
        fit(Plain(), [DiffusionUnlearningCallback(SalUnObjective(), forget_dataloader=batches(1))])
