"""The strategies a salguide callback runs under: single-device and the DDP family (``ddp``, ``ddp_spawn``,
``ddp_notebook``); sharded (FSDP, DeepSpeed) and XLA strategies are refused at ``setup``, before any work,
with the callback, the strategy and the reason named. Callbacks that only read data or draw progress
(``RandomLabelCallback``, ``DataSamplesCallback``, ``StageProgressBar``) never touch parameters and take
any strategy. The matrix in docs/architecture.md lists what each callback supports."""

from __future__ import annotations

from typing import Any

import torch

from salguide._lightning import Callback, installed


def check_strategy(strategy: Any, owner: str, why: str) -> None:
    """Return for single-device and DDP-family strategies; else a ValueError naming ``owner``, the strategy
    and ``why``."""
    allowed = installed("SingleDeviceStrategy", "DDPStrategy", module="strategies")
    refused = installed("DeepSpeedStrategy", "XLAStrategy", "SingleDeviceXLAStrategy", module="strategies")
    if isinstance(strategy, allowed) and not isinstance(strategy, refused):
        return
    raise ValueError(f"{owner} supports single-device and DDP strategies only, not {type(strategy).__name__}: {why}")


def refuse_sharded(callback: Any, trainer: Any, why: str) -> None:
    """``check_strategy`` for ``callback`` on ``trainer``'s strategy (call it first thing in ``setup``); a direct
    call without a Trainer (``trainer=None``) has no strategy to check."""
    if trainer is not None:
        check_strategy(trainer.strategy, type(callback).__name__, why)


class ReleaseSpawnedProcessGroup(Callback):
    """In a worker that ``ddp_spawn`` or ``ddp_notebook`` started for one ``fit``, destroy the process group
    at ``teardown`` of a fit that was not interrupted, before the worker exits. Left to interpreter finalization, a gloo
    group's worker threads can still hold tensors whose release needs the GIL of a dying interpreter, and the
    rank aborts ("terminate called without an active exception"; pytorch/pytorch#179291). Ranks of other
    launchers (``strategy=ddp``) keep their group: later fits in the same process reuse it. Append it last,
    after any callback whose teardown communicates."""

    def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None:
        spawned = installed("_MultiProcessingLauncher", module="strategies.launchers.multiprocessing")
        launcher = getattr(trainer.strategy, "launcher", None)
        dist = torch.distributed
        if isinstance(launcher, spawned) and not trainer.interrupted and dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
