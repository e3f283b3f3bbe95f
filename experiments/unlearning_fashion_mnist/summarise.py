"""Fashion-MNIST unlearning study: choose each method's learning rate, then tabulate and plot the runs.

Reads what ``salguide-train`` (the unlearning pipeline, ``salguide.pipelines.unlearn``) leaves in each run
directory: ``results.json`` (the rows Original, Retrain and the method, each with UA / RA / TA / MIA in %, RTE
in s and Avg.Gap to Retrain) and ``.hydra/config.yaml`` (forget mode, method, lr, mask factory, seed,
subset). Two steps, both called by ``run.sh``::

    python summarise.py select  RUNS/tune  --out DIR   # writes selection.md/.json, prints LR_<mode>_<method>=lr
    python summarise.py results RUNS/final --out DIR   # writes results.md/.json/.csv and figures/

Selection is SalUn's rule: per (forget mode, method) the lr with the smallest mean Avg.Gap over the tuning
seeds (ties: the smaller lr; a run with a non-finite metric counts as diverged). The results step only
reads the runs on the fresh seeds, so the reported numbers are out of sample for the lr choice.
"""

from __future__ import annotations

import math
import os
import statistics
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from salguide.io import atomic_write_csv, atomic_write_json, atomic_write_text  # noqa: E402
from salguide.studies import job_results, log_results_table, run_epochs, run_lr, run_task, summary_arguments  # noqa: E402
from salguide.unlearning.methods import run_method_key  # noqa: E402
from salguide.unlearning.metrics import METRIC_KEYS  # noqa: E402
from salguide.unlearning.report import GAP, aggregate  # noqa: E402

MODES = {"class": "class-wise (class 0, T-shirt/top)", "random": "random 10 %"}
REFERENCES = ("Original", "Retrain")
ANT = "SalUn (ANT mask)"
COLUMNS = (*METRIC_KEYS, "RTE", GAP)


def method_key(cfg: dict[str, Any]) -> str:
    """The ``unlearning`` option, or ``salun_ant`` for SalUn with ANT's mask (``saliency=ant``)."""
    key, saliency = run_method_key(cfg["unlearning"]), cfg["saliency"]
    ant = saliency.get("kind") == "ant" or str(saliency.get("_target_", "")).endswith(".ant_mask")  # old / new runs
    return "salun_ant" if key == "salun" and ant else key


def load_runs(root: Path) -> list[dict[str, Any]]:
    """One row per (run, reported model) below ``root``: the method's row, and Original / Retrain once per
    (mode, seed) (every run of a seed reports the same cached models)."""
    rows: list[dict[str, Any]] = []
    seen: set[tuple[str, str, int]] = set()
    for run, cfg, results in job_results(root):
        if run_task(cfg) != "unlearn":
            raise ValueError(f"{run}: not an unlearning run (task={run_task(cfg)!r})")
        mode, seed, key = str(cfg["data"]["forget"]), int(cfg["seed"]), method_key(cfg)
        common = {
            "mode": mode,
            "seed": seed,
            "train_size": cfg["data"]["train_size"],
            "test_size": cfg["data"]["test_size"],
            "original_epochs": run_epochs(cfg, "original"),
        }
        for r in results:
            name = str(r["method"])
            if name in REFERENCES:
                if (mode, name, seed) in seen:
                    continue
                seen.add((mode, name, seed))
                extra = {"key": name.lower(), "lr": None, "epochs": None, "run": str(run)}
            else:
                extra = {
                    "key": key,
                    "lr": run_lr(cfg, "unlearning"),
                    "epochs": run_epochs(cfg, "unlearning"),
                    "run": str(run),
                }
                name = ANT if key == "salun_ant" else name
            rows.append({**common, "method": name, **extra, **{k: r.get(k) for k in COLUMNS}})
    if not rows:
        raise FileNotFoundError(f"no results.json below {root}")
    return rows


def public(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows without their machine-specific run directory."""
    return [{k: v for k, v in r.items() if k != "run"} for r in rows]


def finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def sweep(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (mode, method, lr): mean and population std of Avg.Gap over seeds; diverged if any is not finite."""
    out = []
    keys = sorted({(r["mode"], r["key"], r["method"], r["lr"]) for r in rows if r["lr"] is not None})
    for mode, key, name, lr in keys:
        gaps = [r[GAP] for r in rows if (r["mode"], r["key"], r["lr"]) == (mode, key, lr)]
        ok = all(finite(g) for g in gaps)
        out.append(
            {
                "mode": mode,
                "key": key,
                "method": name,
                "lr": lr,
                "n": len(gaps),
                "diverged": not ok,
                "gap_mean": statistics.fmean(gaps) if ok else math.inf,
                "gap_std": statistics.pstdev(gaps) if ok else math.inf,
            }
        )
    return out


def select(rows: list[dict[str, Any]], out: Path) -> dict[str, float]:
    """``LR_<mode>_<method>`` -> chosen lr; writes selection.md/.json and the sweep figure."""
    table = sweep(rows)
    chosen: dict[str, float] = {}
    for mode, key in dict.fromkeys((t["mode"], t["key"]) for t in table):
        cands = [t for t in table if (t["mode"], t["key"]) == (mode, key)]
        best = min(cands, key=lambda t: (t["gap_mean"], t["lr"]))
        chosen[f"LR_{mode}_{key}"] = best["lr"]
        for t in cands:
            t["chosen"] = t is best
    seeds = sorted({r["seed"] for r in rows})
    lines = [
        f"Learning-rate selection on seeds {seeds} (SalUn's rule: smallest mean Avg.Gap to Retrain; "
        "mean +- population std over seeds). These seeds are not reported in results.md.",
        "",
        "| forget | method | lr | Avg.Gap | chosen |",
        "|---|---|---:|---:|---|",
    ]
    for t in table:
        gap = "diverged" if t["diverged"] else f"{t['gap_mean']:.2f} +- {t['gap_std']:.2f}"
        lines.append(f"| {t['mode']} | {t['method']} | {t['lr']:g} | {gap} | {'**yes**' if t['chosen'] else ''} |")
    atomic_write_text(out / "selection.md", "\n".join(lines) + "\n")
    atomic_write_json(out / "selection.json", {"chosen": chosen, "sweep": table, "runs": public(rows)})
    plot_sweep(table, out / "figures" / "lr_sweep.png")
    return chosen


def plot_sweep(table: list[dict[str, Any]], path: Path) -> None:
    modes = list(dict.fromkeys(t["mode"] for t in table))
    fig, axes = plt.subplots(1, len(modes), figsize=(5 * len(modes), 3.4), squeeze=False)
    for ax, mode in zip(axes[0], modes):
        for name in dict.fromkeys(t["method"] for t in table if t["mode"] == mode):
            pts = [t for t in table if t["mode"] == mode and t["method"] == name and not t["diverged"]]
            ax.errorbar(
                [t["lr"] for t in pts],
                [t["gap_mean"] for t in pts],
                yerr=[t["gap_std"] for t in pts],
                marker="o",
                capsize=3,
                label=name,
            )
        ax.set(xscale="log", xlabel="learning rate", ylabel="Avg.Gap to Retrain", title=MODES.get(mode, mode))
        ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def summarise(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """mode -> ``aggregate`` entries (mean and sample std over seeds) in the order of the rows, with the lr."""
    out = {}
    for mode in MODES:
        sub = [
            {"method": r["method"], "seed": r["seed"], **{k: r[k] for k in COLUMNS if r[k] is not None}}
            for r in rows
            if r["mode"] == mode
        ]
        if sub:
            entries = aggregate(sub)
            for e in entries:
                e["lr"] = next(r["lr"] for r in rows if r["mode"] == mode and r["method"] == e["method"])
            out[mode] = entries
    return out


def seed_wins(rows: list[dict[str, Any]], mode: str) -> dict[str, int]:
    """Per unlearning method: on how many seeds it has the smallest Avg.Gap (ties count for each)."""
    methods = [r for r in rows if r["mode"] == mode and r["method"] not in REFERENCES]
    wins = {name: 0 for name in dict.fromkeys(r["method"] for r in methods)}
    for seed in sorted({r["seed"] for r in methods}):
        gaps = {r["method"]: r[GAP] for r in methods if r["seed"] == seed and finite(r[GAP])}
        for name, g in gaps.items():
            wins[name] += g == min(gaps.values())
    return wins


def _cell(e: dict[str, Any], k: str) -> str:
    return f"{e[k]:.2f} +- {e[k + '_std']:.2f}" if k in e else "-"


def table(rows: list[dict[str, Any]], summary: dict[str, list[dict[str, Any]]], wall: float | None) -> str:
    r0 = rows[0]
    seeds = sorted({r["seed"] for r in rows})
    lines = [
        f"Fashion-MNIST unlearning, SmallCNN, seeds {seeds} (not used for the lr choice), train_size "
        f"{r0['train_size']}, test_size {r0['test_size'] or 'all 10,000'}, original and Retrain "
        f"{r0['original_epochs']} epochs; mean +- sample std over seeds. UA = 100 - forget accuracy, "
        "MIA = MIA-efficacy on the forget set, RTE = unlearning seconds, Avg.Gap = mean |UA, RA, TA, MIA "
        "- Retrain's| (smaller is better). 'wins': seeds on which the method has the smallest Avg.Gap."
    ]
    for mode, entries in summary.items():
        wins = seed_wins(rows, mode)
        best = min((e[GAP] for e in entries if e["method"] not in REFERENCES), default=math.nan)
        lines += [
            "",
            f"### {MODES[mode]}",
            "",
            "| method | lr | UA | RA | TA | MIA | RTE (s) | Avg.Gap | wins |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for e in entries:
            gap = _cell(e, GAP)
            if e["method"] not in REFERENCES and e[GAP] == best:
                gap = f"**{gap}**"
            lr = "-" if e["lr"] is None else f"{e['lr']:g}"
            cells = [
                e["method"],
                lr,
                *(_cell(e, k) for k in (*METRIC_KEYS, "RTE")),
                gap,
                str(wins.get(e["method"], "-")),
            ]
            lines.append("| " + " | ".join(cells) + " |")
    if wall is not None:
        lines += [
            "",
            f"Wall time of `run.sh` (tuning + final runs): {wall / 60:.1f} min with OMP_NUM_THREADS="
            f"{os.environ.get('OMP_NUM_THREADS', 'unset')} and nice 19 on a 2-core CPU shared with other jobs.",
        ]
    return "\n".join(lines) + "\n"


def figures(summary: dict[str, list[dict[str, Any]]], out: Path) -> None:
    figs = out / "figures"
    figs.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, len(summary), figsize=(5 * len(summary), 3.4), squeeze=False)
    for ax, (mode, entries) in zip(axes[0], summary.items()):
        shown = [e for e in entries if e["method"] != "Retrain"]
        ax.bar([e["method"] for e in shown], [e[GAP] for e in shown], yerr=[e[GAP + "_std"] for e in shown], capsize=4)
        ax.set(ylabel="Avg.Gap to Retrain", title=MODES[mode])
        ax.tick_params(axis="x", rotation=30, labelsize=7)
    fig.tight_layout()
    fig.savefig(figs / "avg_gap.png", dpi=120)
    plt.close(fig)
    fig, axes = plt.subplots(1, len(summary), figsize=(6 * len(summary), 3.6), squeeze=False)
    for ax, (mode, entries) in zip(axes[0], summary.items()):
        width = 0.8 / len(entries)
        for i, e in enumerate(entries):
            xs = [j - 0.4 + (i + 0.5) * width for j in range(len(METRIC_KEYS))]
            ax.bar(xs, [e[k] for k in METRIC_KEYS], width, yerr=[e[k + "_std"] for k in METRIC_KEYS], label=e["method"])
        ax.set_xticks(range(len(METRIC_KEYS)), METRIC_KEYS)
        ax.set(ylabel="%", title=MODES[mode])
        ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(figs / "metrics.png", dpi=120)
    plt.close(fig)


def main() -> None:
    args = summary_arguments(__doc__.splitlines()[0], Path(__file__).parent, steps=("select", "results"))
    rows = load_runs(args.runs)
    if args.step == "select":
        for var, lr in select(rows, args.out).items():  # for run.sh: eval "$(python summarise.py select ...)"
            print(f"{var}={lr:g}")
        return
    summary = summarise(rows)
    md = table(rows, summary, args.wall_seconds)
    atomic_write_text(args.out / "results.md", md)
    wins = {mode: seed_wins(rows, mode) for mode in summary}
    atomic_write_json(args.out / "results.json", {"rows": public(rows), "summary": summary, "seed_wins": wins})
    atomic_write_csv(args.out / "results.csv", public(rows))
    figures(summary, args.out)
    log_results_table(rows, args.runs, "unlearning_fashion_mnist")
    print(md)


if __name__ == "__main__":
    main()
