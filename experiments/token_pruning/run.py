"""Token pruning / merging on the digits ViT: accuracy and CPU throughput at keep 1.0, 0.7 and 0.5.

For each seed, the digits ViT (32 px, patch 4: 64 tokens + CLS, width 64, depth 4, MLP 256) is trained once
without pruning (keep 1.0) and once per (policy, keep) with the policy active in training and at test.
EViT (Liang et al., ICLR 2022), DynamicViT-style key masking (Rao et al., NeurIPS 2021) and ToMe (Bolya et
al., ICLR 2023) all act after the attention of blocks 1 and 2 with the same keep rate (share of the current
patch tokens kept per block), so they keep the same number of tokens (EViT: +1 fused token); the keep rate
warms up from 1 over the first third of training, as in EViT. Accuracy differences are paired (same seed,
same data split and initialisation: policy minus keep 1.0). Throughput and FLOPs come from
benchmarks/token_pruning.py in the same process. Goals: <= 0.5 point accuracy drop at keep 0.7; >= 1.3x
training throughput on CPU.

    python experiments/token_pruning/run.py                      # accuracy (21 models) + throughput
    python experiments/token_pruning/run.py --skip-throughput    # accuracy only (shared machine)
    python experiments/token_pruning/run.py --skip-train         # throughput only, reuses results.json
    # GPU part (ViT-S/16 sizes, random data), on a CUDA machine:
    python benchmarks/token_pruning.py --model vit_s16 --device cuda --dtype bf16 --batch 128 \\
        --output experiments/token_pruning/gpu.md
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from salguide._lightning import pl  # noqa: E402
from salguide.attention import build_policy  # noqa: E402
from salguide.callbacks.token_pruning import TokenPruningCallback  # noqa: E402
from salguide.data import DigitsDataModule  # noqa: E402
from salguide.io import atomic_write_json, atomic_write_text  # noqa: E402
from salguide.models import ClassifierModule  # noqa: E402
from salguide.models.vit import vit_digits  # noqa: E402
from salguide.unlearning.metrics import accuracy  # noqa: E402
from salguide.viz._save import save_png  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "benchmarks"))
from token_pruning import markdown as throughput_table  # noqa: E402
from token_pruning import run as throughput  # noqa: E402

LAYERS = [1, 2]  # every policy acts here (same token budget)
POLICY_NAMES = ["evit", "dynamicvit", "tome"]
GOAL_DROP, GOAL_SPEEDUP = 0.5, 1.3


def train(policy: str, keep: float, seed: int, epochs: int) -> float:
    dm = DigitsDataModule(batch_size=64, image_size=32, seed=seed, forget=None)
    dm.setup("fit")
    pl.seed_everything(seed, verbose=False)
    module = ClassifierModule(vit_digits(), lr=1e-3, optimizer="adamw", weight_decay=0.05, scheduler="cosine")
    cbs = []
    if policy != "none":
        steps = epochs * len(dm.train_dataloader())
        cbs.append(TokenPruningCallback(build_policy(policy, layers=LAYERS, keep=keep), warmup_steps=steps // 3))
    trainer = pl.Trainer(max_epochs=epochs, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                         limit_val_batches=0, callbacks=cbs)
    trainer.fit(module, datamodule=dm)
    for cb in cbs:  # the policy stays active at test time
        cb.setup(trainer, module, "test")
    acc = accuracy(module, dm.test_dataloader())  # eval mode: the policy acts as at test time
    for cb in cbs:
        cb.teardown(trainer, module, "test")
    return acc


def summarise(acc: dict[str, dict[str, float]]) -> list[dict]:
    """Per run: accuracy mean / std over seeds and the paired difference (run minus keep 1.0, same seed)."""
    base = acc["none@1.0"]
    order = ["none"] + POLICY_NAMES  # results.json stores runs with sorted keys
    rows = []
    for name in sorted(acc, key=lambda n: (order.index(n.split("@")[0]), -float(n.split("@")[1]))):
        per_seed = acc[name]
        seeds = [s for s in per_seed if s in base]
        vals = [per_seed[s] for s in seeds]
        diff = [per_seed[s] - base[s] for s in seeds]
        rows.append({"run": name, "seeds": [int(s) for s in seeds], "acc": vals, "mean": statistics.mean(vals),
                     "std": statistics.stdev(vals) if len(vals) > 1 else 0.0, "diff": diff,
                     "diff_mean": statistics.mean(diff), "diff_std": statistics.stdev(diff) if len(diff) > 1 else 0.0})
    return rows


def write(acc: dict[str, dict[str, float]], tp: list[dict] | None, meta: dict) -> None:
    """results.md / .json and results_accuracy.png."""
    rows = summarise(acc)
    n_test = meta["n_test"]
    lines = [
        "# Token pruning on the digits ViT (CPU)", "",
        f"Digits ViT (64 patch tokens + CLS, width 64, depth 4, MLP 256), {meta['epochs']} epochs AdamW (lr 1e-3, "
        f"wd 0.05, cosine), batch 64, seeds {meta['seeds']}. EViT, DynamicViT-style masking and ToMe all act after "
        f"the attention of blocks {LAYERS} at the same keep rate (share of the current patch tokens kept per block; "
        "warm-up from 1 over the first third of training); the policy is active in training and at test "
        f"(DynamicViT: masks keys in training, drops tokens at test). Test split: {n_test} images "
        f"(1 image = {100 / n_test:.2f} points). Accuracy (%): per seed, mean +- std (sample std over seeds) and "
        "paired difference to keep 1.0 (same seed, split and initialisation; negative = worse). "
        f"Goal: drop <= {GOAL_DROP} point at keep 0.7.", "",
        "| run | per seed | mean +- std | paired diff vs keep 1.0 | goal (keep 0.7) |", "|---|---|---|---|---|"]
    for r in rows:
        goal = ""
        if r["run"].endswith("@0.7"):
            goal = "met" if r["diff_mean"] >= -GOAL_DROP else f"missed by {-GOAL_DROP - r['diff_mean']:.2f}"
        lines.append(f"| {r['run']} | {', '.join(f'{v:.2f}' for v in r['acc'])} | {r['mean']:.2f} +- {r['std']:.2f} "
                     f"| {r['diff_mean']:+.2f} +- {r['diff_std']:.2f} | {goal} |")
    lines += ["", f"Wall time of the accuracy runs: {meta['train_minutes']:.1f} min "
              f"({meta['threads']} CPU thread(s), shared machine).", ""]
    if tp:
        lines.append(throughput_table(tp, f"Throughput (batch 128, 30 timed steps after 5 warm-up, fp32, CPU {meta['tp_threads']} thread(s); "
                                          "ratio = median of 3 paired runs, each right after an unpruned run; "
                                          f"torch {torch.__version__}; goal >= {GOAL_SPEEDUP}x training at keep 0.7). "
                                          "'FLOP x' = analytic bound (unpruned / pruned forward matmul FLOPs; "
                                          "DynamicViT training counts only unmasked keys, which the CPU backend gathers "
                                          "and a key-skipping kernel skips)."))
    else:
        lines.append("Throughput: not measured in this run (`python experiments/token_pruning/run.py --skip-train`).\n")
    text = "\n".join(lines)
    atomic_write_text(HERE / f"{meta['name']}.md", text)
    atomic_write_json(HERE / f"{meta['name']}.json", {"accuracy": acc, "summary": rows, "throughput": tp,
                                                       "layers": LAYERS, **meta})
    plot(rows, HERE / f"{meta['name']}_accuracy.png", meta)
    print(text, flush=True)


def plot(rows: list[dict], path: Path, meta: dict) -> None:
    """Left: accuracy per seed (dots) and mean; right: paired difference to keep 1.0, mean +- std."""
    names = [r["run"] for r in rows]
    xs = range(len(rows))
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 3.6))
    for i, r in enumerate(rows):
        a1.scatter([i] * len(r["acc"]), r["acc"], color="tab:blue", s=14, alpha=0.7)
        a1.hlines(r["mean"], i - 0.3, i + 0.3, color="black")
    a1.set_ylabel("test accuracy (%)")
    a1.set_title(f"digits ViT, seeds {meta['seeds']} (dots), mean (bar)", fontsize=9)
    a2.bar(xs, [r["diff_mean"] for r in rows], yerr=[r["diff_std"] for r in rows], capsize=4, color="tab:orange")
    for i, r in enumerate(rows):
        a2.scatter([i] * len(r["diff"]), r["diff"], color="black", s=10, zorder=3)
    a2.axhline(-GOAL_DROP, color="tab:red", ls="--", lw=1, label=f"goal at keep 0.7: >= -{GOAL_DROP}")
    a2.axhline(0, color="black", lw=0.8)
    a2.set_ylabel("paired diff vs keep 1.0 (points)")
    a2.set_title("same seed: policy minus no pruning (per seed, mean +- std)", fontsize=9)
    a2.legend(fontsize=7)
    for ax in (a1, a2):
        ax.set_xticks(list(xs), names, rotation=30, ha="right", fontsize=8)
    save_png(fig, path)


def main() -> None:
    ap = argparse.ArgumentParser(description="token pruning study on digits")
    ap.add_argument("--epochs", type=int, default=30, help="30 fits the 40 min budget on one core")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--keeps", type=float, nargs="+", default=[0.7, 0.5])
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads for training")
    ap.add_argument("--tp-threads", type=int, default=None, help="torch CPU threads for the throughput part "
                    "(default: torch's choice, all cores)")
    ap.add_argument("--name", default="results", help="output file stem (<name>.md / .json, <name>_accuracy.png)")
    ap.add_argument("--skip-throughput", action="store_true", help="accuracy runs only")
    ap.add_argument("--skip-train", action="store_true", help="throughput only; accuracy from <name>.json")
    a = ap.parse_args()
    if a.skip_train and a.skip_throughput:
        ap.error("--skip-train and --skip-throughput leave nothing to do")
    tp_threads = a.tp_threads or torch.get_num_threads()
    meta = {"name": a.name, "epochs": a.epochs, "seeds": a.seeds, "keeps": a.keeps, "threads": a.threads,
            "tp_threads": tp_threads, "train_minutes": 0.0, "n_test": 0}
    if a.skip_train:
        saved = json.loads((HERE / f"{a.name}.json").read_text())
        acc = saved["accuracy"]
        meta.update({k: saved[k] for k in ("epochs", "seeds", "keeps", "threads", "train_minutes", "n_test")})
        meta["tp_threads"] = tp_threads
    else:
        torch.set_num_threads(a.threads)
        dm = DigitsDataModule(batch_size=64, image_size=32, seed=a.seeds[0], forget=None)
        dm.setup("fit")
        meta["n_test"] = len(dm.test_dataloader().dataset)
        runs = [("none", 1.0)] + [(p, k) for p in POLICY_NAMES for k in a.keeps]
        acc = {}
        start = time.perf_counter()
        for seed in a.seeds:
            for p, k in runs:
                t0 = time.perf_counter()
                acc.setdefault(f"{p}@{k}", {})[str(seed)] = train(p, k, seed, a.epochs)
                print(json.dumps({"run": f"{p}@{k}", "seed": seed, "acc": acc[f"{p}@{k}"][str(seed)],
                                  "seconds": round(time.perf_counter() - t0)}), flush=True)
            meta["train_minutes"] = (time.perf_counter() - start) / 60
            meta["seeds"] = a.seeds[: a.seeds.index(seed) + 1]
            write(acc, None, meta)
    if not a.skip_throughput:
        torch.set_num_threads(tp_threads)
        write(acc, throughput("digits", "cpu", torch.float32, 128, 30, 5), meta)


if __name__ == "__main__":
    main()
