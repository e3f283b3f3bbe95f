"""Token pruning on the 196-token Fashion-MNIST ViT: paired accuracy changes and CPU throughput.

Reads, below RUNS, what ``run.sh`` leaves: ``throughput.json`` (``benchmarks/token_pruning.py --json``:
training-step and inference images/s of every policy paired with the unpruned model in one process) and
each training run's ``results.json`` (test accuracy, fit seconds) with its ``.hydra/config.yaml`` (policy,
keep, seed, subset, epochs)::

    python summarise.py RUNS --out DIR   # writes results.md/.json/.csv and figures/

Accuracy changes are paired: a pruned model minus the unpruned model of the same seed (same data order and
initialisation). Goals (issue 12): <= 0.5-point accuracy drop at keep 0.7; >= 1.3x training throughput for
EViT and ToMe at keep 0.7 (the benchmark's ratio: median of paired runs).
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
import yaml  # noqa: E402

from salguide.io import atomic_write_csv, atomic_write_json, atomic_write_text  # noqa: E402
from salguide.studies import log_results_table, summary_arguments  # noqa: E402

POLICIES = ("evit", "tome", "dynamicvit")
NAMES = {"evit": "EViT", "tome": "ToMe", "dynamicvit": "DynamicViT-style masking", "none": "unpruned"}
ACC_GOAL, SPEED_GOAL, SPEED_POLICIES, GOAL_KEEP = -0.5, 1.3, ("evit", "tome"), 0.7


def load_runs(root: Path) -> list[dict[str, Any]]:
    """One row per training run below ``root`` (a directory holding ``results.json``)."""
    rows = []
    for res in sorted(root.rglob("results.json")):
        run = res.parent
        cfg = yaml.safe_load((run / ".hydra" / "config.yaml").read_text())
        r = json.loads(res.read_text())
        policy = str(r["token_policy"])
        keep = 1.0 if policy == "none" else float(cfg["token_policy"]["keep"])
        n, epochs = int(cfg["data"]["train_size"]), int(cfg["classify"]["epochs"])
        rows.append({"policy": policy, "keep": keep, "seed": int(r["seed"]), "test_acc": float(r["test_acc"]),
                     "fit_seconds": float(r["seconds"]), "train_img_s": n * epochs / float(r["seconds"]),
                     "train_size": n, "test_size": cfg["data"]["test_size"], "epochs": epochs,
                     "batch_size": cfg["data"]["batch_size"], "lr": cfg["classify"]["lr"], "run": str(run)})
    if not rows:
        raise FileNotFoundError(f"no results.json below {root}")
    return rows


def _mean_std(xs: list[float]) -> list[float]:
    return [statistics.fmean(xs), statistics.stdev(xs) if len(xs) > 1 else 0.0]


def summarise(rows: list[dict[str, Any]], bench: dict[str, Any]) -> list[dict[str, Any]]:
    """One entry per (policy, keep) with the paired accuracy change, the per-run training speed ratio and the
    benchmark's ratios (mean and sample std over seeds)."""
    base = {r["seed"]: r for r in rows if r["policy"] == "none"}
    if not base:
        raise ValueError("no unpruned run (token_policy=none): nothing to pair the pruned runs with")
    out = [{"policy": "none", "keep": 1.0, "n": len(base), "test_acc": _mean_std([r["test_acc"] for r in base.values()]),
            "acc_diff": [0.0, 0.0], "run_train_ratio": [1.0, 0.0], "train_ratio": 1.0, "infer_ratio": 1.0,
            "train_flop_ratio": 1.0, "infer_flop_ratio": 1.0,
            "train_img_s": _base_bench(bench, "train"), "infer_img_s": _base_bench(bench, "infer")}]
    for policy in POLICIES:
        for keep in sorted({r["keep"] for r in rows if r["policy"] == policy}, reverse=True):
            runs = [r for r in rows if (r["policy"], r["keep"]) == (policy, keep) and r["seed"] in base]
            b = next((x for x in bench.get("rows", []) if x["policy"] == policy and x["keep"] == keep), {})
            out.append({"policy": policy, "keep": keep, "n": len(runs),
                        "test_acc": _mean_std([r["test_acc"] for r in runs]),
                        "acc_diff": _mean_std([r["test_acc"] - base[r["seed"]]["test_acc"] for r in runs]),
                        "run_train_ratio": _mean_std([r["train_img_s"] / base[r["seed"]]["train_img_s"] for r in runs]),
                        **{k: b.get(k) for k in ("train_ratio", "infer_ratio", "train_flop_ratio", "infer_flop_ratio",
                                                 "train_img_s", "infer_img_s", "tokens")}})
    return out


def _base_bench(bench: dict[str, Any], key: str) -> float | None:
    return next((x[f"{key}_img_s"] for x in bench.get("rows", []) if x["keep"] == 1.0), None)


def goals(summary: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Met / missed per goal and policy at keep 0.7."""
    out = []
    for e in summary:
        if e["keep"] != GOAL_KEEP:
            continue
        out.append({"goal": f"accuracy change >= {ACC_GOAL} points", "policy": e["policy"], "value": e["acc_diff"][0],
                    "met": e["acc_diff"][0] >= ACC_GOAL})
        if e["policy"] in SPEED_POLICIES and e["train_ratio"] is not None:
            out.append({"goal": f"training throughput >= {SPEED_GOAL}x", "policy": e["policy"],
                        "value": e["train_ratio"], "met": e["train_ratio"] >= SPEED_GOAL})
    return out


def _x(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def table(rows: list[dict[str, Any]], summary: list[dict[str, Any]], bench: dict[str, Any], wall: float | None) -> str:
    r0 = rows[0]
    seeds = sorted({r["seed"] for r in rows})
    lines = [
        f"Token pruning, ViT 28 px / patch 2 (196 tokens + CLS), width 64, depth 4, policies after the attention of "
        f"blocks 1-2; seeds {seeds}, train_size {r0['train_size']}, {r0['epochs']} epochs, batch {r0['batch_size']}, "
        f"lr {r0['lr']}, test_size {r0['test_size'] or 'all 10,000'}. Accuracy change: pruned minus unpruned of the "
        "same seed (mean +- sample std). Throughput: `benchmarks/token_pruning.py --model fashion_mnist` "
        f"({bench.get('device_name', '?')}, batch {bench.get('batch', '?')}, {bench.get('steps', '?')} steps, median "
        f"of {bench.get('repeats', '?')} runs each paired with the unpruned model); FLOP x: unpruned / pruned "
        "matmul FLOPs. 'fit x': training images/s of the study's own runs over the unpruned run of the same seed "
        "(separate processes minutes apart on a shared machine: noisy).",
        "",
        "| policy | keep | tokens after each block (eval) | test acc (%) | acc. change (points) | train x (FLOP x) | "
        "infer x (FLOP x) | train img/s | infer img/s | fit x |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for e in summary:
        tokens = e.get("tokens") or "-"
        diff = "-" if e["policy"] == "none" else f"{e['acc_diff'][0]:+.2f} +- {e['acc_diff'][1]:.2f}"
        lines.append(
            f"| {NAMES[e['policy']]} | {e['keep']} | {tokens} | {e['test_acc'][0]:.2f} +- {e['test_acc'][1]:.2f} | "
            f"{diff} | {_x(e['train_ratio'])} ({_x(e['train_flop_ratio'])}) | {_x(e['infer_ratio'])} "
            f"({_x(e['infer_flop_ratio'])}) | {_x(e['train_img_s'])} | {_x(e['infer_img_s'])} | "
            f"{e['run_train_ratio'][0]:.2f} +- {e['run_train_ratio'][1]:.2f} |")
    lines += ["", "| goal (keep 0.7) | policy | value | met |", "|---|---|---:|---|"]
    lines += [f"| {g['goal']} | {NAMES[g['policy']]} | {g['value']:+.2f} | {'met' if g['met'] else '**missed**'} |"
              for g in goals(summary)]
    if wall is not None:
        lines += ["", f"Wall time of `run.sh` (benchmark + training runs): {wall / 60:.1f} min with OMP_NUM_THREADS="
                  f"{os.environ.get('OMP_NUM_THREADS', 'unset')} and nice 19 on a 2-core CPU shared with other jobs."]
    return "\n".join(lines) + "\n"


def figures(summary: list[dict[str, Any]], out: Path) -> None:
    figs = out / "figures"
    figs.mkdir(parents=True, exist_ok=True)
    pruned = [e for e in summary if e["policy"] != "none"]
    labels = [f"{NAMES[e['policy']].split()[0]}\n{e['keep']}" for e in pruned]
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.4))
    axes[0].bar(labels, [e["acc_diff"][0] for e in pruned], yerr=[e["acc_diff"][1] for e in pruned], capsize=4)
    axes[0].axhline(ACC_GOAL, color="tab:red", ls="--", lw=1, label="goal at keep 0.7")
    axes[0].axhline(0, color="black", lw=0.5)
    axes[0].set(ylabel="accuracy change (points, paired)", title="pruned - unpruned, same seed")
    axes[0].legend(fontsize=7)
    xs = range(len(pruned))
    for off, key, label in ((-0.2, "train", "train step"), (0.2, "infer", "inference")):
        axes[1].bar([x + off for x in xs], [e[f"{key}_ratio"] or 0.0 for e in pruned], 0.4, label=f"{label} (measured)")
        axes[1].scatter([x + off for x in xs], [e[f"{key}_flop_ratio"] or 0.0 for e in pruned], marker="_", s=200,
                        color="black", zorder=3, label="FLOP bound" if key == "train" else None)
    axes[1].axhline(SPEED_GOAL, color="tab:red", ls="--", lw=1, label="training goal (EViT, ToMe)")
    axes[1].set_xticks(list(xs), labels)
    axes[1].set(ylabel="throughput / unpruned", title="CPU throughput, 1 thread")
    axes[1].legend(fontsize=7)
    for ax in axes:
        ax.tick_params(axis="x", labelsize=7)
    fig.tight_layout()
    fig.savefig(figs / "accuracy_throughput.png", dpi=120)
    plt.close(fig)


def main() -> None:
    args = summary_arguments(__doc__.splitlines()[0], Path(__file__).parent)
    rows = load_runs(args.runs)
    bench_path = args.runs / "throughput.json"
    bench = json.loads(bench_path.read_text()) if bench_path.exists() else {}
    summary = summarise(rows, bench)
    md = table(rows, summary, bench, args.wall_seconds)
    public = [{k: v for k, v in r.items() if k != "run"} for r in rows]
    atomic_write_text(args.out / "results.md", md)
    atomic_write_json(args.out / "results.json", {"rows": public, "summary": summary, "goals": goals(summary),
                                                  "throughput": bench})
    atomic_write_csv(args.out / "results.csv", public)
    figures(summary, args.out)
    log_results_table(public, args.runs, "token_pruning_fashion_mnist")
    print(md)


if __name__ == "__main__":
    main()
