"""Hydra plumbing shared by pipelines: loggers and callbacks built fresh for each training stage, the
rank that writes, and what of a stage's config changes the weights it trains."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from lightning.fabric.utilities.rank_zero import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from salguide._lightning import pl

ModelCheckpoint = pl.callbacks.ModelCheckpoint

# Trainer arguments that never change trained weights (display, logging, evaluation, files)
_NO_NUMERICS = frozenset(
    {
        "logger",
        "callbacks",
        "enable_progress_bar",
        "enable_model_summary",
        "enable_checkpointing",
        "default_root_dir",
        "log_every_n_steps",
        "num_sanity_val_steps",
        "check_val_every_n_epoch",
        "val_check_interval",
        "limit_val_batches",
        "limit_test_batches",
        "limit_predict_batches",
        "profiler",
        "detect_anomaly",
        "barebones",
        "inference_mode",
        "reload_dataloaders_every_n_epochs",
    }
)
# Callbacks that only display or record
_DISPLAY_CALLBACKS = (
    "ProgressBar",
    "ModelSummary",
    "LearningRateMonitor",
    "DeviceStatsMonitor",
    "ModelCheckpoint",
    "DataSamplesCallback",
)


def as_dict(node: Any) -> dict[str, Any]:
    """A config mapping as a plain, resolved dict ({} for None); anything else is a TypeError."""
    if node is None:
        return {}
    out = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node
    if not isinstance(out, dict):
        raise TypeError(f"expected a mapping in the config, got {type(out).__name__}: {out!r}")
    return {str(k): v for k, v in out.items()}


def trainer_kwargs(cfg: DictConfig) -> dict[str, Any]:
    kwargs = as_dict(cfg.trainer) or {}
    kwargs.pop("_target_", None)
    kwargs.pop("max_epochs", None)
    return kwargs


def run_hyperparams(cfg: DictConfig, stage: str) -> dict[str, Any]:
    """The whole resolved config (Hydra's own node aside) and the stage: what every logger records."""
    params = as_dict(cfg)
    params.pop("hydra", None)
    return {**params, "stage": stage}


def stage_loggers(cfg: DictConfig, stage: str, run_id: str) -> list[Any]:
    """One logger per entry of ``cfg.logger``; W&B runs of one job share a group, one run per stage. Each
    logger records the resolved config as hyper-parameters (W&B: the run's config)."""
    loggers = []
    for key, lcfg in (cfg.get("logger") or {}).items():
        if not lcfg or "_target_" not in lcfg:
            continue
        if "Wandb" in lcfg._target_:
            logger = instantiate(lcfg, name=f"{run_id}-{stage}", group=run_id, job_type=stage)
            _ = logger.experiment  # start the W&B run now, so its start-up is not timed as part of the stage
            loggers.append(logger)
        else:
            loggers.append(instantiate(lcfg, name=f"{lcfg.get('name', key)}/{stage}"))
    params = run_hyperparams(cfg, stage)
    for logger in loggers:
        if type(logger).__name__ == "WandbLogger":
            logger.log_hyperparams(params)  # the run's config, from its start
        else:  # files (CSV's hparams.yaml): written when the stage closes, so that a logger used in
            logger._salguide_hparams = params  # ddp_spawn workers is not set up in this process first
    return loggers


class LazyLoggers:
    """A stage's loggers, opened on first call: a stage read from the cache opens no (empty) W&B run."""

    def __init__(self, cfg: DictConfig, stage: str, run_id: str) -> None:
        self.cfg, self.stage, self.run_id = cfg, stage, run_id
        self.opened: list[Any] | None = None

    def __call__(self) -> list[Any]:
        if self.opened is None:
            self.opened = stage_loggers(self.cfg, self.stage, self.run_id)
        return self.opened

    def close(self) -> None:
        if self.opened is not None:
            close_loggers(self.opened)


def stage_callbacks(cfg: DictConfig, stage: str = "", checkpoint_dir: str | Path | None = None) -> list[Any]:
    """The ``callbacks:`` of ``cfg``, built fresh for one stage; a progress bar with a ``stage`` attribute
    names it. With ``checkpoint_dir``, a ``ModelCheckpoint`` keeps the stage's last epoch there as
    ``<stage>.ckpt`` (pass ``enable_checkpointing=True`` to that stage's Trainer)."""
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c and "_target_" in c]
    for cb in callbacks:
        if hasattr(cb, "stage") and type(cb).__name__.endswith("ProgressBar"):
            cb.stage = stage
    if checkpoint_dir is not None and stage:
        callbacks.append(
            ModelCheckpoint(dirpath=str(checkpoint_dir), filename=stage, save_top_k=1, enable_version_counter=False)
        )
    return callbacks


def close_loggers(loggers: list[Any]) -> None:
    """Finish W&B runs so the next stage opens its own; flush the others."""
    for logger in loggers:
        params = getattr(logger, "_salguide_hparams", None)
        if params is not None:
            logger.log_hyperparams(params)
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


def user_overrides(group: str) -> list[str]:
    """The command line's overrides of ``group`` or of keys under it (``saliency=ant``, ``saliency.ratio=0.3``);
    empty outside a Hydra run."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return []
    return [o for o in HydraConfig.get().overrides.task if o.lstrip("+~").split("=", 1)[0].split(".", 1)[0] == group]


def check_trains(cfg: DictConfig, task: str) -> None:
    """Refuse trainer settings that train nothing (``max_steps=0``, ``limit_train_batches=0``) in ``task``,
    whose stages are cached and reported as trained models."""
    trainer = cfg.get("trainer") or {}
    for key in ("max_steps", "limit_train_batches"):
        if trainer.get(key) is not None and trainer.get(key) == 0:
            raise ValueError(f"trainer.{key}=0 trains nothing, and {task} would cache and report untrained models")


def check_ckpt_path(cfg: DictConfig, stage: str) -> str | None:
    """``ckpt_path=``: a Lightning checkpoint to resume ``stage`` from, checked before anything trains: the
    file exists, is a Lightning checkpoint (read with ``weights_only=True``), and, when it is a run's
    ``checkpoints/<name>.ckpt``, was written by the same stage."""
    path = cfg.get("ckpt_path")
    if path is None:
        return None
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"ckpt_path={path}: no such file")
    if file.parent.name == "checkpoints" and file.suffix == ".ckpt" and file.stem != stage:
        raise ValueError(
            f"ckpt_path={path} is the checkpoint of stage {file.stem!r}, but this run resumes stage {stage!r} "
            f"(use <run>/checkpoints/{stage}.ckpt)"
        )
    try:
        ckpt = torch.load(file, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:  # not a torch file, or one that would need unpickling
        raise ValueError(
            f"ckpt_path={path} is not a Lightning checkpoint readable with weights_only=True: {err}"
        ) from err
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise ValueError(f"ckpt_path={path} is not a Lightning checkpoint (no 'state_dict' in it)")
    return str(path)


def check_init_from(cfg: DictConfig) -> str | None:
    """``init_from=``: the user's trained weights to start from (checked before anything trains)."""
    path = cfg.get("init_from")
    if path is not None and not Path(path).is_file():
        raise FileNotFoundError(f"init_from={path}: no such file")
    return None if path is None else str(path)


def init_model(model: torch.nn.Module, init_from: str | None) -> torch.nn.Module:
    """``model`` with the weights of ``init_from`` loaded (safetensors, state dict or Lightning checkpoint,
    read without unpickling; names and shapes must match), or as built when None."""
    from salguide.weights_io import load_weights

    return model if init_from is None else load_weights(model, init_from)


def run_epochs(cfg: DictConfig) -> int:
    """``trainer.max_epochs``: the epochs of a single-stage task (classify, attention), set by its preset."""
    n = OmegaConf.select(cfg, "trainer.max_epochs")
    if n is None:
        raise ValueError(
            "trainer.max_epochs is not set: this task trains for trainer.max_epochs epochs (e.g. trainer.max_epochs=30)"
        )
    return int(n)


def build(node: DictConfig, key: str, **kwargs: Any) -> Any:
    """``instantiate(node, **kwargs)``; the constructor's or import's error (e.g. a bad ``lr``, a missing target)
    as a ValueError naming the config key ``key``."""
    try:
        return instantiate(node, **kwargs)
    except Exception as e:  # Hydra wraps it in an InstantiationException
        raise ValueError(f"{key}: {e.__cause__ or e}") from e


def build_module(cfg: DictConfig) -> Any:
    """The ``model:`` node built: a LightningModule holding its network as ``.model`` (``net:`` in the config),
    else a ValueError naming ``model``."""
    if "optimizer" in cfg.model and cfg.model.optimizer is None:
        raise ValueError(
            "model.optimizer is null: set an optimiser factory (e.g. {_target_: torch.optim.AdamW, _partial_: true})"
        )
    module = build(cfg.model, "model")
    if not isinstance(module, pl.LightningModule) or not isinstance(getattr(module, "model", None), torch.nn.Module):
        raise ValueError(
            "model must build a LightningModule with its network as .model (e.g. _target_: "
            f"salguide.models.ClassifierModule with a net: node), got {type(module).__name__}"
        )
    return module


def is_rank_zero() -> bool:
    """False in the extra processes of ``strategy=ddp``, which run the pipeline too: only rank 0 writes and prints."""
    return int(getattr(rank_zero_only, "rank", 0)) == 0


def weight_settings(cfg: DictConfig) -> dict[str, Any]:
    """The trainer arguments and callbacks of ``cfg`` that change trained weights, for cache keys: all but
    ``_NO_NUMERICS`` and display callbacks, with ``accelerator: auto`` resolved on this machine."""
    tkw = {k: v for k, v in trainer_kwargs(cfg).items() if k not in _NO_NUMERICS}
    if not tkw.get("fast_dev_run"):  # the default (false) leaves the keys of models cached before it existed
        tkw.pop("fast_dev_run", None)
    if tkw.get("accelerator", "auto") == "auto":
        tkw["accelerator"] = "cuda" if torch.cuda.is_available() else "cpu"
    node = cfg.get("callbacks")
    entries = as_dict(node) if node else {}
    callbacks = {
        name: c for name, c in entries.items() if c and not str(c.get("_target_", "")).endswith(_DISPLAY_CALLBACKS)
    }
    return {"trainer": tkw, "callbacks": callbacks}
