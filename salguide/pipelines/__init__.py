"""Pipelines behind ``salguide-train``: the config's ``task:`` node (``_target_`` + ``_partial_: true``, set by
the experiment presets) is the one to run, e.g. ``salguide.pipelines.classify.run_classify``."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from salguide.configs import check_config
from salguide.io import check_writable, owned_dir

from .stages import build, is_rank_zero

# The stages of the multi-stage protocols (unlearning; ``judge``: generative unlearning's metric classifier)
# whose own ``epochs`` a set ``trainer.max_epochs`` overrides.
STAGE_RECIPES = ("original", "retrain", "unlearning", "diffusion_unlearning", "judge")


def apply_max_epochs(cfg: DictConfig) -> None:
    """``trainer.max_epochs=N`` sets the epochs of every training stage the config has (null: each keeps its own)."""
    n = OmegaConf.select(cfg, "trainer.max_epochs")
    if n is None:
        return
    with open_dict(cfg):
        for key in STAGE_RECIPES:
            if isinstance(cfg.get(key), DictConfig):
                cfg[key].epochs = n


class Interrupted(SystemExit):
    """SIGTERM or SIGINT during a run: the process exits with 128 + the signal number."""


@contextmanager
def exit_on_signals() -> Iterator[None]:
    """Turn SIGTERM and SIGINT into :class:`Interrupted` (exit status 128 + signal). Lightning calls this
    handler after its own, so callbacks see ``on_exception`` and undo their hooks; the stage's files are
    not written (every result and cache file is written to a temporary and renamed)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, _frame: Any) -> None:
        raise Interrupted(128 + signum)

    previous = {s: signal.signal(s, interrupt) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def pipeline_of(cfg: DictConfig) -> Callable[[DictConfig], Any]:
    """The ``task:`` node built: the pipeline ``pipeline(cfg)``, or a ValueError saying what ``task`` must be."""
    node = cfg.get("task")
    if not isinstance(node, DictConfig) or "_target_" not in node:
        raise ValueError(
            f"task must be a pipeline node ({{_target_: salguide.pipelines.classify.run_classify, _partial_: true}}, "
            f"set by the experiment presets), got {node!r}"
        )
    pipeline = build(node, "task")
    if not callable(pipeline):
        raise ValueError(f"task must build a callable pipeline(cfg) (add `_partial_: true`), got {pipeline!r}")
    return pipeline


def run_task(cfg: DictConfig) -> Any:
    """Check the config and the output folder, then run the pipeline with the folder owned by this run."""
    pipeline = pipeline_of(cfg)
    check_config(cfg)
    apply_max_epochs(cfg)
    out = check_writable(cfg.paths.output_dir, "paths.output_dir")
    with exit_on_signals(), owned_dir(out) if is_rank_zero() else nullcontext():  # other DDP ranks write nothing there
        return pipeline(cfg)
