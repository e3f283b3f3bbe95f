"""``task=unlearn``: original model (cached) -> weight mask -> unlearning method -> metrics vs Retrain."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from salguide.cache import cached_seconds, cached_weights, config_key
from salguide.io import atomic_write_json, check_writable
from salguide.models import ClassifierModule
from salguide.models.optim import check_optimizer, check_scheduler
from salguide.unlearning import MethodSpec, unlearning_metrics
from salguide.unlearning.report import format_table, with_gaps
from salguide.viz import plot_mask_sparsity, plot_metrics_vs_retrain
from salguide.weights import WeightMask
from salguide.weights.select import check_ratio, check_scope
from salguide.weights_io import load_weights

from .fit import train_original, unlearn
from .runner import StageRunner
from .stages import (
    as_dict,
    build,
    check_ckpt_path,
    check_init_from,
    check_trains,
    user_overrides,
    weight_settings,
)

log = logging.getLogger(__name__)

# Part of every cache key; bump it when the code trains different weights from the same config
# (2: shuffles seeded by (seed, epoch), trainer settings and callbacks in the key; 3: model: is the LightningModule).
CACHE_VERSION = 3


def mask_factory(scfg: DictConfig) -> Callable[..., WeightMask]:
    """The ``saliency`` config group's mask factory, ``factory(model, forget_loader) -> WeightMask`` (a
    ``_partial_`` node such as ``salguide.weights.salun_mask``); its ``ratio``/``scope`` checked now, not
    after the original and Retrain have trained."""
    factory = build(scfg, "saliency")
    if not callable(factory):
        raise ValueError(
            "saliency must be a mask factory called as factory(model, forget_loader) (a `_target_` node with "
            f"`_partial_: true`, e.g. salguide.weights.salun_mask), got {OmegaConf.to_container(scfg)}"
        )
    kwargs = getattr(factory, "keywords", {})
    if "ratio" in kwargs:
        check_ratio(kwargs["ratio"])
    if "scope" in kwargs:
        check_scope(kwargs["scope"])
    return factory


def mask_builder(scfg: DictConfig, datamodule: Any) -> Callable[[nn.Module], WeightMask]:
    """The weight-mask recipe of the ``saliency`` config group, as a function of the model."""
    factory = mask_factory(scfg)
    return lambda net: factory(net, datamodule.forget_dataloader())


def method_from(cfg: DictConfig) -> MethodSpec:
    """The ``unlearning:`` node's MethodSpec. A from-scratch method (``unlearning=retrain``) runs the ``retrain:``
    node, the reference of every run: settings of ``unlearning.*`` that differ from it are ignored (a warning)."""
    spec = build(cfg.unlearning, "unlearning")
    if not isinstance(spec, MethodSpec):
        raise ValueError(f"unlearning must build a salguide.unlearning.MethodSpec, got {type(spec).__name__}")
    if spec.from_scratch:
        rspec = retrain_spec(cfg)
        if spec != rspec:
            log.warning("unlearning=%s runs the retrain: node (%s); set retrain.* to change it", spec.key, rspec)
        return rspec
    return spec


def retrain_spec(cfg: DictConfig) -> MethodSpec:
    """The Retrain reference: the ``retrain:`` node (by default the ``original:`` recipe on the retain set)."""
    spec = build(cfg.retrain, "retrain")
    if not isinstance(spec, MethodSpec) or not spec.from_scratch:
        raise ValueError("retrain must build a salguide.unlearning.MethodSpec with from_scratch: true")
    return spec


def cache_paths(cfg: DictConfig) -> tuple[Path, Path]:
    """The cache files of the original and the Retrain model. Each key holds everything that changes the
    weights: data (but ``num_workers``), model, recipe, seed, the trainer settings and callbacks that
    change numerics (``weight_settings``: precision, accumulation, devices, strategy, ...) and
    ``CACHE_VERSION``. The original model sees the whole training split, so the forget split is not part
    of its key."""
    cache = Path(cfg.paths.cache_dir)
    data = {k: v for k, v in as_dict(cfg.data).items() if k != "num_workers"}
    common = (as_dict(cfg.model), weight_settings(cfg), int(cfg.seed), CACHE_VERSION)
    split = {k: v for k, v in data.items() if not k.startswith("forget")}
    original = config_key(split, as_dict(cfg.original), *common)
    retrain = config_key(data, as_dict(cfg.retrain), *common)
    return cache / f"original-{original}.safetensors", cache / f"retrain-{retrain}.safetensors"


def check_classifier(cfg: DictConfig) -> None:
    """``task=unlearn`` builds every stage (original, Retrain, the method) as a ``ClassifierModule`` whose loss
    sign and L1 term the methods set: ``model._target_`` must name it, with a ``net:`` node, an ``optimizer:``
    factory that builds and a ``scheduler:`` that builds or is null (checked before anything trains)."""
    target = cfg.model.get("_target_")
    try:
        cls = get_class(str(target))
    except Exception:
        cls = None
    if cls is not ClassifierModule or "net" not in cfg.model:
        raise ValueError(
            "model: task=unlearn builds every stage as salguide.models.ClassifierModule (model._target_) over a "
            f"net: node (e.g. model=small_cnn), got _target_={target!r}; another module: use the Python API "
            "(salguide.pipelines.fit.unlearn) or the callbacks"
        )
    for key in ("l1_alpha", "loss_sign"):
        if key in cfg.model:
            raise ValueError(f"model.{key}: the unlearning methods set it (unlearning.{key}); remove it from model:")
    if cfg.model.get("optimizer") is None:
        raise ValueError(
            "model.optimizer is null: the original and Retrain need an optimiser factory (model=small_cnn)"
        )
    optimizer = build(cfg.model.optimizer, "model.optimizer")  # bad factories fail now, not at the first stage
    check_optimizer(optimizer, "model.optimizer")
    scheduler = build(cfg.model.scheduler, "model.scheduler") if cfg.model.get("scheduler") is not None else None
    check_scheduler(scheduler, "model.scheduler")


def original_module(cfg: DictConfig, net: nn.Module) -> ClassifierModule:
    """The ``model:`` LightningModule around ``net``: the original's optimiser and schedule."""
    module = build(cfg.model, "model", net=net)
    assert isinstance(module, ClassifierModule)  # check_classifier
    return module


def method_label(cfg: DictConfig, spec: MethodSpec) -> str:
    """The name tables and figures show: the mask factory's ``label`` for a masked method (``ant_mask``:
    "ANT", ``salun_mask``: "SalUn"), else the method's own name."""
    if not (spec.weight_mask and cfg.get("saliency")):
        return spec.name
    factory = mask_factory(cfg.saliency)
    return str(getattr(getattr(factory, "func", factory), "label", None) or spec.name)


def run_unlearning(cfg: DictConfig) -> float | None:
    """The Hydra pipeline behind ``task=unlearn``, as stages of the runner: ``original`` (or the user's
    model, ``init_from=``), ``retrain`` (both cached), then the method; metrics of each vs Retrain."""
    runner = StageRunner(cfg)
    out, seed, writer = runner.out, runner.seed, runner.writer
    check_classifier(cfg)
    spec = method_from(cfg)  # fail on a bad model, method or Retrain node before any training (or cache folder)
    if cfg.compare_to_retrain:
        retrain_spec(cfg)
    check_writable(cfg.paths.cache_dir, "paths.cache_dir")
    method, label = spec.key, method_label(cfg, spec)
    if not spec.weight_mask and (ignored := user_overrides("saliency")):
        log.warning(
            "%s: no effect, %s trains without a weight mask (unlearning=salun uses one)", " ".join(ignored), label
        )
    init_from = check_init_from(cfg)
    check_trains(cfg, "task=unlearn")
    if cfg.get("ckpt_path") is not None and spec.from_scratch:
        raise ValueError(
            "ckpt_path resumes the unlearning method's stage, and unlearning=retrain has none (Retrain is the "
            "cached reference, trained whole or loaded): run it without ckpt_path"
        )
    ckpt_path = check_ckpt_path(cfg, method)
    orig_path, rpath = cache_paths(cfg)

    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    mask_fn = mask_builder(cfg.saliency, datamodule) if spec.weight_mask else None
    make_model: Callable[[], nn.Module] = lambda: instantiate(cfg.model.net)  # noqa: E731

    # 1. the original model: the user's own (init_from=), or trained once and cached
    if init_from is not None:
        original = load_weights(_seeded(make_model, seed), init_from).eval()
        log.info("original model loaded from %s", init_from)
    else:
        epochs = int(cfg.original.epochs)
        with runner.stage("original") as stage:
            original, hit = cached_weights(
                orig_path,
                _seeded(make_model, seed),
                lambda m: train_original(
                    original_module(cfg, m), datamodule, epochs=epochs, seed=seed, **stage.fit_args()
                ),
                write=writer,
            )
        done = "loaded from" if hit else "trained and cached at" if writer else "trained for"
        log.info("original model %s %s", done, orig_path)
    runner.keep(original, "original")
    rows: list[dict[str, Any]] = [
        {"method": "Original", "seed": seed, **unlearning_metrics(original, datamodule, seed=seed), "RTE": None}
    ]

    # 2. the Retrain reference (cached with its run time)
    is_retrain = spec.from_scratch
    if cfg.compare_to_retrain or is_retrain:
        rspec = retrain_spec(cfg)
        timing = rpath.with_suffix(".json")
        with runner.stage("retrain") as stage:

            def retrain(_: nn.Module) -> nn.Module:
                res = unlearn(original, datamodule, rspec, model_factory=make_model, seed=seed, **stage.fit_args())
                if writer:
                    atomic_write_json(timing, {"seconds": res.seconds})
                return res.model

            retrained, hit = cached_weights(rpath, make_model(), retrain, write=writer)
        runner.keep(retrained, "retrain")
        metrics = unlearning_metrics(retrained, datamodule, seed=seed)
        rows.append({"method": "Retrain", "seed": seed, **metrics, "RTE": cached_seconds(timing), "RTE_cached": hit})

    # 3. the method under study
    if not is_retrain:
        with runner.stage(method) as stage:
            res = unlearn(
                original,
                datamodule,
                spec,
                mask_fn=mask_fn,
                model_factory=make_model,
                seed=seed,
                ckpt_path=ckpt_path,
                **stage.fit_args(),
            )
            row = {"method": label, "seed": seed, **unlearning_metrics(res.model, datamodule, seed=seed)}
            rows.append({**row, "RTE": res.seconds})
            if writer:
                runner.keep(res.model, method)
                images = {}
                if res.mask is not None:
                    ratio = str(cfg.saliency.get("ratio"))
                    res.mask.save(out / "mask.safetensors", metadata={"method": label, "ratio": ratio})
                    title = f"{label} mask"
                    images["mask_sparsity"] = plot_mask_sparsity(res.mask, out / "mask_sparsity.png", title=title)
                if len(rows) > 2:
                    images["metrics_vs_retrain"] = plot_metrics_vs_retrain(rows, out / "metrics_vs_retrain.png")
                stage.log_results(with_gaps(rows), images)
    if not writer:
        return None
    rows_with_gaps = with_gaps(rows)
    runner.write_results(rows_with_gaps, format_table(rows))
    return rows_with_gaps[-1].get("Avg.Gap")


def _seeded(factory: Callable[[], nn.Module], seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return factory()
