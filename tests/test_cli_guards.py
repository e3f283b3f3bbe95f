"""salguide-train guards its inputs and outputs: bad values fail before anything trains, run folders are
unique and owned by one live run, unusable folders are reported up front, ``name`` stays inside the root."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import hydra.core.utils
import pytest
from hydra import compose, initialize_config_module

FAST = [
    "original.epochs=1",
    "unlearning=ft",
    "unlearning.epochs=1",
    "compare_to_retrain=false",
    "callbacks=none",
    "logger=none",
]


def _cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "salguide.train", *args]


def _env(tmp_path: Path) -> dict[str, str]:
    return dict(os.environ, SALGUIDE_CACHE_DIR=str(tmp_path / "cache"), WANDB_MODE="offline", WANDB_SILENT="true")


def _cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(_cmd(*args), cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True, timeout=600)


# ---- point 12: numbers are checked before anything trains ---------------------------------------------------
@pytest.mark.parametrize(
    "override,message",
    [
        ("original.epochs=0", "original.epochs must be an integer >= 1, got 0"),
        ("saliency.ratio=2", "saliency.ratio must be a number in (0, 1], got 2"),
    ],
)
def test_bad_numbers_fail_before_anything_trains(tmp_path, override, message):
    proc = _cli(tmp_path, override, "logger=none")
    assert proc.returncode != 0 and message in proc.stderr
    assert not (tmp_path / "cache").exists()  # nothing trained, nothing cached


# ---- point 11: folders -----------------------------------------------------------------------------------
def test_name_cannot_leave_the_output_root(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    proc = _cli(work, "name=../../x", "logger=none")
    assert proc.returncode != 0 and "must be a relative folder name" in proc.stderr
    assert not (tmp_path / "x").exists() and not (work / "cache").exists()


@pytest.mark.parametrize("key", ["paths.cache_dir", "paths.output_dir"])
def test_unwritable_folders_are_reported_before_training(tmp_path, key):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    proc = _cli(tmp_path, f"{key}={blocker / 'sub'}", *FAST)
    assert proc.returncode != 0
    assert f"{key}='{blocker / 'sub'}' is not a writable folder" in proc.stderr
    assert "Trainer.fit" not in proc.stdout + proc.stderr


# ---- point 2: unique run folders, owned by one live run --------------------------------------------------
def _run_dir(monkeypatch) -> str:
    with initialize_config_module(config_module="salguide.configs", version_base="1.3"):
        cfg = compose(config_name="train", return_hydra_config=True)
    return str(cfg.hydra.run.dir)


def test_runs_composed_in_the_same_instant_get_different_folders(monkeypatch):
    class Frozen(dt.datetime):
        @classmethod
        def now(cls, tz=None):
            return cls(2026, 1, 2, 3, 4, 5, 678)

    monkeypatch.setattr(hydra.core.utils, "datetime", Frozen)  # the clock of Hydra's ${now:} resolver
    first, second = _run_dir(monkeypatch), _run_dir(monkeypatch)
    assert first != second
    assert Path(first).parent == Path(second).parent == Path("outputs/unlearn_digits/runs")


@pytest.mark.slow
def test_two_runs_started_at_once_keep_both_results(tmp_path):
    procs = [
        subprocess.Popen(
            _cmd(*FAST, f"seed={s}"),
            cwd=tmp_path,
            env=_env(tmp_path),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for s in (0, 1)
    ]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-3000:]
    results = sorted(tmp_path.glob("outputs/unlearn_digits/runs/*/results.json"))
    assert len(results) == 2
    assert sorted(json.loads(r.read_text())[0]["seed"] for r in results) == [0, 1]


def test_a_folder_owned_by_a_live_run_is_refused(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    host = "".join(c if c.isalnum() or c == "_" else "_" for c in os.uname().nodename)
    (shared / ".salguide-run").write_text(f"{host} {os.getpid()}")  # this test process: a live run
    proc = _cli(tmp_path, f"hydra.run.dir={shared}", *FAST)
    assert proc.returncode != 0 and "belongs to another live run" in proc.stderr
    assert not (shared / "results.json").exists() and not (tmp_path / "cache").exists()
