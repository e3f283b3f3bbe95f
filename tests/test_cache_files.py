"""The model cache: keys hold every setting that changes the trained weights, and temporaries that a
killed writer left behind are cleaned up."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_module

from salguide.cache import cached_weights
from salguide.pipelines import run_task

FAST = [
    "original.epochs=1",
    "unlearning=ft",
    "unlearning.epochs=1",
    "compare_to_retrain=false",
    "callbacks=none",
    "logger=none",
    "print_table=false",
    "+trainer.limit_train_batches=2",
]


def _cfg(tmp_path: Path, *overrides: str):
    with initialize_config_module(config_module="salguide.configs", version_base="1.3"):
        return compose(
            config_name="train",
            overrides=[f"paths.output_dir={tmp_path / 'out'}", f"paths.cache_dir={tmp_path / 'cache'}", *overrides],
        )


def test_an_original_trained_with_other_trainer_settings_is_not_reused(tmp_path):
    run_task(_cfg(tmp_path, *FAST))
    run_task(_cfg(tmp_path, *FAST, "+trainer.accumulate_grad_batches=4"))
    assert len(list((tmp_path / "cache").glob("original-*.safetensors"))) == 2


@pytest.mark.parametrize(
    "override",
    [
        "+trainer.accumulate_grad_batches=4",
        "trainer.precision=bf16-mixed",
        "trainer=ddp",
        "trainer.devices=2",
        "+trainer.gradient_clip_val=1.0",
        "+trainer.max_steps=5",
        "seed=1",
        "model.optimizer.lr=0.1",
        "data.batch_size=32",
        "+callbacks.swa._target_=lightning.pytorch.callbacks.StochasticWeightAveraging",
        "+callbacks.swa.swa_lrs=0.01",
    ],
)
def test_settings_that_change_weights_change_both_keys(tmp_path, override):
    from salguide.pipelines.unlearn import cache_paths

    base, other = cache_paths(_cfg(tmp_path)), cache_paths(_cfg(tmp_path, override))
    assert other[0] != base[0] and other[1] != base[1]


@pytest.mark.parametrize(
    "override,same",
    [
        ("trainer.log_every_n_steps=1", (True, True)),
        ("callbacks=none", (True, True)),
        ("logger=csv", (True, True)),
        ("data.num_workers=2", (True, True)),
        ("+trainer.enable_progress_bar=false", (True, True)),
        ("unlearning=ft", (True, True)),
        ("data.forget_class=3", (True, False)),  # the original sees every class
    ],
)
def test_settings_that_do_not_change_weights_keep_the_keys(tmp_path, override, same):
    from salguide.pipelines.unlearn import cache_paths

    base, other = cache_paths(_cfg(tmp_path)), cache_paths(_cfg(tmp_path, override))
    assert (other[0] == base[0], other[1] == base[1]) == same


KILLED_WRITE = """
import os, signal, sys
from salguide.io import atomic_path
with atomic_path(sys.argv[1]) as tmp:
    tmp.write_bytes(b"half a checkpoint")
    os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_killed_cache_write_leaves_no_temporary_behind(tmp_path):
    target = tmp_path / "cache" / "original-0123.safetensors"
    proc = subprocess.run([sys.executable, "-c", KILLED_WRITE, str(target)], env=dict(os.environ))
    assert proc.returncode == -9
    leftovers = list(target.parent.glob(".*.tmp"))
    assert len(leftovers) == 1 and not target.exists()

    old_foreign = target.parent / ".retrain-9.safetensors.otherhost-1.abcd.tmp"
    live_own = target.parent / f".retrain-8.safetensors.x.{os.getpid()}.tmp"  # an unknown name, but recent
    for p in (old_foreign, live_own):
        p.write_bytes(b"")
    os.utime(old_foreign, (time.time() - 2 * 86400,) * 2)

    model, hit = cached_weights(target, torch.nn.Linear(2, 1), lambda m: m)
    assert not hit and target.exists()
    assert sorted(p.name for p in target.parent.glob(".*.tmp")) == [live_own.name]
