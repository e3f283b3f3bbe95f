"""Hydra plumbing shared by pipelines: loggers and callbacks built fresh for each training stage."""

from __future__ import annotations

from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf


def trainer_kwargs(cfg: DictConfig) -> dict[str, Any]:
    kwargs = OmegaConf.to_container(cfg.trainer, resolve=True) or {}
    kwargs.pop("_target_", None)
    kwargs.pop("max_epochs", None)
    return kwargs


def stage_loggers(cfg: DictConfig, stage: str, run_id: str) -> list[Any]:
    """One logger per entry of ``cfg.logger``; W&B runs of one job share a group, one run per stage."""
    loggers = []
    for key, lcfg in (cfg.get("logger") or {}).items():
        if not lcfg or "_target_" not in lcfg:
            continue
        if "Wandb" in lcfg._target_:
            logger = instantiate(lcfg, name=f"{run_id}-{stage}", group=run_id, job_type=stage)
            logger.experiment  # start the W&B run now, so its start-up is not timed as part of the stage
            loggers.append(logger)
        else:
            loggers.append(instantiate(lcfg, name=f"{lcfg.get('name', key)}/{stage}"))
    return loggers


def stage_callbacks(cfg: DictConfig) -> list[Any]:
    return [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c and "_target_" in c]


def close_loggers(loggers: list[Any]) -> None:
    """Finish W&B runs so the next stage opens its own; flush the others."""
    for logger in loggers:
        logger.finalize("success")
        if type(logger).__name__ == "WandbLogger":
            logger.experiment.finish()


def log_table(loggers: list[Any], key: str, rows: list[dict[str, Any]]) -> None:
    """Log dict ``rows`` as one table (W&B: a ``wandb.Table``) to every logger with ``log_table``."""
    columns = list(dict.fromkeys(k for row in rows for k in row))
    data = [[row.get(c) for c in columns] for row in rows]
    for logger in loggers:
        if hasattr(logger, "log_table"):
            logger.log_table(key=key, columns=columns, data=data)


def log_images(loggers: list[Any], images: dict[str, str]) -> None:
    for logger in loggers:
        if hasattr(logger, "log_image"):
            for key, path in images.items():
                logger.log_image(key=key, images=[str(path)])
