"""Attention losses vs shortcut backgrounds: vanilla vs concentration vs background suppression (BAS).

Synthetic scenes (salguide.data.scenes, ``tile=4``): each digit sits on its own dark tile aligned to the
4 px patch grid (the object mask is the tile, so object patches hold no background pixel), on a
background whose colour / stripes equal the class with probability ``--correlation`` in training. A
small routed ViT (24 px, patch 4, 36 patches + CLS, width 64, depth 4) is trained per variant and seed:

- vanilla: cross-entropy only;
- concentration: ConcentrationLoss(target="mask", queries="all"): every query row of every layer
  (CLS and patches) is pulled onto the object tile, so neither the class token nor the object's own
  tokens read the background (cross-entropy of the rows against the uniform tile map);
- bas: BackgroundSuppressionLoss(queries="all", cls_is_background=True): the attention mass of every row
  on background patches or on the class token (so that attention cannot escape onto the CLS key);
- oracle (not an attention loss, an upper bound): the background is erased from the input (x * mask) at
  training and test, i.e. what the digits alone allow this model to reach.

Reported: test accuracy with shuffled backgrounds (background class random), in-distribution test
accuracy (the same test images with backgrounds drawn at the training correlation), and the CLS attention
mass on the object (last layer and mean over layers; head mean).

    python experiments/attention_scenes/run.py [--epochs 30] [--seeds 0 1 2] [--correlation 0.9]
    python experiments/attention_scenes/run.py --replot   # tables and accuracy figure from results.json
    python experiments/attention_scenes/run.py --select   # loss weights chosen on the validation split
    python experiments/attention_scenes/run.py --merge --variants concentration   # retrain some variants only

Writes results.md, results.json, accuracy.png and attention_maps.png next to this file (``--select``:
selection.md and selection.json). Weight selection: vanilla and each candidate weight
(``--concentration-candidates``, ``--bas-candidates``) trained on the first seed and scored on the
validation split of the same datamodule (shuffled backgrounds, eval_correlation 0; the test split is not
read); per loss the best validation accuracy wins (ties -> smaller weight). The default weights are the
ones so chosen (selection.md). ``--merge``: train only ``--variants`` and take the other variants' rows
from results.json (same setting required); their first-seed models are retrained for attention_maps.png
and checked against the stored rows.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import TensorDataset  # noqa: E402

from salguide._lightning import pl  # noqa: E402
from salguide.attention import BackgroundSuppressionLoss, ConcentrationLoss, token_grid  # noqa: E402
from salguide.attention.metrics import attention_object_mass  # noqa: E402
from salguide.attention.recorder import AttentionRecorder  # noqa: E402
from salguide.callbacks.attention_loss import AttentionLossCallback  # noqa: E402
from salguide.data.scenes import SyntheticScenesDataModule  # noqa: E402
from salguide.io import atomic_write_json, atomic_write_text  # noqa: E402
from salguide.models import ClassifierModule  # noqa: E402
from salguide.models.vit import VisionTransformer  # noqa: E402
from salguide.viz.attention import plot_attention_maps, tokens_to_image  # noqa: E402

HERE = Path(__file__).resolve().parent
IMAGE, PATCH, DIGIT, WIDTH, DEPTH, HEADS = 24, 4, 12, 64, 4, 4
LAYERS = list(range(DEPTH))
VARIANTS = {
    "vanilla": lambda w: None,
    "concentration": lambda w: ConcentrationLoss(w["concentration"], LAYERS, target="mask", queries=w["queries"]),
    "bas": lambda w: BackgroundSuppressionLoss(w["bas"], LAYERS, queries=w["queries"], cls_is_background=True),
    "oracle": lambda w: None,  # background erased from the input: an upper bound, not a loss
}


def datamodules(seed: int, correlation: float) -> tuple[SyntheticScenesDataModule, SyntheticScenesDataModule]:
    """Shuffled-background and in-distribution versions of the same seeded split: identical training
    sets and test images, only the test backgrounds' classes differ."""
    kw = dict(batch_size=64, image_size=IMAGE, digit_size=DIGIT, correlation=correlation, seed=seed, tile=PATCH)
    shuffled, in_dist = SyntheticScenesDataModule(**kw), SyntheticScenesDataModule(**kw, eval_correlation=correlation)
    shuffled.setup("fit"), in_dist.setup("fit")
    assert torch.equal(shuffled.train_dataset.tensors[0], in_dist.train_dataset.tensors[0])
    return shuffled, in_dist


def erase_background(ds: TensorDataset) -> TensorDataset:
    x, y, m = ds.tensors
    return TensorDataset(x * m, y, m)


@torch.no_grad()
def accuracy(module: ClassifierModule, x: torch.Tensor, y: torch.Tensor) -> float:
    return 100.0 * float((module(x).argmax(-1) == y).float().mean())


def train(variant: str, seed: int, epochs: int, correlation: float, weights: dict,
          split: str = "test") -> tuple[ClassifierModule, dict]:
    """Train one variant on one seed; metrics on the shuffled-background ``split``: "test" (the study: plus
    in-distribution test and training accuracy) or "val" (weight selection: the test split is never read)."""
    dm, dm_id = datamodules(seed, correlation)
    if variant == "oracle":
        for d in (dm, dm_id):
            d.train_dataset, d.test_dataset = erase_background(d.train_dataset), erase_background(d.test_dataset)
    pl.seed_everything(seed, verbose=False)
    vit = VisionTransformer(img_size=IMAGE, patch_size=PATCH, in_chans=3, embed_dim=WIDTH, depth=DEPTH, num_heads=HEADS)
    module = ClassifierModule(vit, lr=1e-3, optimizer="adamw", weight_decay=0.05, scheduler="cosine")
    loss = VARIANTS[variant](weights)
    trainer = pl.Trainer(max_epochs=epochs, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                         limit_val_batches=0, callbacks=[AttentionLossCallback(loss)] if loss else [])
    start = time.perf_counter()
    trainer.fit(module, datamodule=dm)
    seconds = time.perf_counter() - start
    module.eval()
    if split == "val":  # shuffled backgrounds (eval_correlation 0), disjoint from train and test
        xv, yv, mv = dm.val_dataset.tensors
        if variant == "oracle":
            xv = xv * mv
        mass = attention_object_mass(module, xv, mv, layers=LAYERS)
        return module, {
            "variant": variant, "seed": seed, "acc_val_shuffled": accuracy(module, xv, yv),
            "val_object_mass": mass[LAYERS[-1]], "val_object_mass_layers": statistics.mean(mass.values()),
            "n_val": len(yv), "train_seconds": seconds,
        }
    x, y, mask = dm.test_dataset.tensors
    xi, yi, _ = dm_id.test_dataset.tensors
    xtr, ytr, _ = dm.train_dataset.tensors
    mass = attention_object_mass(module, x, mask, layers=LAYERS)
    return module, {
        "variant": variant, "seed": seed, "acc_shuffled": accuracy(module, x, y),
        "acc_in_dist": accuracy(module, xi, yi),
        "acc_train": accuracy(module, xtr, ytr), "object_mass": mass[LAYERS[-1]],
        "object_mass_layers": statistics.mean(mass.values()), "train_seconds": seconds,
    }


KEYS = ("acc_shuffled", "acc_in_dist", "acc_train", "object_mass", "object_mass_layers")


def summarise(rows: list[dict]) -> dict[str, dict[str, float]]:
    out = {}
    for v in VARIANTS:
        rs = [r for r in rows if r["variant"] == v]
        if rs:
            out[v] = {k: statistics.mean(r[k] for r in rs) for k in KEYS}
            out[v].update({f"{k}_std": statistics.pstdev(r[k] for r in rs) for k in KEYS})
            out[v]["n"] = len(rs)
    return out


def markdown(
    rows: list[dict], summary: dict, args: argparse.Namespace, weights: dict, extra: dict | None = None
) -> str:
    base = summary.get("vanilla", {}).get("acc_shuffled")
    tiles = (IMAGE - DIGIT) // PATCH + 1
    lines = [
        "# Attention losses on synthetic scenes (backgrounds shuffled at test)", "",
        f"Scenes: {DIGIT} px digit on its own dark tile aligned to the {PATCH} px patch grid "
        f"({tiles}x{tiles} positions), "
        f"{IMAGE} px image, class-coloured striped background = label with probability {args.correlation} in training. "
        f"Routed ViT (patch {PATCH}, width {WIDTH}, depth {DEPTH}, {HEADS} heads), {args.epochs} epochs AdamW "
        f"(lr 1e-3, wd 0.05, cosine), seeds {sorted({r['seed'] for r in rows})}. Losses on layers {LAYERS}: "
        f"concentration = ConcentrationLoss(weight {weights['concentration']}, target='mask', "
        f"queries='{weights['queries']}'); bas = BackgroundSuppressionLoss(weight {weights['bas']}, "
        f"queries='{weights['queries']}', "
        "cls_is_background=True); oracle = background erased from the input at training and test (an upper "
        "bound, not a loss).", "",
        "Shuffled = test backgrounds of a random class; in-dist = the same test images with backgrounds drawn at "
        "the training correlation. Object mass = CLS attention mass on the object tile (head mean), last layer / "
        "mean over layers. Mean +- std (population) over seeds. Goal: shuffled accuracy >= +10 points over "
        "vanilla.", "",
        "| variant | shuffled bg acc (%) | vs vanilla | in-dist acc (%) | train acc (%) | object mass, last | "
        "object mass, all layers |",
        "|---|---|---|---|---|---|---|",
    ]
    for v, s in summary.items():
        delta = "" if base is None or v == "vanilla" else f"{s['acc_shuffled'] - base:+.1f}"
        lines.append(
            f"| {v} | {s['acc_shuffled']:.1f} +- {s['acc_shuffled_std']:.1f} | {delta} | {s['acc_in_dist']:.1f} +- "
            f"{s['acc_in_dist_std']:.1f} | {s['acc_train']:.1f} | {s['object_mass']:.3f} +- "
            f"{s['object_mass_std']:.3f} | "
            f"{s['object_mass_layers']:.3f} |"
        )
    sel_path = args.out / "selection.json"
    if sel_path.exists():
        sel = json.loads(sel_path.read_text())
        cands = {v: "{" + ", ".join(f"{w:g}" for w in sorted({r["weight"] for r in sel["rows"] if r["variant"] == v}))
                 + "}" for v in ("concentration", "bas")}
        agree = all(sel["chosen"].get(v) == weights[v] for v in ("concentration", "bas"))
        lines += ["", "Loss weights selected on the validation split, not the test split (selection.md: seed "
                  f"{sel['seed']}, concentration in {cands['concentration']}, bas in {cands['bas']}; best "
                  "validation shuffled accuracy, ties -> smaller weight): "
                  + ", ".join(f"{v} {sel['chosen'][v]:g}" for v in ("concentration", "bas") if v in sel["chosen"])
                  + (" - the weights used here." if agree else " - NOT the weights used here.")]
    checks = (extra or {}).get("figure_retrain_check")
    if (extra or {}).get("merged_from_previous"):
        same = checks and all(c["identical"] for c in checks)
        lines += ["", f"Rows of {', '.join(extra['merged_from_previous'])} carried over from the previous run of "
                  "this study (same setting, `--merge`); their seed-0 models were retrained for attention_maps.png "
                  + ("and reproduced the stored rows exactly." if same else
                     "and did NOT all reproduce the stored rows: see figure_retrain_check in results.json.")]
    if base is not None:
        lines.append("")
        for v in ("concentration", "bas"):
            if v in summary:
                gain = summary[v]["acc_shuffled"] - base
                verdict = "met" if gain >= 10 else f"missed by {10 - gain:.1f} points"
                lines.append(f"- {v}: {gain:+.1f} points over vanilla with shuffled backgrounds: goal (+10) {verdict}.")
    lines += ["", "Per run:", "", "| variant | seed | shuffled | in-dist | train | object mass | train s |",
              "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['variant']} | {r['seed']} | {r['acc_shuffled']:.1f} | {r['acc_in_dist']:.1f} | "
              f"{r['acc_train']:.1f} | "
              f"{r['object_mass']:.3f} | {r['train_seconds']:.0f} |" for r in rows]
    return "\n".join(lines) + "\n"


def accuracy_figure(rows: list[dict], path: Path) -> None:
    """Grouped bars: shuffled-background and in-distribution test accuracy per variant (mean +- std)."""
    names = [v for v in VARIANTS if any(r["variant"] == v for r in rows)]
    fig, ax = plt.subplots(figsize=(1.5 * len(names) + 1.5, 3.4))
    xs = np.arange(len(names))
    for off, key, label, colour in ((-0.2, "acc_shuffled", "shuffled backgrounds", "tab:red"),
                                    (0.2, "acc_in_dist", "in-distribution", "tab:blue")):
        vals = [[r[key] for r in rows if r["variant"] == v] for v in names]
        ax.bar(xs + off, [np.mean(v) for v in vals], 0.4, yerr=[np.std(v) for v in vals], capsize=3,
               color=colour, alpha=0.8, label=label)
        for i, v in enumerate(vals):
            ax.scatter(np.full(len(v), xs[i] + off), v, color="k", s=6, zorder=3)
    ax.axhline(10, color="grey", lw=0.8, ls=":")
    ax.set_xticks(xs, names)
    ax.set_ylim(0, 100)
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("bars: mean +- std over seeds; dots: seeds; dotted: chance", fontsize=8)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def attention_figure(modules: dict, dm: SyntheticScenesDataModule, path: Path) -> None:
    x, y, m = dm.test_dataset.tensors
    x, y, m = x[:8], y[:8], m[:8]
    maps = {}
    for v, mod in modules.items():
        xin = x * m if v == "oracle" else x
        with torch.no_grad(), AttentionRecorder(mod.model, [-1], cls=True) as rec:
            mod(xin)
        maps[v] = tokens_to_image(rec[-1].cls.mean(1), None, token_grid(mod.model), tuple(x.shape[-2:]))
    plot_attention_maps(x, maps, path, labels=y.tolist(), title="CLS attention, last layer (shuffled backgrounds)")


def pick(rows: list[dict], loss: str) -> float:
    """The candidate weight of ``loss`` with the best validation shuffled-background accuracy; ties go to the
    smaller weight."""
    cands = [r for r in rows if r["variant"] == loss]
    return min(cands, key=lambda r: (-r["acc_val_shuffled"], r["weight"]))["weight"]


def selection_markdown(rows: list[dict], chosen: dict, args: argparse.Namespace) -> str:
    base = next((r["acc_val_shuffled"] for r in rows if r["variant"] == "vanilla"), None)
    lines = [
        "# Loss-weight selection on the validation split", "",
        f"Seed {args.seeds[0]}, {args.epochs} epochs, correlation {args.correlation}, queries='{args.queries}', "
        "otherwise as the study (run.py). Accuracy on the VALIDATION split of the same datamodule: backgrounds "
        f"of a random class (eval_correlation 0), {rows[0]['n_val']} images, disjoint from train and test; the "
        "test split is not read. Object mass = CLS attention mass on the object tile (head mean) on the "
        "validation images. Rule: per loss, the weight with the best validation accuracy (ties -> smaller weight).",
        "",
        "| variant | weight | val shuffled acc (%) | vs vanilla | object mass, last | object mass, all layers | "
        "train s |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        w = "" if r["weight"] is None else f"{r['weight']:g}"
        delta = "" if base is None or r["variant"] == "vanilla" else f"{r['acc_val_shuffled'] - base:+.1f}"
        mark = " (chosen)" if r["variant"] in chosen and chosen[r["variant"]] == r["weight"] else ""
        lines.append(f"| {r['variant']}{mark} | {w} | {r['acc_val_shuffled']:.1f} | {delta} | "
                     f"{r['val_object_mass']:.3f} | {r['val_object_mass_layers']:.3f} | {r['train_seconds']:.0f} |")
    if chosen:
        lines += ["", "Chosen: " + ", ".join(f"{k} weight {v:g}" for k, v in chosen.items()) + "."]
    return "\n".join(lines) + "\n"


def select(args: argparse.Namespace) -> None:
    """Train vanilla and every candidate weight on the first seed; score on the validation split."""
    seed, rows, chosen = args.seeds[0], [], {}
    plan = [("vanilla", None)] + [("concentration", w) for w in args.concentration_candidates] + [
        ("bas", w) for w in args.bas_candidates]
    for v, w in plan:
        weights = {"concentration": w, "bas": w, "queries": args.queries}
        _, row = train(v, seed, args.epochs, args.correlation, weights, split="val")
        row["weight"] = w
        rows.append(row)
        print(json.dumps(row), flush=True)
        chosen = {loss: pick(rows, loss) for loss in ("concentration", "bas")
                  if any(r["variant"] == loss for r in rows)}
        atomic_write_json(args.out / "selection.json", {
            "rows": rows, "chosen": chosen, "seed": seed, "epochs": args.epochs, "correlation": args.correlation,
            "queries": args.queries, "split": "val", "layers": LAYERS})
        atomic_write_text(args.out / "selection.md", selection_markdown(rows, chosen, args))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--correlation", type=float, default=0.9)
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--concentration-weight", type=float, default=1.0)
    ap.add_argument("--bas-weight", type=float, default=5.0)
    ap.add_argument("--queries", default="all", choices=["cls", "all", "object"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=HERE, help="folder for the tables and figures")
    ap.add_argument("--select", action="store_true",
                    help="weight selection: vanilla and each candidate weight on the first seed, scored on the "
                         "validation split (shuffled backgrounds); writes selection.md / selection.json")
    ap.add_argument("--concentration-candidates", type=float, nargs="+", default=[1.0, 5.0, 20.0])
    ap.add_argument("--bas-candidates", type=float, nargs="+", default=[5.0, 20.0, 50.0])
    ap.add_argument("--merge", action="store_true",
                    help="train only --variants; take the other variants' rows from --out/results.json (same "
                         "setting required) and retrain their first-seed models for attention_maps.png only")
    ap.add_argument("--replot", action="store_true",
                    help="no training: rewrite results.md and accuracy.png from --out/results.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    weights = {"concentration": args.concentration_weight, "bas": args.bas_weight, "queries": args.queries}
    args.out.mkdir(parents=True, exist_ok=True)
    if args.select:
        select(args)
        return
    if args.replot:
        saved = json.loads((args.out / "results.json").read_text())
        args.epochs, args.correlation = saved["epochs"], saved["correlation"]
        rows, weights = saved["rows"], saved["weights"]
        atomic_write_text(args.out / "results.md", markdown(rows, summarise(rows), args, weights, saved))
        accuracy_figure(rows, args.out / "accuracy.png")
        return
    kept, extra = [], {}
    if args.merge:
        kept, weights = merge_base(args, weights)
    rows, first = [], {}
    for seed in args.seeds:
        for v in args.variants:
            module, row = train(v, seed, args.epochs, args.correlation, weights)
            rows.append(row)
            print(json.dumps(row), flush=True)
            if seed == args.seeds[0]:
                first[v] = module
            write_results(args, order(kept + rows), weights, extra)
    if args.merge:
        # the attention figure needs the first seed's model of every variant: retrain the kept ones (figure
        # only) and check that they reproduce their stored rows
        checks = []
        for v in [v for v in VARIANTS if v not in args.variants and any(r["variant"] == v for r in kept)]:
            module, row = train(v, args.seeds[0], args.epochs, args.correlation, weights)
            stored = next(r for r in kept if r["variant"] == v and r["seed"] == args.seeds[0])
            checks.append({"variant": v, "seed": args.seeds[0], "stored_acc_shuffled": stored["acc_shuffled"],
                           "retrained_acc_shuffled": row["acc_shuffled"],
                           "identical": all(abs(row[k] - stored[k]) < 1e-6 for k in KEYS)})
            print(json.dumps(checks[-1]), flush=True)
            first[v] = module
        extra = {"merged_from_previous": sorted({r["variant"] for r in kept}), "figure_retrain_check": checks}
        write_results(args, order(kept + rows), weights, extra)
    rows = order(kept + rows)
    first = {v: first[v] for v in VARIANTS if v in first}
    accuracy_figure(rows, args.out / "accuracy.png")
    attention_figure(first, datamodules(args.seeds[0], args.correlation)[0], args.out / "attention_maps.png")


def order(rows: list[dict]) -> list[dict]:
    return sorted(rows, key=lambda r: (r["seed"], list(VARIANTS).index(r["variant"])))


def write_results(args: argparse.Namespace, rows: list[dict], weights: dict, extra: dict) -> None:
    summary = summarise(rows)
    atomic_write_json(args.out / "results.json", {
        "rows": rows, "summary": summary, "epochs": args.epochs, "correlation": args.correlation,
        "weights": weights, "layers": LAYERS, **extra})
    atomic_write_text(args.out / "results.md", markdown(rows, summary, args, weights, extra))


def merge_base(args: argparse.Namespace, weights: dict) -> tuple[list[dict], dict]:
    """Rows of the variants not retrained, from --out/results.json; refuses a stored study whose setting
    (epochs, correlation, queries, seeds, or the weight of a kept loss variant) differs from this run."""
    saved = json.loads((args.out / "results.json").read_text())
    old_w = saved["weights"]
    problems = [f"{k}: stored {saved[k]} != {getattr(args, k)}" for k in ("epochs", "correlation")
                if saved[k] != getattr(args, k)]
    if old_w["queries"] != weights["queries"]:
        problems.append(f"queries: stored {old_w['queries']} != {weights['queries']}")
    kept = [r for r in saved["rows"] if r["variant"] not in args.variants]
    for v in {r["variant"] for r in kept}:
        if sorted(r["seed"] for r in kept if r["variant"] == v) != sorted(args.seeds):
            problems.append(f"{v}: stored seeds differ from {args.seeds}")
        if v in ("concentration", "bas") and old_w[v] != weights[v]:
            problems.append(f"{v}: stored weight {old_w[v]} != {weights[v]} (add it to --variants)")
    if problems:
        raise SystemExit("--merge: " + "; ".join(problems))
    return kept, weights


if __name__ == "__main__":
    main()
