"""``task=unlearn``: original model (cached) -> weight mask -> unlearning method -> metrics vs Retrain."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from salguide.cache import cached_seconds, cached_weights, config_key
from salguide.io import atomic_write_json, check_writable
from salguide.unlearning import method_spec, unlearning_metrics
from salguide.unlearning.report import format_table, with_gaps, write_results
from salguide.viz import plot_mask_sparsity, plot_metrics_vs_retrain
from salguide.weights import WeightMask, ant_mask, saliency_scores
from salguide.weights.select import check_ratio, check_scope
from salguide.weights_io import load_weights, save_weights

from .fit import train_original, unlearn
from .stages import (
    LazyLoggers,
    check_ckpt_path,
    check_init_from,
    is_rank_zero,
    log_images,
    log_table,
    stage_callbacks,
    trainer_kwargs,
    weight_settings,
)

log = logging.getLogger(__name__)

# Part of every cache key; bump it when the code trains different weights from the same config
# (2: shuffles seeded by (seed, epoch), trainer settings and callbacks in the key).
CACHE_VERSION = 2


def mask_builder(scfg: DictConfig, datamodule: Any) -> Callable[[nn.Module], WeightMask]:
    """The weight-mask recipe of the ``saliency`` config group, as a function of the model."""
    kind = scfg.get("kind")
    if kind in ("salun", "ant"):  # fail on a bad recipe now, not after the original and Retrain have trained
        check_ratio(scfg.ratio)
        check_scope(scfg.scope)
    if kind == "salun":
        return lambda net: WeightMask.from_scores(
            saliency_scores(net, datamodule.forget_dataloader()), ratio=scfg.ratio, scope=scfg.scope
        )
    if kind == "ant":
        std = float(scfg.get("noise_std", 0.0))
        augment = (lambda x, g: x + std * torch.randn(x.shape, generator=g).to(x)) if std > 0 else None
        return lambda net: ant_mask(
            net,
            datamodule.forget_dataloader(),
            scfg.ratio,
            scope=scfg.scope,
            seeds=tuple(scfg.seeds),
            augmentations=augment,
            trajectory_steps=int(scfg.trajectory_steps),
            lr=float(scfg.lr),
        )
    raise ValueError(f"unknown saliency kind {kind!r}; choose 'salun' or 'ant'")


def _method_overrides(ucfg: DictConfig) -> tuple[str, dict[str, Any]]:
    hyper = OmegaConf.to_container(ucfg, resolve=True)
    return hyper.pop("method"), hyper


def cache_paths(cfg: DictConfig) -> tuple[Path, Path]:
    """The cache files of the original and the Retrain model. Each key holds everything that changes the
    weights: data (but ``num_workers``), model, recipe, seed, the trainer settings and callbacks that
    change numerics (``weight_settings``: precision, accumulation, devices, strategy, ...) and
    ``CACHE_VERSION``. The original model sees the whole training split, so the forget split is not part
    of its key."""
    cache = Path(cfg.paths.cache_dir)
    data = {k: v for k, v in OmegaConf.to_container(cfg.data, resolve=True).items() if k != "num_workers"}
    common = (OmegaConf.to_container(cfg.model, resolve=True), weight_settings(cfg), int(cfg.seed), CACHE_VERSION)
    split = {k: v for k, v in data.items() if not k.startswith("forget")}
    original = config_key(split, OmegaConf.to_container(cfg.original, resolve=True), *common)
    retrain = config_key(data, str(method_spec("retrain", **_retrain_overrides(cfg))), *common)
    return cache / f"original-{original}.safetensors", cache / f"retrain-{retrain}.safetensors"


def method_label(cfg: DictConfig, spec: Any) -> str:
    """The name tables and figures show: the saliency config's ``label`` for a masked method (ANT's
    mask: "ANT"), else the method's own name."""
    label = cfg.saliency.get("label") if spec.weight_mask and cfg.get("saliency") else None
    return str(label or spec.name)


def run_unlearning(cfg: DictConfig) -> float | None:
    out = Path(cfg.paths.output_dir)
    check_writable(cfg.paths.cache_dir, "paths.cache_dir")
    run_id = f"{cfg.name}-{out.name}"
    seed = int(cfg.seed)
    method, hyper = _method_overrides(cfg.unlearning)
    spec = method_spec(method, **hyper)  # fail on a bad method before any training
    label = method_label(cfg, spec)
    init_from, ckpt_path = check_init_from(cfg), check_ckpt_path(cfg)
    orig_path, rpath = cache_paths(cfg)
    writer = is_rank_zero()  # under strategy=ddp every rank runs this; rank 0 alone writes and prints

    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    mask_fn = mask_builder(cfg.saliency, datamodule) if spec.weight_mask else None
    make_model: Callable[[], nn.Module] = lambda: instantiate(cfg.model)  # noqa: E731
    tkw = {**trainer_kwargs(cfg), "enable_checkpointing": True}  # each trained stage keeps checkpoints/<stage>.ckpt

    def stage(name: str, fn: Callable[[LazyLoggers, list[Any]], Any]) -> Any:
        loggers = LazyLoggers(cfg, name, run_id)
        try:
            return fn(loggers, stage_callbacks(cfg, name, out / "checkpoints"))
        finally:
            loggers.close()

    def keep(model: nn.Module, name: str) -> None:
        if writer:  # every stage's weights in the run folder, also when read from the cache
            save_weights(model, out / "models" / f"{name}.safetensors")

    # 1. the original model: the user's own (init_from=), or trained once and cached
    if init_from is not None:
        original = load_weights(_seeded(make_model, seed), init_from).eval()
        log.info("original model loaded from %s", init_from)
    else:
        ocfg = OmegaConf.to_container(cfg.original, resolve=True)
        epochs = ocfg.pop("epochs")
        original, hit = stage(
            "original",
            lambda lg, cb: cached_weights(
                orig_path,
                _seeded(make_model, seed),
                lambda m: train_original(
                    m, datamodule, epochs=epochs, seed=seed, trainer_kwargs=tkw, logger=lg(), callbacks=cb, **ocfg
                ),
                write=writer,
            ),
        )
        done = "loaded from" if hit else "trained and cached at" if writer else "trained for"
        log.info("original model %s %s", done, orig_path)
    keep(original, "original")
    rows = [{"method": "Original", "seed": seed, **unlearning_metrics(original, datamodule, seed=seed), "RTE": None}]

    # 2. the Retrain reference (cached with its run time)
    is_retrain = spec.from_scratch
    if cfg.compare_to_retrain or is_retrain:
        rspec = method_spec("retrain", **_retrain_overrides(cfg))
        timing = rpath.with_suffix(".json")

        def retrain(lg: LazyLoggers, cb: list[Any]) -> tuple[nn.Module, bool]:
            def fit(_: nn.Module) -> nn.Module:
                res = unlearn(
                    original,
                    datamodule,
                    rspec,
                    model_factory=make_model,
                    seed=seed,
                    trainer_kwargs=tkw,
                    logger=lg(),
                    callbacks=cb,
                )
                if writer:
                    atomic_write_json(timing, {"seconds": res.seconds})
                return res.model

            return cached_weights(rpath, make_model(), fit, write=writer)

        retrained, hit = stage("retrain", retrain)
        keep(retrained, "retrain")
        seconds = cached_seconds(timing)
        rows.append(
            {
                "method": "Retrain",
                "seed": seed,
                **unlearning_metrics(retrained, datamodule, seed=seed),
                "RTE": seconds,
                "RTE_cached": hit,
            }
        )

    # 3. the method under study
    def run_method(lg: LazyLoggers, cb: list[Any]) -> dict[str, Any]:
        loggers = lg()
        res = unlearn(
            original,
            datamodule,
            spec,
            mask_fn=mask_fn,
            model_factory=make_model,
            seed=seed,
            trainer_kwargs=tkw,
            logger=loggers,
            callbacks=cb,
            ckpt_path=ckpt_path,
        )
        row = {
            "method": label,
            "seed": seed,
            **unlearning_metrics(res.model, datamodule, seed=seed),
            "RTE": res.seconds,
        }
        rows.append(row)
        if not writer:
            return row
        keep(res.model, method)
        images = {}
        if res.mask is not None:
            res.mask.save(out / "mask.safetensors", metadata={"method": label, "ratio": str(cfg.saliency.ratio)})
            images["mask_sparsity"] = plot_mask_sparsity(res.mask, out / "mask_sparsity.png", title=f"{label} mask")
        for logger in loggers:
            logger.log_metrics({f"final/{k}": v for k, v in row.items() if isinstance(v, (int, float))})
        log_table(loggers, "results", with_gaps(rows))
        if len(rows) > 2:
            images["metrics_vs_retrain"] = plot_metrics_vs_retrain(rows, out / "metrics_vs_retrain.png")
        log_images(loggers, images)
        return row

    if not is_retrain:
        stage(method, run_method)
    if not writer:
        return None
    json_path, md_path = write_results(out, rows)
    if cfg.get("print_table", True):
        print(f"\n{format_table(rows)}\n\nresults: {md_path}")
    row = rows[-1]
    return row.get("Avg.Gap")


def _retrain_overrides(cfg: DictConfig) -> dict[str, Any]:
    """Retrain shares the original recipe (same epochs, lr, optimiser) unless ``retrain:`` says otherwise."""
    recipe = OmegaConf.to_container(cfg.original, resolve=True)
    if cfg.get("retrain"):
        recipe.update(OmegaConf.to_container(cfg.retrain, resolve=True))
    return recipe


def _seeded(factory: Callable[[], nn.Module], seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return factory()
