"""``task=unlearn``: original model (cached) -> weight mask -> unlearning method -> metrics vs Retrain."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from salguide.cache import cached_seconds, cached_weights, config_key
from salguide.io import atomic_write_json
from salguide.unlearning import method_spec, unlearn, unlearning_metrics
from salguide.unlearning.report import format_table, with_gaps, write_results
from salguide.unlearning.run import train_original
from salguide.viz import plot_mask_sparsity, plot_metrics_vs_retrain
from salguide.weights import WeightMask, ant_mask, saliency_scores

from .stages import close_loggers, log_images, log_table, stage_callbacks, stage_loggers, trainer_kwargs

log = logging.getLogger(__name__)


def mask_builder(scfg: DictConfig, datamodule: Any) -> Callable[[nn.Module], WeightMask]:
    """The weight-mask recipe of the ``saliency`` config group, as a function of the model."""
    kind = scfg.get("kind")
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


def run_unlearning(cfg: DictConfig) -> float | None:
    out = Path(cfg.paths.output_dir)
    cache = Path(cfg.paths.cache_dir)
    run_id = f"{cfg.name}-{out.name}"
    seed = int(cfg.seed)
    method, hyper = _method_overrides(cfg.unlearning)
    spec = method_spec(method, **hyper)  # fail on a bad method before any training

    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    make_model: Callable[[], nn.Module] = lambda: instantiate(cfg.model)  # noqa: E731
    tkw = trainer_kwargs(cfg)
    data_key = {k: v for k, v in OmegaConf.to_container(cfg.data, resolve=True).items() if k != "num_workers"}
    model_key = OmegaConf.to_container(cfg.model, resolve=True)

    def stage(name: str, fn: Callable[[list[Any], list[Any]], Any]) -> Any:
        loggers, callbacks = stage_loggers(cfg, name, run_id), stage_callbacks(cfg)
        try:
            return fn(loggers, callbacks)
        finally:
            close_loggers(loggers)

    # 1. the original model, trained once and cached
    ocfg = OmegaConf.to_container(cfg.original, resolve=True)
    epochs = ocfg.pop("epochs")
    # the original model sees the whole training split, so what is later forgotten is not part of its key
    split_key = {k: v for k, v in data_key.items() if not k.startswith("forget")}
    orig_path = cache / f"original-{config_key(split_key, model_key, ocfg, epochs, seed)}.safetensors"
    original, hit = stage(
        "original",
        lambda lg, cb: cached_weights(
            orig_path,
            _seeded(make_model, seed),
            lambda m: train_original(m, datamodule, epochs=epochs, seed=seed, trainer_kwargs=tkw, logger=lg, callbacks=cb, **ocfg),
        ),
    )
    log.info("original model %s %s", "loaded from" if hit else "trained and cached at", orig_path)
    rows = [{"method": "Original", "seed": seed, **unlearning_metrics(original, datamodule, seed=seed), "RTE": None}]

    # 2. the Retrain reference (cached with its run time)
    is_retrain = spec.from_scratch
    if cfg.compare_to_retrain or is_retrain:
        rspec = method_spec("retrain", **_retrain_overrides(cfg))
        rkey = config_key(data_key, model_key, str(rspec), seed)
        rpath = cache / f"retrain-{rkey}.safetensors"
        timing = rpath.with_suffix(".json")

        def retrain(lg: list[Any], cb: list[Any]) -> nn.Module:
            def fit(_: nn.Module) -> nn.Module:
                res = unlearn(original, datamodule, rspec, model_factory=make_model, seed=seed,
                              trainer_kwargs=tkw, logger=lg, callbacks=cb)
                atomic_write_json(timing, {"seconds": res.seconds})
                return res.model
            model, _ = cached_weights(rpath, make_model(), fit)
            return model

        retrained = stage("retrain", retrain)
        seconds = cached_seconds(timing)
        rows.append({"method": "Retrain", "seed": seed, **unlearning_metrics(retrained, datamodule, seed=seed), "RTE": seconds})

    # 3. the method under study
    mask_fn = mask_builder(cfg.saliency, datamodule) if spec.weight_mask else None

    def run_method(lg: list[Any], cb: list[Any]) -> dict[str, Any]:
        res = unlearn(original, datamodule, spec, mask_fn=mask_fn, model_factory=make_model, seed=seed,
                      trainer_kwargs=tkw, logger=lg, callbacks=cb)
        row = {"method": spec.name, "seed": seed, **unlearning_metrics(res.model, datamodule, seed=seed), "RTE": res.seconds}
        images = {}
        if res.mask is not None:
            res.mask.save(out / "mask.safetensors", metadata={"method": spec.name, "ratio": str(cfg.saliency.ratio)})
            images["mask_sparsity"] = plot_mask_sparsity(res.mask, out / "mask_sparsity.png", title=f"{spec.name} mask")
        for logger in lg:
            logger.log_metrics({f"final/{k}": v for k, v in row.items() if isinstance(v, (int, float))})
        rows.append(row)
        log_table(lg, "results", with_gaps(rows))
        if len(rows) > 2:
            images["metrics_vs_retrain"] = plot_metrics_vs_retrain(rows, out / "metrics_vs_retrain.png")
        log_images(lg, images)
        return row

    if not is_retrain:
        stage(method, run_method)
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
