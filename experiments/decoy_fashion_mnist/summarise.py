"""Decoy Fashion-MNIST study: pick the loss settings on validation, then tabulate and plot the runs.

Reads what ``salguide-train`` leaves in each run directory: ``results.json`` (test accuracy and test-set
explanation metrics), ``.hydra/config.yaml`` (variant, seed, loss settings, subset) and the CSV log's last
validation row. Two steps, both called by ``run.sh``::

    python summarise.py select  RUNS/tune  --out DIR   # writes selection.md/.json, prints RRR_ARGS / SGT_ARGS
    python summarise.py results RUNS/final --out DIR   # writes results.md/.json/.csv and figures/

"Patch energy" is the share of the input gradient's magnitude on the 4x4 decoy patch (the annotation;
a uniform map puts 16/784 = 2.0 % there), "pointing game" the share of images whose gradient maximum
lies off the patch. Anchor: RRR's DecoyMNIST (Ross, Hughes & Doshi-Velez, IJCAI 2017).
"""

from __future__ import annotations

import csv
import os
import shlex
import shutil
import statistics
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from PIL import Image  # noqa: E402

from salguide.io import atomic_write_csv, atomic_write_json, atomic_write_text  # noqa: E402
from salguide.studies import job_results, log_results_table, run_epochs, summary_arguments  # noqa: E402
from salguide.viz.saliency import plot_accuracy_bars  # noqa: E402

PAPER = {"vanilla": 51.55, "rrr": 96.07, "clean": 96.11}  # RRR, DecoyMNIST test accuracy (%)
VARIANTS = ("vanilla", "rrr", "sgt", "clean")
PREFIX = "decoy_fashion_mnist_"
METRICS = ("test_acc", "patch_energy", "pointing_game", "deletion_auc", "insertion_auc", "val_acc", "seconds")


def last_val(run: Path) -> dict[str, float]:
    """The last validation row of the run's CSV log: val accuracy (%) and patch energy (%)."""
    logs = sorted(run.glob("csv/*/version_*/metrics.csv"))
    if not logs:
        raise FileNotFoundError(f"no CSV log (csv/*/version_*/metrics.csv) in {run}")
    with open(logs[-1], newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("val/acc")]
    if not rows:
        raise ValueError(f"{logs[-1]} has no val/acc row")
    out = {"val_acc": 100.0 * float(rows[-1]["val/acc"])}
    if rows[-1].get("val_expl/energy_in_mask"):
        out["val_patch_energy"] = 100.0 * (1.0 - float(rows[-1]["val_expl/energy_in_mask"]))
    return out


def load_runs(root: Path) -> list[dict[str, Any]]:
    """One row per run directory below ``root`` that holds a ``results.json``."""
    rows = []
    for run, cfg, r in job_results(root):
        name = str(cfg["name"])
        if not name.startswith(PREFIX):
            raise ValueError(f"{run}: run {name!r} is not a {PREFIX}* preset")
        node = (cfg.get("callbacks") or {}).get("input_loss")  # older runs: input_loss
        settings = node["input_loss"] if node else (cfg.get("input_loss") or {})
        loss = {k: v for k, v in settings.items() if k in ("weight", "fraction")}
        rows.append(
            {
                "variant": name[len(PREFIX) :],
                "seed": int(cfg["seed"]),
                "setting": " ".join(f"{k}={v}" for k, v in sorted(loss.items())) or "-",
                "test_acc": r["test_acc"],
                "patch_energy": 100.0 * (1.0 - r["test_energy_in_mask"]),
                "pointing_game": r["test_pointing_game"],
                "deletion_auc": r["test_deletion_auc"],
                "insertion_auc": r["test_insertion_auc"],
                "seconds": r["seconds"],
                **last_val(run),
                "train_size": cfg["data"]["train_size"],
                "val_fraction": cfg["data"]["val_fraction"],
                "test_size": cfg["data"]["test_size"],
                "epochs": run_epochs(cfg),
                "run": str(run),
            }
        )
    if not rows:
        raise FileNotFoundError(f"no results.json below {root}")
    return rows


def setting_values(row: dict[str, Any]) -> list[float]:
    """The loss settings of a row as numbers ("fraction=0.5 weight=100" -> [0.5, 100.0]), for sorting."""
    return [float(kv.split("=")[1]) for kv in row["setting"].split()]


def public(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows without their machine-specific run directory."""
    return [{k: v for k, v in r.items() if k != "run"} for r in rows]


def select(rows: list[dict[str, Any]], out: Path) -> dict[str, str]:
    """Per tuned variant the setting with the highest final validation accuracy (ties: listed first)."""
    chosen: dict[str, str] = {}
    lines = ["| variant | setting | val acc (%) | val patch energy (%) | chosen |", "|---|---|---:|---:|---|"]
    for v in ("rrr", "sgt"):
        cands = sorted((r for r in rows if r["variant"] == v), key=setting_values)
        if not cands:
            raise ValueError(f"no tuning runs of {PREFIX}{v}")
        best = max(cands, key=lambda r: r["val_acc"])
        chosen[v] = best["setting"]
        for r in cands:
            energy = r.get("val_patch_energy", float("nan"))
            mark = "**yes**" if r is best else ""
            lines.append(f"| {v} | {r['setting']} | {r['val_acc']:.2f} | {energy:.2f} | {mark} |")
    head = (
        f"Selection on the validation split (seed {rows[0]['seed']}, {rows[0]['epochs']} epochs, "
        f"train_size {rows[0]['train_size']}, val share {rows[0]['val_fraction']}): final-epoch accuracy "
        "on held-out training images whose patch has a random class's shade (no shortcut). Only validation "
        "numbers are read here (the pipeline also scores every run on the test split; that is not used).\n\n"
    )
    atomic_write_text(out / "selection.md", head + "\n".join(lines) + "\n")
    atomic_write_json(out / "selection.json", {"chosen": chosen, "runs": public(rows)})
    return chosen


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
    r0 = rows[0]
    seeds = sorted({r["seed"] for r in rows})
    lines = [
        f"Decoy Fashion-MNIST, seeds {seeds}, {r0['epochs']} epochs, train_size {r0['train_size']} (val share "
        f"{r0['val_fraction']}), test_size {r0['test_size'] or 'all 10,000'}; mean +- population std over seeds. "
        "Patch energy: share of |input gradient| (true class) on the decoy patch, lower is better; pointing game: "
        "share of test images whose gradient maximum is off the patch, higher is better.",
        "",
        "| variant | setting | test acc (%) | % of clean | paper (DecoyMNIST) | patch energy (%) | pointing game | "
        "deletion AUC | insertion AUC | val acc (%) | train s |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for v, s in summary.items():
        setting = next(r["setting"] for r in rows if r["variant"] == v)
        acc = s["test_acc"]
        lines.append(
            f"| {v} | {setting} | {acc[0]:.2f} +- {acc[1]:.2f} | {100 * acc[0] / clean:.1f} | {PAPER.get(v, '-')} | "
            f"{s['patch_energy'][0]:.2f} +- {s['patch_energy'][1]:.2f} | {s['pointing_game'][0]:.3f} | "
            f"{s['deletion_auc'][0]:.3f} | {s['insertion_auc'][0]:.3f} | {s['val_acc'][0]:.2f} | "
            f"{s['seconds'][0]:.0f} |"
        )
    if wall is not None:
        lines += [
            "",
            f"Wall time of `run.sh` (tuning + final runs): {wall / 60:.1f} min with OMP_NUM_THREADS="
            f"{os.environ.get('OMP_NUM_THREADS', 'unset')} and nice 19 on a 2-core CPU shared with other jobs.",
        ]
    return "\n".join(lines) + "\n"


def figures(rows: list[dict[str, Any]], summary: dict[str, dict[str, list[float]]], out: Path) -> None:
    figs = out / "figures"
    plot_accuracy_bars(
        {v: [r["test_acc"] for r in rows if r["variant"] == v] for v in summary},
        figs / "accuracy.png",
        title="Decoy Fashion-MNIST test accuracy (red: RRR's DecoyMNIST)",
        reference=PAPER,
    )
    fig, axes = plt.subplots(1, 2, figsize=(8, 3))
    bars = (("patch_energy", "gradient energy on the patch (%)"), ("pointing_game", "pointing game (off patch)"))
    for ax, (m, label) in zip(axes, bars):
        ax.bar(list(summary), [s[m][0] for s in summary.values()], yerr=[s[m][1] for s in summary.values()], capsize=4)
        ax.set_ylabel(label)
    axes[0].axhline(100 * 16 / 784, color="tab:red", ls="--", lw=1, label="uniform map")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    figs.mkdir(parents=True, exist_ok=True)
    fig.savefig(figs / "explanations.png", dpi=120)
    plt.close(fig)
    seed0 = min(r["seed"] for r in rows)
    runs = {r["variant"]: Path(r["run"]) for r in rows if r["seed"] == seed0}
    panels = [Image.open(runs[v] / "test_saliency.png").convert("RGB") for v in VARIANTS if v in runs]
    sheet = Image.new("RGB", (max(p.width for p in panels), sum(p.height for p in panels)), "white")
    for i, p in enumerate(panels):
        sheet.paste(p, (0, sum(q.height for q in panels[:i])))
    sheet.quantize(64).save(figs / "saliency.png", optimize=True)  # the seed's runs stacked, 64 colours
    if "vanilla" in runs:
        shutil.copyfile(runs["vanilla"] / "data_samples.png", figs / "data_samples.png")


def main() -> None:
    args = summary_arguments(__doc__.splitlines()[0], Path(__file__).parent, steps=("select", "results"))
    rows = load_runs(args.runs)
    if args.step == "select":
        chosen = select(rows, args.out)
        for v, setting in chosen.items():  # for run.sh: eval "$(python summarise.py select ...)"
            keys = " ".join(f"callbacks.input_loss.input_loss.{s}" for s in setting.split())
            print(f"{v.upper()}_ARGS={shlex.quote(keys)}")
        return
    summary = summarise(rows)
    md = table(rows, summary, args.wall_seconds)
    atomic_write_text(args.out / "results.md", md)
    atomic_write_json(args.out / "results.json", {"rows": public(rows), "summary": summary, "paper": PAPER})
    atomic_write_csv(args.out / "results.csv", public(rows))
    figures(rows, summary, args.out)
    log_results_table(rows, args.runs, "decoy_fashion_mnist")
    print(md)


if __name__ == "__main__":
    main()
