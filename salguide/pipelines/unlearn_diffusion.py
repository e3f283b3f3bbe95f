"""``task=unlearn_diffusion``: class-conditional DDPM (cached) -> weight mask -> generative unlearning -> metrics.

Stages: the original DDPM on the full training split and the Retrain DDPM on the retain split (both cached
like the classifiers', ``salguide.cache``), a judge classifier on real images (cached), then the method of
the ``diffusion_unlearning`` group: its ``objective`` (a ``_target_`` node, e.g. ``SalUnObjective``) through
``DiffusionUnlearningCallback`` and its optional ``mask`` (a ``_partial_`` mask function) through
``WeightSaliencyCallback``, on a copy of the original trained on the retain split for ``epochs`` with the
method's ``optimizer`` (a ``_partial_`` node) and ``scheduler`` (the original and Retrain train with
``model.optimizer``). Rows for Original, Retrain and the method (UA, Acc_r, FD, RTE) go to
``results.{md,json,csv}`` and a W&B table; per-class sample grids to ``samples_<model>.png`` and W&B images. Every check that can fail runs before the first training stage.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from salguide.cache import cached_seconds, cached_weights, config_key
from salguide.io import atomic_write_json, check_writable
from salguide.viz.samples import plot_sample_grid

from .runner import Stage, StageRunner
from .stages import as_dict, check_trains, weight_settings

log = logging.getLogger(__name__)
CACHE_VERSION = 1  # bump when the code trains different diffusion weights from the same config
METRICS = ("UA", "Acc_r", "FD")


def model_inputs(datamodule: Any, x: torch.Tensor) -> torch.Tensor:
    """Stored images as the models see them: the datamodule's ``eval_transform`` (e.g. Fashion-MNIST's uint8
    -> normalised float), which the DDPM's training batches went through too; digits are stored that way."""
    view = datamodule.eval_transform()
    return x if view is None else torch.stack([view(sample) for sample in x])


def diffusion_cache_paths(cfg: DictConfig) -> dict[str, Path]:
    """Cache files of the original DDPM, the Retrain DDPM and the judge: keys hold data, model, recipe, seed,
    weight-changing trainer settings and ``CACHE_VERSION``; the original's and the judge's omit the forget split."""
    data = {k: v for k, v in as_dict(cfg.data).items() if k != "num_workers"}
    split = {k: v for k, v in data.items() if not k.startswith("forget")}
    common = (
        as_dict(cfg.model),
        as_dict(cfg.original),
        weight_settings(cfg),
        int(cfg.seed),
        CACHE_VERSION,
        "ddpm",
    )
    judge = config_key(split, as_dict(cfg.judge), int(cfg.seed), CACHE_VERSION, "judge")
    cache = Path(cfg.paths.cache_dir)
    return {
        "original": cache / f"ddpm-original-{config_key(split, *common)}.safetensors",
        "retrain": cache / f"ddpm-retrain-{config_key(data, *common)}.safetensors",
        "judge": cache / f"ddpm-judge-{judge}.safetensors",
    }


def _preflight(
    cfg: DictConfig, probe: Any, datamodule: Any, objective: Any, optimizer: Any, lr_schedule: Any = None
) -> None:
    """Every bad input that would otherwise surface after training: forget class, forget set, objective
    (timesteps, guidance), the method's optimiser, generation settings."""
    from salguide.diffusion.core import check_conditions, check_guidance
    from salguide.diffusion.module import denoiser_parts
    from salguide.diffusion.sampling import SAMPLERS
    from salguide.models.optim import check_optimizer, check_scheduler

    _, scheduler, num_conditions, _ = denoiser_parts(probe)
    check_trains(cfg, "task=unlearn_diffusion")
    unsupported = [k for k in ("init_from", "ckpt_path") if cfg.get(k) is not None]
    if unsupported:
        raise ValueError(f"task=unlearn_diffusion does not support {', '.join(unsupported)} yet (task=unlearn does)")
    if datamodule.forget != "class":
        raise ValueError(f"generative unlearning forgets a class: set data.forget=class, got {datamodule.forget!r}")
    if len(datamodule.forget_dataset) == 0:
        raise ValueError("the forget set is empty: there is nothing to unlearn")
    check_conditions(datamodule.train_y[datamodule.forget_indices], num_conditions, "forget class")
    check_conditions(datamodule.train_y, num_conditions, "class")
    if objective is not None:
        objective.check(scheduler, num_conditions)
    if not cfg.diffusion_unlearning.get("from_scratch"):
        if not callable(optimizer):
            raise ValueError(
                "diffusion_unlearning.optimizer must be an optimiser factory (a _partial_ node such as "
                f"{{_target_: torch.optim.AdamW, _partial_: true, lr: 1e-3}}), got {optimizer!r}"
            )
        check_optimizer(optimizer, "diffusion_unlearning")
        check_scheduler(lr_schedule, "diffusion_unlearning")
        if not hasattr(probe, "make_optimizer"):
            raise ValueError(
                f"{type(probe).__name__} keeps no make_optimizer: the unlearning stage sets its optimiser "
                "(diffusion_unlearning.optimizer) there, as on salguide.diffusion.DiffusionModule"
            )
    gen = cfg.generation
    check_guidance(gen.guidance_scale, "generation.guidance_scale")
    if gen.sampler not in SAMPLERS or not 1 <= int(gen.steps) <= scheduler.config.num_train_timesteps:
        raise ValueError(
            f"generation.sampler must be one of {SAMPLERS} and generation.steps in 1.."
            f"{scheduler.config.num_train_timesteps}, got {gen.sampler!r}, {gen.steps!r}"
        )
    if tuple(datamodule.input_shape) != tuple(probe.sample_shape):
        raise ValueError(
            f"the data's images {tuple(datamodule.input_shape)} do not match the model's sample shape "
            f"{tuple(probe.sample_shape)}: set model.net.sample_size / model.net.in_channels to match data"
        )


def run_unlearn_diffusion(cfg: DictConfig) -> float | None:
    from salguide.callbacks import DiffusionUnlearningCallback, WeightSaliencyCallback
    from salguide.diffusion.metrics import fit_judge, generate_per_class, generation_metrics
    from salguide.diffusion.objectives import FTObjective
    from salguide.diffusion.saliency import check_mask_fits
    from salguide.models import SmallCNN

    runner = StageRunner(cfg)
    out, seed, writer = runner.out, runner.seed, runner.writer
    check_writable(cfg.paths.cache_dir, "paths.cache_dir")
    ucfg = cfg.diffusion_unlearning
    objective = instantiate(ucfg.objective) if ucfg.get("objective") else None
    mask_fn = instantiate(ucfg.mask) if ucfg.get("mask") else None
    optimizer = instantiate(ucfg.optimizer) if ucfg.get("optimizer") else None
    lr_schedule = instantiate(ucfg.scheduler) if ucfg.get("scheduler") else None
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    make_model: Callable[[], Any] = lambda: instantiate(cfg.model)  # noqa: E731
    _preflight(cfg, make_model(), datamodule, objective, optimizer, lr_schedule)
    paths = diffusion_cache_paths(cfg)
    epochs = int(cfg.original.epochs)

    def train_on(split: str, key: str) -> Any:
        """The cached DDPM trained on ``split`` (``full``: original; ``retain``: Retrain), with its run time."""

        def fit(model: Any, stage: Stage) -> Any:
            datamodule.train_on = split
            start = time.perf_counter()
            stage.fit(model, datamodule, epochs)
            if writer:
                atomic_write_json(paths[key].with_suffix(".json"), {"seconds": time.perf_counter() - start})
            return model

        with runner.stage(key) as stage:
            torch.manual_seed(seed)
            model, hit = cached_weights(paths[key], make_model(), lambda m: fit(m, stage), write=writer)
        runner.keep(model, key)  # models/<stage>.safetensors (a trained stage also leaves checkpoints/<stage>.ckpt)
        log.info("%s DDPM %s %s", key, "loaded from" if hit else "trained and cached at", paths[key])
        return model.eval()

    original, retrained = train_on("full", "original"), train_on("retain", "retrain")
    jcfg = as_dict(cfg.judge)
    judge, _ = cached_weights(
        paths["judge"],
        SmallCNN(datamodule.num_classes, datamodule.input_shape[0], jcfg["width"]),
        lambda _: fit_judge(
            model_inputs(datamodule, datamodule.train_x), datamodule.train_y, datamodule.num_classes, seed=seed, **jcfg
        ),
        write=writer,
    )
    judge.eval()

    def run_method() -> tuple[Any, float, Any]:
        net = copy.deepcopy(original).train()
        net.make_optimizer, net.make_scheduler = optimizer, lr_schedule  # the method's recipe, not the model's
        start = time.perf_counter()
        plugins: list[Any] = []
        mask = None
        if mask_fn is not None:
            mask = mask_fn(net, datamodule.forget_dataloader())
            check_mask_fits(mask, net)
            plugins.append(WeightSaliencyCallback(mask, strict=False, log_figure=False))
        if objective is not None and not isinstance(objective, FTObjective):
            plugins.append(
                DiffusionUnlearningCallback(objective, datamodule.forget_dataloader(shuffle=True), seed=seed)
            )
        datamodule.train_on = "retain"
        with runner.stage(method) as stage:
            stage.fit(net, datamodule, int(ucfg.epochs), plugins)
        runner.keep(net, method)
        return net.eval(), time.perf_counter() - start, mask

    method = str(ucfg.name)
    if ucfg.get("from_scratch"):
        model, seconds, mask = retrained, cached_seconds(paths["retrain"].with_suffix(".json")), None
    else:
        model, seconds, mask = run_method()

    gen = as_dict(cfg.generation)
    test_x, test_y = model_inputs(datamodule, datamodule.test_x), datamodule.test_y
    rows: list[dict[str, Any]] = []
    images: dict[str, Any] = {}
    stages = [
        ("Original", original, None),
        ("Retrain", retrained, cached_seconds(paths["retrain"].with_suffix(".json"))),
    ]
    if method != "Retrain":  # diffusion_unlearning=retrain: the reference is the method's row
        stages.append((method, model, seconds))
    for name, net, rte in stages:
        x, y = generate_per_class(
            net,
            datamodule.num_classes,
            gen["per_class"],
            guidance_scale=gen["guidance_scale"],
            steps=gen["steps"],
            sampler=gen["sampler"],
            seed=seed,
        )
        rows.append(
            {
                "method": name,
                "seed": seed,
                **generation_metrics(x, y, judge, datamodule.forget_class, test_x, test_y),
                "RTE": rte,
            }
        )
        if writer:
            keep = torch_grid_index(y, gen["grid_per_class"])
            images[f"samples/{name}"] = plot_sample_grid(
                x[keep], y[keep], out / f"samples_{name}.png", title=f"{name}: forgot class {datamodule.forget_class}"
            )
    if not writer:
        return None
    if mask is not None:
        mask.save(out / "mask.safetensors", metadata={"method": method})
    runner.write_results(rows, format_rows(rows))
    with runner.stage("results", checkpoint=False) as stage:
        stage.log_results(rows, images)
    return float(rows[-1]["UA"])


def torch_grid_index(labels: Any, per_class: int) -> Any:
    """Indices of the first ``per_class`` samples of every class."""
    return torch.cat([(labels == c).nonzero().flatten()[:per_class] for c in labels.unique()])


def format_rows(rows: list[dict[str, Any]]) -> str:
    """Markdown: method, UA (%), Acc_r (%), FD (judge features, not Inception FID), RTE (s)."""
    lines = ["| method | UA (%) | Acc_r (%) | FD (judge) | RTE (s) |", "|---|---:|---:|---:|---:|"]
    for r in rows:
        rte = "-" if r.get("RTE") is None else f"{r['RTE']:.1f}"
        lines.append(f"| {r['method']} | {r['UA']:.2f} | {r['Acc_r']:.2f} | {r['FD']:.3f} | {rte} |")
    return "\n".join(lines) + "\n"
