"""End to end: presets compose, task=classify writes results + figures + W&B images (the study: test_decoy_digits_study)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import InstantiationException
from hydra.utils import instantiate

import salguide
from salguide.pipelines.classify import run_classify

CONFIGS = str(Path(salguide.__file__).parent / "configs")
PRESETS = [
    "decoy_vanilla",
    "decoy_rrr",
    "decoy_sgt",
    "decoy_clean",
    "decoy_energy",
    "scenes_vanilla",
    "scenes_rrr",
    "scenes_energy",
]


def _compose(*overrides: str):
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        return compose(config_name="train", overrides=list(overrides))


def _loss_name(cfg) -> str:
    """The ``name`` of the input loss the ``input_loss`` group puts in ``callbacks.input_loss`` ("none": none)."""
    node = cfg.callbacks.get("input_loss")
    return instantiate(node).loss.name if node else "none"


@pytest.mark.parametrize("preset", PRESETS)
def test_presets_compose(preset):
    cfg = _compose(f"experiment={preset}")
    assert cfg.task._target_ == "salguide.pipelines.classify.run_classify" and cfg.name == preset
    expected = preset.split("_")[1] if preset.split("_")[1] in ("rrr", "sgt", "energy") else "none"
    assert _loss_name(cfg) == expected
    assert cfg.data._target_.endswith(
        "DecoyDigitsDataModule" if preset.startswith("decoy") else "SyntheticScenesDataModule"
    )
    assert "forget" not in cfg.data  # the digits defaults were replaced, not merged
    assert _loss_name(_compose(f"experiment={preset}", "input_loss=sgt")) == "sgt"


def test_bad_loss_and_recipe_keys_fail_before_training(tmp_path):
    bad = "callbacks.input_loss.input_loss._target_=salguide.inputs.RRRRLoss"
    cfg = _compose("experiment=decoy_rrr", f"paths.output_dir={tmp_path}", bad, "logger=none")
    with pytest.raises(InstantiationException, match="Error locating target 'salguide.inputs.RRRRLoss'"):
        run_classify(cfg)
    cfg = _compose("experiment=decoy_rrr", f"paths.output_dir={tmp_path}", "+model.optimizer.lrr=3", "logger=none")
    with pytest.raises(
        ValueError, match=r"model: .*optimizer factory .* does not build: .*unexpected keyword argument 'lrr'"
    ):
        run_classify(cfg)
    assert not (tmp_path / "results.json").exists()


@pytest.mark.slow
def test_classify_pipeline_writes_results_figures_and_wandb_images(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    cfg = _compose(
        "experiment=scenes_rrr",
        f"paths.output_dir={tmp_path}",
        "trainer.max_epochs=2",
        "callbacks.saliency_overlays.every_n_epochs=1",
        "callbacks.explanation_metrics.num_samples=32",
        "logger=default",
        "callbacks=none",
    )
    acc = run_classify(cfg)
    row = json.loads((tmp_path / "results.json").read_text())
    assert row["test_acc"] == pytest.approx(acc) and row["input_loss"] == "rrr"
    assert {"test_deletion_auc", "test_insertion_auc", "test_pointing_game", "test_energy_in_mask"} <= set(row)
    assert (tmp_path / "results.md").read_text().startswith("| name |")
    pngs = sorted(p.name for p in (tmp_path / "saliency").glob("*.png"))
    assert pngs == ["saliency_epoch000.png", "saliency_epoch001.png"]
    assert (tmp_path / "test_saliency.png").stat().st_size > 1000
    metrics = (next((tmp_path / "csv").rglob("metrics.csv"))).read_text()
    assert (
        "val_expl/deletion_auc" in metrics and "val_expl/energy_in_mask" in metrics and "train/rrr_penalty" in metrics
    )
    media = [p for p in (tmp_path / "wandb").rglob("*.png") if "media" in p.parts]
    assert len(media) >= 3  # two epochs of overlays + the test figure
