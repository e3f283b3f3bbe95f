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

from salguide.io import atomic_write_csv, atomic_write_json, atomic_write_text  # noqa: E402
from salguide.studies import job_results, log_results_table, run_epochs, run_lr, summary_arguments  # noqa: E402

POLICIES = ("evit", "tome", "dynamicvit")
NAMES = {"evit": "EViT", "tome": "ToMe", "dynamicvit": "DynamicViT-style masking", "none": "unpruned"}
ACC_GOAL, SPEED_GOAL, SPEED_POLICIES, GOAL_KEEP = -0.5, 1.3, ("evit", "tome"), 0.7
MODES = ("scratch", "fine-tune", "off-the-shelf")


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
        keep = 1.0 if policy == "none" else float(policy_settings(cfg)["keep"])
        n, epochs = int(cfg["data"]["train_size"]), run_epochs(cfg)
        rows.append(
            {
                "mode": run_mode(cfg),
                "policy": policy,
                "keep": keep,
                "seed": int(r["seed"]),
                "test_acc": float(r["test_acc"]),
                "fit_seconds": float(r["seconds"]),
                "train_img_s": n * epochs / float(r["seconds"]),
                "train_size": n,
                "test_size": cfg["data"]["test_size"],
                "epochs": epochs,
                "batch_size": cfg["data"]["batch_size"],
                "lr": run_lr(cfg),
                "run": str(run),
            }
        )
    if not rows:
        raise FileNotFoundError(f"no results.json below {root}")
    return rows


def run_mode(cfg: dict[str, Any]) -> str:
    """How a run's model was trained: "scratch" (from initialisation), "fine-tune" (from the unpruned base,
    ``init_from=``) or "off-the-shelf" (the base evaluated under the policy, no training step)."""
    if not cfg.get("init_from"):
        return "scratch"
    return "off-the-shelf" if (cfg.get("trainer") or {}).get("limit_train_batches") == 0 else "fine-tune"


def _mean_std(xs: list[float]) -> list[float]:
    return [statistics.fmean(xs), statistics.stdev(xs) if len(xs) > 1 else 0.0]


def summarise(rows: list[dict[str, Any]], bench: dict[str, Any]) -> list[dict[str, Any]]:
    """One entry per (mode, policy, keep) with the paired accuracy change (against the unpruned run of the
    same mode and seed), the per-run training speed ratio and the benchmark's ratios (mean and sample std
    over seeds)."""
    out = []
    for mode in [m for m in MODES if any(r["mode"] == m for r in rows)]:
        base = {r["seed"]: r for r in rows if r["mode"] == mode and r["policy"] == "none"}
        if not base:
            raise ValueError(f"no unpruned {mode} run (token_policy=none): nothing to pair the pruned runs with")
        out.append(
            {
                "mode": mode,
                "policy": "none",
                "keep": 1.0,
                "n": len(base),
                "test_acc": _mean_std([r["test_acc"] for r in base.values()]),
                "acc_diff": [0.0, 0.0],
                "run_train_ratio": [1.0, 0.0],
                "train_ratio": 1.0,
                "infer_ratio": 1.0,
                "train_flop_ratio": 1.0,
                "infer_flop_ratio": 1.0,
                "train_img_s": _base_bench(bench, "train"),
                "infer_img_s": _base_bench(bench, "infer"),
            }
        )
        for policy in POLICIES:
            for keep in sorted({r["keep"] for r in rows if (r["mode"], r["policy"]) == (mode, policy)}, reverse=True):
                runs = [
                    r for r in rows if (r["mode"], r["policy"], r["keep"]) == (mode, policy, keep) and r["seed"] in base
                ]
                b = next((x for x in bench.get("rows", []) if x["policy"] == policy and x["keep"] == keep), {})
                out.append(
                    {
                        "mode": mode,
                        "policy": policy,
                        "keep": keep,
                        "n": len(runs),
                        "test_acc": _mean_std([r["test_acc"] for r in runs]),
                        "acc_diff": _mean_std([r["test_acc"] - base[r["seed"]]["test_acc"] for r in runs]),
                        "run_train_ratio": _mean_std([r["train_img_s"] / base[r["seed"]]["train_img_s"] for r in runs]),
                        **{
                            k: b.get(k)
                            for k in (
                                "train_ratio",
                                "infer_ratio",
                                "train_flop_ratio",
                                "infer_flop_ratio",
                                "train_img_s",
                                "infer_img_s",
                                "tokens",
                            )
                        },
                    }
                )
    return out


def _base_bench(bench: dict[str, Any], key: str) -> float | None:
    return next((x[f"{key}_img_s"] for x in bench.get("rows", []) if x["keep"] == 1.0), None)


def goals(summary: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Met / missed per goal and policy at keep 0.7, judged on the fine-tuned models when the study has
    them (EViT's and DynamicViT's protocol: prune while fine-tuning a trained model), else from scratch."""
    modes = {e["mode"] for e in summary}
    judged = "fine-tune" if "fine-tune" in modes else "scratch" if "scratch" in modes else "off-the-shelf"
    out = []
    for e in summary:
        if e["keep"] != GOAL_KEEP or e["mode"] != judged:
            continue
        out.append(
            {
                "goal": f"accuracy change >= {ACC_GOAL} points",
                "policy": e["policy"],
                "mode": judged,
                "value": e["acc_diff"][0],
                "met": e["acc_diff"][0] >= ACC_GOAL,
            }
        )
        if e["policy"] in SPEED_POLICIES and e["train_ratio"] is not None:
            out.append(
                {
                    "goal": f"training throughput >= {SPEED_GOAL}x",
                    "policy": e["policy"],
                    "mode": judged,
                    "value": e["train_ratio"],
                    "met": e["train_ratio"] >= SPEED_GOAL,
                }
            )
    return out


def _x(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def _recipe(rows: list[dict[str, Any]], mode: str) -> str:
    r = next(r for r in rows if r["mode"] == mode)
    return (
        f"{r['train_size']} images, {r['epochs']} epochs, lr {r['lr']}"
        if mode != "off-the-shelf"
        else "no training step"
    )


def table(rows: list[dict[str, Any]], summary: list[dict[str, Any]], bench: dict[str, Any], wall: float | None) -> str:
    r0 = rows[0]
    seeds = sorted({r["seed"] for r in rows})
    modes = [m for m in MODES if any(r["mode"] == m for r in rows)]
    lines = [
        f"Token pruning, ViT 28 px / patch 2 (196 tokens + CLS), width 64, depth 4, policies after the attention of "
        f"blocks 1-2; seeds {seeds}, batch {r0['batch_size']}, test_size "
        f"{r0['test_size'] or 'all 10,000'}; "
        + "; ".join(f"{m}: {_recipe(rows, m)}" for m in modes)
        + ". Modes: scratch = trained from initialisation with the policy; fine-tune = the unpruned scratch model "
        "of the same seed fine-tuned with the policy (`init_from=`; the unpruned row is fine-tuned the same way); "
        "off-the-shelf = that model evaluated under the policy without training. Accuracy change: pruned minus "
        "unpruned of the same mode and seed (mean +- sample std). Throughput: `benchmarks/token_pruning.py --model "
        f"fashion_mnist` ({bench.get('device_name', '?')}, batch {bench.get('batch', '?')}, {bench.get('steps', '?')} "
        f"steps, median of {bench.get('repeats', '?')} runs each paired with the unpruned model); FLOP x: unpruned / "
        "pruned matmul FLOPs. 'fit x': training images/s of the study's own runs over the unpruned run of the same "
        "mode and seed (separate processes on a shared machine: noisy).",
        "",
        "| mode | policy | keep | tokens after each block (eval) | test acc (%) | acc. change (points) | "
        "train x (FLOP x) | infer x (FLOP x) | train img/s | infer img/s | fit x |",
        "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for e in summary:
        tokens = e.get("tokens") or "-"
        diff = "-" if e["policy"] == "none" else f"{e['acc_diff'][0]:+.2f} +- {e['acc_diff'][1]:.2f}"
        fit = "-" if e["mode"] == "off-the-shelf" else f"{e['run_train_ratio'][0]:.2f} +- {e['run_train_ratio'][1]:.2f}"
        lines.append(
            f"| {e['mode']} | {NAMES[e['policy']]} | {e['keep']} | {tokens} | {e['test_acc'][0]:.2f} +- "
            f"{e['test_acc'][1]:.2f} | {diff} | {_x(e['train_ratio'])} ({_x(e['train_flop_ratio'])}) | "
            f"{_x(e['infer_ratio'])} ({_x(e['infer_flop_ratio'])}) | {_x(e['train_img_s'])} | "
            f"{_x(e['infer_img_s'])} | {fit} |"
        )
    found = goals(summary)
    mode = found[0]["mode"] if found else "-"
    lines += ["", f"| goal (keep 0.7, {mode}) | policy | value | met |", "|---|---|---:|---|"]
    lines += [
        f"| {g['goal']} | {NAMES[g['policy']]} | {g['value']:+.2f} | {'met' if g['met'] else '**missed**'} |"
        for g in found
    ]
    if wall is not None:
        lines += [
            "",
            f"Wall time of `run.sh` (benchmark + training runs): {wall / 60:.1f} min with OMP_NUM_THREADS="
            f"{os.environ.get('OMP_NUM_THREADS', 'unset')} and nice 19 on a 2-core CPU shared with other jobs.",
        ]
    return "\n".join(lines) + "\n"


def figures(summary: list[dict[str, Any]], out: Path) -> None:
    figs = out / "figures"
    figs.mkdir(parents=True, exist_ok=True)
    pruned = [e for e in summary if e["policy"] != "none"]
    modes = list(dict.fromkeys(e["mode"] for e in pruned))
    cells = list(dict.fromkeys((e["policy"], e["keep"]) for e in pruned))
    labels = [f"{NAMES[p].split()[0]}\n{k}" for p, k in cells]
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.4))
    width = 0.8 / len(modes)
    for i, mode in enumerate(modes):
        by = {(e["policy"], e["keep"]): e for e in pruned if e["mode"] == mode}
        xs = [j + (i - (len(modes) - 1) / 2) * width for j, c in enumerate(cells) if c in by]
        axes[0].bar(
            xs,
            [by[c]["acc_diff"][0] for c in cells if c in by],
            width,
            yerr=[by[c]["acc_diff"][1] for c in cells if c in by],
            capsize=3,
            label=mode,
        )
    axes[0].set_xticks(range(len(cells)), labels)
    axes[0].axhline(ACC_GOAL, color="tab:red", ls="--", lw=1, label="goal at keep 0.7")
    axes[0].axhline(0, color="black", lw=0.5)
    axes[0].set(ylabel="accuracy change (points, paired)", title="pruned - unpruned, same mode and seed")
    axes[0].legend(fontsize=7)
    pruned = [e for e in pruned if e["mode"] == modes[0]]  # the benchmark's ratios do not depend on the mode
    labels = [f"{NAMES[e['policy']].split()[0]}\n{e['keep']}" for e in pruned]
    xs = range(len(pruned))
    for off, key, label in ((-0.2, "train", "train step"), (0.2, "infer", "inference")):
        axes[1].bar([x + off for x in xs], [e[f"{key}_ratio"] or 0.0 for e in pruned], 0.4, label=f"{label} (measured)")
        axes[1].scatter(
            [x + off for x in xs],
            [e[f"{key}_flop_ratio"] or 0.0 for e in pruned],
            marker="_",
            s=200,
            color="black",
            zorder=3,
            label="FLOP bound" if key == "train" else None,
        )
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
    atomic_write_json(
        args.out / "results.json", {"rows": public, "summary": summary, "goals": goals(summary), "throughput": bench}
    )
    atomic_write_csv(args.out / "results.csv", public)
    figures(summary, args.out)
    log_results_table(public, args.runs, "token_pruning_fashion_mnist")
    print(md)


if __name__ == "__main__":
    main()
