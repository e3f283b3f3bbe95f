"""Data tables and sample grids: per-split class counts, the per-class sample pick, DataSamplesCallback."""

from __future__ import annotations

import csv

import lightning.pytorch as lp
import numpy as np
import torch
import torch.nn.functional as F

from salguide.callbacks import DataSamplesCallback
from salguide.data import DecoyDigitsDataModule, DigitsDataModule
from salguide.data.summary import class_count_rows, per_class_samples


def test_class_counts_per_split_match_bincount():
    dm = DigitsDataModule(forget="class", forget_class=2, seed=1)
    dm.setup()
    rows = class_count_rows(dm)
    got = {(r["split"], r["class"]): r["count"] for r in rows}
    for split, y in (("train", dm.train_y), ("test", dm.test_y[dm.test_y != 2]), ("full_test", dm.test_y)):
        assert [got[(split, c)] for c in range(10)] == np.bincount(y.numpy(), minlength=10).tolist()
    assert got[("forget", 2)] == int((dm.train_y == 2).sum()) and got[("retain", 2)] == 0
    assert [r["split"] for r in rows[::10]] == ["train", "forget", "retain", "test", "full_test"]


def test_per_class_samples_takes_the_first_of_each_class_with_masks():
    dm = DecoyDigitsDataModule(seed=0)
    dm.setup()
    x, y, m = per_class_samples(dm.train_dataset, 3)
    labels = dm.train_dataset.tensors[1]
    first = [i for c in range(10) for i in (labels == c).nonzero().flatten()[:3].tolist()]
    assert y.tolist() == labels[first].tolist() and torch.equal(x, dm.train_dataset.tensors[0][first])
    assert m is not None and torch.equal(m, dm.train_dataset.tensors[2][first])


class _Recorder(lp.loggers.CSVLogger):
    def __init__(self, save_dir):
        super().__init__(save_dir)
        self.tables, self.images = [], []

    def log_table(self, key, columns, data):
        self.tables.append((key, columns, data))

    def log_image(self, key, images):
        self.images.append((key, images))


class _Tiny(lp.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Linear(64, 10)

    def training_step(self, batch, _):
        return F.cross_entropy(self.net(batch[0].flatten(1)), batch[1])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_callback_writes_csv_png_and_logs_a_table_and_an_image(tmp_path):
    dm = DigitsDataModule(forget=None)
    logger = _Recorder(tmp_path)
    callback = DataSamplesCallback(per_class=2, out_dir=str(tmp_path))
    trainer = lp.Trainer(
        max_steps=1,
        limit_val_batches=0,
        logger=logger,
        callbacks=[callback],
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(_Tiny(), datamodule=dm)
    with open(tmp_path / "data_splits.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["count"]) for r in rows if r["split"] == "train"] == np.bincount(dm.train_y.numpy()).tolist()
    ((key, columns, data),) = logger.tables
    assert key == "data/splits" and columns == ["split", "class", "name", "count"] and len(data) == len(rows)
    assert logger.images == [("data/samples", [str(tmp_path / "data_samples.png")])]
    assert (tmp_path / "data_samples.png").read_bytes()[:4] == b"\x89PNG"
