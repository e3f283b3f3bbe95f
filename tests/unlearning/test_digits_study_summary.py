"""experiments/unlearning_digits (run.sh + summarise.py) on synthetic run folders: the lr with the smallest mean
Avg.Gap per (mode, method), the printed LR_<mode>_<method> lines run.sh evaluates, the result tables (tuned
seeds, held-out check, fresh seeds, paired differences), sweep.json and the figures; slow: run.sh's QUICK mode."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

HERE = Path(__file__).resolve().parents[2] / "experiments" / "unlearning_digits"
METHODS = ["Original", "Retrain", "FT", "GA", "RL", "l1-sparse", "SalUn"]
NAMES = {"ft": "FT", "ga": "GA", "rl": "RL", "l1_sparse": "l1-sparse", "salun": "SalUn"}
GRIDS = {
    "class": {"ft": (0.2, 0.8), "ga": (1e-3, 1e-2), "rl": (0.01, 0.03), "l1_sparse": (0.2, 0.8), "salun": (0.01, 0.03)},
    "random": {
        "ft": (0.02, 0.1),
        "ga": (0.02, 0.1),
        "rl": (2.5e-4, 1e-3),
        "l1_sparse": (0.02, 0.1),
        "salun": (2.5e-4, 1e-3),
    },
}
RETRAIN = {"UA": 100.0, "RA": 100.0, "TA": 98.0, "MIA": 100.0}


def gap_of(mode: str, key: str, lr: float, seed: int) -> float:
    """The synthetic Avg.Gap: the larger lr of each grid wins in class-wise forgetting, the smaller in random."""
    small = lr == GRIDS[mode][key][0]
    return (1.0 if small == (mode == "random") else 3.0) + 0.5 * seed + 0.1 * list(NAMES).index(key)


def _run(root: Path, mode: str, key: str, lr: float, seed: int) -> None:
    """A run folder as salguide-train leaves it; seed 1's in the layout of runs recorded before the recipes moved
    to model.optimizer and unlearning.optimizer (original.lr, unlearning.lr)."""
    run = root / mode / key / f"{lr:g}-{seed}"
    (run / ".hydra").mkdir(parents=True)
    sgd = {"_target_": "torch.optim.SGD", "_partial_": True, "momentum": 0.9}
    cfg = {
        "name": "unlearn_digits" if mode == "class" else "unlearn_digits_random",
        "task": {"_target_": "salguide.pipelines.unlearn.run_unlearning", "_partial_": True},
        "seed": seed,
        "data": {"forget": mode},
        "model": {"_target_": "salguide.models.ClassifierModule", "optimizer": {**sgd, "lr": 0.05}},
        "trainer": {"max_epochs": None},
        "original": {"epochs": 15},
        "unlearning": {
            "_target_": "salguide.unlearning.MethodSpec",
            "name": NAMES[key],
            "epochs": 5,
            "optimizer": {**sgd, "lr": lr},
        },
    }
    if seed == 1:
        cfg.update(task="unlearn", original={"epochs": 15, "lr": 0.05})
        cfg["unlearning"] = {"_target_": "salguide.unlearning.MethodSpec", "name": NAMES[key], "lr": lr, "epochs": 5}
        del cfg["model"]
    (run / ".hydra" / "config.yaml").write_text(yaml.safe_dump(cfg))
    gap = gap_of(mode, key, lr, seed)
    original = {"UA": 0.0, "RA": 100.0, "TA": 98.0 - seed, "MIA": 0.0}
    rows = [
        {"method": "Original", "seed": seed, **original, "RTE": None},
        {"method": "Retrain", "seed": seed, **RETRAIN, "RTE": 4.0},
        {"method": NAMES[key], "seed": seed, **{**RETRAIN, "UA": 100.0 - 4 * gap}, "RTE": 1.0},
    ]
    for r in rows:  # Avg.Gap as the pipeline writes it: mean absolute gap of UA, RA, TA, MIA to Retrain
        r["Avg.Gap"] = sum(abs(r[k] - RETRAIN[k]) for k in RETRAIN) / 4
    (run / "results.json").write_text(json.dumps(rows))


def _summarise(*args: str) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [sys.executable, str(HERE / "summarise.py"), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, WANDB_MODE="offline"),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("unlearning_digits")
    runs, out = root / "runs", root / "out"
    for mode, grids in GRIDS.items():
        for key, grid in grids.items():
            for lr in grid:
                for seed in (0, 1):
                    _run(runs / "study", mode, key, lr, seed)
    printed = _summarise("select", str(runs / "study"), "--out", str(out)).stdout
    chosen = dict(line.split("=") for line in printed.split())
    for mode, grids in GRIDS.items():
        for key in grids:
            _run(runs / "confirm", mode, key, float(chosen[f"LR_{mode}_{key}"]), 2)
    _summarise("results", str(runs), "--out", str(out), "--wall-seconds", "90")
    return runs, out, chosen


def test_select_prints_the_lr_with_the_smallest_mean_gap(study):
    _, _, chosen = study
    assert len(chosen) == 10
    for key in NAMES:
        assert float(chosen[f"LR_class_{key}"]) == GRIDS["class"][key][1]
        assert float(chosen[f"LR_random_{key}"]) == GRIDS["random"][key][0]


def test_writes_every_output(study):
    _, out, _ = study
    names = [
        "results_classwise.md",
        "results_classwise.json",
        "results_random.md",
        "results_random.json",
        "sweep.json",
        "avg_gap.png",
        "lr_sweep.png",
        "metrics_vs_retrain_classwise.png",
        "metrics_vs_retrain_random.png",
    ]
    for name in names:
        path = out / name
        assert path.is_file() and path.stat().st_size > 0, name
    for png in out.glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(out.glob(".*.tmp")), "a temporary file was left behind"


@pytest.mark.parametrize("suffix", ["classwise", "random"])
def test_result_tables_have_every_method(study, suffix):
    _, out, _ = study
    doc = json.loads((out / f"results_{suffix}.json").read_text())
    mode = {"classwise": "class", "random": "random"}[suffix]
    assert [row["method"] for row in doc["rows"]] == METHODS
    for row in doc["rows"]:
        assert row["n"] == 2 and len(row["seed_gaps"]) == 2
        for key in ("UA", "RA", "TA", "MIA", "Avg.Gap"):
            assert 0.0 <= row[key] <= 100.0 and row[f"{key}_std"] >= 0.0
    retrain = next(row for row in doc["rows"] if row["method"] == "Retrain")
    assert retrain["Avg.Gap"] == 0.0 and retrain["lr"] == 0.05
    for key, grid in GRIDS[mode].items():
        name = NAMES[key]
        assert [p["lr"] for p in doc["sweep"][name]] == sorted(grid)
        # the chosen lr is the one with the smallest mean Avg.Gap, and that mean is the synthetic one
        best = min(doc["sweep"][name], key=lambda p: p["gap_mean"])
        assert doc["chosen_lr"][name] == best["lr"]
        assert best["gap_mean"] == pytest.approx(
            (gap_of(mode, key, best["lr"], 0) + gap_of(mode, key, best["lr"], 1)) / 2
        )
        row = next(r for r in doc["rows"] if r["method"] == name)
        assert row["Avg.Gap"] == pytest.approx(best["gap_mean"]) and row["lr"] == best["lr"]
    assert doc["seed_wins"]["FT"] == 2 and sum(doc["seed_wins"].values()) == 2  # FT has the smallest offset
    held = doc["held_out"]
    assert held["select_seeds"] == [0] and held["report_seeds"] == [1]
    assert [row["method"] for row in held["summary"]] == METHODS
    confirm = doc["confirm"]  # fresh seed 2, each method once at the lr chosen on seeds 0-1
    assert confirm["report_seeds"] == [2] and confirm["chosen_lr"] == doc["chosen_lr"]
    assert [row["method"] for row in confirm["summary"]] == METHODS
    paired = {p["method"]: p for p in doc["paired"]}
    assert set(paired) == set(METHODS[2:-1])
    assert paired["FT"]["diff_mean"] == pytest.approx(0.4) and paired["FT"]["salun_larger"] == 2
    table = (out / f"results_{suffix}.md").read_text()
    assert "| **FT** |" in table  # the smallest Avg.Gap among the unlearning methods is bold
    for name in METHODS[2:]:
        assert f"| {name} |" in table or f"| **{name}** |" in table
    for section in ("Held-out check", "Learning-rate sweep", "Fresh seeds [2]", "Paired per seed"):
        assert section in table


def test_sweep_records_every_run(study):
    runs, out, _ = study
    sweep = json.loads((out / "sweep.json").read_text())
    per_mode = {m: 2 + sum(len(g) for g in GRIDS[m].values()) for m in GRIDS}
    assert len(sweep["runs"]) == 2 * sum(per_mode.values())  # 2 seeds x (Original + Retrain + grid) per mode
    assert {r["seed"] for r in sweep["runs"]} == {0, 1}
    assert all(r["RTE"] > 0 for r in sweep["runs"] if r["method"] != "Original")
    assert sweep["wall_seconds"] == 90 and sweep["machine"]["cpu_count"] >= 1
    assert len(sweep["confirm_runs"]) == 2 * (2 + len(NAMES)) and {r["seed"] for r in sweep["confirm_runs"]} == {2}
    assert list(runs.glob("wandb/offline-run-*")), "no offline W&B run with the results table"


def test_results_step_is_a_pure_function_of_the_runs(study, tmp_path):
    """Rewriting the tables from the same run folders (no training) gives the same results."""
    runs, out, _ = study
    _summarise("results", str(runs), "--out", str(tmp_path), "--wall-seconds", "90")
    for name in ("results_random.json", "results_classwise.json"):
        assert json.loads((tmp_path / name).read_text()) == json.loads((out / name).read_text())


def test_refuses_runs_of_another_study(tmp_path):
    _run(tmp_path, "class", "ft", 0.2, 0)
    cfg = tmp_path / "class" / "ft" / "0.2-0" / ".hydra" / "config.yaml"
    cfg.write_text(cfg.read_text().replace("name: FT", "name: ESD"))
    done = subprocess.run(
        [sys.executable, str(HERE / "summarise.py"), "select", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0 and "unlearning='esd' is not part of this study" in done.stderr


@pytest.mark.slow
def test_study_quick_mode_runs(tmp_path):
    env = dict(os.environ, WANDB_MODE="offline", QUICK="1", STUDY_OUT=str(tmp_path / "out"))
    proc = subprocess.run(
        ["bash", str(HERE / "run.sh"), str(tmp_path / "runs")], capture_output=True, text=True, env=env, timeout=3600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for suffix in ("classwise", "random"):
        doc = json.loads((tmp_path / "out" / f"results_{suffix}.json").read_text())
        assert [row["method"] for row in doc["rows"]] == METHODS and doc["confirm"]["report_seeds"] == [1]
