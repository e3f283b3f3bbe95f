"""experiments/decoy_digits (run.sh + summarise.py): the summary on synthetic run folders (means, population
stds, % of clean, the saliency figure from the runs' saved models) and, slow, run.sh's QUICK mode end to end."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from hydra import compose, initialize_config_module
from hydra.utils import instantiate
from omegaconf import OmegaConf

from salguide.weights_io import save_weights

ROOT = Path(__file__).resolve().parents[2]
HERE = ROOT / "experiments" / "decoy_digits"
with initialize_config_module(config_module="salguide.configs", version_base="1.3"):
    PRESET = OmegaConf.to_container(compose(config_name="train", overrides=["experiment=decoy_vanilla"]))
DATA = yaml.safe_load((ROOT / "salguide" / "configs" / "data" / "decoy_digits.yaml").read_text())  # its data option


def _run(root: Path, variant: str, seed: int, acc: float, energy: float, older: bool = False) -> None:
    """A run folder as salguide-train leaves it: config (the preset's data and model; ``older``: in the layout of
    runs recorded before model: became the LightningModule), results, weights."""
    run = root / variant / str(seed)
    (run / ".hydra").mkdir(parents=True)
    data = {**DATA, "seed": seed}
    cfg = {
        "name": f"decoy_{variant}",
        "seed": seed,
        "task": PRESET["task"],
        "trainer": {"max_epochs": 30},
        "data": data,
        "model": PRESET["model"],
        "paths": {"output_dir": "${hydra:runtime.output_dir}"},
    }
    if older:
        cfg.update(task="classify", classify={"epochs": 30}, trainer={"max_epochs": None}, model=PRESET["model"]["net"])
    (run / ".hydra" / "config.yaml").write_text(yaml.safe_dump(cfg))
    (run / "results.json").write_text(
        json.dumps(
            {
                "name": f"decoy_{variant}",
                "seed": seed,
                "test_acc": acc,
                "test_energy_in_mask": energy,
                "test_pointing_game": 0.9,
                "test_deletion_auc": 0.2,
                "test_insertion_auc": 0.6,
                "seconds": 3.0,
            }
        )
    )
    torch.manual_seed(seed)
    save_weights(instantiate(PRESET["model"]["net"]), run / "models" / "classify.safetensors")  # the network


def test_summary_of_synthetic_runs(tmp_path):
    runs, out = tmp_path / "runs", tmp_path / "out"
    accs = {"vanilla": (55.0, 60.0), "rrr": (88.0, 90.0), "sgt": (62.0, 64.0), "clean": (89.0, 91.0)}
    for v, per_seed in accs.items():
        for seed, acc in enumerate(per_seed):
            _run(runs, v, seed, acc, 0.9 + 0.01 * seed, older=seed == 1)  # seed 1: older runs' layout
    (runs / "vanilla" / "results.json").write_text("[]")  # a sweep's combined table: not a run, skipped
    env = dict(os.environ, WANDB_MODE="offline")
    done = subprocess.run(
        [sys.executable, str(HERE / "summarise.py"), str(runs), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    doc = json.loads((out / "results.json").read_text())
    assert len(doc["rows"]) == 8 and doc["epochs"] == 30 and doc["paper"]["rrr"] == 96.07
    for v, per_seed in accs.items():
        mean, std = doc["summary"][v]["test_acc"]
        assert mean == pytest.approx(statistics.fmean(per_seed)) and std == pytest.approx(statistics.pstdev(per_seed))
    assert doc["summary"]["rrr"]["test_energy_in_mask"] == pytest.approx([0.905, 0.005])
    md = (out / "results.md").read_text()
    assert "| rrr | 89.00 +- 1.00 | 98.9 | 96.07 | 0.905 +- 0.005 |" in md  # 89 / 90 = 98.9 % of clean
    assert "| clean | 90.00 +- 1.00 | 100.0 | 96.11 |" in md
    for fig in ("accuracy.png", "saliency.png"):
        assert (out / "figures" / fig).read_bytes()[:4] == b"\x89PNG"
    assert list(runs.glob("wandb/offline-run-*")), "no offline W&B run with the results table"


def test_summary_refuses_a_foreign_preset(tmp_path):
    _run(tmp_path, "vanilla", 0, 50.0, 0.9)
    cfg = tmp_path / "vanilla" / "0" / ".hydra" / "config.yaml"
    cfg.write_text(cfg.read_text().replace("name: decoy_vanilla", "name: scenes_rrr"))
    done = subprocess.run(
        [sys.executable, str(HERE / "summarise.py"), str(tmp_path), "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0 and "'scenes_rrr' is not one of the presets" in done.stderr


@pytest.mark.slow
def test_study_quick_mode_runs(tmp_path):
    env = dict(os.environ, WANDB_MODE="offline", QUICK="1", STUDY_OUT=str(tmp_path / "out"))
    proc = subprocess.run(
        ["bash", str(HERE / "run.sh"), str(tmp_path / "runs")], capture_output=True, text=True, env=env, timeout=900
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads((tmp_path / "out" / "results.json").read_text())
    assert {r["variant"] for r in res["rows"]} == {"vanilla", "rrr", "sgt", "clean"} and res["epochs"] == 2
    assert (tmp_path / "out" / "figures" / "accuracy.png").exists()
    assert (tmp_path / "out" / "figures" / "saliency.png").exists()
    assert "| rrr |" in (tmp_path / "out" / "results.md").read_text()
