"""DecoyDigits study: tabulate and plot the runs of the decoy_{vanilla,rrr,sgt,clean} presets.

Reads what ``salguide-train`` leaves in each run directory below RUNS: ``results.json`` (test accuracy and
test-set explanation metrics), ``.hydra/config.yaml`` (preset, seed, epochs) and ``models/classify.safetensors``
(for the saliency figure)::

    python summarise.py RUNS --out DIR   # writes results.md/.json and figures/{accuracy,saliency}.png

"Energy outside patch" is the share of the true class's |input gradient| that is not on the decoy patch and
the pointing game asks whether the gradient's maximum is off the patch (both: higher = the model looks less
at the decoy). Anchor: RRR's DecoyMNIST (Ross, Hughes & Doshi-Velez, IJCAI 2017).
"""

from __future__ import annotations

import os
import statistics
from pathlib import Path
from typing import Any

import torch

from salguide.io import atomic_write_json, atomic_write_text
from salguide.metrics import explain
from salguide.studies import (
    job_results,
    log_results_table,
    run_datamodule,
    run_epochs,
    run_model,
    summary_arguments,
    test_split,
)
from salguide.viz.saliency import plot_accuracy_bars, plot_saliency_overlays

PAPER = {"vanilla": 51.55, "rrr": 96.07, "clean": 96.11}  # RRR, DecoyMNIST test accuracy (%)
VARIANTS = ("vanilla", "rrr", "sgt", "clean")
PREFIX = "decoy_"
METRICS = (
    "test_acc",
    "test_energy_in_mask",
    "test_pointing_game",
    "test_deletion_auc",
    "test_insertion_auc",
    "seconds",
)


def load_runs(root: Path) -> list[dict[str, Any]]:
    """One row per run directory below ``root`` that holds a ``results.json``."""
    rows = []
    for run, cfg, r in job_results(root):
        name = str(cfg["name"])
        variant = name[len(PREFIX) :]
        if not name.startswith(PREFIX) or variant not in VARIANTS:
            raise ValueError(f"{run}: run {name!r} is not one of the presets {[PREFIX + v for v in VARIANTS]}")
        rows.append(
            {
                "variant": variant,
                "seed": int(cfg["seed"]),
                "epochs": run_epochs(cfg),
                **{m: float(r[m]) for m in METRICS},
                "run": str(run),
            }
        )
    if not rows:
        raise FileNotFoundError(f"no results.json below {root}")
    return rows


def summarise(rows: list[dict[str, Any]]) -> dict[str, dict[str, list[float]]]:
    """variant -> metric -> [mean, population std] over seeds."""
    out = {}
    for v in VARIANTS:
        vals = [r for r in rows if r["variant"] == v]
        if vals:
            out[v] = {m: [statistics.fmean(r[m] for r in vals), statistics.pstdev(r[m] for r in vals)] for m in METRICS}
    return out


def table(rows: list[dict[str, Any]], summary: dict[str, dict[str, list[float]]], wall: float | None) -> str:
    clean = summary["clean"]["test_acc"][0] if "clean" in summary else float("nan")
    seeds = sorted({r["seed"] for r in rows})
    lines = [
        f"DecoyDigits, seeds {seeds}, {rows[0]['epochs']} epochs, mean +- std over seeds (population std). "
        "Energy / pointing: gradient saliency of the true class outside the patch (higher is better).",
        "",
        "| variant | test acc (%) | % of clean | paper (DecoyMNIST) | energy outside patch | pointing game | deletion AUC | insertion AUC | train s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for v, s in summary.items():
        acc = s["test_acc"]
        lines.append(
            f"| {v} | {acc[0]:.2f} +- {acc[1]:.2f} | {100 * acc[0] / clean:.1f} | {PAPER.get(v, '-')} | "
            f"{s['test_energy_in_mask'][0]:.3f} +- {s['test_energy_in_mask'][1]:.3f} | "
            f"{s['test_pointing_game'][0]:.3f} | {s['test_deletion_auc'][0]:.3f} | {s['test_insertion_auc'][0]:.3f} | "
            f"{s['seconds'][0]:.1f} |"
        )
    if wall is not None:
        lines += [
            "",
            f"Wall time of `run.sh`: {wall / 60:.1f} min with OMP_NUM_THREADS="
            f"{os.environ.get('OMP_NUM_THREADS', 'unset')} and nice 19 on a CPU shared with other jobs.",
        ]
    return "\n".join(lines) + "\n"


def saliency_figure(rows: list[dict[str, Any]], path: Path, n: int = 8) -> None:
    """Input gradients of the first ``n`` test images, one row per variant (the first seed's saved models)."""
    seed0 = min(r["seed"] for r in rows)
    runs = {r["variant"]: Path(r["run"]) for r in rows if r["seed"] == seed0}
    x, y, *_ = test_split(run_datamodule(runs.get("vanilla", next(iter(runs.values())))))
    x, y = x[:n], y[:n]
    maps = {}
    for v in VARIANTS:
        if v in runs:
            model = run_model(runs[v], "classify").eval()
            maps[v] = explain(model, x, y, "gradient")
    plot_saliency_overlays(
        x, maps, path, labels=y.tolist(), title=f"input gradients on test images (seed {seed0}); rows: training variant"
    )


def public(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows without their machine-specific run directory."""
    return [{k: v for k, v in r.items() if k != "run"} for r in rows]


def main() -> None:
    args = summary_arguments(__doc__.splitlines()[0], Path(__file__).parent)
    torch.set_num_threads(1)
    rows = load_runs(args.runs)
    summary = summarise(rows)
    md = table(rows, summary, args.wall_seconds)
    atomic_write_text(args.out / "results.md", md)
    atomic_write_json(
        args.out / "results.json",
        {"rows": public(rows), "summary": summary, "paper": PAPER, "epochs": rows[0]["epochs"]},
    )
    figs = args.out / "figures"
    plot_accuracy_bars(
        {v: [r["test_acc"] for r in rows if r["variant"] == v] for v in summary},
        figs / "accuracy.png",
        title="DecoyDigits test accuracy",
        reference=PAPER,
    )
    saliency_figure(rows, figs / "saliency.png")
    log_results_table(public(rows), args.runs, "decoy_digits")
    print(md)


if __name__ == "__main__":
    main()
