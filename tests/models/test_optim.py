"""The modules' optimiser and schedule factories (model.optimizer / model.scheduler): what they build, against torch."""

from __future__ import annotations

import math
from functools import partial

import pytest
import torch

from salguide._lightning import pl
from salguide.models import ClassifierModule, SmallCNN, cosine, sgd
from salguide.models.optim import build_optimizers


def _fit(module: ClassifierModule, epochs: int, tmp_path) -> pl.Trainer:
    x, y = torch.randn(16, 1, 8, 8), torch.randint(0, 10, (16,))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8)
    trainer = pl.Trainer(
        max_epochs=epochs,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(module, loader)
    return trainer


def test_cosine_runs_over_the_trainers_epochs(tmp_path):
    module = ClassifierModule(SmallCNN(width=4), optimizer=sgd(lr=0.2))
    trainer = _fit(module, 3, tmp_path)
    opt = trainer.optimizers[0]
    assert isinstance(opt, torch.optim.SGD) and opt.defaults["momentum"] == 0.9 and opt.defaults["weight_decay"] == 5e-4
    # after 3 of 3 epochs the cosine schedule (T_max = max_epochs) has reached 0.2 * (1 + cos(pi)) / 2 = 0
    assert opt.param_groups[0]["lr"] == pytest.approx(0.2 * (1 + math.cos(math.pi * 3 / 3)) / 2, abs=1e-12)
    sched = trainer.lr_scheduler_configs[0].scheduler
    assert isinstance(sched, torch.optim.lr_scheduler.CosineAnnealingLR) and sched.T_max == 3


def test_a_torch_scheduler_gets_the_optimizer_alone(tmp_path):
    step = partial(torch.optim.lr_scheduler.StepLR, step_size=1, gamma=0.5)
    module = ClassifierModule(SmallCNN(width=4), optimizer=partial(torch.optim.AdamW, lr=1e-2), scheduler=step)
    trainer = _fit(module, 2, tmp_path)
    assert isinstance(trainer.optimizers[0], torch.optim.AdamW)
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(1e-2 * 0.5**2)


def test_no_scheduler_and_unbounded_runs_keep_the_rate():
    params = [torch.nn.Parameter(torch.zeros(2))]
    assert isinstance(build_optimizers(params, sgd(), None, 5), torch.optim.SGD)
    assert isinstance(build_optimizers(params, sgd(), cosine, -1), torch.optim.SGD)  # max_epochs=-1: no length
    with pytest.raises(TypeError, match="torch.optim.Optimizer"):
        build_optimizers(params, lambda p: "adam", None, 5)


def test_factories_are_not_saved_as_hyper_parameters(tmp_path):
    module = ClassifierModule(SmallCNN(width=4), optimizer=partial(torch.optim.Adam, lr=1e-3), l1_alpha=0.1)
    assert dict(module.hparams) == {"l1_alpha": 0.1, "loss_sign": 1.0}
    trainer = _fit(module, 1, tmp_path)
    trainer.save_checkpoint(tmp_path / "m.ckpt")
    ckpt = torch.load(tmp_path / "m.ckpt", weights_only=True)  # no pickled partials in the file
    assert ckpt["hyper_parameters"] == {"l1_alpha": 0.1, "loss_sign": 1.0}


def test_bad_factories_are_named():
    with pytest.raises(ValueError, match="optimizer lr must be positive, got 0"):
        ClassifierModule(SmallCNN(width=4), optimizer=sgd(lr=0))
    with pytest.raises(TypeError, match="optimizer must be a factory"):
        ClassifierModule(SmallCNN(width=4), optimizer="sgd")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="scheduler must be a factory"):
        ClassifierModule(SmallCNN(width=4), scheduler="cosine")  # type: ignore[arg-type]


def test_the_mim_module_takes_a_schedule_too():
    from salguide.models import vit_digits
    from salguide.models.mim import MaskedReconstructionModule

    step = partial(torch.optim.lr_scheduler.StepLR, step_size=1)
    got = MaskedReconstructionModule(vit_digits(depth=1, embed_dim=16), scheduler=step).configure_optimizers()
    assert isinstance(got["optimizer"], torch.optim.AdamW) and isinstance(
        got["lr_scheduler"], torch.optim.lr_scheduler.StepLR
    )
    with pytest.raises(ValueError, match="scheduler factory .* does not build"):
        MaskedReconstructionModule(
            vit_digits(depth=1, embed_dim=16), scheduler=partial(torch.optim.lr_scheduler.StepLR)
        )
