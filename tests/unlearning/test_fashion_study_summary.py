"""experiments/unlearning_fashion_mnist/summarise.py on synthetic run folders: lr selection by mean Avg.Gap
on the tuning seeds, the printed LR_<mode>_<method> lines that run.sh evaluates, and the result tables."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

SCRIPT = Path(__file__).resolve().parents[2] / "experiments" / "unlearning_fashion_mnist" / "summarise.py"


def _run(root: Path, mode: str, method: str, lr: float, seed: int, gap: float, kind: str = "salun") -> None:
    """One run folder as salguide-train leaves it: results.json (Original, Retrain, method) and its config; seeds
    2 and 5 in the layout of runs recorded before unlearning.optimizer (task name, unlearning.lr)."""
    run = root / f"{mode}-{method}-{kind}-{lr:g}-{seed}"
    name = {"ft": "FT", "salun": "SalUn"}[method]
    (run / ".hydra").mkdir(parents=True)
    cfg = {
        "task": {"_target_": "salguide.pipelines.unlearn.run_unlearning", "_partial_": True},
        "seed": seed,
        "data": {"forget": mode, "train_size": 800, "test_size": 1000},
        "trainer": {"max_epochs": None},
        "original": {"epochs": 10},
        "unlearning": {
            "_target_": "salguide.unlearning.MethodSpec",
            "name": name,
            "epochs": 5,
            "optimizer": {"_target_": "torch.optim.SGD", "_partial_": True, "lr": lr},
        },
        "saliency": {"_target_": f"salguide.weights.{kind}_mask", "_partial_": True},
    }
    if seed in (2, 5):
        cfg.update(task="unlearn", unlearning={**cfg["unlearning"], "lr": lr, "optimizer": "sgd"})
    (run / ".hydra" / "config.yaml").write_text(yaml.safe_dump(cfg))
    ret = {"UA": 100.0, "RA": 90.0, "TA": 80.0, "MIA": 100.0}
    rows = [
        {"method": "Original", "seed": seed, "UA": 10.0, "RA": 90.0, "TA": 80.0, "MIA": 20.0, "RTE": None},
        {"method": "Retrain", "seed": seed, **ret, "RTE": 12.0},
        {"method": name, "seed": seed, **{**ret, "UA": 100.0 - 4 * gap}, "RTE": 3.0},
    ]
    for r in rows:  # Avg.Gap as the pipeline writes it: mean absolute gap of UA, RA, TA, MIA to Retrain
        r["Avg.Gap"] = sum(abs(r[k] - ret[k]) for k in ret) / 4
    (run / "results.json").write_text(json.dumps(rows))


def _summarise(*args: str) -> str:
    done = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_selects_the_lr_with_the_smallest_mean_gap_then_tabulates_fresh_seeds(tmp_path):
    tune, final, out = tmp_path / "tune", tmp_path / "final", tmp_path / "out"
    for seed in (0, 1, 2):
        for lr, gap in ((0.1, 3.0), (0.3, 1.0 + seed), (0.8, 2.0)):  # means 3.0, 2.0, 2.0: tie -> smaller lr
            _run(tune, "class", "ft", lr, seed, gap)
        for lr, gap in ((2e-4, 0.5), (5e-4, 0.25)):
            _run(tune, "random", "salun", lr, seed, gap)
    printed = _summarise("select", str(tune), "--out", str(out))
    assert printed.split() == ["LR_class_ft=0.3", "LR_random_salun=0.0005"]
    sel = json.loads((out / "selection.json").read_text())
    assert sel["chosen"] == {"LR_class_ft": 0.3, "LR_random_salun": 0.0005}
    assert (out / "figures" / "lr_sweep.png").read_bytes()[:4] == b"\x89PNG"

    for seed in (3, 4, 5):
        _run(final, "class", "ft", 0.3, seed, 1.0)
        _run(final, "class", "salun", 0.02, seed, 2.0)
        _run(final, "class", "salun", 0.02, seed, 0.5 + 1.5 * (seed - 3), kind="ant")  # 0.5, 2, 3.5
    md = _summarise("results", str(final), "--out", str(out), "--wall-seconds", "60")
    doc = json.loads((out / "results.json").read_text())
    entries = {e["method"]: e for e in doc["summary"]["class"]}
    assert set(entries) == {"Original", "Retrain", "FT", "SalUn", "SalUn (ANT mask)"}
    assert entries["Retrain"]["n"] == 3 and entries["Retrain"]["Avg.Gap"] == 0.0  # one reference row per seed
    assert entries["FT"]["Avg.Gap"] == 1.0 and entries["SalUn"]["Avg.Gap"] == 2.0
    assert abs(entries["SalUn (ANT mask)"]["Avg.Gap"] - 2.0) < 1e-9 and entries["SalUn (ANT mask)"]["Avg.Gap_std"] > 0
    assert doc["seed_wins"]["class"] == {"FT": 2, "SalUn": 0, "SalUn (ANT mask)": 1}
    assert "**1.00 +- 0.00**" in md and "Wall time" in md
    assert len((out / "results.csv").read_text().splitlines()) == 1 + 3 * 5
    for fig in ("avg_gap.png", "metrics.png"):
        assert (out / "figures" / fig).read_bytes()[:4] == b"\x89PNG"
    assert list(final.glob("wandb/offline-run-*")), "no offline W&B run with the results table"


def test_refuses_a_run_of_another_task(tmp_path):
    _run(tmp_path, "class", "ft", 0.1, 0, 1.0)
    cfg = next(tmp_path.glob("*/.hydra/config.yaml"))
    cfg.write_text(
        cfg.read_text().replace("salguide.pipelines.unlearn.run_unlearning", "salguide.pipelines.classify.run_classify")
    )
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "select", str(tmp_path)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode != 0 and "not an unlearning run (task='classify')" in done.stderr
