"""Evaluation extras (``salguide.evaluation``) run inside Lightning's test loop, batch by batch."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import torch
from typing_extensions import override

from salguide._lightning import Callback
from salguide.callbacks._strategy import refuse_sharded
from salguide.evaluation import TestMetric, check_metrics


class TestMetricsCallback(Callback):
    """Feed every test batch to each of ``metrics`` (``{name: extra}``) and log their values as
    ``{prefix}/<value name>`` at the end of the test epoch, so ``trainer.test`` returns them. Each test run
    starts from fresh copies; the plugins of the other callbacks stay active, as in any test loop."""

    __test__ = False  # not a pytest class

    def __init__(self, metrics: Mapping[str, TestMetric], prefix: str = "test") -> None:
        self.metrics, self.prefix = check_metrics(dict(metrics)), prefix
        self._live: dict[str, TestMetric] = {}

    @override
    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        refuse_sharded(self, trainer, "the extras run the whole module outside the strategy's wrapper")

    @override
    def on_test_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        with torch.inference_mode(False):  # the test loop runs in inference mode; the extras' states must not
            self._live = {k: copy.deepcopy(m) for k, m in self.metrics.items()}

    @override
    def on_test_batch_end(
        self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        parts = list(batch) if isinstance(batch, (list, tuple)) else [batch]
        with torch.inference_mode(False):
            for metric in self._live.values():
                metric.update(pl_module, parts, trainer.datamodule)

    @override
    def on_test_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        values = {f"{self.prefix}/{k}": v for m in self._live.values() for k, v in m.compute().items()}
        if values:
            pl_module.log_dict(values, sync_dist=True)
        self._live = {}
