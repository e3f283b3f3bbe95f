"""data=fashion_mnist / data=mnist and the Fashion-MNIST presets: they compose, and each runs end to end
on small generated IDX files, writing its results and data tables as CSV and W&B tables."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_module
from hydra.utils import instantiate
from idx_helpers import make_idx_dir

from salguide.pipelines import run_task

PRESETS = {
    "unlearn_fashion_mnist": "unlearn",
    "unlearn_fashion_mnist_random": "unlearn",
    **{f"decoy_fashion_mnist_{v}": "classify" for v in ("vanilla", "rrr", "sgt", "clean")},
    **{f"prune_fashion_mnist_{p}": "attention" for p in ("evit", "tome", "dynamicvit")},
}
TINY = {
    "unlearn": ["original.epochs=1", "unlearning.epochs=1", "retrain.epochs=1", "data.train_size=60"],
    "classify": ["trainer.max_epochs=1", "callbacks.explanation_metrics.num_samples=16", "data.train_size=100"],
    "attention": [
        "trainer.max_epochs=1",
        "+trainer.limit_train_batches=2",
        "data.train_size=40",
        "callbacks.attention_maps.every_n_epochs=1",
    ],
}


def _compose(*overrides: str):
    with initialize_config_module(config_module="salguide.configs", version_base="1.3"):
        return compose(config_name="train", overrides=list(overrides))


def _csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("preset, task", sorted(PRESETS.items()))
def test_presets_compose(preset, task):
    cfg = _compose(f"experiment={preset}")
    assert cfg.task._target_.split(".")[2] == task and cfg.name == preset
    assert cfg.data._target_.endswith("DecoyFashionMNISTDataModule" if task == "classify" else "FashionMNISTDataModule")
    assert cfg.data.data_dir.endswith("fashion-mnist")
    if task == "unlearn":
        assert cfg.data.forget == ("random" if preset.endswith("random") else "class")
    if task == "attention":
        assert instantiate(cfg.callbacks.token_policy).policy.name == preset.split("_")[-1] and cfg.data.forget is None
        assert (cfg.model.net.img_size, cfg.model.net.patch_size) == (28, 2)  # 196 tokens + CLS


def test_data_options_and_the_default_stays_on_digits(tmp_path):
    assert _compose().data._target_ == "salguide.data.DigitsDataModule"
    make_idx_dir(tmp_path, per_class=(3, 2))
    for option, cls in (("fashion_mnist", "FashionMNISTDataModule"), ("mnist", "MNISTDataModule")):
        dm = instantiate(_compose(f"data={option}", f"data.data_dir={tmp_path}").data)
        dm.setup()
        assert type(dm).__name__ == cls and len(dm.train_dataset) == 30 and len(dm.forget_dataset) == 3


@pytest.mark.slow
@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_each_preset_runs_end_to_end_on_tiny_files(tmp_path, preset, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    data = make_idx_dir(tmp_path / "fm", per_class=(12, 4))
    task = PRESETS[preset]
    out = tmp_path / "out"
    logger = "default" if preset in ("decoy_fashion_mnist_rrr", "unlearn_fashion_mnist") else "csv"
    cfg = _compose(
        f"experiment={preset}",
        f"data.data_dir={tmp_path / 'fm'}",
        f"paths.output_dir={out}",
        f"paths.cache_dir={tmp_path / 'cache'}",
        "data.test_size=20",
        f"logger={logger}",
        *TINY[task],
    )
    run_task(cfg)
    results = json.loads((out / "results.json").read_text())
    rows = _csv(out / "results.csv")
    if task == "unlearn":
        assert [r["method"] for r in rows] == [r["method"] for r in results] == ["Original", "Retrain", "SalUn"]
    else:
        assert len(rows) == 1 and float(rows[0]["test_acc"]) == pytest.approx(results["test_acc"])
    # the data table: counts per split and class, against the generated labels
    counts = _csv(out / "data_splits.csv")
    assert {r["split"] for r in counts} >= {"train", "test"}
    test_counts = [int(r["count"]) for r in counts if r["split"] == ("full_test" if task != "classify" else "test")]
    assert test_counts == (np.bincount(data["test"][1], minlength=10) // 2).tolist()  # test_size=20 of 40, stratified
    assert (out / "data_samples.png").stat().st_size > 0
    if logger == "default":  # W&B offline: the results and the data counts as tables, the sample grid as an image
        media = [p.name for p in out.glob("wandb/offline-run-*/files/media/**/*") if p.is_file()]
        assert any(n.startswith("results_") and n.endswith(".table.json") for n in media)
        assert any(n.startswith("splits_") and n.endswith(".table.json") for n in media)
        assert any(n.startswith("samples_") and n.endswith(".png") for n in media)


@pytest.mark.slow
def test_attention_pipeline_tests_in_loader_batches(tmp_path, monkeypatch):
    """10,000 Fashion-MNIST test images x 197 tokens do not fit through the ViT at once: the test
    accuracy must be computed batch by batch."""
    from salguide.models.vit import VisionTransformer

    make_idx_dir(tmp_path / "fm", per_class=(4, 3))
    seen: list[int] = []
    forward = VisionTransformer.forward

    def recording(self, x):
        if not self.training:
            seen.append(x.shape[0])
        return forward(self, x)

    monkeypatch.setattr(VisionTransformer, "forward", recording)
    cfg = _compose(
        "experiment=prune_fashion_mnist_tome",
        f"data.data_dir={tmp_path / 'fm'}",
        "data.batch_size=8",
        f"paths.output_dir={tmp_path / 'out'}",
        "logger=none",
        "callbacks=none",
        "trainer.max_epochs=1",
        "+trainer.limit_train_batches=1",
        "+trainer.limit_val_batches=0",
        "callbacks.attention_maps=null",
    )
    acc = run_task(cfg)
    assert sum(seen) >= 30 and max(seen) <= 8
    assert json.loads((tmp_path / "out" / "results.json").read_text())["test_acc"] == pytest.approx(acc)
