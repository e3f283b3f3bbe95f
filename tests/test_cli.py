"""salguide-train: config composition, end-to-end runs, multirun, and Hydra's errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from hydra.utils import instantiate

CONFIGS = Path(__file__).resolve().parents[1] / "salguide" / "configs"
GROUPS = ["data", "model", "trainer", "logger", "callbacks", "saliency", "unlearning", "experiment"]
OPTIONS = [(g, p.stem) for g in GROUPS for p in sorted((CONFIGS / g).glob("*.yaml"))]
FAST = ["original.epochs=2", "unlearning.epochs=1", "retrain.epochs=2", "callbacks=none"]


def _compose(*overrides: str):
    with initialize_config_module(config_module="salguide.configs", version_base="1.3"):
        return compose(config_name="train", overrides=list(overrides), return_hydra_config=True)


def test_option_list_is_complete():
    assert {"retrain", "ft", "ga", "rl", "l1_sparse", "salun"} <= {o for g, o in OPTIONS if g == "unlearning"}
    assert {"unlearn_digits", "decoy_rrr", "decoy_sgt"} <= {o for g, o in OPTIONS if g == "experiment"}


@pytest.mark.parametrize("group,option", OPTIONS)
def test_every_group_option_composes(group, option):
    cfg = _compose(f"{group}={option}")
    pipelines = ("unlearn.run_unlearning", "classify.run_classify", "attention.run_attention", "unlearn_diffusion.")
    assert cfg.task._partial_ and cfg.task._target_.startswith(tuple(f"salguide.pipelines.{p}" for p in pipelines))
    if group == "experiment" and option.startswith(("decoy", "scenes")):
        assert cfg.task._target_.endswith("run_classify") and "input_loss" in cfg.callbacks
    if group == "unlearning":
        assert instantiate(cfg.unlearning).key == option
    if group == "experiment" and option == "unlearn_digits_random":
        assert cfg.data.forget == "random" and cfg.name == "unlearn_digits_random"


def test_default_config_builds_digits_and_cnn():
    cfg = _compose()
    dm = instantiate(cfg.data)
    dm.setup("fit")
    assert dm.num_classes == 10 and len(dm.forget_dataset) > 0
    assert all(int(y) == 0 for _, y in dm.forget_dataset)  # class-wise forgetting of digit 0
    model = instantiate(cfg.model)
    x, _ = dm.train_dataset[0]
    assert model(x[None]).shape == (1, 10)


def _run(tmp_path: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ, SALGUIDE_CACHE_DIR=str(tmp_path / "cache"), WANDB_MODE="offline", WANDB_SILENT="true")
    proc = subprocess.run(
        [sys.executable, "-m", "salguide.train", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"salguide-train failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


def _single_run_dir(root: Path) -> Path:
    runs = sorted(root.glob("outputs/unlearn_digits/runs/*"))
    assert len(runs) >= 1, f"no run directory under {root}"
    return runs[-1]


@pytest.mark.slow
def test_end_to_end_salun_with_wandb_offline_and_cache(tmp_path):
    proc = _run(tmp_path, *FAST)
    run = _single_run_dir(tmp_path)
    rows = json.loads((run / "results.json").read_text())
    methods = [r["method"] for r in (rows["rows"] if isinstance(rows, dict) else rows)]
    assert methods == ["Original", "Retrain", "SalUn"]
    for name in ("results.md", "mask.safetensors", "mask_sparsity.png", "metrics_vs_retrain.png"):
        assert (run / name).stat().st_size > 0, name
    assert "| SalUn" in proc.stdout and "Avg.Gap" in proc.stdout
    assert list((run / "csv").glob("*/version_*/metrics.csv")), "no CSV logs"
    assert list((run / "wandb").glob("offline-run-*")), "no offline W&B runs"
    cached = list((tmp_path / "cache").glob("original-*.safetensors"))
    assert len(cached) == 1
    # every stage's model in the run folder: safetensors weights and the Lightning checkpoint
    for stage in ("original", "retrain", "salun"):
        assert (run / "models" / f"{stage}.safetensors").stat().st_size > 0, stage
        assert (run / "checkpoints" / f"{stage}.ckpt").stat().st_size > 0, stage
    # the resolved config is every logger's hyper-parameters (CSV: hparams.yaml; W&B: the run config)
    hparams = (run / "csv" / "salun" / "version_0" / "hparams.yaml").read_text()
    for line in ("name: SalUn", "ratio: 0.5", "scope: global", "seed: 0", "forget: class", "stage: salun"):
        assert line in hparams, line

    # a second run reuses the cached original and Retrain models, opens no logger run for them and
    # labels the Retrain run time as cached
    proc2 = _run(tmp_path, *FAST, "logger=csv")
    assert "loaded from" in proc2.stderr + proc2.stdout
    assert len(list((tmp_path / "cache").glob("original-*.safetensors"))) == 1
    run2 = _single_run_dir(tmp_path)
    assert sorted(p.name for p in (run2 / "csv").iterdir()) == ["salun"]
    assert (run2 / "models" / "original.safetensors").exists() and not (run2 / "checkpoints" / "original.ckpt").exists()
    assert "(cached)" in next(line for line in proc2.stdout.splitlines() if line.startswith("| Retrain"))


@pytest.mark.slow
def test_multirun_sweeps_methods(tmp_path):
    proc = _run(
        tmp_path, "-m", "unlearning=ft,ga", *FAST, "logger=none", "compare_to_retrain=false", "saliency.ratio=0.3"
    )
    results = sorted(tmp_path.glob("outputs/unlearn_digits/multiruns/*/*/results.json"))
    assert len(results) == 2
    for method in ("FT", "GA"):  # neither uses a weight mask: the saliency override is named as ignored
        assert f"saliency.ratio=0.3: no effect, {method} trains without a weight mask" in proc.stdout + proc.stderr
    # one combined table for the sweep, and mean ± std per method
    sweep = results[0].parents[1]
    combined = json.loads((sweep / "results.json").read_text())
    assert [(r["job"], r["method"]) for r in combined] == [
        ("0", "Original"),
        ("0", "FT"),
        ("1", "Original"),
        ("1", "GA"),
    ]
    summary = (sweep / "summary.md").read_text()
    assert "| FT | 1 |" in summary and "| GA | 1 |" in summary and "| Original | 1 |" in summary


def test_user_overrides_of_a_group():
    from hydra.core.hydra_config import HydraConfig

    from salguide.pipelines.stages import user_overrides

    assert user_overrides("saliency") == []  # outside a Hydra run
    cfg = _compose("unlearning=ft", "saliency=ant", "saliency.ratio=0.3", "+saliency.extra=1", "seed=1")
    HydraConfig.instance().set_config(cfg)
    try:
        assert user_overrides("saliency") == ["saliency=ant", "saliency.ratio=0.3", "+saliency.extra=1"]
        assert user_overrides("unlearning") == ["unlearning=ft"] and user_overrides("data") == []
    finally:
        HydraConfig.instance().cfg = None


def test_unknown_group_option_is_hydras_clear_error(tmp_path):
    proc = _run(tmp_path, "unlearning=foo", check=False)
    assert proc.returncode != 0
    assert "Could not find 'unlearning/foo'" in proc.stderr
    assert "Available options" in proc.stderr and "salun" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_bad_method_value_fails_before_training(tmp_path):
    proc = _run(tmp_path, "unlearning.optimizer.lr=-1", "logger=none", check=False)
    assert proc.returncode != 0
    assert "unlearning.optimizer.lr must be a number > 0, got -1" in proc.stderr
    assert not (tmp_path / "cache").exists()  # nothing trained, nothing cached


@pytest.mark.parametrize("key", ["model.optimizer", "unlearning.optimizer", "model.scheduler"])
def test_bad_optimizer_factory_fails_before_training(tmp_path, key):
    proc = _run(tmp_path, f"{key}._target_=torch.optim.Nope", "logger=none", check=False)
    assert proc.returncode != 0
    assert f"{key.split('.')[0]}" in proc.stderr and "torch.optim.Nope" in proc.stderr
    assert not (tmp_path / "cache").exists()
