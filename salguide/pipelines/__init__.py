"""Pipelines behind ``salguide-train``: ``task=<name>`` in the config picks one."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from salguide.configs import check_config
from salguide.io import check_writable, owned_dir

from .stages import is_rank_zero


def _unlearn(cfg: DictConfig) -> Any:
    from .unlearn import run_unlearning

    return run_unlearning(cfg)


def _classify(cfg: DictConfig) -> Any:
    from .classify import run_classify

    return run_classify(cfg)


def _attention(cfg: DictConfig) -> Any:
    from .attention import run_attention

    return run_attention(cfg)


def _unlearn_diffusion(cfg: DictConfig) -> Any:
    from .unlearn_diffusion import run_unlearn_diffusion

    return run_unlearn_diffusion(cfg)


PIPELINES: dict[str, Callable[[DictConfig], Any]] = {
    "unlearn": _unlearn,
    "classify": _classify,
    "attention": _attention,
    "unlearn_diffusion": _unlearn_diffusion,
}


# The training recipes whose ``epochs`` a set ``trainer.max_epochs`` overrides.
STAGE_RECIPES = ("original", "retrain", "unlearning", "classify", "diffusion_unlearning")


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


def run_task(cfg: DictConfig) -> Any:
    """Check the config and the output folder, then run the pipeline with the folder owned by this run."""
    task = cfg.get("task")
    if task not in PIPELINES:
        raise ValueError(f"unknown task {task!r}; choose one of {sorted(PIPELINES)}")
    check_config(cfg)
    apply_max_epochs(cfg)
    out = check_writable(cfg.paths.output_dir, "paths.output_dir")
    with exit_on_signals(), owned_dir(out) if is_rank_zero() else nullcontext():  # other DDP ranks write nothing there
        return PIPELINES[task](cfg)
