"""The one stage runner behind every task: instantiate -> Trainer -> fit -> test -> evaluate -> report.

A task is a sequence of stages (``classify``: one; ``unlearn``: original, Retrain, the method). Each stage
gets the config's Trainer settings and ``callbacks:`` built fresh (its progress bar named after it, a
``ModelCheckpoint`` keeping ``checkpoints/<stage>.ckpt``), its own loggers, opened only when the stage
trains or reports (a stage read from the cache opens no empty W&B run), and the stage's plugins. Only
rank 0 writes: the weights (``models/<stage>.safetensors``) and the results files.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import nn

from salguide.callbacks import TestMetricsCallback
from salguide.io import atomic_write_csv, atomic_write_json, atomic_write_text
from salguide.weights_io import save_weights

from .fit import fit_module
from .stages import LazyLoggers, is_rank_zero, log_images, log_table, stage_callbacks, trainer_kwargs


@dataclass
class Fitted:
    """What a stage's fit gives back: the module, its fit wall time (s) and the test loop's metrics."""

    module: Any
    seconds: float
    tested: dict[str, float] = field(default_factory=dict)


class Stage:
    """One named stage of a run: its loggers (lazy) and fresh config callbacks."""

    def __init__(self, runner: StageRunner, name: str, checkpoint: bool) -> None:
        self.runner, self.name = runner, name
        self.loggers = LazyLoggers(runner.cfg, name, runner.run_id)
        self.callbacks = stage_callbacks(runner.cfg, name, runner.out / "checkpoints" if checkpoint else None)
        self.checkpoint = checkpoint
        # the run's Trainer arguments; a checkpointing stage keeps checkpoints/<stage>.ckpt
        self.trainer_kwargs = {**runner.trainer_kwargs, "enable_checkpointing": checkpoint}

    def fit(
        self,
        module: Any,
        datamodule: Any,
        epochs: int,
        plugins: Sequence[Any] = (),
        *,
        ckpt_path: str | None = None,
        test: bool = False,
        reseed: bool = True,
    ) -> Fitted:
        """Fit ``module`` for ``epochs`` with the stage's callbacks and ``plugins`` (seeded with the run's
        seed once the Trainer is built; ``reseed=False``: the global RNG goes on from where the caller left
        it), resuming from ``ckpt_path``; with
        ``test``, run the test loop too, with the plugins still active (they see ``on_test_*``) and the
        config's ``evaluation:`` extras fed every test batch."""
        cbs = [*plugins, *self.callbacks]
        extras = self.runner.evaluation_extras() if test else {}
        if extras:  # the config's evaluation extras, fed every test batch (they do nothing during fit)
            cbs.append(TestMetricsCallback(extras))
        start = time.perf_counter()
        trainer = fit_module(
            module,
            datamodule,
            epochs,
            self.runner.seed if reseed else None,
            self.trainer_kwargs,
            self.loggers() or False,
            cbs,
            ckpt_path,
        )
        seconds = time.perf_counter() - start
        tested = {}
        if test:
            tested = {k: float(v) for k, v in trainer.test(module, datamodule=datamodule, verbose=False)[0].items()}
        return Fitted(module, seconds, tested)

    def fit_args(self) -> dict[str, Any]:
        """``trainer_kwargs``, ``logger`` and ``callbacks`` for the Python API's fits (``train_original``,
        ``unlearn``) run as this stage; call it only when the stage trains (it opens the loggers)."""
        return {"trainer_kwargs": self.trainer_kwargs, "logger": self.loggers(), "callbacks": self.callbacks}

    def log_results(self, rows: list[dict[str, Any]], images: dict[str, Any] | None = None) -> None:
        """The last row's numbers as ``final/<key>``, all rows as a ``results`` table, and ``images``."""
        if not self.runner.writer:
            return
        loggers = self.loggers()
        for logger in loggers:
            logger.log_metrics({f"final/{k}": v for k, v in rows[-1].items() if isinstance(v, (int, float))})
        log_table(loggers, "results", rows)
        log_images(loggers, images or {})


class StageRunner:
    """The stages of one run in ``cfg.paths.output_dir``, and what the run reports."""

    def __init__(self, cfg: DictConfig) -> None:
        self.cfg = cfg
        self.out = Path(cfg.paths.output_dir)
        self.run_id = f"{cfg.name}-{self.out.name}"
        self.seed = int(cfg.seed)
        self.writer = is_rank_zero()  # under strategy=ddp every rank runs the task; rank 0 alone writes
        self.trainer_kwargs = {"default_root_dir": str(self.out), **trainer_kwargs(cfg)}

    def evaluation_extras(self) -> dict[str, Any]:
        """The config's ``evaluation:`` extras (``_target_`` nodes, salguide.evaluation), built fresh."""
        nodes = self.cfg.get("evaluation") or {}
        return {str(k): instantiate(v) for k, v in nodes.items() if v is not None and "_target_" in v}

    @contextmanager
    def stage(self, name: str, *, checkpoint: bool = True) -> Iterator[Stage]:
        """A stage whose loggers are closed when it ends, on every exit path."""
        stage = Stage(self, name, checkpoint)
        try:
            yield stage
        finally:
            stage.loggers.close()

    def keep(self, model: nn.Module, name: str) -> None:
        """``models/<name>.safetensors`` in the run folder (rank 0 only)."""
        if self.writer:
            save_weights(model, self.out / "models" / f"{name}.safetensors")

    def write_results(self, rows: list[dict[str, Any]], markdown: str, *, single: bool = False) -> Path:
        """``results.json`` (the rows, or with ``single`` the one row as an object), ``results.csv`` and
        ``results.md``, each written whole or not at all; the table is printed unless ``print_table=false``.
        Returns the markdown file."""
        md = self.out / "results.md"
        if not self.writer:
            return md
        atomic_write_json(self.out / "results.json", rows[0] if single else rows)
        atomic_write_csv(self.out / "results.csv", rows)
        atomic_write_text(md, markdown)
        if self.cfg.get("print_table", True):
            print(f"\n{markdown}\nresults: {md}")
        return md
