"""The library's datamodules shuffle by (seed, epoch) and treat ``batch_size`` as the global batch: a fit
resumed from a checkpoint is bit-identical to an uninterrupted one, and two DDP processes take the
optimizer steps of one."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import lightning.pytorch as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from salguide.callbacks import RandomLabelCallback, WeightSaliencyCallback
from salguide.data import DigitsDataModule
from salguide.io import atomic_path
from salguide.models import ClassifierModule, SmallCNN
from salguide.models.optim import sgd


@dataclass
class FakeTrainer:
    world_size: int = 1
    global_rank: int = 0
    current_epoch: int = 0


def _digits(batch_size: int = 64) -> DigitsDataModule:
    dm = DigitsDataModule(batch_size=batch_size, seed=1)
    dm.setup("fit")
    dm.train_on = "retain"
    return dm


def _train_loader(dm: DigitsDataModule, trainer: FakeTrainer):
    dm.trainer = trainer
    return dm.train_dataloader()


class StopAfter(L.Callback):
    def __init__(self, epochs: int) -> None:
        self.epochs = epochs

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if trainer.current_epoch + 1 == self.epochs:
            trainer.should_stop = True


def _readme_salun(root: Path, *extra, ckpt_path=None) -> dict[str, torch.Tensor]:
    """The README's SalUn recipe on digits (mask at fit start, random labels mixed into retain batches)."""
    torch.manual_seed(0)
    module = ClassifierModule(SmallCNN(), optimizer=sgd(lr=0.02))
    plugins = [WeightSaliencyCallback(ratio=0.5, log_figure=False), RandomLabelCallback()]
    trainer = L.Trainer(
        max_epochs=3,
        limit_train_batches=4,
        callbacks=[*plugins, *extra],
        logger=False,
        enable_progress_bar=False,
        enable_checkpointing=any(isinstance(c, ModelCheckpoint) for c in extra),
        enable_model_summary=False,
        limit_val_batches=0,
        default_root_dir=root,
    )
    trainer.fit(module, datamodule=_digits(), ckpt_path=ckpt_path)
    return {k: v.clone() for k, v in module.state_dict().items()}


def test_resumed_salun_run_is_bit_identical_to_an_uninterrupted_one(tmp_path):
    whole = _readme_salun(tmp_path / "a")
    ckpt = ModelCheckpoint(tmp_path / "ckpt", save_last=True, save_on_train_epoch_end=True)
    _readme_salun(tmp_path / "b", ckpt, StopAfter(1))  # interrupted after 1 of 3 epochs
    resumed = _readme_salun(tmp_path / "c", ckpt_path=str(tmp_path / "ckpt" / "last.ckpt"))
    assert whole.keys() == resumed.keys()
    assert all(torch.equal(whole[k], resumed[k]) for k in whole)


class StepReport(L.Callback):
    """Each rank writes its optimizer steps, local batch sizes and final parameters to ``out_dir/rank{r}.pt``."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir, self.sizes = Path(out_dir), []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.sizes.append(len(batch[1]))

    def on_train_end(self, trainer, pl_module) -> None:
        params = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}
        with atomic_path(self.out_dir / f"rank{trainer.global_rank}.pt") as tmp:
            torch.save({"steps": trainer.global_step, "sizes": self.sizes, "params": params}, tmp)


def _even_retain() -> DigitsDataModule:
    dm = DigitsDataModule(batch_size=64, seed=1, forget="random", forget_ratio=0.2)
    dm.setup("fit")
    dm.train_on = "retain"
    assert len(dm.retain_dataset) == 1150  # even: no DistributedSampler padding, so the same global batches
    return dm


@pytest.mark.slow
def test_two_processes_train_what_one_process_trains(tmp_path):
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))  # no BatchNorm (per-process statistics)
    one, two = (ClassifierModule(copy.deepcopy(net)) for _ in range(2))
    kw = dict(
        max_epochs=1,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        limit_val_batches=0,
    )
    L.Trainer(devices=1, **kw).fit(one, datamodule=_even_retain())
    ddp = L.Trainer(strategy="ddp_spawn", devices=2, callbacks=[StepReport(tmp_path)], **kw)
    ddp.fit(two, datamodule=_even_retain())
    for r in (0, 1):
        report = torch.load(tmp_path / f"rank{r}.pt", weights_only=True)
        assert report["steps"] == 18  # ceil(1150 / 64), as in one process
        assert report["sizes"] == [32] * 17 + [31]  # half of each global batch of 64 (the last one: 62)
        for k, v in one.state_dict().items():  # the union of the ranks' batches is one process's batch
            torch.testing.assert_close(report["params"][k], v, rtol=0, atol=1e-6)
