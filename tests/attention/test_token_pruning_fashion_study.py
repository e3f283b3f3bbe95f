"""experiments/token_pruning_fashion_mnist/summarise.py on synthetic run folders: paired accuracy changes,
the benchmark's throughput ratios and the goals at keep 0.7."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

SCRIPT = Path(__file__).resolve().parents[2] / "experiments" / "token_pruning_fashion_mnist" / "summarise.py"


def _run(root: Path, policy: str, keep: float, seed: int, acc: float, seconds: float, mode: str = "scratch") -> None:
    """A run folder as salguide-train leaves it; seed 2's in the layout of runs recorded before the recipe moved
    from classify: to trainer.max_epochs and model.optimizer."""
    run = root / mode / policy / f"{keep}-{seed}"
    (run / ".hydra").mkdir(parents=True)
    cfg = {
        "seed": seed,
        "task": {"_target_": "salguide.pipelines.attention.run_attention", "_partial_": True},
        "data": {"train_size": 100, "test_size": 50, "batch_size": 32},
        "model": {"optimizer": {"_target_": "torch.optim.AdamW", "_partial_": True, "lr": 2e-3}},
        "callbacks": {} if policy == "none" else {"token_policy": {"warmup_steps": 0, "policy": {"keep": keep}}},
        "init_from": None if mode == "scratch" else f"/base/{seed}.safetensors",
        "trainer": {"max_epochs": 2, **({"limit_train_batches": 0} if mode == "off-the-shelf" else {})},
    }
    if seed == 2:
        cfg.update(task="attention", model={}, classify={"epochs": 2, "lr": 2e-3})
        cfg["trainer"] = {"limit_train_batches": 0} if mode == "off-the-shelf" else {"max_epochs": None}
    (run / ".hydra" / "config.yaml").write_text(yaml.safe_dump(cfg))
    (run / "results.json").write_text(
        json.dumps(
            {
                "name": f"prune_fashion_mnist_{policy}",
                "token_policy": policy,
                "seed": seed,
                "test_acc": acc,
                "seconds": seconds,
            }
        )
    )


def test_paired_changes_throughput_and_goals(tmp_path):
    runs, out = tmp_path / "runs", tmp_path / "out"
    bench = {
        "device_name": "CPU (1 threads)",
        "batch": 64,
        "steps": 4,
        "repeats": 3,
        "rows": [
            {
                "policy": p,
                "keep": k,
                "tokens": [197, 140, 100, 100],
                "train_img_s": 100.0 * r,
                "infer_img_s": 300.0 * r,
                "train_ratio": r,
                "infer_ratio": r,
                "train_flop_ratio": 1.4,
                "infer_flop_ratio": 1.4,
            }
            for p, r07 in (("evit", 1.35), ("tome", 1.25), ("dynamicvit", 1.0))
            for k, r in ((1.0, 1.0), (0.7, r07))
        ],
    }
    runs.mkdir()
    (runs / "throughput.json").write_text(json.dumps(bench))
    for seed, base in ((0, 70.0), (1, 80.0), (2, 75.0)):
        _run(runs, "none", 1.0, seed, base, 20.0)
        _run(runs, "evit", 0.7, seed, base - 0.2, 10.0)  # paired change -0.2 on every seed
        _run(runs, "tome", 0.7, seed, base - 1.0 + seed, 16.0)  # -1, 0, +1
        _run(runs, "dynamicvit", 0.7, seed, base - 2.0, 20.0)
    done = subprocess.run(
        [sys.executable, str(SCRIPT), str(runs), "--out", str(out)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    doc = json.loads((out / "results.json").read_text())
    assert {(r["epochs"], r["lr"]) for r in doc["rows"]} == {(2, 2e-3)}  # from either layout
    by = {(e["policy"], e["keep"]): e for e in doc["summary"]}
    assert by[("none", 1.0)]["test_acc"][0] == 75.0
    assert abs(by[("evit", 0.7)]["acc_diff"][0] + 0.2) < 1e-9 and by[("evit", 0.7)]["acc_diff"][1] < 1e-9
    assert abs(by[("tome", 0.7)]["acc_diff"][0]) < 1e-9 and abs(by[("tome", 0.7)]["acc_diff"][1] - 1.0) < 1e-9
    assert abs(by[("evit", 0.7)]["run_train_ratio"][0] - 2.0) < 1e-9  # 20 s -> 10 s for the same images
    met = {(g["goal"].split()[0], g["policy"]): g["met"] for g in doc["goals"]}
    assert met == {
        ("accuracy", "evit"): True,
        ("training", "evit"): True,
        ("accuracy", "tome"): True,
        ("training", "tome"): False,
        ("accuracy", "dynamicvit"): False,
    }
    assert "**missed**" in done.stdout
    assert len((out / "results.csv").read_text().splitlines()) == 1 + 12
    assert (out / "figures" / "accuracy_throughput.png").read_bytes()[:4] == b"\x89PNG"
    assert list(runs.glob("wandb/offline-run-*")), "no offline W&B run with the results table"


def test_fine_tuned_and_off_the_shelf_runs_pair_within_their_mode_and_set_the_goals(tmp_path):
    """Fine-tuned runs pair with the fine-tuned unpruned run, off-the-shelf runs with the unpruned base
    evaluated the same way, and the accuracy goal is judged on the fine-tuned models."""
    runs, out = tmp_path / "runs", tmp_path / "out"
    for seed, base in ((0, 80.0), (1, 82.0), (2, 84.0)):
        _run(runs, "none", 1.0, seed, base - 10, 20.0)  # the scratch base of this seed
        _run(runs, "none", 1.0, seed, base, 20.0, "fine-tune")
        _run(runs, "evit", 0.7, seed, base - 0.3, 12.0, "fine-tune")  # -0.3 against the fine-tuned control
        _run(runs, "tome", 0.7, seed, base - 0.9, 12.0, "fine-tune")
        _run(runs, "none", 1.0, seed, base - 10, 0.1, "off-the-shelf")
        _run(runs, "evit", 0.7, seed, base - 10 - 4.0, 0.1, "off-the-shelf")  # -4 against the base
    (runs / "fine-tune" / "evit" / "results.json").write_text("[]")  # a sweep's combined table: not a run
    done = subprocess.run(
        [sys.executable, str(SCRIPT), str(runs), "--out", str(out)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    doc = json.loads((out / "results.json").read_text())
    by = {(e["mode"], e["policy"], e["keep"]): e for e in doc["summary"]}
    assert abs(by[("fine-tune", "evit", 0.7)]["acc_diff"][0] + 0.3) < 1e-9
    assert abs(by[("off-the-shelf", "evit", 0.7)]["acc_diff"][0] + 4.0) < 1e-9
    assert by[("scratch", "none", 1.0)]["test_acc"][0] == 72.0
    met = {(g["goal"].split()[0], g["policy"], g["mode"]): g["met"] for g in doc["goals"]}
    assert met == {("accuracy", "evit", "fine-tune"): True, ("accuracy", "tome", "fine-tune"): False}
    assert "| goal (keep 0.7, fine-tune) |" in done.stdout
    assert (out / "figures" / "accuracy_throughput.png").read_bytes()[:4] == b"\x89PNG"
