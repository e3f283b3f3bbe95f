"""experiments/token_pruning (run.sh + summarise.py) on synthetic run folders: accuracy per seed, paired
differences to the unpruned run of the same seed, the keep-0.7 goal, the throughput table; slow: QUICK mode."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

HERE = Path(__file__).resolve().parents[2] / "experiments" / "token_pruning"
DATA = {
    "_target_": "salguide.data.DigitsDataModule",
    "batch_size": 64,
    "image_size": 32,
    "test_fraction": 0.2,
    "forget": None,
    "num_workers": 0,
}


def _run(root: Path, policy: str, keep: float, seed: int, acc: float) -> None:
    """A run folder as salguide-train leaves it; seed 2's in the layout of runs recorded before the epochs moved
    from classify: to trainer:."""
    run = root / policy / f"{keep}-{seed}"
    (run / ".hydra").mkdir(parents=True)
    tp = {} if policy == "none" else {"token_policy": {"warmup_steps": 230, "policy": {"layers": [1, 2], "keep": keep}}}
    cfg = {
        "name": f"prune_digits_{policy}",
        "seed": seed,
        "data": {**DATA, "seed": seed},
        "task": {"_target_": "salguide.pipelines.attention.run_attention", "_partial_": True},
        "trainer": {"max_epochs": 30},
        "callbacks": tp,
        "paths": {"output_dir": "${hydra:runtime.output_dir}"},
    }
    if seed == 2:
        cfg.update(task="attention", trainer={"max_epochs": None}, classify={"epochs": 30})
    (run / ".hydra" / "config.yaml").write_text(yaml.safe_dump(cfg))
    (run / "results.json").write_text(
        json.dumps({"name": cfg["name"], "token_policy": policy, "seed": seed, "test_acc": acc, "seconds": 60.0})
    )


def _summarise(runs: Path, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(HERE / "summarise.py"), str(runs), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, WANDB_MODE="offline"),
    )


def test_paired_differences_goal_and_throughput(tmp_path):
    runs, out = tmp_path / "runs", tmp_path / "out"
    base = {0: 93.0, 1: 94.0, 2: 95.0}
    for seed, b in base.items():
        _run(runs, "none", 1.0, seed, b)
        _run(runs, "evit", 0.7, seed, b - 0.2)  # -0.2 on every seed: goal met
        _run(runs, "evit", 0.5, seed, b - 1.0 + seed)  # -1, 0, +1
        _run(runs, "tome", 0.7, seed, b - 1.0)  # -1: goal missed by 0.5
    bench = {
        "batch": 128,
        "steps": 30,
        "warmup": 5,
        "repeats": 3,
        "dtype": "fp32",
        "device_name": "CPU (2 threads)",
        "torch": "2.x",
        "rows": [
            {
                "policy": "evit",
                "keep": 0.7,
                "tokens": [65, 47, 35, 35],
                "train_img_s": 931.0,
                "train_ratio": 1.42,
                "train_flop_ratio": 1.36,
                "infer_img_s": 2629.0,
                "infer_ratio": 1.2,
                "infer_flop_ratio": 1.36,
            }
        ],
    }
    (runs / "throughput.json").write_text(json.dumps(bench))
    done = _summarise(runs, out)
    assert done.returncode == 0, done.stderr[-3000:]
    doc = json.loads((out / "results.json").read_text())
    assert doc["accuracy"]["evit@0.7"] == {"0": 92.8, "1": 93.8, "2": 94.8}
    assert doc["n_test"] == 360 and doc["epochs"] == 30 and doc["seeds"] == [0, 1, 2] and doc["warmup_steps"] == 230
    by = {r["run"]: r for r in doc["summary"]}
    assert [r["run"] for r in doc["summary"]] == ["none@1.0", "evit@0.7", "evit@0.5", "tome@0.7"]
    assert by["none@1.0"]["mean"] == pytest.approx(94.0) and by["none@1.0"]["std"] == pytest.approx(1.0)
    assert by["evit@0.7"]["diff"] == pytest.approx([-0.2] * 3) and by["evit@0.7"]["diff_std"] == pytest.approx(0.0)
    assert by["evit@0.5"]["diff_mean"] == pytest.approx(0.0)
    assert by["evit@0.5"]["diff_std"] == pytest.approx(statistics.stdev([-1.0, 0.0, 1.0]))
    md = (out / "results.md").read_text()
    assert "| evit@0.7 | 92.80, 93.80, 94.80 | 93.80 +- 1.00 | -0.20 +- 0.00 | met |" in md
    assert "| tome@0.7 | 92.00, 93.00, 94.00 | 93.00 +- 1.00 | -1.00 +- 0.00 | missed by 0.50 |" in md
    assert "| evit | 0.7 | [65, 47, 35, 35] | 931 | 1.42 | 1.36 | 2629 | 1.20 | 1.36 |" in md
    assert (out / "results_accuracy.png").read_bytes()[:4] == b"\x89PNG"
    assert list(runs.glob("wandb/offline-run-*")), "no offline W&B run with the results table"


def test_needs_the_unpruned_run(tmp_path):
    _run(tmp_path, "evit", 0.7, 0, 90.0)
    done = _summarise(tmp_path, tmp_path / "out")
    assert done.returncode != 0 and "no unpruned run (token_policy=none)" in done.stderr


@pytest.mark.slow
def test_study_quick_mode_runs(tmp_path):
    env = dict(os.environ, WANDB_MODE="offline", QUICK="1", STUDY_OUT=str(tmp_path / "out"))
    proc = subprocess.run(
        ["bash", str(HERE / "run.sh"), str(tmp_path / "runs")], capture_output=True, text=True, env=env, timeout=1200
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads((tmp_path / "out" / "results.json").read_text())
    assert set(doc["accuracy"]) == {
        "none@1.0",
        *(f"{p}@{k}" for p in ("evit", "dynamicvit", "tome") for k in (0.7, 0.5)),
    }
    assert doc["epochs"] == 2 and doc["warmup_steps"] == 15 and len(doc["throughput"]) == 9
