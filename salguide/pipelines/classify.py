"""``task=classify``: train and test a classifier, optionally with an input-saliency loss.

The loss reaches the plain ``ClassifierModule`` through ``InputSaliencyCallback`` (the zero-code
path; the ``input_loss`` group puts it in ``callbacks.input_loss``). Explanation metrics are logged per
validation epoch, saliency overlays every N epochs; the test accuracy and test-set explanation metrics go
to ``results.json`` / ``results.md`` and the overlays of test images to ``test_saliency.png`` in
``cfg.paths.output_dir``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from salguide._lightning import pl
from salguide.callbacks.explanation_metrics import ExplanationMetricsCallback, relevant_region
from salguide.callbacks.input_saliency import InputSaliencyCallback
from salguide.callbacks.saliency_overlays import SaliencyOverlayCallback
from salguide.inputs import InputLoss
from salguide.io import atomic_write_csv, atomic_write_json, atomic_write_text
from salguide.metrics import evaluate_explanations, explain
from salguide.models import ClassifierModule
from salguide.viz.saliency import plot_saliency_overlays
from salguide.weights_io import save_weights

from .stages import (
    check_ckpt_path,
    check_init_from,
    close_loggers,
    init_model,
    is_rank_zero,
    log_images,
    log_table,
    stage_callbacks,
    stage_loggers,
    trainer_kwargs,
)

log = logging.getLogger(__name__)

DEFAULT_RECIPE: dict[str, Any] = {
    "epochs": 30,
    "lr": 1e-3,
    "optimizer": "adam",
    "momentum": 0.9,
    "weight_decay": 0.0,
    "scheduler": None,
    "explain_method": "gradient",
    "explain_every_n_epochs": 1,
    "explain_samples": 128,
    "overlay_every_n_epochs": 10,
    "overlay_images": 8,
    "overlay_methods": ["gradient", "integrated_gradients"],
}
_MODULE_KEYS = ("lr", "optimizer", "momentum", "weight_decay", "scheduler")


def test_split(datamodule: Any) -> tuple[torch.Tensor, ...]:
    """The whole test split as tensors (x, y[, mask]), from any datamodule's (unshuffled) test loader."""
    datamodule.setup("test")
    batches = [list(b) for b in datamodule.test_dataloader()]
    return tuple(torch.cat([b[i] for b in batches]) for i in range(len(batches[0])))


def classify_recipe(cfg: DictConfig) -> dict[str, Any]:
    """``DEFAULT_RECIPE`` updated by the config's ``classify:`` block; unknown keys are an error."""
    recipe = OmegaConf.to_container(cfg.get("classify") or {}, resolve=True)
    unknown = set(recipe) - set(DEFAULT_RECIPE)
    if unknown:
        raise ValueError(f"unknown classify keys {sorted(unknown)}; valid: {sorted(DEFAULT_RECIPE)}")
    return {**DEFAULT_RECIPE, **recipe}


def train_classifier(
    datamodule: Any,
    model: nn.Module,
    *,
    input_loss: InputLoss | None = None,
    recipe: dict[str, Any] | None = None,
    seed: int = 0,
    trainer_kwargs: dict[str, Any] | None = None,
    loggers: Sequence[Any] = (),
    callbacks: Sequence[Any] = (),
    out_dir: str | Path | None = None,
    ckpt_path: str | None = None,
) -> tuple[ClassifierModule, dict[str, Any]]:
    """Fit ``ClassifierModule(model)`` (+ ``input_loss`` via the callback; resumed from ``ckpt_path`` if
    given), test it, score its test-set explanations. Returns the module and a row: test accuracy (%),
    explanation metrics, seconds."""
    rc = {**DEFAULT_RECIPE, **(recipe or {})}
    module = ClassifierModule(model, **{k: rc[k] for k in _MODULE_KEYS})
    cbs = list(callbacks)
    if input_loss is not None:
        cbs.append(InputSaliencyCallback(input_loss))
    if rc["explain_every_n_epochs"]:
        cbs.append(
            ExplanationMetricsCallback(
                rc["explain_method"], rc["explain_samples"], every_n_epochs=rc["explain_every_n_epochs"]
            )
        )
    if out_dir is not None and rc["overlay_every_n_epochs"]:
        cbs.append(
            SaliencyOverlayCallback(
                rc["overlay_methods"],
                rc["overlay_every_n_epochs"],
                rc["overlay_images"],
                out_dir=str(Path(out_dir) / "saliency"),
            )
        )
    tkw = {
        "enable_checkpointing": False,
        "enable_model_summary": False,
        "num_sanity_val_steps": 0,
        "default_root_dir": str(out_dir) if out_dir else None,
        **(trainer_kwargs or {}),
    }
    if not loggers:
        tkw.setdefault("logger", False)
    pl.seed_everything(seed, workers=True, verbose=False)
    trainer = pl.Trainer(
        max_epochs=int(rc["epochs"]), callbacks=cbs, **({"logger": list(loggers)} if loggers else {}), **tkw
    )
    start = time.perf_counter()
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    seconds = time.perf_counter() - start
    tested = trainer.test(module, datamodule=datamodule, verbose=False)[0]
    module.eval()
    x, y, *rest = test_split(datamodule)
    sem = getattr(datamodule, "mask_semantics", "relevant")
    region = relevant_region(rest[0], sem) if rest else None
    expl = evaluate_explanations(module, x, y, region, method=rc["explain_method"])
    row = {
        "test_acc": 100.0 * float(tested["test/acc"]),
        **{f"test_{k}": v for k, v in expl.items()},
        "seconds": seconds,
    }
    return module, row


def run_classify(cfg: DictConfig) -> float:
    """The Hydra pipeline behind ``task=classify`` (see ``experiment=decoy_*`` / ``scenes_*`` presets)."""
    out = Path(cfg.paths.output_dir)
    seed = int(cfg.seed)
    callbacks = stage_callbacks(cfg, "classify", out / "checkpoints")  # a bad input loss fails before training
    input_loss = next((cb.loss for cb in callbacks if isinstance(cb, InputSaliencyCallback)), None)
    recipe = classify_recipe(cfg)
    init_from, ckpt_path = check_init_from(cfg), check_ckpt_path(cfg)
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    pl.seed_everything(seed, verbose=False)
    model = init_model(instantiate(cfg.model), init_from)  # fine-tune the user's model (init_from=)
    run_id = f"{cfg.name}-{out.name}"
    loggers = stage_loggers(cfg, "classify", run_id)
    try:
        module, row = train_classifier(
            datamodule,
            model,
            recipe=recipe,
            seed=seed,
            trainer_kwargs={**trainer_kwargs(cfg), "enable_checkpointing": True},
            loggers=loggers,
            callbacks=callbacks,
            out_dir=out,
            ckpt_path=ckpt_path,
        )
        row = {"name": cfg.name, "input_loss": input_loss.name if input_loss else "none", "seed": seed, **row}
        if not is_rank_zero():  # strategy=ddp runs the pipeline on every rank; rank 0 alone reports
            return row["test_acc"]
        save_weights(module.model, out / "models" / "classify.safetensors")
        x, y, *_ = test_split(datamodule)
        x, y = x[:8], y[:8]
        methods = recipe["overlay_methods"] or DEFAULT_RECIPE["overlay_methods"]
        maps = {m: explain(module, x, y, m) for m in methods}
        fig = plot_saliency_overlays(
            x,
            maps,
            out / "test_saliency.png",
            labels=y.tolist(),
            preds=module(x).argmax(-1).tolist(),
            title=f"{cfg.name}: test images",
        )
        for logger in loggers:
            logger.log_metrics({f"final/{k}": v for k, v in row.items() if isinstance(v, (int, float))})
        log_images(loggers, {"test_saliency": fig})
        log_table(loggers, "results", [row])
    finally:
        close_loggers(loggers)
    atomic_write_json(out / "results.json", row)
    atomic_write_text(out / "results.md", _markdown(row))
    atomic_write_csv(out / "results.csv", [row])
    if cfg.get("print_table", True):
        print(f"\n{_markdown(row)}\nresults: {out / 'results.md'}")
    return row["test_acc"]


def _markdown(row: dict[str, Any]) -> str:
    keys = list(row)
    cells = [f"{row[k]:.4g}" if isinstance(row[k], float) else str(row[k]) for k in keys]
    return f"| {' | '.join(keys)} |\n|{'---|' * len(keys)}\n| {' | '.join(cells)} |\n"
