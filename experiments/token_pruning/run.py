"""Token pruning / merging on the digits ViT: accuracy and CPU throughput at keep 1.0, 0.7 and 0.5.

For each seed, the digits ViT (32 px, patch 4: 64 tokens + CLS, width 64, depth 4) is trained once without
pruning (keep 1.0) and once per (policy, keep) with the policy active in training and at test (EViT and
DynamicViT-style masking at blocks 1, 2; ToMe at blocks 0, 1, 2; keep rate warmed up from 1 over the first
third of training, as in EViT). Throughput comes from benchmarks/token_pruning.py in the same process.
Goals: <= 0.5 point accuracy drop at keep 0.7; >= 1.3x training throughput on CPU.

    python experiments/token_pruning/run.py [--epochs 40] [--seeds 0 1 2] [--keeps 0.7 0.5] [--name results]
    # GPU part (ViT-S/16 sizes, random data), on a CUDA machine:
    python benchmarks/token_pruning.py --model vit_s16 --device cuda --dtype bf16 --batch 128 \
        --output experiments/token_pruning/gpu.md
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

from salguide._lightning import pl
from salguide.attention import build_policy
from salguide.callbacks.token_pruning import TokenPruningCallback
from salguide.data import DigitsDataModule
from salguide.io import atomic_write_json, atomic_write_text
from salguide.models import ClassifierModule
from salguide.models.vit import vit_digits
from salguide.viz import plot_accuracy_bars

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "benchmarks"))
from token_pruning import markdown as throughput_table  # noqa: E402
from token_pruning import run as throughput  # noqa: E402

LAYERS = {"evit": [1, 2], "dynamicvit": [1, 2], "tome": [0, 1, 2]}


def accuracy(module: ClassifierModule, dm: DigitsDataModule) -> float:
    module.eval()
    hits = total = 0
    with torch.no_grad():
        for x, y in dm.test_dataloader():
            hits += int((module(x).argmax(-1) == y).sum())
            total += len(y)
    return 100.0 * hits / total


def train(policy: str, keep: float, seed: int, epochs: int) -> float:
    dm = DigitsDataModule(batch_size=64, image_size=32, seed=seed, forget=None)
    dm.setup("fit")
    pl.seed_everything(seed, verbose=False)
    module = ClassifierModule(vit_digits(), lr=1e-3, optimizer="adamw", weight_decay=0.05, scheduler="cosine")
    cbs = []
    if policy != "none":
        steps = epochs * len(dm.train_dataloader())
        cbs.append(TokenPruningCallback(build_policy(policy, layers=LAYERS[policy], keep=keep), warmup_steps=steps // 3))
    trainer = pl.Trainer(max_epochs=epochs, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                         limit_val_batches=0, callbacks=cbs)
    trainer.fit(module, datamodule=dm)
    for cb in cbs:  # the policy stays active at test time
        cb.setup(trainer, module, "test")
    acc = accuracy(module, dm)
    for cb in cbs:
        cb.teardown(trainer, module, "test")
    return acc


def main() -> None:
    ap = argparse.ArgumentParser(description="token pruning study on digits")
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--keeps", type=float, nargs="+", default=[0.7, 0.5])
    ap.add_argument("--name", default="results", help="output file stem (results.md / .json, <name>_accuracy.png)")
    ap.add_argument("--skip-throughput", action="store_true")
    a = ap.parse_args()
    runs = [("none", 1.0)] + [(p, k) for p in LAYERS for k in a.keeps]
    acc: dict[str, list[float]] = {}
    for seed in a.seeds:
        for p, k in runs:
            acc.setdefault(f"{p}@{k}", []).append(train(p, k, seed, a.epochs))
            print(json.dumps({"run": f"{p}@{k}", "seed": seed, "acc": acc[f"{p}@{k}"][-1]}), flush=True)
        write(acc, None, a, seeds_done=a.seeds[: a.seeds.index(seed) + 1])
    if not a.skip_throughput:
        write(acc, throughput("digits", "cpu", torch.float32, 128, 10, 3), a, a.seeds)


def write(acc: dict[str, list[float]], tp: list[dict] | None, a: argparse.Namespace, seeds_done: list[int]) -> None:
    """results.md / .json (throughput only once measured) and the accuracy figure."""
    base = statistics.mean(acc["none@1.0"])
    lines = ["# Token pruning on the digits ViT (CPU)", "",
             f"Test accuracy (%), mean +- std over seeds {seeds_done}, {a.epochs} epochs AdamW; the policy is active in "
             "training and at test. Goal: <= 0.5 point drop at keep 0.7.", "",
             "| run | accuracy | std | drop vs keep 1.0 |", "|---|---|---|---|"]
    for name, vals in acc.items():
        lines.append(f"| {name} | {statistics.mean(vals):.2f} | {statistics.pstdev(vals):.2f} | "
                     f"{base - statistics.mean(vals):+.2f} |")
    text = "\n".join(lines) + "\n\n" + (
        throughput_table(tp, f"Throughput (batch 128, fp32, CPU {torch.get_num_threads()} threads; goal >= 1.3x "
                             "training at keep 0.7)") if tp else "Throughput: not measured yet.\n")
    atomic_write_text(HERE / f"{a.name}.md", text)
    atomic_write_json(HERE / f"{a.name}.json", {"accuracy": acc, "throughput": tp, "epochs": a.epochs})
    plot_accuracy_bars(acc, HERE / f"{a.name}_accuracy.png", title="digits ViT, token policies")
    print(text)


if __name__ == "__main__":
    main()
