"""``task=classify``: train and test a classifier, optionally with an input-saliency loss.

The loss reaches the plain ``ClassifierModule`` through ``InputSaliencyCallback`` (the zero-code
path; the ``input_loss`` group puts it in ``callbacks.input_loss``). The presets' observers are callbacks
too (``callbacks.explanation_metrics``: val_expl/* each epoch; ``callbacks.saliency_overlays``); the test
accuracy and the ``evaluation:`` extras (test-set explanation scores) go to ``results.json`` /
``results.md`` and the overlays of test images to ``test_saliency.png`` in ``cfg.paths.output_dir``.
"""

from __future__ import annotations

import logging
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig

from salguide._lightning import pl
from salguide.callbacks import (
    InputSaliencyCallback,
    SaliencyOverlayCallback,
)
from salguide.data.loaders import first_samples
from salguide.metrics import explain
from salguide.viz.saliency import plot_saliency_overlays

from .runner import StageRunner
from .stages import build_module, check_ckpt_path, check_init_from, init_model, run_epochs

log = logging.getLogger(__name__)

TEST_OVERLAYS = ("gradient", "integrated_gradients")  # test_saliency.png without an overlay callback


def build_classifier(cfg: DictConfig, init_from: str | None) -> tuple[Any, Any]:
    """The data module (set up for fit) and the ``model:`` LightningModule (its ``net:`` inside, as
    ``module.model``), seeded with the run's seed; ``init_from``: start from the user's weights (fine-tuning)."""
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    pl.seed_everything(int(cfg.seed), verbose=False)
    module = build_module(cfg)
    init_model(module.model, init_from)
    return datamodule, module


def run_classify(cfg: DictConfig) -> float:
    """The Hydra pipeline behind ``task=classify`` (see ``experiment=decoy_*`` / ``scenes_*`` presets): one
    stage that trains, tests and scores the test-set explanations. The input loss is the ``input_loss``
    group's ``InputSaliencyCallback`` in ``callbacks.input_loss``."""
    runner = StageRunner(cfg)
    out, seed = runner.out, runner.seed
    epochs = run_epochs(cfg)
    init_from, ckpt_path = check_init_from(cfg), check_ckpt_path(cfg, "classify")
    with runner.stage("classify") as stage:  # the callbacks are built first: a bad plugin fails before training
        input_loss = next((cb.loss for cb in stage.callbacks if isinstance(cb, InputSaliencyCallback)), None)
        datamodule, module = build_classifier(cfg, init_from)
        fitted = stage.fit(module, datamodule, epochs, ckpt_path=ckpt_path, test=True)
        row = {
            "name": cfg.name,
            "input_loss": input_loss.name if input_loss else "none",
            "seed": seed,
            **tested_row(fitted.tested),
            "seconds": fitted.seconds,
        }
        if not runner.writer:  # strategy=ddp runs the pipeline on every rank; rank 0 alone reports
            return row["test_acc"]
        runner.keep(module.model, "classify")
        module.eval()
        datamodule.setup("test")
        x, y, *_ = first_samples(datamodule.test_dataloader(), 8)
        overlays = next((cb for cb in stage.callbacks if isinstance(cb, SaliencyOverlayCallback)), None)
        methods = overlays.methods if overlays is not None else list(TEST_OVERLAYS)
        maps = {m: explain(module, x, y, m) for m in methods}
        fig = plot_saliency_overlays(
            x,
            maps,
            out / "test_saliency.png",
            labels=y.tolist(),
            preds=module(x).argmax(-1).tolist(),
            title=f"{cfg.name}: test images",
        )
        stage.log_results([row], {"test_saliency": fig})
    runner.write_results([row], _markdown(row), single=True)
    return row["test_acc"]


def tested_row(tested: dict[str, float]) -> dict[str, float]:
    """The test loop's ``test/<name>`` values as ``test_<name>`` columns, accuracy in percent first."""
    row = {"test_acc": 100.0 * tested["test/acc"]}
    row.update(
        {f"test_{k[5:]}": v for k, v in tested.items() if k.startswith("test/") and k not in ("test/acc", "test/loss")}
    )
    return row


def _markdown(row: dict[str, Any]) -> str:
    keys = list(row)
    cells = [f"{row[k]:.4g}" if isinstance(row[k], float) else str(row[k]) for k in keys]
    return f"| {' | '.join(keys)} |\n|{'---|' * len(keys)}\n| {' | '.join(cells)} |\n"
