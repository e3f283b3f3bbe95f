"""ReleaseSpawnedProcessGroup: a ddp_spawn worker destroys its gloo group when its fit ends (one left to
interpreter finalization can abort the rank, pytorch/pytorch#179291); other launchers' ranks keep theirs."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.distributed as dist
from matrix_cases import TinyData

from salguide.callbacks._strategy import ReleaseSpawnedProcessGroup
from salguide.models import ClassifierModule, mlp
from salguide.pipelines.fit import fit_module


class TeardownReport(ClassifierModule):
    """Writes, per rank, whether a process group still exists at the module's teardown (after the callbacks')."""

    def __init__(self, out: Path) -> None:
        super().__init__(mlp(16, num_classes=3), scheduler=None)
        self.out = out

    def teardown(self, stage: str) -> None:
        rank = self.trainer.global_rank
        (self.out / f"rank{rank}.txt").write_text(str(dist.is_available() and dist.is_initialized()))


@pytest.mark.slow
@pytest.mark.xdist_group("callback_matrix_ddp")
def test_spawned_ranks_have_no_group_left_when_fit_returns(tmp_path):
    trainer_kwargs = dict(accelerator="cpu", devices=2, strategy="ddp_spawn", enable_progress_bar=False)
    fit_module(TeardownReport(tmp_path), TinyData(), 1, 0, trainer_kwargs, False, [])
    assert [(tmp_path / f"rank{r}.txt").read_text() for r in (0, 1)] == ["False", "False"]


def _fake_trainer(launcher: object, interrupted: bool = False) -> SimpleNamespace:
    return SimpleNamespace(strategy=SimpleNamespace(launcher=launcher), interrupted=interrupted)


def test_only_a_spawned_worker_of_an_uninterrupted_fit_releases_its_group(tmp_path):
    from lightning.pytorch.strategies.launchers import _MultiProcessingLauncher, _SubprocessScriptLauncher

    assert not dist.is_initialized()
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        spawned = object.__new__(_MultiProcessingLauncher)
        for trainer in (_fake_trainer(object.__new__(_SubprocessScriptLauncher)), _fake_trainer(None),
                        _fake_trainer(spawned, interrupted=True)):  # fmt: skip
            ReleaseSpawnedProcessGroup().teardown(trainer, None, "fit")
            assert dist.is_initialized()  # strategy=ddp reuses its group in later stages
        dist.all_reduce(torch.ones(1))  # still usable
        ReleaseSpawnedProcessGroup().teardown(_fake_trainer(spawned), None, "fit")
        assert not dist.is_initialized()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
