"""The strategies a salguide callback runs under: single-device and the DDP family (``ddp``, ``ddp_spawn``,
``ddp_notebook``); sharded (FSDP, DeepSpeed) and XLA strategies are refused at ``setup``, before any work,
with the callback, the strategy and the reason named. Callbacks that only read data or draw progress
(``RandomLabelCallback``, ``DataSamplesCallback``, ``StageProgressBar``) never touch parameters and take
any strategy. The matrix in docs/architecture.md lists what each callback supports."""

from __future__ import annotations

from typing import Any

from salguide._lightning import installed


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
