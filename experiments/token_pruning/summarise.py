"""Token pruning on the digits ViT: paired accuracy differences and CPU throughput.

Reads, below RUNS, what ``run.sh`` leaves: each training run's ``results.json`` (test accuracy with the
policy active at test) with its ``.hydra/config.yaml`` (policy, keep, seed, epochs), and ``throughput.json``
(``benchmarks/token_pruning.py --model digits --json``; optional)::

    python summarise.py RUNS --out DIR   # writes results.md / results.json / results_accuracy.png

Accuracy differences are paired: a policy's run minus the unpruned run of the same seed (same split and
initialisation). EViT (Liang et al., ICLR 2022), DynamicViT-style key masking (Rao et al., NeurIPS 2021) and
ToMe (Bolya et al., ICLR 2023) act after the attention of the same blocks at the same keep rate. Goals:
<= 0.5-point accuracy drop at keep 0.7; >= 1.3x training throughput on CPU.
"""

from __future__ import annotations

import json
import os
import statistics
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from salguide.io import atomic_write_json, atomic_write_text  # noqa: E402
from salguide.studies import (  # noqa: E402
    job_results,
    log_results_table,
    run_datamodule,
    run_epochs,
    summary_arguments,
    throughput_table,
)

POLICY_NAMES = ["evit", "dynamicvit", "tome"]
GOAL_DROP, GOAL_SPEEDUP = 0.5, 1.3


def policy_settings(cfg: dict[str, Any]) -> dict[str, Any]:
    """A run's token-policy settings (``keep``, ``layers``, ``warmup_steps``) from ``callbacks.token_policy``
    (runs older than the callback layout: ``token_policy``)."""
    node = (cfg.get("callbacks") or {}).get("token_policy")
    return {**node["policy"], "warmup_steps": node.get("warmup_steps")} if node else (cfg.get("token_policy") or {})


def load_runs(root: Path) -> list[dict[str, Any]]:
    """One row per training run below ``root`` (a directory holding ``results.json``)."""
    rows = []
    for run, cfg, r in job_results(root):
        policy = str(r["token_policy"])
        if policy not in ["none", *POLICY_NAMES]:
            raise ValueError(f"{run}: unknown token policy {policy!r}")
        tp = policy_settings(cfg)
        keep = 1.0 if policy == "none" else float(tp["keep"])
        rows.append(
            {
                "run_name": f"{policy}@{keep}",
                "policy": policy,
                "keep": keep,
                "seed": int(r["seed"]),
                "test_acc": float(r["test_acc"]),
                "seconds": float(r["seconds"]),
                "epochs": run_epochs(cfg),
                "layers": tp.get("layers"),
                "warmup_steps": tp.get("warmup_steps"),
                "run": str(run),
            }
        )
    if not rows:
        raise FileNotFoundError(f"no results.json below {root}")
    return rows


def accuracy_table(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """run name ("evit@0.7") -> seed (str) -> test accuracy (%): the old driver's ``accuracy`` field."""
    acc: dict[str, dict[str, float]] = {}
    for r in rows:
        acc.setdefault(r["run_name"], {})[str(r["seed"])] = r["test_acc"]
    return acc


def summarise(acc: dict[str, dict[str, float]]) -> list[dict[str, Any]]:
    """Per run: accuracy mean / std over seeds and the paired difference (run minus keep 1.0, same seed)."""
    if "none@1.0" not in acc:
        raise ValueError("no unpruned run (token_policy=none): nothing to pair the pruned runs with")
    base = acc["none@1.0"]
    order = ["none"] + POLICY_NAMES
    rows = []
    for name in sorted(acc, key=lambda n: (order.index(n.split("@")[0]), -float(n.split("@")[1]))):
        per_seed = acc[name]
        seeds = sorted((s for s in per_seed if s in base), key=int)
        vals = [per_seed[s] for s in seeds]
        diff = [per_seed[s] - base[s] for s in seeds]
        rows.append(
            {
                "run": name,
                "seeds": [int(s) for s in seeds],
                "acc": vals,
                "mean": statistics.mean(vals),
                "std": statistics.stdev(vals) if len(vals) > 1 else 0.0,
                "diff": diff,
                "diff_mean": statistics.mean(diff),
                "diff_std": statistics.stdev(diff) if len(diff) > 1 else 0.0,
            }
        )
    return rows


def write(acc: dict[str, dict[str, float]], bench: dict[str, Any], meta: dict[str, Any], out: Path) -> str:
    """results.md / .json and results_accuracy.png in ``out``; returns the markdown."""
    rows = summarise(acc)
    n_test = meta["n_test"]
    lines = [
        "# Token pruning on the digits ViT (CPU)",
        "",
        f"Digits ViT (64 patch tokens + CLS, width 64, depth 4, MLP 256), {meta['epochs']} epochs AdamW (lr 1e-3, "
        f"wd 0.05, cosine), batch 64, seeds {meta['seeds']}. EViT, DynamicViT-style masking and ToMe all act after "
        f"the attention of blocks {meta['layers']} at the same keep rate (share of the current patch tokens kept per "
        f"block; warm-up from 1 over the first {meta['warmup_steps']} steps, a third of training); the policy is "
        "active in training and at test (DynamicViT: masks keys in training, drops tokens at test). Test split: "
        f"{n_test} images (1 image = {100 / n_test:.2f} points). Accuracy (%): per seed, mean +- std (sample std over "
        "seeds) and paired difference to keep 1.0 (same seed, split and initialisation; negative = worse). "
        f"Goal: drop <= {GOAL_DROP} point at keep 0.7.",
        "",
        "| run | per seed | mean +- std | paired diff vs keep 1.0 | goal (keep 0.7) |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        goal = ""
        if r["run"].endswith("@0.7"):
            goal = "met" if r["diff_mean"] >= -GOAL_DROP else f"missed by {-GOAL_DROP - r['diff_mean']:.2f}"
        lines.append(
            f"| {r['run']} | {', '.join(f'{v:.2f}' for v in r['acc'])} | {r['mean']:.2f} +- {r['std']:.2f} "
            f"| {r['diff_mean']:+.2f} +- {r['diff_std']:.2f} | {goal} |"
        )
    if meta.get("wall_minutes") is not None:
        lines += [
            "",
            f"Wall time of `run.sh`: {meta['wall_minutes']:.1f} min (OMP_NUM_THREADS="
            f"{os.environ.get('OMP_NUM_THREADS', 'unset')} for training, shared machine).",
        ]
    lines.append("")
    if bench.get("rows"):
        lines.append(
            throughput_table(
                bench["rows"],
                f"Throughput (batch {bench['batch']}, {bench['steps']} timed steps after {bench['warmup']} "
                f"warm-up, {bench['dtype']}, {bench['device_name']}; ratio = median of {bench['repeats']} paired runs, each "
                f"right after an unpruned run; torch {bench['torch']}; goal >= {GOAL_SPEEDUP}x training at keep 0.7). "
                "'FLOP x' = analytic bound (unpruned / pruned forward matmul FLOPs; DynamicViT training counts only "
                "unmasked keys, which the CPU backend gathers and a key-skipping kernel skips).",
            )
        )
    else:
        lines.append("Throughput: not measured in this run (run.sh with SKIP_THROUGHPUT=1).\n")
    text = "\n".join(lines)
    atomic_write_text(out / "results.md", text)
    atomic_write_json(
        out / "results.json",
        {
            "accuracy": acc,
            "summary": rows,
            "throughput": bench.get("rows"),
            "throughput_settings": {k: v for k, v in bench.items() if k != "rows"},
            **meta,
        },
    )
    plot(rows, out / "results_accuracy.png", meta)
    return text


def plot(rows: list[dict[str, Any]], path: Path, meta: dict[str, Any]) -> None:
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
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    args = summary_arguments(__doc__.splitlines()[0], Path(__file__).parent)
    rows = load_runs(args.runs)
    bench_path = args.runs / "throughput.json"
    bench = json.loads(bench_path.read_text()) if bench_path.exists() else {}
    pruned = [r for r in rows if r["policy"] != "none"] or rows
    meta = {
        "epochs": rows[0]["epochs"],
        "seeds": sorted({r["seed"] for r in rows}),
        "keeps": sorted({r["keep"] for r in pruned if r["keep"] != 1.0}, reverse=True),
        "layers": pruned[0]["layers"],
        "warmup_steps": pruned[0]["warmup_steps"],
        "n_test": len(run_datamodule(Path(rows[0]["run"])).test_dataloader().dataset),
        "wall_minutes": None if args.wall_seconds is None else args.wall_seconds / 60,
    }
    md = write(accuracy_table(rows), bench, meta, args.out)
    log_results_table(
        [{k: v for k, v in r.items() if k not in ("run", "layers")} for r in rows], args.runs, "token_pruning"
    )
    print(md)


if __name__ == "__main__":
    main()
