"""salguide-train on 2 CPU processes (gloo): the default experiment (SalUn) and mim_digits run end to end
under ``trainer=ddp`` (ddp_spawn), and under ``strategy=ddp`` (every rank runs the pipeline) only rank 0
prints and writes the results."""

from __future__ import annotations

import json

import pytest
from test_cli import FAST, _run


@pytest.mark.slow
def test_default_experiment_under_ddp_spawn(tmp_path):
    proc = _run(tmp_path, "trainer=ddp", *FAST)  # default loggers: CSV and offline W&B
    run = next(tmp_path.glob("outputs/unlearn_digits/runs/*"))
    rows = json.loads((run / "results.json").read_text())
    assert [r["method"] for r in rows] == ["Original", "Retrain", "SalUn"]
    assert rows[-1]["UA"] > 50  # the forget class is mostly forgotten even after one epoch
    assert (run / "mask.safetensors").stat().st_size > 0
    assert list((run / "wandb").glob("offline-run-*")) and list((run / "csv").glob("*/version_*/metrics.csv"))
    assert proc.stdout.count("| method |") == 1


@pytest.mark.slow
def test_mim_digits_under_ddp_spawn(tmp_path):
    _run(tmp_path, "experiment=mim_digits", "trainer=ddp", "trainer.max_epochs=1", "callbacks=none", "logger=csv")
    run = next(tmp_path.glob("outputs/mim_digits/runs/*"))
    row = json.loads((run / "results.json").read_text())
    assert row["masking"] == "high" and 0 <= row["test_acc"] <= 100 and row["test_recon_mse"] > 0
    assert (run / "teacher.safetensors").stat().st_size > 0  # the teacher came back from the spawned rank 0


@pytest.mark.slow
def test_only_rank_zero_prints_and_writes_under_strategy_ddp(tmp_path):
    proc = _run(
        tmp_path,
        "trainer=ddp",
        "trainer.strategy=ddp",
        "unlearning=ft",
        "original.epochs=1",
        "unlearning.epochs=1",
        "compare_to_retrain=false",
        "callbacks=none",
        "logger=csv",
    )
    assert proc.stdout.count("| method |") == 1 and proc.stdout.count("results: ") == 1
    runs = list(tmp_path.glob("outputs/unlearn_digits/runs/*"))
    assert len(runs) == 1
    assert [r["method"] for r in json.loads((runs[0] / "results.json").read_text())] == ["Original", "FT"]
    assert len(list((tmp_path / "cache").glob("original-*.safetensors"))) == 1
