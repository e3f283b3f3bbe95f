"""experiments/attention_masking (run.sh + summarise.py): the summary re-evaluates synthetic run folders
(saved student and teacher weights) against metrics computed here directly; slow: run.sh's QUICK mode."""

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

from salguide.data import DigitsDataModule
from salguide.models.mim import MaskedReconstructionModule
from salguide.models.vit import vit_digits
from salguide.weights_io import save_weights

HERE = Path(__file__).resolve().parents[2] / "experiments" / "attention_masking"
DATA = {
    "_target_": "salguide.data.DigitsDataModule",
    "batch_size": 16,
    "image_size": 32,
    "test_fraction": 0.2,
    "forget": None,
    "num_workers": 0,
}
MASKING = {
    "random": {"mode": "random"},
    "attmask_high": {"mode": "high"},
    "acmil": {"mode": "acmil", "top_k": None, "drop_prob": 0.75},
}


# the mim_vit_digits model option: the MaskedReconstructionModule over the digits ViT
MODEL = {
    "_target_": "salguide.models.mim.MaskedReconstructionModule",
    "net": {"_target_": "salguide.models.vit_digits"},
    "optimizer": {"_target_": "torch.optim.AdamW", "_partial_": True, "lr": 1e-3, "weight_decay": 0.05},
    "recon_weight": 1.0,
}
# the same run in the layout of runs recorded before model: became the LightningModule
OLDER = {
    "model": {"_target_": "salguide.models.vit.vit_digits"},
    "classify": {"epochs": 20, "lr": 1e-3},
    "mim": {"recon_weight": 1.0},
    "trainer": {"max_epochs": None},
}


def _run(root: Path, option: str, seed: int, older: bool = False) -> MaskedReconstructionModule:
    run = root / option / str(seed)
    (run / ".hydra").mkdir(parents=True)
    mcfg = {
        "_target_": "salguide.callbacks.AttentionMaskingCallback",
        **MASKING[option],
        "ratio": 0.5,
        "ratio_start": 0.1,
        "ratio_steps": 600,
        "layer": -1,
        "ema": 0.99,
        "seed": "${seed}",
        "save_teacher_to": "${paths.output_dir}/teacher.safetensors",
    }
    cfg = {
        "name": "mim_digits",
        "seed": seed,
        "data": {**DATA, "seed": seed},
        "task": {"_target_": "salguide.pipelines.attention.run_attention", "_partial_": True},
        "model": MODEL,
        "trainer": {"max_epochs": 20},
        "callbacks": {"attention_masking": mcfg},
        "paths": {"output_dir": "${hydra:runtime.output_dir}"},
    }
    if older:
        cfg = {**{k: v for k, v in cfg.items() if k not in ("task", "model", "trainer")}, "task": "attention", **OLDER}
    (run / ".hydra" / "config.yaml").write_text(yaml.safe_dump(cfg))
    (run / "results.json").write_text(
        json.dumps(
            {
                "name": "mim_digits",
                "masking": mcfg["mode"],
                "seed": seed,
                "test_acc": 0.0,
                "test_recon_mse": 0.0,
                "seconds": 100.0 + seed,
            }
        )
    )
    torch.manual_seed(100 * seed + len(option))
    module = MaskedReconstructionModule(vit_digits())
    save_weights(module, run / "models" / "mim.safetensors")
    torch.manual_seed(7 + seed)
    save_weights(vit_digits(), run / "teacher.safetensors")
    return module


@torch.no_grad()
def test_summary_re_evaluates_the_saved_models(tmp_path):
    runs, out = tmp_path / "runs", tmp_path / "out"
    modules = {(o, s): _run(runs, o, s, older=s == 1) for o in MASKING for s in (0, 1)}  # seed 1: older runs
    done = subprocess.run(
        [sys.executable, str(HERE / "summarise.py"), str(runs), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        env=dict(os.environ, WANDB_MODE="offline"),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    doc = json.loads((out / "results.json").read_text())
    assert set(doc["per_seed"]) == set(MASKING)
    assert doc["seeds"] == [0, 1] and doc["ratio_steps"] == 600 and doc["batch_size"] == 16 and doc["epochs"] == 20
    assert {r["epochs"] for r in doc["rows"]} == {20}
    for seed in (0, 1):  # the clean accuracy of the saved student, computed directly on the seed's test split
        dm = DigitsDataModule(batch_size=16, image_size=32, seed=seed, forget=None)
        dm.setup("fit")
        x, y = (torch.cat(t) for t in zip(*[(b[0], b[1]) for b in dm.test_dataloader()]))
        assert len(x) == 360
        for option in MASKING:
            module = modules[(option, seed)].eval()
            acc = 100.0 * float((module(x).argmax(-1) == y).float().mean())
            assert doc["per_seed"][option]["acc_clean"][seed] == pytest.approx(acc, abs=1e-4)
    # top-k modes hide exactly ratio x 64 patches; ACMIL hides round(0.5 * 64 / 0.75) = 43 patches w.p. 0.75
    assert doc["per_seed"]["attmask_high"]["hidden_own"] == [32.0, 32.0]
    assert doc["per_seed"]["random"]["hidden_own"] == [32.0, 32.0]
    assert 28 < statistics.mean(doc["per_seed"]["acmil"]["hidden_own"]) < 36
    # shared random masks are the same for every mode of one seed: random vs high differ only by their models
    high = doc["per_seed"]["attmask_high"]["att_hidden"]
    assert all(0.5 <= a <= 1.0 for a in high)  # the 32 most attended of 64 patches hold at least half the mass
    md = (out / "results.md").read_text()
    assert md.index("| random |") < md.index("| attmask_high |") < md.index("| acmil |")  # the table's order
    acc0 = doc["per_seed"]["random"]["acc_clean"]
    assert f"{statistics.mean(acc0):.2f} +- {statistics.pstdev(acc0):.2f}" in md.split("| random |")[1].splitlines()[0]
    for png in ("results_bars.png", "masks.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"


def test_refuses_a_run_without_its_teacher(tmp_path):
    _run(tmp_path, "random", 0)
    (tmp_path / "random" / "0" / "teacher.safetensors").unlink()
    done = subprocess.run(
        [sys.executable, str(HERE / "summarise.py"), str(tmp_path), "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode != 0 and "no teacher.safetensors (not a finished mim_digits run)" in done.stderr


@pytest.mark.slow
def test_study_quick_mode_runs(tmp_path):
    env = dict(
        os.environ, WANDB_MODE="offline", QUICK="1", STUDY_OUT=str(tmp_path / "out"), MODES="random attmask_hint acmil"
    )
    proc = subprocess.run(
        ["bash", str(HERE / "run.sh"), str(tmp_path / "runs")], capture_output=True, text=True, env=env, timeout=1200
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads((tmp_path / "out" / "results.json").read_text())
    assert set(doc["per_seed"]) == {"random", "attmask_hint", "acmil"} and doc["epochs"] == 1
    assert doc["ratio_start"] == 0.1 and doc["ratio_steps"] == 30
