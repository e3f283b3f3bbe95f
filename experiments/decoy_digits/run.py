"""DecoyDigits study: vanilla vs RRR vs saliency-guided training vs clean training, several seeds.

One command (about a minute of CPU; ``--quick`` for a smoke test)::

    python experiments/decoy_digits/run.py            # 3 seeds x 4 variants, writes results.md/json + figures/
    python experiments/decoy_digits/run.py --quick --out /tmp/decoy

Every variant trains the same 400-50-50-10 ReLU MLP (RRR's DecoyMNIST architecture) with Adam on
DecoyDigits; they differ only in the training data (``clean``: the patch shade is random in training
too) or the input-saliency loss, which reaches the plain ``ClassifierModule`` through
``InputSaliencyCallback``. All variants are tested on the same random-shade test set. Anchor: RRR's
DecoyMNIST (Ross et al., IJCAI 2017): vanilla 51.55 %, RRR 96.07 %, clean 96.11 %.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from salguide.data.decoy_digits import DecoyDigitsDataModule
from salguide.inputs import RRRLoss, SGTLoss
from salguide.io import atomic_write_json, atomic_write_text
from salguide.metrics import explain
from salguide.pipelines.classify import test_split, train_classifier
from salguide.viz.saliency import plot_accuracy_bars, plot_saliency_overlays

PAPER = {"vanilla": 51.55, "rrr": 96.07, "clean": 96.11}  # RRR, DecoyMNIST test accuracy (%)
VARIANTS: dict[str, dict[str, Any]] = {
    "vanilla": {"train_regime": "train", "loss": None},
    "rrr": {"train_regime": "train", "loss": lambda seed: RRRLoss(weight=10.0)},
    "sgt": {"train_regime": "train", "loss": lambda seed: SGTLoss(weight=1.0, fraction=0.5, seed=seed)},
    "clean": {"train_regime": "test", "loss": None},
}
METRICS = ("test_acc", "test_energy_in_mask", "test_pointing_game", "test_deletion_auc", "test_insertion_auc", "seconds")


def mlp(pixels: int = 400) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(pixels, 50), nn.ReLU(), nn.Linear(50, 50), nn.ReLU(), nn.Linear(50, 10))


def run_one(variant: str, seed: int, epochs: int, out: Path) -> tuple[dict[str, Any], nn.Module, DecoyDigitsDataModule]:
    spec = VARIANTS[variant]
    dm = DecoyDigitsDataModule(seed=seed, train_regime=spec["train_regime"])
    torch.manual_seed(seed)
    model = mlp()
    loss = spec["loss"](seed) if spec["loss"] else None
    module, row = train_classifier(
        dm, model, input_loss=loss, seed=seed,
        recipe={"epochs": epochs, "lr": 1e-3, "optimizer": "adam", "weight_decay": 0.0, "scheduler": None,
                "explain_every_n_epochs": epochs, "overlay_every_n_epochs": 0},
        trainer_kwargs={"accelerator": "cpu", "enable_progress_bar": False, "deterministic": True},
    )
    return {"variant": variant, "seed": seed, **row}, module, dm


def summarise(rows: list[dict[str, Any]]) -> dict[str, dict[str, tuple[float, float]]]:
    out: dict[str, dict[str, tuple[float, float]]] = {}
    for v in VARIANTS:
        vals = [r for r in rows if r["variant"] == v]
        if vals:
            out[v] = {m: (statistics.fmean(r[m] for r in vals), statistics.pstdev(r[m] for r in vals)) for m in METRICS}
    return out


def table(summary: dict[str, dict[str, tuple[float, float]]], seeds: int, epochs: int) -> str:
    clean = summary.get("clean", {}).get("test_acc", (float("nan"), 0))[0]
    lines = [
        f"DecoyDigits, {seeds} seed(s), {epochs} epochs, mean +- std over seeds (population std). "
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
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--quick", action="store_true", help="1 seed, 2 epochs: a smoke test")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (the MLP is tiny)")
    args = ap.parse_args()
    if args.quick:
        args.seeds, args.epochs = [0], 2
    torch.set_num_threads(args.threads)
    rows, models = [], {}
    jobs = [(v, s) for s in args.seeds for v in VARIANTS]
    for v, s in tqdm(jobs, desc="decoy study"):
        row, module, dm = run_one(v, s, args.epochs, args.out)
        rows.append(row)
        if s == args.seeds[0]:
            models[v] = (module, dm)
    summary = summarise(rows)
    md = table(summary, len(args.seeds), args.epochs)
    md += f"\nMachine: {platform.processor() or platform.machine()}, torch {torch.__version__}, {args.threads} thread(s).\n"
    atomic_write_json(args.out / "results.json", {"rows": rows, "summary": summary, "paper": PAPER, "epochs": args.epochs})
    atomic_write_text(args.out / "results.md", md)
    figs = args.out / "figures"
    plot_accuracy_bars({v: [r["test_acc"] for r in rows if r["variant"] == v] for v in VARIANTS}, figs / "accuracy.png",
                       title="DecoyDigits test accuracy", reference=PAPER)
    module, dm = models["vanilla"]
    x, y, _ = test_split(dm)
    x, y = x[:8], y[:8]
    maps = {v: explain(m, x, y, "gradient") for v, (m, _) in models.items()}
    plot_saliency_overlays(x, maps, figs / "saliency.png", labels=y.tolist(),
                           title=f"input gradients on test images (seed {args.seeds[0]}); rows: training variant")
    print(md)
    print(json.dumps({v: s["test_acc"] for v, s in summary.items()}))


if __name__ == "__main__":
    main()
