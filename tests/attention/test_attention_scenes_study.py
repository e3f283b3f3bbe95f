"""experiments/attention_scenes (run.sh + summarise.py) on synthetic run folders: the weight chosen on the
validation split, the re-evaluated test metrics (checked against accuracies computed here), the tables and
figures; the oracle preset's data option; slow: run.sh's QUICK mode."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from hydra import compose, initialize_config_module
from hydra.utils import instantiate
from omegaconf import OmegaConf

from salguide.data.scenes import SyntheticScenesDataModule
from salguide.weights_io import save_weights

ROOT = Path(__file__).resolve().parents[2]
HERE = ROOT / "experiments" / "attention_scenes"
PRESETS = ROOT / "salguide" / "configs" / "experiment"
VANILLA = yaml.safe_load((PRESETS / "attn_scenes_vanilla.yaml").read_text())
with initialize_config_module(config_module="salguide.configs", version_base="1.3"):
    COMPOSED = OmegaConf.to_container(compose(config_name="train", overrides=["experiment=attn_scenes_vanilla"]))
MODEL, EPOCHS = COMPOSED["model"], COMPOSED["trainer"]["max_epochs"]  # the vit_scenes ClassifierModule, 30
# the preset's data: the `scenes` data option with the preset's own settings on top
DATA = {**yaml.safe_load((PRESETS.parent / "data" / "scenes.yaml").read_text()), **VANILLA["data"]}
LOSS = {
    "concentration": {
        "_target_": "salguide.attention.ConcentrationLoss",
        "weight": 1.0,
        "layers": [0, 1, 2, 3],
        "target": "mask",
        "queries": "all",
    },
    "bas": {
        "_target_": "salguide.attention.BackgroundSuppressionLoss",
        "weight": 5.0,
        "layers": [0, 1, 2, 3],
        "queries": "all",
        "cls_is_background": True,
    },
}


def _datamodule(data: dict) -> SyntheticScenesDataModule:
    dm = instantiate(data)
    dm.setup("fit")
    return dm


@torch.no_grad()
def _run(root: Path, variant: str, seed: int, weight: float | None = None, older: bool = False) -> float:
    """A run folder as salguide-train leaves it (``older``: in the layout of runs recorded before model: became
    the LightningModule); returns the model's shuffled-background test accuracy."""
    run = root / variant / f"{weight}-{seed}"
    (run / ".hydra").mkdir(parents=True)
    data = {**DATA, "seed": seed}
    if variant == "oracle":
        data["erase_background"] = True
    loss = {} if variant in ("vanilla", "oracle") else {**LOSS[variant], "weight": weight}
    callback = {"_target_": "salguide.callbacks.AttentionLossCallback", "attention_loss": loss}
    cfg = {
        "name": f"attn_scenes_{variant}",
        "seed": seed,
        "data": data,
        "task": COMPOSED["task"],
        "model": MODEL,
        "trainer": {"max_epochs": EPOCHS},
        "callbacks": {"attention_loss": callback} if loss else {},
        "paths": {"output_dir": "${hydra:runtime.output_dir}"},
    }
    if older:
        cfg.update(task="attention", model=MODEL["net"], trainer={"max_epochs": None}, classify={"epochs": EPOCHS})
    (run / ".hydra" / "config.yaml").write_text(yaml.safe_dump(cfg))
    torch.manual_seed(1000 * seed + len(variant) + int(weight or 0))
    model = instantiate(MODEL).eval()  # the pipeline saves the ClassifierModule (its network as model.*)
    save_weights(model, run / "models" / "attention.safetensors")
    x, y, _ = _datamodule(data).test_dataset.tensors
    acc = 100.0 * float((model(x).argmax(-1) == y).float().mean())
    (run / "results.json").write_text(json.dumps({"name": cfg["name"], "seed": seed, "test_acc": acc, "seconds": 9.0}))
    return acc


def _summarise(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(HERE / "summarise.py"), *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=dict(os.environ, WANDB_MODE="offline"),
    )


def test_oracle_data_erase_the_background():
    data = {**DATA, "seed": 3}
    plain, oracle = _datamodule(data), _datamodule({**data, "erase_background": True})
    for split in ("train_dataset", "val_dataset", "test_dataset"):
        x, y, m = getattr(plain, split).tensors
        xo, yo, mo = getattr(oracle, split).tensors
        assert torch.equal(xo, x * m) and torch.equal(yo, y) and torch.equal(mo, m)
    assert not torch.equal(plain.test_dataset.tensors[0], oracle.test_dataset.tensors[0])
    with pytest.raises(TypeError, match="erase_background must be a bool"):
        SyntheticScenesDataModule(erase_background="yes")  # type: ignore[arg-type]


def test_select_then_results(tmp_path):
    sel, final, out = tmp_path / "select", tmp_path / "final", tmp_path / "out"
    _run(sel, "vanilla", 0)
    for w in (1.0, 5.0):
        _run(sel, "concentration", 0, w)
    _run(sel, "bas", 0, 5.0)
    done = _summarise("select", str(sel), "--out", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    doc = json.loads((out / "selection.json").read_text())
    conc = {r["weight"]: r["acc_val_shuffled"] for r in doc["rows"] if r["variant"] == "concentration"}
    best = min(conc, key=lambda w: (-conc[w], w))
    assert doc["chosen"] == {"concentration": best, "bas": 5.0} and doc["split"] == "val"
    key = "callbacks.attention_loss.attention_loss.weight"
    assert done.stdout.split() == [f"CONC_ARGS='{key}={best:g}'", f"BAS_ARGS='{key}=5'"]
    sel_md = (out / "selection.md").read_text()
    assert "| vanilla |" in sel_md and sel_md.count("(chosen)") == 2

    accs = {}
    for seed in (0, 1):
        for v, w in (("vanilla", None), ("concentration", 1.0), ("bas", 5.0), ("oracle", None)):
            accs[(v, seed)] = _run(final, v, seed, w, older=seed == 1)  # seed 1: older runs' layout
    done = _summarise("results", str(final), "--out", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    res = json.loads((out / "results.json").read_text())
    assert [(r["variant"], r["seed"]) for r in res["rows"]][:4] == [
        ("vanilla", 0),
        ("concentration", 0),
        ("bas", 0),
        ("oracle", 0),
    ]
    for r in res["rows"]:
        assert r["acc_shuffled"] == pytest.approx(accs[(r["variant"], r["seed"])], abs=1e-4)
        assert 0.0 <= r["object_mass"] <= 1.0 and 0.0 <= r["object_mass_layers"] <= 1.0
    oracle = [r for r in res["rows"] if r["variant"] == "oracle"]
    for r in oracle:  # erased backgrounds: the in-distribution test images equal the shuffled ones
        assert r["acc_in_dist"] == pytest.approx(r["acc_shuffled"])
    s = res["summary"]["vanilla"]
    vals = [accs[("vanilla", 0)], accs[("vanilla", 1)]]
    assert s["acc_shuffled"] == pytest.approx(statistics.mean(vals))
    assert s["acc_shuffled_std"] == pytest.approx(statistics.pstdev(vals))
    assert res["weights"] == {"concentration": 1.0, "bas": 5.0} and res["depth"] == 4 and res["patch"] == 4
    assert res["epochs"] == 30
    md = (out / "results.md").read_text()
    assert "- concentration:" in md and "goal (+10)" in md and "Per run:" in md
    for png in ("accuracy.png", "attention_maps.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"


def test_refuses_a_model_that_is_not_the_runs(tmp_path):
    _run(tmp_path, "vanilla", 0)
    res = tmp_path / "vanilla" / "None-0" / "results.json"
    row = json.loads(res.read_text())
    res.write_text(json.dumps({**row, "test_acc": row["test_acc"] + 5.0}))
    done = _summarise("results", str(tmp_path), "--out", str(tmp_path / "out"))
    assert done.returncode != 0 and "not the model of this run" in done.stderr


@pytest.mark.slow
def test_study_quick_mode_runs(tmp_path):
    env = dict(os.environ, WANDB_MODE="offline", QUICK="1", STUDY_OUT=str(tmp_path / "out"))
    proc = subprocess.run(
        ["bash", str(HERE / "run.sh"), str(tmp_path / "runs")], capture_output=True, text=True, env=env, timeout=3600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads((tmp_path / "out" / "results.json").read_text())
    assert {r["variant"] for r in res["rows"]} == {"vanilla", "concentration", "bas", "oracle"} and res["epochs"] == 1
    assert json.loads((tmp_path / "out" / "selection.json").read_text())["chosen"]["bas"] == 5.0
