"""A quiet CPU Trainer for tests: no logger, checkpoints, progress bar or model summary."""

from __future__ import annotations

from typing import Any

from salguide._lightning import pl

QUIET: dict[str, Any] = dict(
    accelerator="cpu",
    logger=False,
    enable_checkpointing=False,
    enable_progress_bar=False,
    enable_model_summary=False,
)


def cpu_trainer(**kwargs: Any) -> pl.Trainer:
    """``pl.Trainer(**QUIET, **kwargs)`` (``kwargs`` win)."""
    return pl.Trainer(**{**QUIET, **kwargs})
