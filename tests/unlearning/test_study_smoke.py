"""Smoke test of the digits unlearning study (experiments/unlearning_digits/run.py) in its --quick setting."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "experiments" / "unlearning_digits" / "run.py"
METHODS = ["Original", "Retrain", "FT", "GA", "RL", "l1-sparse", "SalUn"]


def _load_study():
    spec = importlib.util.spec_from_file_location("salguide_unlearning_digits_study", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    out = tmp_path_factory.mktemp("unlearning_digits")
    module = _load_study()
    result = module.main(
        ["--quick", "--seeds", "0", "1", "--confirm-seeds", "2", "--out", str(out), "--no-progress"]
    )
    return module, out, result


@pytest.mark.slow
def test_writes_every_output(study):
    _, out, result = study
    assert result["out"] == out
    names = [
        "results_classwise.md", "results_classwise.json", "results_random.md", "results_random.json",
        "sweep.json", "avg_gap.png", "lr_sweep.png", "metrics_vs_retrain_classwise.png",
        "metrics_vs_retrain_random.png",
    ]
    for name in names:
        path = out / name
        assert path.is_file() and path.stat().st_size > 0, name
    for png in out.glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(out.glob(".*.tmp")), "a temporary file was left behind"


@pytest.mark.slow
@pytest.mark.parametrize("suffix", ["classwise", "random"])
def test_result_tables_have_every_method(study, suffix):
    module, out, _ = study
    doc = json.loads((out / f"results_{suffix}.json").read_text())
    assert [row["method"] for row in doc["rows"]] == METHODS
    mode = {"classwise": "class", "random": "random"}[suffix]
    grids = module.QUICK["grids"][mode]
    for row in doc["rows"]:
        assert row["n"] == 2
        for key in ("UA", "RA", "TA", "MIA", "Avg.Gap"):
            assert 0.0 <= row[key] <= 100.0 and row[f"{key}_std"] >= 0.0
        assert len(row["seed_gaps"]) == 2
    retrain = next(row for row in doc["rows"] if row["method"] == "Retrain")
    assert retrain["Avg.Gap"] == 0.0
    for key, grid in grids.items():
        name = module.method_spec(key).name
        assert doc["chosen_lr"][name] in grid
        assert [p["lr"] for p in doc["sweep"][name]] == sorted(grid)
        # the chosen lr is the one with the smallest mean Avg.Gap
        assert doc["chosen_lr"][name] == min(doc["sweep"][name], key=lambda p: p["gap_mean"])["lr"]
    assert sum(doc["seed_wins"].values()) == 2
    held = doc["held_out"]
    assert held["select_seeds"] == [0] and held["report_seeds"] == [1]
    assert [row["method"] for row in held["summary"]] == METHODS
    confirm = doc["confirm"]  # fresh seed 2, each method once at the lr chosen on seeds 0-1
    assert confirm["report_seeds"] == [2] and confirm["chosen_lr"] == doc["chosen_lr"]
    assert [row["method"] for row in confirm["summary"]] == METHODS
    assert {p["method"] for p in doc["paired"]} == set(METHODS[2:-1])

    table = (out / f"results_{suffix}.md").read_text()
    for name in METHODS[1:]:
        assert f"| {name} |" in table or f"| **{name}** |" in table
    for section in ("Held-out check", "Learning-rate sweep", "Fresh seeds [2]", "Paired per seed"):
        assert section in table


@pytest.mark.slow
def test_sweep_records_every_run(study):
    module, out, _ = study
    sweep = json.loads((out / "sweep.json").read_text())
    runs = sweep["runs"]
    per_mode = {m: 2 + sum(len(g) for g in module.QUICK["grids"][m].values()) for m in ("class", "random")}
    assert len(runs) == 2 * sum(per_mode.values())  # 2 seeds x (Original + Retrain + grid) per mode
    assert {r["seed"] for r in runs} == {0, 1}
    assert all(r["RTE"] > 0 for r in runs if r["method"] != "Original")
    assert sweep["wall_seconds"] > 0 and sweep["machine"]["cpu_count"] >= 1
    confirm = sweep["confirm_runs"]
    assert len(confirm) == 2 * (2 + len(module.METHODS))  # seed 2 x (Original + Retrain + chosen lr) per mode
    assert {r["seed"] for r in confirm} == {2}


@pytest.mark.slow
def test_replot_rewrites_outputs_without_training(study):
    module, out, result = study
    before = json.loads((out / "results_random.json").read_text())
    (out / "avg_gap.png").unlink()
    again = module.main(["--quick", "--out", str(out), "--replot"])
    assert (out / "avg_gap.png").is_file()
    assert again["wall_seconds"] == result["wall_seconds"]
    assert json.loads((out / "results_random.json").read_text()) == before
