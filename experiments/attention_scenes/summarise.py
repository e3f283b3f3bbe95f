"""Attention losses vs shortcut backgrounds: choose the loss weights on validation, then tabulate and plot.

Reads, below RUNS, the runs of the attn_scenes_{vanilla,concentration,bas,oracle} presets that ``run.sh``
leaves: ``.hydra/config.yaml`` (variant, seed, loss weight, data) and ``models/attention.safetensors`` (the
trained ViT), and re-evaluates each model on its own datamodule (``results.json``: fit seconds and a check of
the test accuracy). Two steps, both called by ``run.sh``::

    python summarise.py select  RUNS/select --out DIR   # selection.md/.json; prints CONC_ARGS / BAS_ARGS
    python summarise.py results RUNS/final  --out DIR   # results.md/.json, accuracy.png, attention_maps.png

Reported: test accuracy with shuffled backgrounds (background class random), in-distribution test accuracy
(the same test images with backgrounds drawn at the training correlation), training accuracy, and the CLS
attention mass on the object (last layer and mean over layers; head mean). Selection: per loss the weight
with the best validation accuracy (shuffled backgrounds; ties -> smaller weight).
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
import numpy as np  # noqa: E402
import torch  # noqa: E402
from hydra.utils import instantiate  # noqa: E402

from salguide.attention import token_grid  # noqa: E402
from salguide.attention.metrics import attention_object_mass  # noqa: E402
from salguide.attention.recorder import AttentionRecorder  # noqa: E402
from salguide.io import atomic_write_json, atomic_write_text  # noqa: E402
from salguide.studies import (  # noqa: E402
    job_results,
    log_results_table,
    run_config,
    run_epochs,
    run_model,
    summary_arguments,
)
from salguide.viz.attention import plot_attention_maps, tokens_to_image  # noqa: E402

VARIANTS = ("vanilla", "concentration", "bas", "oracle")
PREFIX = "attn_scenes_"
KEYS = ("acc_shuffled", "acc_in_dist", "acc_train", "object_mass", "object_mass_layers")


@torch.no_grad()
def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return 100.0 * float((model(x).argmax(-1) == y).float().mean())


class Run:
    """One attn_scenes_* run: its variant, seed, loss settings, model and datamodules (shuffled and, on
    demand, in-distribution backgrounds: the same seeded split, only the evaluation backgrounds differ)."""

    def __init__(self, run: Path, cfg: dict[str, Any], result: dict[str, Any]) -> None:
        name = str(cfg["name"])
        self.variant = name[len(PREFIX) :]
        if not name.startswith(PREFIX) or self.variant not in VARIANTS:
            raise ValueError(f"{run}: run {name!r} is not one of the presets {[PREFIX + v for v in VARIANTS]}")
        self.path, self.seed, self.result = run, int(cfg["seed"]), result
        node = (cfg.get("callbacks") or {}).get("attention_loss")  # older runs: attention_loss
        loss = node["attention_loss"] if node else (cfg.get("attention_loss") or {})
        self.weight = None if self.variant in ("vanilla", "oracle") else float(loss["weight"])
        self.queries, self.layers = loss.get("queries"), loss.get("layers")
        self.epochs, self.correlation = run_epochs(cfg), float(cfg["data"]["correlation"])
        self.model = run_model(run, "attention").eval()
        self.depth = len(self.model.blocks)

    def datamodule(self, in_distribution: bool = False) -> Any:
        data = run_config(self.path).data
        if in_distribution:
            data.eval_correlation = data.correlation
        dm = instantiate(data)
        dm.setup("fit")
        return dm

    def masses(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[float, float]:
        """CLS attention mass on the object: last layer, mean over layers."""
        mass = attention_object_mass(self.model, x, mask, layers=list(range(self.depth)))
        return mass[self.depth - 1], statistics.mean(mass.values())

    def validation_row(self) -> dict[str, Any]:
        xv, yv, mv = self.datamodule().val_dataset.tensors
        last, mean = self.masses(xv, mv)
        return {
            "variant": self.variant,
            "weight": self.weight,
            "seed": self.seed,
            "acc_val_shuffled": accuracy(self.model, xv, yv),
            "val_object_mass": last,
            "val_object_mass_layers": mean,
            "n_val": len(yv),
            "train_seconds": float(self.result["seconds"]),
            "epochs": self.epochs,
            "correlation": self.correlation,
            "queries": self.queries,
        }

    def test_row(self) -> dict[str, Any]:
        dm, dm_id = self.datamodule(), self.datamodule(in_distribution=True)
        x, y, mask = dm.test_dataset.tensors
        xi, yi, _ = dm_id.test_dataset.tensors
        xtr, ytr, _ = dm.train_dataset.tensors
        last, mean = self.masses(x, mask)
        row = {
            "variant": self.variant,
            "seed": self.seed,
            "weight": self.weight,
            "acc_shuffled": accuracy(self.model, x, y),
            "acc_in_dist": accuracy(self.model, xi, yi),
            "acc_train": accuracy(self.model, xtr, ytr),
            "object_mass": last,
            "object_mass_layers": mean,
            "train_seconds": float(self.result["seconds"]),
        }
        if abs(row["acc_shuffled"] - float(self.result["test_acc"])) > 1e-3:
            raise ValueError(
                f"{self.path}: the saved model scores {row['acc_shuffled']:.3f} % on the test split, "
                f"its results.json {self.result['test_acc']:.3f} %: not the model of this run"
            )
        return row


def load(root: Path) -> list[Run]:
    runs = [Run(run, cfg, r) for run, cfg, r in job_results(root)]
    if not runs:
        raise FileNotFoundError(f"no results.json below {root}")
    return sorted(runs, key=lambda r: (r.seed, VARIANTS.index(r.variant), r.weight or 0.0))


def pick(rows: list[dict[str, Any]], loss: str) -> float:
    """The candidate weight of ``loss`` with the best validation accuracy; ties go to the smaller weight."""
    cands = [r for r in rows if r["variant"] == loss]
    if not cands:
        raise ValueError(f"no selection runs of {PREFIX}{loss}")
    return min(cands, key=lambda r: (-r["acc_val_shuffled"], r["weight"]))["weight"]


def selection_markdown(rows: list[dict[str, Any]], chosen: dict[str, float]) -> str:
    base = next((r["acc_val_shuffled"] for r in rows if r["variant"] == "vanilla"), None)
    r0 = rows[0]
    lines = [
        "# Loss-weight selection on the validation split",
        "",
        f"Seed {r0['seed']}, {r0['epochs']} epochs, correlation {r0['correlation']}, queries='"
        f"{next((r['queries'] for r in rows if r['queries']), 'all')}', otherwise as the study (run.sh). Accuracy on "
        "the VALIDATION split of the same datamodule: backgrounds of a random class (eval_correlation 0), "
        f"{r0['n_val']} images, disjoint from train and test; the test split is not read. Object mass = CLS "
        "attention mass on the object tile (head mean) on the validation images. Rule: per loss, the weight with "
        "the best validation accuracy (ties -> smaller weight).",
        "",
        "| variant | weight | val shuffled acc (%) | vs vanilla | object mass, last | object mass, all layers | "
        "train s |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        w = "" if r["weight"] is None else f"{r['weight']:g}"
        delta = "" if base is None or r["variant"] == "vanilla" else f"{r['acc_val_shuffled'] - base:+.1f}"
        mark = " (chosen)" if r["variant"] in chosen and chosen[r["variant"]] == r["weight"] else ""
        lines.append(
            f"| {r['variant']}{mark} | {w} | {r['acc_val_shuffled']:.1f} | {delta} | "
            f"{r['val_object_mass']:.3f} | {r['val_object_mass_layers']:.3f} | {r['train_seconds']:.0f} |"
        )
    lines += ["", "Chosen: " + ", ".join(f"{k} weight {v:g}" for k, v in chosen.items()) + "."]
    return "\n".join(lines) + "\n"


def summarise(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    out = {}
    for v in VARIANTS:
        rs = [r for r in rows if r["variant"] == v]
        if rs:
            out[v] = {k: statistics.mean(r[k] for r in rs) for k in KEYS}
            out[v].update({f"{k}_std": statistics.pstdev(r[k] for r in rs) for k in KEYS})
            out[v]["n"] = len(rs)
    return out


def markdown(
    rows: list[dict[str, Any]],
    summary: dict[str, Any],
    meta: dict[str, Any],
    selection: dict[str, Any] | None,
    wall: float | None,
) -> str:
    base = summary.get("vanilla", {}).get("acc_shuffled")
    w = meta["weights"]
    lines = [
        "# Attention losses on synthetic scenes (backgrounds shuffled at test)",
        "",
        f"Scenes: {meta['digit_size']} px digit on its own dark tile aligned to the {meta['patch']} px patch grid, "
        f"{meta['image_size']} px image, class-coloured striped background = label with probability "
        f"{meta['correlation']} in training. Routed ViT (patch {meta['patch']}, width {meta['width']}, depth "
        f"{meta['depth']}, {meta['heads']} heads), {meta['epochs']} epochs AdamW (lr 1e-3, wd 0.05, cosine), seeds "
        f"{sorted({r['seed'] for r in rows})}. Losses on layers {meta['layers']}: concentration = "
        f"ConcentrationLoss(weight {w.get('concentration')}, target='mask', queries='{meta['queries']}'); bas = "
        f"BackgroundSuppressionLoss(weight {w.get('bas')}, queries='{meta['queries']}', cls_is_background=True); "
        "oracle = background erased from the input at training and test (an upper bound, not a loss).",
        "",
        "Shuffled = test backgrounds of a random class; in-dist = the same test images with backgrounds drawn at "
        "the training correlation. Object mass = CLS attention mass on the object tile (head mean), last layer / "
        "mean over layers. Mean +- std (population) over seeds. Goal: shuffled accuracy >= +10 points over "
        "vanilla.",
        "",
        "| variant | shuffled bg acc (%) | vs vanilla | in-dist acc (%) | train acc (%) | object mass, last | "
        "object mass, all layers |",
        "|---|---|---|---|---|---|---|",
    ]
    for v, s in summary.items():
        delta = "" if base is None or v == "vanilla" else f"{s['acc_shuffled'] - base:+.1f}"
        lines.append(
            f"| {v} | {s['acc_shuffled']:.1f} +- {s['acc_shuffled_std']:.1f} | {delta} | "
            f"{s['acc_in_dist']:.1f} +- {s['acc_in_dist_std']:.1f} | {s['acc_train']:.1f} | "
            f"{s['object_mass']:.3f} +- {s['object_mass_std']:.3f} | {s['object_mass_layers']:.3f} |"
        )
    if selection:
        agree = all(selection["chosen"].get(v) == w.get(v) for v in ("concentration", "bas"))
        cands = {
            v: "{"
            + ", ".join(f"{x:g}" for x in sorted({r["weight"] for r in selection["rows"] if r["variant"] == v}))
            + "}"
            for v in ("concentration", "bas")
        }
        lines += [
            "",
            "Loss weights selected on the validation split, not the test split (selection.md: seed "
            f"{selection['seed']}, concentration in {cands['concentration']}, bas in {cands['bas']}; best "
            "validation shuffled accuracy, ties -> smaller weight): "
            + ", ".join(f"{v} {selection['chosen'][v]:g}" for v in ("concentration", "bas"))
            + (" - the weights used here." if agree else " - NOT the weights used here."),
        ]
    if base is not None:
        lines.append("")
        for v in ("concentration", "bas"):
            if v in summary:
                gain = summary[v]["acc_shuffled"] - base
                verdict = "met" if gain >= 10 else f"missed by {10 - gain:.1f} points"
                lines.append(f"- {v}: {gain:+.1f} points over vanilla with shuffled backgrounds: goal (+10) {verdict}.")
    lines += [
        "",
        "Per run:",
        "",
        "| variant | seed | shuffled | in-dist | train | object mass | train s |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['variant']} | {r['seed']} | {r['acc_shuffled']:.1f} | {r['acc_in_dist']:.1f} | "
        f"{r['acc_train']:.1f} | {r['object_mass']:.3f} | {r['train_seconds']:.0f} |"
        for r in rows
    ]
    if wall is not None:
        lines += [
            "",
            f"Wall time of `run.sh`: {wall / 60:.1f} min with OMP_NUM_THREADS="
            f"{os.environ.get('OMP_NUM_THREADS', 'unset')} and nice 19 on a CPU shared with other jobs.",
        ]
    return "\n".join(lines) + "\n"


def accuracy_figure(rows: list[dict[str, Any]], path: Path) -> None:
    """Grouped bars: shuffled-background and in-distribution test accuracy per variant (mean +- std)."""
    names = [v for v in VARIANTS if any(r["variant"] == v for r in rows)]
    fig, ax = plt.subplots(figsize=(1.5 * len(names) + 1.5, 3.4))
    xs = np.arange(len(names))
    for off, key, label, colour in (
        (-0.2, "acc_shuffled", "shuffled backgrounds", "tab:red"),
        (0.2, "acc_in_dist", "in-distribution", "tab:blue"),
    ):
        vals = [[r[key] for r in rows if r["variant"] == v] for v in names]
        ax.bar(
            xs + off,
            [np.mean(v) for v in vals],
            0.4,
            yerr=[np.std(v) for v in vals],
            capsize=3,
            color=colour,
            alpha=0.8,
            label=label,
        )
        for i, v in enumerate(vals):
            ax.scatter(np.full(len(v), xs[i] + off), v, color="k", s=6, zorder=3)
    ax.axhline(10, color="grey", lw=0.8, ls=":")
    ax.set_xticks(xs, names)
    ax.set_ylim(0, 100)
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("bars: mean +- std over seeds; dots: seeds; dotted: chance", fontsize=8)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


@torch.no_grad()
def attention_figure(runs: dict[str, Run], path: Path) -> None:
    """Last-layer CLS attention of each variant's model on the first 8 (shuffled-background) test images."""
    first = runs.get("vanilla", next(iter(runs.values())))
    x, y, m = first.datamodule().test_dataset.tensors
    x, y, m = x[:8], y[:8], m[:8]
    maps = {}
    for v, run in runs.items():
        xin = x * m if v == "oracle" else x
        with AttentionRecorder(run.model, [-1], cls=True) as rec:
            run.model(xin)
        maps[v] = tokens_to_image(rec[-1].cls.mean(1), None, token_grid(run.model), tuple(x.shape[-2:]))
    plot_attention_maps(x, maps, path, labels=y.tolist(), title="CLS attention, last layer (shuffled backgrounds)")


def main() -> None:
    args = summary_arguments(__doc__.splitlines()[0], Path(__file__).parent, steps=("select", "results"))
    torch.set_num_threads(1)
    runs = load(args.runs)
    if args.step == "select":
        rows = [r.validation_row() for r in runs]
        chosen = {v: pick(rows, v) for v in ("concentration", "bas")}
        atomic_write_json(
            args.out / "selection.json",
            {
                "rows": rows,
                "chosen": chosen,
                "seed": rows[0]["seed"],
                "epochs": rows[0]["epochs"],
                "correlation": rows[0]["correlation"],
                "split": "val",
            },
        )
        atomic_write_text(args.out / "selection.md", selection_markdown(rows, chosen))
        print(
            f"CONC_ARGS='callbacks.attention_loss.attention_loss.weight={chosen['concentration']:g}'"
        )  # for run.sh's eval
        print(f"BAS_ARGS='callbacks.attention_loss.attention_loss.weight={chosen['bas']:g}'")
        return
    rows = [r.test_row() for r in runs]
    summary = summarise(rows)
    model = runs[0].model
    loss_runs = [r for r in runs if r.weight is not None]
    meta = {
        "epochs": runs[0].epochs,
        "correlation": runs[0].correlation,
        "weights": {r.variant: r.weight for r in loss_runs},
        "layers": loss_runs[0].layers if loss_runs else None,
        "queries": loss_runs[0].queries if loss_runs else None,
        "image_size": int(runs[0].datamodule().image_size),
        "digit_size": int(runs[0].datamodule().digit_size),
        "patch": int(
            model.patch_embed.patch_size[0]
            if isinstance(model.patch_embed.patch_size, (tuple, list))
            else model.patch_embed.patch_size
        ),
        "width": int(model.embed_dim),
        "depth": len(model.blocks),
        "heads": int(model.blocks[0].attn.num_heads),
    }
    sel_path = args.out / "selection.json"
    selection = json.loads(sel_path.read_text()) if sel_path.exists() else None
    atomic_write_json(args.out / "results.json", {"rows": rows, "summary": summary, **meta})
    atomic_write_text(args.out / "results.md", markdown(rows, summary, meta, selection, args.wall_seconds))
    accuracy_figure(rows, args.out / "accuracy.png")
    seed0 = min(r.seed for r in runs)
    attention_figure({r.variant: r for r in runs if r.seed == seed0}, args.out / "attention_maps.png")
    log_results_table(rows, args.runs, "attention_scenes")
    print((args.out / "results.md").read_text())


if __name__ == "__main__":
    main()
