"""A TQDM progress bar whose description names the pipeline stage ("original · Epoch 3")."""

from __future__ import annotations

from typing import Any

from typing_extensions import override

from salguide._lightning import pl


class StageProgressBar(pl.callbacks.TQDMProgressBar):
    """Lightning's TQDM bar with the stage name (set by the pipeline for each stage) before the epoch."""

    def __init__(self, refresh_rate: int = 1, leave: bool = False, stage: str = "") -> None:
        super().__init__(refresh_rate=refresh_rate, leave=leave)
        self.stage = stage

    @override
    def on_train_epoch_start(self, trainer: Any, *args: Any) -> None:
        super().on_train_epoch_start(trainer, *args)
        if self.stage:
            self.train_progress_bar.set_description(f"{self.stage} · Epoch {trainer.current_epoch}")
