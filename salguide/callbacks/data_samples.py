"""Log what the datamodule holds at fit start: a per-split class-count table and a sample grid."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from salguide._lightning import Callback
from salguide.data.protocols import SplitData
from salguide.data.summary import class_count_rows, per_class_samples
from salguide.io import atomic_write_csv
from salguide.viz.samples import plot_sample_grid

log = logging.getLogger(__name__)


class DataSamplesCallback(Callback):
    """At ``on_fit_start`` (global rank 0): write ``{out_dir}/data_splits.csv`` (split, class, name, count)
    and ``{out_dir}/data_samples.png`` (``per_class`` training samples per class, annotation masks
    outlined); log them to every logger that can (W&B: table ``data/splits``, image ``data/samples``).

    ``out_dir`` defaults to ``<trainer.default_root_dir>``. Class names come from the datamodule's
    ``class_names`` when it has them. Without a datamodule (plain dataloaders) it logs nothing.
    """

    def __init__(self, per_class: int = 8, out_dir: str | None = None) -> None:
        if int(per_class) < 1:
            raise ValueError(f"per_class must be >= 1, got {per_class}")
        self.per_class, self.out_dir = int(per_class), out_dir

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        dm = getattr(trainer, "datamodule", None)
        if not trainer.is_global_zero or dm is None:
            return
        if getattr(dm, "train_dataset", None) is None:  # SplitData
            log.warning("DataSamplesCallback: %s has no train_dataset; nothing logged", type(dm).__name__)
            return
        data: SplitData = dm
        out = Path(self.out_dir or trainer.default_root_dir)
        names = getattr(data, "class_names", None)
        rows = class_count_rows(data, names)
        atomic_write_csv(out / "data_splits.csv", rows)
        x, y, masks = per_class_samples(data.train_dataset, self.per_class)
        title = f"{type(data).__name__}: training samples"
        png = plot_sample_grid(x, y, out / "data_samples.png", names, masks, title=title)
        columns = list(rows[0])
        for logger in trainer.loggers:
            if hasattr(logger, "log_table"):
                logger.log_table(key="data/splits", columns=columns, data=[[r[c] for c in columns] for r in rows])
            if hasattr(logger, "log_image"):
                logger.log_image(key="data/samples", images=[str(png)])
