"""task=unlearn_diffusion in-process on a tiny UNet: results, grids, cache reuse; bad inputs fail before training."""

import json

import pytest
from hydra import compose, initialize_config_module
from omegaconf import open_dict

from salguide.pipelines import run_task

TINY = [
    "model.net.block_out_channels=[8,16]",
    "model.net.norm_num_groups=4",
    "model.num_train_timesteps=20",
    "model.net.attention=false",
    "original.epochs=1",
    "judge.epochs=1",
    "judge.width=4",
    "generation.per_class=3",
    "generation.steps=2",
    "generation.grid_per_class=2",
    "diffusion_unlearning.epochs=1",
    "logger=none",
    "callbacks=none",
    "+trainer.limit_val_batches=0",
    "+trainer.enable_progress_bar=false",
    "print_table=false",
]


def _cfg(tmp_path, *overrides):
    with initialize_config_module(config_module="salguide.configs", version_base="1.3"):
        cfg = compose(config_name="train", overrides=["experiment=unlearn_ddpm_digits", *TINY, *overrides])
    with open_dict(cfg):
        cfg.paths.output_dir, cfg.paths.cache_dir = str(tmp_path / "run"), str(tmp_path / "cache")
    return cfg


def test_salun_end_to_end_then_cached(tmp_path):
    run_task(_cfg(tmp_path, "diffusion_unlearning.mask.ratio=0.3"))
    out = tmp_path / "run"
    rows = json.loads((out / "results.json").read_text())
    assert [r["method"] for r in rows] == ["Original", "Retrain", "SalUn"]
    assert all(0 <= r["UA"] <= 100 and 0 <= r["Acc_r"] <= 100 and r["FD"] >= 0 for r in rows)
    assert "FD (judge)" in (out / "results.md").read_text()
    assert {p.name for p in out.glob("samples_*.png")} == {
        "samples_Original.png",
        "samples_Retrain.png",
        "samples_SalUn.png",
    }
    assert (out / "mask.safetensors").is_file()
    stages = {"original", "retrain", "SalUn"}  # every stage's weights and its Lightning checkpoint in the run folder
    assert {p.name for p in (out / "models").iterdir()} == {f"{s}.safetensors" for s in stages}
    assert {p.name for p in (out / "checkpoints").iterdir()} == {f"{s}.ckpt" for s in stages}
    cached = sorted(p.name.split("-")[1] for p in (tmp_path / "cache").glob("*.safetensors"))
    assert cached == ["judge", "original", "retrain"]
    stamp = {p: p.stat().st_mtime_ns for p in (tmp_path / "cache").iterdir()}
    run_task(_cfg(tmp_path, "diffusion_unlearning=ant", "diffusion_unlearning.mask.seeds=[0,1]", "logger=csv"))
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "cache").iterdir()} == stamp  # cache reused
    assert sorted(p.name for p in (out / "csv").iterdir()) == ["ANT", "results"]  # no logger runs for cached stages
    assert json.loads((out / "results.json").read_text())[-1]["method"] == "ANT"
    run_task(_cfg(tmp_path, "diffusion_unlearning=retrain"))  # the cached reference is the method: one row each
    assert [r["method"] for r in json.loads((out / "results.json").read_text())] == ["Original", "Retrain"]


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["model.net.num_classes=5"], "class 9 is outside the model's classes 0..4"),
        (["data.forget_class=11"], "forget split is empty: class 11 is not in the training set"),
        (
            ["diffusion_unlearning=ant", "diffusion_unlearning.objective.t_split=40"],
            "t_split=40 must lie strictly inside",
        ),
        (["diffusion_unlearning.objective.t_range=[0,30]"], "lies outside the schedule"),
        (["generation.guidance_scale=0"], "generation.guidance_scale must be a number > 0"),
        (["diffusion_unlearning=esd", "diffusion_unlearning.objective.eta=-1"], "eta must be a number > 0"),
        (["init_from=model.safetensors"], "task=unlearn_diffusion does not support init_from"),
        (["data.image_size=12"], r"images \(1, 12, 12\) do not match the model's sample shape \(1, 16, 16\)"),
        (["diffusion_unlearning.optimizer.lr=0"], "diffusion_unlearning.optimizer.lr must be a number > 0, got 0"),
        (["model.optimizer.weight_decay=-1"], "model.optimizer.weight_decay must be a number >= 0, got -1"),
        (["model.net.sample_size=0"], "model.net.sample_size must be an integer >= 1, got 0"),
        (["diffusion_unlearning.optimizer=null"], "diffusion_unlearning.optimizer must be"),
    ],
)
def test_bad_inputs_fail_before_anything_is_trained_or_written(tmp_path, overrides, message):
    overrides = [("+" + o if "t_range" in o or "t_split" in o else o) for o in overrides]
    with pytest.raises(ValueError, match=message):
        run_task(_cfg(tmp_path, *overrides))
    cache = tmp_path / "cache"
    assert not cache.exists() or not any(cache.iterdir())
    assert not (tmp_path / "run" / "results.json").exists()
