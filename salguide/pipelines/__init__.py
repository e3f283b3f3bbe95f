"""Pipelines behind ``salguide-train``: ``task=<name>`` in the config picks one."""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any, Callable

from omegaconf import DictConfig

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


PIPELINES: dict[str, Callable[[DictConfig], Any]] = {"unlearn": _unlearn, "classify": _classify, "attention": _attention,
                                                     "unlearn_diffusion": _unlearn_diffusion}


def run_task(cfg: DictConfig) -> Any:
    """Check the config and the output folder, then run the pipeline with the folder owned by this run."""
    task = cfg.get("task")
    if task not in PIPELINES:
        raise ValueError(f"unknown task {task!r}; choose one of {sorted(PIPELINES)}")
    check_config(cfg)
    out = check_writable(cfg.paths.output_dir, "paths.output_dir")
    with owned_dir(out) if is_rank_zero() else nullcontext():  # other DDP ranks write nothing there
        return PIPELINES[task](cfg)
