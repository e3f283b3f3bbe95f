"""Pipelines behind ``salguide-train``: ``task=<name>`` in the config picks one."""

from __future__ import annotations

from typing import Any, Callable

from omegaconf import DictConfig


def _unlearn(cfg: DictConfig) -> Any:
    from .unlearn import run_unlearning

    return run_unlearning(cfg)


def _classify(cfg: DictConfig) -> Any:
    from .classify import run_classify

    return run_classify(cfg)


def _attention(cfg: DictConfig) -> Any:
    from .attention import run_attention

    return run_attention(cfg)


PIPELINES: dict[str, Callable[[DictConfig], Any]] = {"unlearn": _unlearn, "classify": _classify, "attention": _attention}


def run_task(cfg: DictConfig) -> Any:
    task = cfg.get("task")
    if task not in PIPELINES:
        raise ValueError(f"unknown task {task!r}; choose one of {sorted(PIPELINES)}")
    return PIPELINES[task](cfg)
