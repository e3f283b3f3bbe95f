"""The config matrix: every option of every config group and every ``experiment/`` preset composes and
builds the objects its pipeline builds (nothing trained); and every preset runs end to end through the
real entry point (``salguide.train.main``, Hydra and all) with ``trainer.fast_dev_run=true``.

Presets on Fashion-MNIST and CIFAR-10 read small files generated here in the real formats (IDX, python
pickled batches), so no data set needs to be installed."""

from __future__ import annotations

import json
import logging
import pickle
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_module
from hydra.utils import instantiate
from omegaconf import OmegaConf

CONFIGS = Path(__file__).resolve().parents[1] / "salguide" / "configs"
sys.path.insert(0, str(Path(__file__).resolve().parent / "data"))
from idx_helpers import make_idx_dir  # noqa: E402

GROUPS = sorted(p.name for p in CONFIGS.iterdir() if p.is_dir() and not p.name.startswith("_"))
OPTIONS = [(g, p.stem) for g in GROUPS for p in sorted((CONFIGS / g).glob("*.yaml"))]
PRESETS = [o for g, o in OPTIONS if g == "experiment"]
# groups that only presets put in the defaults list, and a preset that has each
HOSTS = {
    "input_loss": "decoy_vanilla",
    "attention_loss": "attn_scenes_vanilla",
    "token_policy": "prune_digits_evit",
    "attention_masking": "mim_digits",
    "diffusion_unlearning": "unlearn_ddpm_digits",
}
# what keeps each task's preset run at seconds, beyond fast_dev_run (evaluation sizes, not the recipe)
TASK_OVERRIDES = {
    "unlearn_diffusion": [
        "generation.per_class=2",
        "generation.steps=2",
        "generation.grid_per_class=1",
        "judge.epochs=1",
    ],
    "classify": ["callbacks.explanation_metrics.num_samples=8", "callbacks.saliency_overlays.num_images=2"],
}


def _compose(*overrides: str):
    with initialize_config_module(config_module="salguide.configs", version_base="1.3"):
        return compose(config_name="train", overrides=list(overrides))


def _write_cifar(root: Path) -> Path:
    """The six python batches of CIFAR-10 (``data_batch_1..5``, ``test_batch``), 10 images each."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {
            b"batch_label": name.encode(),
            b"labels": list(range(10)),
            b"data": rng.integers(0, 256, size=(10, 3072), dtype=np.uint8),
            b"filenames": [f"{name}_{i}.png".encode() for i in range(10)],
        }
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f, protocol=2)
    return root


@pytest.fixture(scope="module")
def data_dirs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("data")
    make_idx_dir(root / "fashion", per_class=(8, 3))
    return {"FashionMNIST": root / "fashion", "CIFAR10": _write_cifar(root / "cifar")}


def data_overrides(preset: str, dirs: dict[str, Path]) -> list[str]:
    """``data.data_dir=`` the generated files for presets whose data module reads files."""
    data = _compose(f"experiment={preset}").data
    target = data._target_
    out = [
        f"data.data_dir={d}"
        for key, d in dirs.items()
        if target.endswith((f".{key}DataModule", f".Decoy{key}DataModule"))
    ]
    out += [f"data.{k}=null" for k in ("train_size", "test_size") if data.get(k) is not None]  # all of the tiny files
    return out + (["data.num_workers=0", "data.batch_size=8"] if "CIFAR" in target else [])


def test_the_matrix_sees_every_group_and_preset():
    assert {"data", "model", "trainer", "logger", "callbacks", "saliency", "unlearning", "experiment"} <= set(GROUPS)
    assert set(HOSTS) <= set(GROUPS)
    assert len(PRESETS) >= 29 and {"unlearn_digits", "mim_digits", "unlearn_ddpm_digits"} <= set(PRESETS)


def build_group(group: str, cfg: Any) -> list[Any]:
    """The objects the pipeline builds from ``group``'s node (before any training)."""
    from salguide.pipelines.unlearn import mask_builder, method_from, retrain_spec

    node = OmegaConf.to_container(cfg[group], resolve=True) if cfg.get(group) is not None else None
    if group in ("data", "model"):
        return [instantiate(cfg[group])]
    if group == "callbacks":
        from salguide.pipelines.stages import stage_callbacks

        return stage_callbacks(cfg, "stage")
    if group == "logger":
        return [instantiate(v) for v in (node or {}).values()]
    if group == "trainer":
        from salguide._lightning import pl
        from salguide.pipelines.stages import trainer_kwargs

        kwargs = trainer_kwargs(cfg)
        if kwargs.get("accelerator") == "gpu" and not torch.cuda.is_available():
            kwargs["accelerator"] = "cpu"  # the GPU option's other settings still reach a real Trainer
        return [pl.Trainer(**kwargs, logger=False)]
    if group == "saliency":
        return [mask_builder(cfg.saliency, datamodule=None)]
    if group == "unlearning":
        return [method_from(cfg), retrain_spec(cfg)]
    if group in ("input_loss", "attention_loss", "token_policy", "attention_masking"):  # callbacks.<group>
        node = cfg.callbacks.get(group)
        return [instantiate(node) if node else None]
    if group == "diffusion_unlearning":
        keys = ("objective", "mask", "optimizer", "scheduler")
        return [instantiate(cfg[group][k]) for k in keys if cfg[group].get(k) is not None]
    if group == "paths":
        return [node]
    raise AssertionError(f"the matrix does not know how to build group {group!r}: add it here")


@pytest.mark.parametrize("group,option", [o for o in OPTIONS if o[0] != "experiment"])
def test_every_group_option_composes_and_builds(group, option, data_dirs, tmp_path):
    host = [f"experiment={HOSTS[group]}"] if group in HOSTS else []
    extra = (
        [f"data.data_dir={data_dirs['CIFAR10' if option == 'cifar10' else 'FashionMNIST']}"]
        if group == "data" and option in ("cifar10", "fashion_mnist", "mnist")
        else []
    )
    cfg = _compose(*host, f"{group}={option}", *extra, f"paths.output_dir={tmp_path}")
    built = build_group(group, cfg)
    assert built or option in ("none", "retrain"), f"{group}={option} built nothing"
    if group == "data":
        dm = built[0]
        dm.setup("fit")
        assert len(dm.train_dataset) > 0
    if group == "model":
        assert sum(p.numel() for p in built[0].parameters()) > 0
    if group in ("input_loss", "attention_loss", "token_policy", "attention_masking"):
        assert (built[0] is None) == (option == "none")


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_composes_and_builds(preset, data_dirs, tmp_path):
    cfg = _compose(f"experiment={preset}", *data_overrides(preset, data_dirs), f"paths.output_dir={tmp_path}")
    from salguide.configs import check_config

    check_config(cfg)
    assert cfg.name == preset
    for group in (
        "data",
        "model",
        "callbacks",
        *(g for g in HOSTS if cfg.get(g) is not None or g in (cfg.get("callbacks") or {})),
    ):
        assert isinstance(build_group(group, cfg), list), group


@pytest.mark.slow
@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_runs_with_fast_dev_run(preset, data_dirs, tmp_path, monkeypatch):
    """``salguide-train experiment=<preset> trainer.fast_dev_run=true``: one batch per loop in every stage,
    results written."""
    from salguide.train import main

    task = _compose(f"experiment={preset}").task._target_.split(".")[2]  # salguide.pipelines.<task>.run_*
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SALGUIDE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("SALGUIDE_OUTPUT_DIR", str(tmp_path / "outputs"))
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")  # raise, not sys.exit(1), on a failure
    args = [
        f"experiment={preset}",
        "trainer.fast_dev_run=true",
        "logger=csv",
        *data_overrides(preset, data_dirs),
        *TASK_OVERRIDES.get(task, []),
    ]
    monkeypatch.setattr(sys, "argv", ["salguide-train", *args])
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        main()
    finally:  # Hydra pointed the root logger at the run's train.log: give the next test its own logging back
        for handler in root.handlers:
            if handler not in handlers:
                handler.close()
        root.handlers[:] = handlers
        root.setLevel(level)
    runs = list((tmp_path / "outputs" / preset / "runs").iterdir())
    assert len(runs) == 1
    results = json.loads((runs[0] / "results.json").read_text())
    if isinstance(results, list):  # unlearning: the original first, then the method (and Retrain)
        assert results[0]["method"] == "Original" and len(results) >= 2, results
    else:
        assert 0 <= results["test_acc"] <= 100, results
    assert list((runs[0] / "models").glob("*.safetensors")), f"{preset}: no model saved"
