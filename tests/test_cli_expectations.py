"""What a Lightning / Hydra user expects of salguide-train: epochs in trainer:, a non-zero exit on SIGTERM
with nothing half-written, method names from the config, the user's own model as the starting point,
an app help, stage names in the progress bar and one table for a sweep."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf, open_dict

from salguide.configs import check_config
from salguide.models import SmallCNN
from salguide.pipelines import apply_max_epochs, run_task
from salguide.pipelines.stages import run_epochs, stage_callbacks
from salguide.pipelines.unlearn import method_label
from salguide.sweep import unlearning_summary, write_sweep_results
from salguide.unlearning import method_spec
from salguide.weights_io import save_weights


def _compose(*overrides: str):
    with initialize_config_module(config_module="salguide.configs", version_base="1.3"):
        return compose(config_name="train", overrides=list(overrides))


def _env(tmp_path: Path) -> dict[str, str]:
    return dict(os.environ, SALGUIDE_CACHE_DIR=str(tmp_path / "cache"), WANDB_MODE="offline", WANDB_SILENT="true",
                OMP_NUM_THREADS="1")  # fmt: skip


@pytest.mark.parametrize("preset", ["unlearn_digits", "decoy_rrr", "prune_digits_evit", "unlearn_ddpm_digits"])
def test_trainer_max_epochs_sets_every_stage(preset):
    cfg = _compose(f"experiment={preset}", "trainer.max_epochs=2")
    check_config(cfg)
    apply_max_epochs(cfg)
    recipes = [k for k in ("original", "unlearning", "diffusion_unlearning", "judge") if k in cfg]
    assert all(cfg[k].epochs == 2 for k in recipes)
    if not recipes:  # a single-stage task trains for trainer.max_epochs itself; its preset sets it
        assert run_epochs(cfg) == 2 and run_epochs(_compose(f"experiment={preset}")) == 30
    untouched = _compose(f"experiment={preset}")
    apply_max_epochs(untouched)  # null: every stage keeps its own epochs
    assert all(untouched[k].epochs == _compose(f"experiment={preset}")[k].epochs for k in recipes)


def test_trainer_max_epochs_is_validated():
    with pytest.raises(ValueError, match="trainer.max_epochs must be an integer >= 1 or null, got 0"):
        check_config(_compose("trainer.max_epochs=0"))


def test_method_names_come_from_the_config():
    salun = method_spec("salun")
    assert method_label(_compose("saliency=ant"), salun) == "ANT"
    assert method_label(_compose("saliency=salun"), salun) == "SalUn"
    assert method_label(_compose("saliency=ant"), method_spec("ft")) == "FT"  # no mask, the method's own name


def test_progress_bar_names_its_stage(tmp_path):
    cfg = _compose()
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path)
    callbacks = stage_callbacks(cfg, "retrain", tmp_path / "checkpoints")
    bar = next(c for c in callbacks if type(c).__name__ == "StageProgressBar")
    assert bar.stage == "retrain"
    checkpoint = next(c for c in callbacks if type(c).__name__ == "ModelCheckpoint")
    assert checkpoint.dirpath == str(tmp_path / "checkpoints") and checkpoint.filename == "retrain"


def test_app_help_opens_with_usage_and_groups(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "salguide.train", "--help"], capture_output=True, text=True,
                          env=_env(tmp_path), cwd=tmp_path, timeout=120)  # fmt: skip
    assert proc.returncode == 0
    assert proc.stdout.startswith("salguide-train: saliency-guided training")
    for text in ("trainer.max_epochs=2", "init_from=", "ckpt_path=", "== Config groups", "unlearning: ft, ga"):
        assert text in proc.stdout, text


def _wait_for(proc: subprocess.Popen, log: Path, text: str, timeout: float = 240) -> None:
    start = time.monotonic()
    while text not in log.read_text(errors="replace"):
        assert proc.poll() is None, f"run ended early:\n{log.read_text()[-3000:]}"
        assert time.monotonic() - start < timeout, f"{text!r} not seen:\n{log.read_text()[-3000:]}"
        time.sleep(0.2)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_ends_the_run_non_zero_with_nothing_half_written(tmp_path, sig):
    log = tmp_path / "log.txt"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "salguide.train", "original.epochs=200", "logger=csv",
             "callbacks.progress.refresh_rate=1"],
            cwd=tmp_path, env=_env(tmp_path), stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            _wait_for(proc, log, "original · Epoch 0:  ")  # the stage's name is in the bar
            proc.send_signal(sig)
            rc = proc.wait(timeout=120)
        finally:
            proc.kill()
    assert rc == 128 + sig, log.read_text()[-2000:]
    run = next((tmp_path / "outputs" / "unlearn_digits" / "runs").iterdir())
    assert not list(run.glob("results.*")) and not (run / "models").exists()
    cache = tmp_path / "cache"
    assert not list(cache.glob("*.safetensors")) if cache.exists() else True  # no half-trained model cached
    assert not list(run.rglob("*.tmp"))


@pytest.mark.slow
def test_init_from_unlearns_the_users_own_model(tmp_path):
    """The original stage is the user's model: no original is trained or cached, its metrics are those of
    the file's weights, and a Lightning-style file with a wrapper prefix loads as well."""
    torch.manual_seed(123)
    mine = SmallCNN(num_classes=10, in_channels=1, width=32)
    save_weights(mine, tmp_path / "mine.safetensors")
    torch.save({"state_dict": {f"model.{k}": v for k, v in mine.state_dict().items()}}, tmp_path / "mine.ckpt")
    rows = {}
    for name in ("mine.safetensors", "mine.ckpt"):
        cfg = _compose(f"init_from={tmp_path / name}", "trainer.max_epochs=1", "compare_to_retrain=false",
                       "logger=none", "callbacks=none", f"paths.output_dir={tmp_path / name}.run",
                       f"paths.cache_dir={tmp_path / 'cache'}", "print_table=false")  # fmt: skip
        run_task(cfg)
        rows[name] = json.loads((tmp_path / f"{name}.run" / "results.json").read_text())
        saved = tmp_path / f"{name}.run" / "models" / "original.safetensors"
        from safetensors.torch import load_file

        assert all(torch.equal(load_file(str(saved))[k], v) for k, v in mine.state_dict().items())
    assert rows["mine.safetensors"][0] == rows["mine.ckpt"][0]
    assert rows["mine.safetensors"][0]["method"] == "Original"
    assert not list((tmp_path / "cache").glob("original-*"))  # nothing trained for the original stage


def test_init_from_and_ckpt_path_must_exist(tmp_path):
    for key in ("init_from", "ckpt_path"):
        cfg = _compose(f"{key}={tmp_path / 'absent.safetensors'}", "logger=none", "callbacks=none",
                       f"paths.output_dir={tmp_path / key}", f"paths.cache_dir={tmp_path / 'cache'}")  # fmt: skip
        with pytest.raises(FileNotFoundError, match=f"{key}=.*absent.safetensors: no such file"):
            run_task(cfg)
        assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").iterdir())


def _job(sweep: Path, num: int, overrides: list[str], rows) -> None:
    (sweep / str(num) / ".hydra").mkdir(parents=True)
    (sweep / str(num) / ".hydra" / "overrides.yaml").write_text(OmegaConf.to_yaml(overrides))
    (sweep / str(num) / "results.json").write_text(json.dumps(rows))


def _row(method: str, seed: int, ua: float) -> dict:
    return {"method": method, "seed": seed, "UA": ua, "RA": 90.0, "TA": 80.0, "MIA": 50.0, "RTE": 1.0}


def test_sweep_table_combines_jobs_and_summarises_methods(tmp_path):
    for i, (method, seed, ua) in enumerate([("FT", 0, 10.0), ("FT", 1, 30.0), ("GA", 0, 50.0), ("GA", 1, 70.0)]):
        _job(
            tmp_path,
            i,
            [f"unlearning={method.lower()}", f"seed={seed}"],
            [_row("Original", seed, 1.0), _row("Retrain", seed, 100.0), _row(method, seed, ua)],
        )
    _job(
        tmp_path, 10, ["seed=9"], [_row("Original", 9, 1.0), _row("Retrain", 9, 100.0), _row("FT", 9, 20.0)]
    )  # job 10 sorts after job 4, not after job 1
    md = write_sweep_results(tmp_path)
    rows = json.loads((tmp_path / "results.json").read_text())
    assert [r["job"] for r in rows] == ["0"] * 3 + ["1"] * 3 + ["2"] * 3 + ["3"] * 3 + ["10"] * 3
    assert rows[2]["overrides"] == "unlearning=ft seed=0" and md.read_text().count("\n") == 2 + 15
    summary = (tmp_path / "summary.md").read_text()
    assert "| FT | 3 | 20.00 ± 10.00 |" in summary  # UA of FT over seeds 0, 1, 9: 10, 30, 20
    assert "| Original | 3 |" in summary  # counted once per seed, not once per job


def test_generative_unlearning_sweep_gets_a_summary_without_avg_gap(tmp_path):
    """A -m sweep of a DDPM preset: rows with UA / Acc_r / FD and no classifier metrics. The summary is the
    mean ± std of those columns (there is no Avg.Gap for them); it failed with KeyError 'RA' before."""

    def rows(seed: int, ua: float) -> list[dict]:
        return [
            {"method": "Original", "seed": seed, "UA": 0.0, "Acc_r": 99.0, "FD": 1.0, "RTE": None},
            {"method": "Retrain", "seed": seed, "UA": 96.0, "Acc_r": 97.0, "FD": 0.5, "RTE": 700.0},
            {"method": "SalUn", "seed": seed, "UA": ua, "Acc_r": 97.0, "FD": 0.7, "RTE": 60.0},
        ]

    _job(tmp_path, 0, ["seed=0"], rows(0, 100.0))
    _job(tmp_path, 1, ["seed=1"], rows(1, 90.0))
    write_sweep_results(tmp_path)
    summary = (tmp_path / "summary.md").read_text()
    assert summary.splitlines()[0] == "| method | n | UA | Acc_r | FD |"
    assert "| SalUn | 2 | 95.00 ± 7.07 | 97.00 ± 0.00 | 0.70 ± 0.00 |" in summary
    assert "Avg.Gap" not in summary


def test_sweep_summary_refuses_jobs_that_disagree():
    rows = [{"job": "0", **_row("Original", 0, 1.0)}, {"job": "1", **_row("Original", 0, 2.0)}]
    assert unlearning_summary(rows) is None  # the sweep varied something else: no per-method summary
    assert unlearning_summary([{"job": "0", "test_acc": 90.0}]) is None
    assert (
        unlearning_summary([{"job": "0", **_row("FT", 0, 1.0), "Avg.Gap": 1.0}, {"job": "1", **_row("FT", 1, 1.0)}])
        is None
    )


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["prune_digits_evit", "decoy_vanilla"])
def test_init_from_fine_tunes_the_users_model_in_classify_and_attention_tasks(tmp_path, preset):
    """task=attention / task=classify start from the user's weights: with no training step the saved model is the file's."""
    from safetensors.torch import load_file

    cfg = _compose(f"experiment={preset}", "logger=none", "callbacks=none", "print_table=false",
                   f"paths.output_dir={tmp_path / 'first'}", f"paths.cache_dir={tmp_path / 'cache'}",
                   "trainer.max_epochs=1")  # fmt: skip
    run_task(cfg)
    stage = "attention" if preset.startswith("prune") else "classify"
    first = tmp_path / "first" / "models" / f"{stage}.safetensors"
    cfg = _compose(f"experiment={preset}", "logger=none", "callbacks=none", "print_table=false",
                   f"paths.output_dir={tmp_path / 'again'}", f"paths.cache_dir={tmp_path / 'cache'}",
                   "trainer.max_epochs=1", "+trainer.limit_train_batches=0",
                   f"init_from={first}", "seed=7")  # fmt: skip
    run_task(cfg)
    before, after = load_file(str(first)), load_file(str(tmp_path / "again" / "models" / f"{stage}.safetensors"))
    strip = {k.removeprefix("model."): v for k, v in before.items()}
    assert {k.removeprefix("model."): v for k, v in after.items()}.keys() == strip.keys()
    assert all(torch.equal(v, strip[k.removeprefix("model.")]) for k, v in after.items())


def test_init_from_for_another_model_is_refused_before_training(tmp_path):
    save_weights(SmallCNN(num_classes=10, in_channels=1, width=32), tmp_path / "cnn.safetensors")
    cfg = _compose("experiment=prune_digits_evit", "logger=none", "callbacks=none",
                   f"paths.output_dir={tmp_path / 'run'}", f"init_from={tmp_path / 'cnn.safetensors'}")  # fmt: skip
    with pytest.raises(ValueError, match="cnn.safetensors does not hold this model's weights"):
        run_task(cfg)
    assert not (tmp_path / "run" / "models").exists()


def test_ckpt_path_with_unlearning_retrain_is_refused_before_training(tmp_path):
    """unlearning=retrain has no method stage to resume: ckpt_path used to be ignored silently."""
    ckpt = tmp_path / "some.ckpt"
    ckpt.write_bytes(b"")
    cfg = _compose(f"ckpt_path={ckpt}", "unlearning=retrain", "logger=none", "callbacks=none",
                   f"paths.output_dir={tmp_path / 'run'}", f"paths.cache_dir={tmp_path / 'cache'}")  # fmt: skip
    with pytest.raises(ValueError, match="unlearning=retrain has none"):
        run_task(cfg)
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").iterdir())


def test_ckpt_path_resumes_its_stage_and_refuses_other_files(tmp_path):
    """A run's checkpoints/classify.ckpt resumes the classify stage (epoch 1 -> 2); another stage's checkpoint
    (it used to "resume" and train nothing) or a file that is not a checkpoint (a bare KeyError after the
    earlier stages had trained) is refused before anything trains."""
    import shutil

    common = ["experiment=decoy_vanilla", "logger=none", "callbacks=none", "print_table=false",
              f"paths.cache_dir={tmp_path / 'cache'}", "data.batch_size=256"]  # fmt: skip
    run_task(_compose(*common, "trainer.max_epochs=1", f"paths.output_dir={tmp_path / 'a'}"))
    ckpt = tmp_path / "a" / "checkpoints" / "classify.ckpt"
    assert torch.load(ckpt, weights_only=True)["epoch"] == 0
    run_task(_compose(*common, "trainer.max_epochs=2", f"ckpt_path={ckpt}", f"paths.output_dir={tmp_path / 'b'}"))
    assert torch.load(tmp_path / "b" / "checkpoints" / "classify.ckpt", weights_only=True)["epoch"] == 1
    other = tmp_path / "x" / "checkpoints" / "original.ckpt"
    other.parent.mkdir(parents=True)
    shutil.copy(ckpt, other)
    notes = tmp_path / "notes.txt"
    notes.write_text("not a checkpoint")
    for path, message in ((other, "checkpoint of stage 'original'"), (notes, "not a Lightning checkpoint")):
        with pytest.raises(ValueError, match=message):
            run_task(_compose(*common, f"ckpt_path={path}", f"paths.output_dir={tmp_path / 'c'}"))
        assert not (tmp_path / "c" / "checkpoints").exists()


@pytest.mark.parametrize("override", ["+trainer.max_steps=0", "+trainer.limit_train_batches=0"])
def test_unlearning_refuses_trainer_settings_that_train_nothing(tmp_path, override):
    """They used to cache the untrained original and Retrain and report a normal-looking table."""
    cfg = _compose(override, "logger=none", "callbacks=none", f"paths.output_dir={tmp_path / 'run'}",
                   f"paths.cache_dir={tmp_path / 'cache'}")  # fmt: skip
    with pytest.raises(ValueError, match="trains nothing, and task=unlearn would cache"):
        run_task(cfg)
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").iterdir())
