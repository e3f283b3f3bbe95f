"""The stage runner: the config's evaluation extras join the test loop (and only there); a bad extra fails
before anything trains; results files and weights land in the run folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import InstantiationException

import salguide
from salguide.pipelines import run_task

CONFIGS = str(Path(salguide.__file__).parent / "configs")
QUICK = [
    "trainer.max_epochs=1",
    "logger=none",
    "callbacks=none",
    "callbacks.explanation_metrics=null",
    "callbacks.saliency_overlays=null",
    "+trainer.enable_progress_bar=false",
    "print_table=false",
]


def _run(tmp_path: Path, *overrides: str) -> dict:
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        cfg = compose(
            config_name="train",
            overrides=["experiment=decoy_vanilla", f"paths.output_dir={tmp_path}", *QUICK, *overrides],
        )
    run_task(cfg)
    return json.loads((tmp_path / "results.json").read_text())


def test_evaluation_extras_come_from_the_config(tmp_path):
    scored = _run(tmp_path / "with")
    assert {"test_deletion_auc", "test_insertion_auc", "test_pointing_game", "test_energy_in_mask"} <= set(scored)
    assert 0 <= scored["test_energy_in_mask"] <= 1 and 0 <= scored["test_acc"] <= 100
    plain = _run(tmp_path / "without", "evaluation.explanations=null")
    assert not any(k.startswith("test_") and k != "test_acc" for k in plain)
    assert plain["test_acc"] == scored["test_acc"]  # the extras observe: same model, same accuracy
    assert (tmp_path / "with" / "models" / "classify.safetensors").is_file()


def test_a_bad_extra_fails_before_anything_trains(tmp_path):
    with pytest.raises(InstantiationException, match="salguide.evaluation.Nothing"):
        _run(tmp_path, "+evaluation.bad._target_=salguide.evaluation.Nothing")
    assert not (tmp_path / "models").exists() and not (tmp_path / "results.json").exists()
