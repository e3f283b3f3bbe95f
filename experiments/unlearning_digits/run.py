"""Machine-unlearning study on scikit-learn's digits: Retrain, FT, GA, RL, l1-sparse and SalUn.

One command runs everything and writes the result tables and figures:

    python experiments/unlearning_digits/run.py [--quick] [--seeds 0 1 2] [--out experiments/unlearning_digits]

Protocol (SalUn, Fan et al. ICLR 2024, on a small scale): per seed, one original SmallCNN trained on the
full train split (shared by both forgetting modes: the train/test split depends only on the seed), then for
each mode (class-wise: class 0; random: 10 % of the train set) one Retrain from scratch on the retain set and,
for every other method, one run per learning rate of a small grid. Per (method, mode) the learning rate with
the smallest mean Avg.Gap over the seeds is reported (SalUn's selection rule; optimistic because it selects
on the seeds it reports). Two checks: the learning rate chosen on the first seed, reported on the remaining
seeds; and every method re-run once at its chosen learning rate on fresh seeds (``--confirm-seeds``).
See README.md next to this file.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import logging
import math
import os
import platform
import time
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from salguide._lightning import pl
from salguide.data import DigitsDataModule
from salguide.io import atomic_write_json, atomic_write_text
from salguide.models import SmallCNN
from salguide.pipelines.fit import train_original, unlearn
from salguide.unlearning import avg_gap, method_spec, unlearning_metrics
from salguide.unlearning.report import aggregate
from salguide.viz import plot_metrics_vs_retrain
from salguide.weights import WeightMask, saliency_scores

HERE = Path(__file__).resolve().parent


def _load_figures() -> Any:
    """Import the sibling ``figures.py`` under a unique name (this folder is not a package)."""
    spec = importlib.util.spec_from_file_location("salguide_unlearning_digits_figures", HERE / "figures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_figures = _load_figures()
plot_avg_gap, plot_sweep = _figures.plot_avg_gap, _figures.plot_sweep

METRICS = ("UA", "RA", "TA", "MIA")
GAP = "Avg.Gap"
METHODS = ("ft", "ga", "rl", "l1_sparse", "salun")  # Retrain is the reference, run once per (seed, mode)
MODES = {"class": "classwise", "random": "random"}  # forget mode -> result-file suffix
TITLES = {"class": "class-wise (class 0)", "random": "random 10 %"}
MASK_RATIO = 0.5  # SalUn: keep the 50 % most salient weights (global top-k)

# Learning-rate grids per (mode, method), chosen after a one-seed look so that each brackets its best value.
# RL and SalUn share a grid in each mode; their good learning rates differ ~40x between the two modes.
FULL = {
    "seeds": [0, 1, 2],
    "confirm_seeds": [3, 4, 5, 6, 7],  # fresh seeds: each method at its chosen lr only (out-of-sample check)
    "width": 32,
    "batch_size": 64,
    "original": {"epochs": 15, "lr": 0.05, "optimizer": "sgd", "momentum": 0.9, "weight_decay": 5e-4,
                 "scheduler": "cosine"},
    "epochs": {},  # method_spec defaults: Retrain 15 (cosine), FT 5, GA 3, RL 5, l1-sparse 5, SalUn 5
    "grids": {
        "class": {
            "ft": [0.2, 0.4, 0.8],
            "ga": [1e-3, 3e-3, 1e-2],
            "rl": [0.01, 0.02, 0.03],
            "l1_sparse": [0.2, 0.4, 0.8],
            "salun": [0.01, 0.02, 0.03],
        },
        "random": {
            "ft": [0.02, 0.05, 0.1],
            "ga": [0.02, 0.05, 0.1],
            "rl": [2.5e-4, 5e-4, 1e-3],
            "l1_sparse": [0.02, 0.05, 0.1],
            "salun": [2.5e-4, 5e-4, 1e-3],
        },
    },
}
# --quick: a tiny configuration that exercises every code path (smoke test, < 1 min); numbers are meaningless.
QUICK = {
    **FULL,
    "seeds": [0],
    "confirm_seeds": [],
    "width": 8,
    "original": {**FULL["original"], "epochs": 2},
    "epochs": {"retrain": 2, "ft": 1, "ga": 1, "rl": 1, "l1_sparse": 1, "salun": 1},
    "grids": {mode: {m: grid[:1] + grid[-1:] for m, grid in g.items()} for mode, g in FULL["grids"].items()},
}
TRAINER = dict(
    accelerator="cpu", devices=1, enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0
)


def _quiet() -> None:
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module=r"(lightning|pytorch_lightning|lightning_fabric)(\..*)?")
    warnings.filterwarnings("ignore", message=r".*(does not have many workers|LeafSpec|eval mode).*")


def _finite_model(model: torch.nn.Module) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in [*model.parameters(), *model.buffers()] if t.is_floating_point())


def _evaluate(model: torch.nn.Module, dm: DigitsDataModule, seed: int) -> dict[str, float] | None:
    """UA/RA/TA/MIA, or ``None`` when the run diverged (non-finite weights or logits)."""
    if not _finite_model(model):
        return None
    try:
        return unlearning_metrics(model, dm, seed=seed)
    except ValueError as err:
        if "NaN" in str(err) or "inf" in str(err):
            return None
        raise


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _machine() -> dict[str, Any]:
    return {
        "cpu_model": _cpu_model(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "lightning": pl.__version__,
    }


def run_study(cfg: dict[str, Any], progress: bool = True, desc: str = "unlearning study") -> dict[str, Any]:
    """Run every (seed, mode, method, lr) of ``cfg``; return the raw records (one dict per run)."""
    seeds, grids, epochs = list(cfg["seeds"]), cfg["grids"], cfg["epochs"]
    width = cfg["width"]
    n_runs = len(seeds) * (1 + sum(1 + sum(len(grids[m].get(k, [])) for k in METHODS) for m in MODES))
    bar = tqdm(total=n_runs, desc=desc, unit="run", disable=not progress, dynamic_ncols=True)
    records: list[dict[str, Any]] = []

    def factory() -> torch.nn.Module:
        return SmallCNN(num_classes=10, in_channels=1, width=width)

    for seed in seeds:
        dms = {}
        for mode in MODES:
            dm = DigitsDataModule(batch_size=cfg["batch_size"], seed=seed, forget=mode, forget_class=0, forget_ratio=0.1)
            dm.setup("fit")
            dms[mode] = dm
        if not torch.equal(dms["class"].train_x, dms["random"].train_x):
            raise RuntimeError("the two forgetting modes must share the train split to share the original model")

        bar.set_postfix_str(f"seed {seed}: original")
        pl.seed_everything(seed, workers=True, verbose=False)
        t0 = time.perf_counter()
        original = train_original(factory(), dms["class"], seed=seed, trainer_kwargs=TRAINER, **cfg["original"])
        original_seconds = time.perf_counter() - t0
        bar.update()

        for mode, dm in dms.items():
            base = {"seed": seed, "mode": mode, "n_forget": len(dm.forget_dataset), "n_retain": len(dm.retain_dataset)}
            met = _evaluate(original, dm, seed)
            records.append({**base, "method": "Original", "key": "original", "lr": None, "RTE": None,
                            "train_seconds": original_seconds, "diverged": met is None, **(met or {})})

            jobs = [("retrain", None)] + [(m, lr) for m in METHODS for lr in grids[mode].get(m, [])]
            for key, lr in jobs:
                overrides: dict[str, Any] = {}
                if key in epochs:
                    overrides["epochs"] = epochs[key]
                if lr is not None:
                    overrides["lr"] = lr
                spec = method_spec(key, **overrides)
                bar.set_postfix_str(f"seed {seed} {mode}: {spec.name} lr={spec.lr:g}")
                mask_fn = None
                if spec.weight_mask:
                    def mask_fn(net: torch.nn.Module, dm: DigitsDataModule = dm) -> WeightMask:
                        scores = saliency_scores(net, dm.forget_dataloader(), progress=False)
                        return WeightMask.from_scores(scores, ratio=MASK_RATIO)
                result = unlearn(
                    original, dm, spec, mask_fn=mask_fn, model_factory=factory, seed=seed,
                    trainer_kwargs=TRAINER, logger=False,
                )
                met = _evaluate(result.model, dm, seed)
                records.append({**base, "method": spec.name, "key": key, "lr": spec.lr, "epochs": spec.epochs,
                                "RTE": result.seconds, "diverged": met is None, **(met or {})})
                if key == "retrain" and met is None:
                    raise RuntimeError(f"Retrain diverged (seed {seed}, {mode}): no reference to measure gaps to")
                bar.update()
        del original
    bar.close()
    _add_gaps(records)
    return {"records": records}


def _add_gaps(records: list[dict[str, Any]]) -> None:
    """Avg.Gap of every run to the Retrain run of its (seed, mode); ``None`` for diverged runs."""
    refs = {(r["seed"], r["mode"]): r for r in records if r["key"] == "retrain"}
    for r in records:
        ref = refs[(r["seed"], r["mode"])]
        r[GAP] = None if r["diverged"] else avg_gap(r, ref)


def sweep_table(records: Sequence[dict[str, Any]], mode: str, key: str, seeds: Sequence[int]) -> list[dict[str, Any]]:
    """Per learning rate: mean/std Avg.Gap over ``seeds`` (``inf`` mean when any seed diverged)."""
    rows = [r for r in records if r["mode"] == mode and r["key"] == key and r["seed"] in seeds]
    out = []
    for lr in sorted({r["lr"] for r in rows}):
        gaps = [r[GAP] for r in rows if r["lr"] == lr]
        diverged = sum(g is None for g in gaps)
        if diverged:
            mean, std = math.inf, math.nan
        else:
            mean = float(np.mean(gaps))
            std = float(np.std(gaps, ddof=1)) if len(gaps) > 1 else 0.0
        out.append({"lr": lr, "gap_mean": mean, "gap_std": std, "n": len(gaps), "diverged": diverged})
    return out


def choose_lr(table: Sequence[dict[str, Any]]) -> float | None:
    """The learning rate with the smallest mean Avg.Gap (ties: the smaller lr); ``None`` if all diverged."""
    finite = [row for row in table if math.isfinite(row["gap_mean"])]
    if not finite:
        return None
    return min(finite, key=lambda row: (row["gap_mean"], row["lr"]))["lr"]


def summarise(records: Sequence[dict[str, Any]], mode: str, select_seeds: Sequence[int],
              report_seeds: Sequence[int]) -> dict[str, Any]:
    """Choose each method's lr on ``select_seeds``; aggregate its runs on ``report_seeds`` (mean ± std)."""
    chosen: dict[str, float | None] = {}
    rows = [r for r in records if r["mode"] == mode and r["seed"] in report_seeds and r["key"] in ("original", "retrain")]
    for key in METHODS:
        lr = choose_lr(sweep_table(records, mode, key, select_seeds))
        chosen[key] = lr
        if lr is not None:
            rows += [r for r in records if r["mode"] == mode and r["key"] == key and r["lr"] == lr
                     and r["seed"] in report_seeds]
    order = {"original": 0, "retrain": 1, **{k: i + 2 for i, k in enumerate(METHODS)}}
    rows.sort(key=lambda r: (order[r["key"]], r["seed"]))
    if any(r["diverged"] for r in rows):
        raise RuntimeError(f"{mode}: a chosen run diverged on a reported seed; widen or lower the grid")
    lean = [{"method": r["method"], "seed": r["seed"], **{k: r[k] for k in METRICS},
             **({"RTE": r["RTE"]} if r["RTE"] is not None else {})} for r in rows]
    summary = aggregate(lean)
    lr_of = {method_spec(k).name: lr for k, lr in chosen.items()}
    for entry in summary:
        entry["seed_gaps"] = [r[GAP] for r in rows if r["method"] == entry["method"]]
        entry["lr"] = lr_of.get(entry["method"])
        if entry["method"] == "Retrain":
            entry["lr"] = method_spec("retrain").lr
    return {"chosen_lr": {method_spec(k).name: lr for k, lr in chosen.items()}, "chosen_key": chosen, "summary": summary,
            "select_seeds": list(select_seeds), "report_seeds": list(report_seeds)}


def wins(records: Sequence[dict[str, Any]], mode: str, chosen: dict[str, float | None], seeds: Sequence[int]) -> dict[str, int]:
    """How many seeds each method (at its chosen lr) has the smallest Avg.Gap on (a tie counts for each)."""
    count = {name: 0 for name in chosen}
    for seed in seeds:
        gaps = {r["method"]: r[GAP] for r in records if r["mode"] == mode and r["seed"] == seed
                and r["method"] in chosen and r["lr"] == chosen[r["method"]] and r[GAP] is not None}
        if gaps:
            best = min(gaps.values())
            for name, gap in gaps.items():
                if gap <= best + 1e-9:
                    count[name] += 1
    return count


def paired(records: Sequence[dict[str, Any]], mode: str, chosen: dict[str, float | None], seeds: Sequence[int],
           ref: str = "SalUn") -> list[dict[str, Any]]:
    """Per other method: SalUn's Avg.Gap minus its Avg.Gap on the same seed (both at their chosen lr).

    Negative = SalUn closer to Retrain. Returns mean/std of the paired difference and how many seeds SalUn is
    smaller / tied / larger on.
    """
    gaps: dict[str, dict[int, float]] = {}
    for r in records:
        if r["mode"] == mode and r["seed"] in seeds and r["method"] in chosen and r["lr"] == chosen[r["method"]]:
            if r[GAP] is not None:
                gaps.setdefault(r["method"], {})[r["seed"]] = r[GAP]
    if ref not in gaps:
        return []
    out = []
    for name in chosen:
        if name == ref or name not in gaps:
            continue
        common = sorted(set(gaps[name]) & set(gaps[ref]))
        d = np.array([gaps[ref][s] - gaps[name][s] for s in common])
        out.append({
            "method": name, "n": len(d), "diff_mean": float(d.mean()),
            "diff_std": float(d.std(ddof=1)) if len(d) > 1 else 0.0,
            "salun_smaller": int((d < -1e-9).sum()), "tie": int((abs(d) <= 1e-9).sum()),
            "salun_larger": int((d > 1e-9).sum()),
        })
    return out


def format_paired(rows: Sequence[dict[str, Any]]) -> str:
    lines = ["| SalUn vs | SalUn gap − its gap (mean ± std) | seeds SalUn smaller / tie / larger |",
             "|---|---:|:---:|"]
    for r in rows:
        lines.append(f"| {r['method']} | {r['diff_mean']:+.2f} ± {r['diff_std']:.2f} | "
                     f"{r['salun_smaller']} / {r['tie']} / {r['salun_larger']} |")
    return "\n".join(lines) + "\n"


def _fmt(entry: dict[str, Any], key: str) -> str:
    if key not in entry:
        return "-"
    return f"{entry[key]:.2f} ± {entry[f'{key}_std']:.2f}"


def format_summary(summary: Sequence[dict[str, Any]]) -> str:
    """Markdown mean ± std table; the smallest Avg.Gap among unlearning methods is bold."""
    methods = [e for e in summary if e["method"] not in ("Retrain", "Original")]
    best = min(methods, key=lambda e: e[GAP])["method"] if methods else None
    lines = ["| method | lr | UA | RA | TA | MIA | RTE (s) | Avg.Gap |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for e in summary:
        name = "Original (no unlearning)" if e["method"] == "Original" else e["method"]
        lr = "-" if e.get("lr") is None else f"{e['lr']:g}"
        gap = _fmt(e, GAP)
        if e["method"] == best:
            gap, name = f"**{gap}**", f"**{name}**"
        cells = [name, lr, *(_fmt(e, k) for k in METRICS), _fmt(e, "RTE"), gap]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def format_sweep(tables: dict[str, list[dict[str, Any]]], chosen: dict[str, float | None]) -> str:
    lines = ["| method | lr | Avg.Gap (mean ± std) | chosen |", "|---|---:|---:|:---:|"]
    for name, table in tables.items():
        for row in table:
            gap = (f"diverged on {row['diverged']}/{row['n']} seeds" if row["diverged"]
                   else f"{row['gap_mean']:.2f} ± {row['gap_std']:.2f}")
            mark = "✓" if chosen.get(name) == row["lr"] else ""
            lines.append(f"| {name} | {row['lr']:g} | {gap} | {mark} |")
    return "\n".join(lines) + "\n"


def _json_safe(obj: Any) -> Any:
    """Replace inf/NaN by None so the JSON is standard."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


def write_outputs(out: Path, cfg: dict[str, Any], records: list[dict[str, Any]], wall: float,
                  confirm_records: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    seeds = list(cfg["seeds"])
    confirm_seeds = sorted({r["seed"] for r in confirm_records or []})
    gap_panels: dict[str, Sequence[dict[str, Any]]] = {}
    names = {k: method_spec(k).name for k in METHODS}
    results: dict[str, Any] = {}
    sweeps_for_plot: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for mode, suffix in MODES.items():
        main = summarise(records, mode, seeds, seeds)
        tables = {names[k]: sweep_table(records, mode, k, seeds) for k in METHODS}
        sweeps_for_plot[TITLES[mode]] = tables
        held_out = summarise(records, mode, seeds[:1], seeds[1:]) if len(seeds) > 1 else None
        seed_wins = wins(records, mode, main["chosen_lr"], seeds)
        pairs = paired(records, mode, main["chosen_lr"], seeds)
        confirm = None
        if confirm_seeds:
            confirm = summarise(confirm_records, mode, confirm_seeds, confirm_seeds)
            confirm["seed_wins"] = wins(confirm_records, mode, confirm["chosen_lr"], confirm_seeds)
            confirm["paired"] = paired(confirm_records, mode, confirm["chosen_lr"], confirm_seeds)
            if confirm["chosen_lr"] != main["chosen_lr"]:
                raise RuntimeError(f"{mode}: the confirmation runs do not use the learning rates chosen by the study")
        ranked = sorted((e for e in main["summary"] if e["method"] not in ("Retrain", "Original")),
                        key=lambda e: e[GAP])
        salun_rank = next((i + 1 for i, e in enumerate(ranked) if e["method"] == "SalUn"), None)
        doc = {
            "mode": mode, "title": TITLES[mode], "seeds": seeds, "selection": "lr with the smallest mean Avg.Gap "
            "over the reported seeds (SalUn's rule)", "rows": main["summary"], "chosen_lr": main["chosen_lr"],
            "salun_rank": salun_rank, "n_methods": len(ranked), "seed_wins": seed_wins, "paired": pairs,
            "sweep": tables, "held_out": held_out, "confirm": confirm,
        }
        results[mode] = doc
        atomic_write_json(out / f"results_{suffix}.json", _json_safe(doc))

        md = [f"# Unlearning on digits: {TITLES[mode]} forgetting\n",
              f"SmallCNN (width {cfg['width']}), seeds {seeds}; mean ± std over the seeds. Each method's lr is the "
              "one with the smallest mean Avg.Gap over these same seeds (SalUn's rule: optimistic). "
              "Gaps are to the Retrain model of the same seed. RTE = wall-clock seconds of the unlearning run "
              "(SalUn's mask included) on a shared 2-core CPU.\n",
              format_summary(main["summary"]),
              f"SalUn ranks {salun_rank} of {len(ranked)} unlearning methods by mean Avg.Gap. "
              "Seeds on which each method has the smallest Avg.Gap (ties count for each): "
              + ", ".join(f"{k} {v}" for k, v in seed_wins.items()) + ".\n",
              "Paired per seed (negative = SalUn closer to Retrain):\n", format_paired(pairs),
              "## Learning-rate sweep\n", format_sweep(tables, main["chosen_lr"])]
        if held_out is not None:
            md += [f"## Held-out check: lr chosen on seed {seeds[0]}, reported on seeds {seeds[1:]}\n",
                   format_summary(held_out["summary"])]
        if confirm is not None:
            md += [f"## Fresh seeds {confirm_seeds}: learning rates fixed from the study above, not re-tuned\n",
                   "An out-of-sample check of the selection: new train/test splits, forget sets, originals and "
                   "Retrain models; each method runs once per seed at the lr chosen above.\n",
                   format_summary(confirm["summary"]),
                   "Seeds on which each method has the smallest Avg.Gap (ties count for each): "
                   + ", ".join(f"{k} {v}" for k, v in confirm["seed_wins"].items()) + ".\n",
                   format_paired(confirm["paired"])]
        gap_panels[f"{TITLES[mode]}, seeds {seeds} (lr tuned)"] = main["summary"]
        if confirm is not None:
            gap_panels[f"{TITLES[mode]}, fresh seeds {confirm_seeds}"] = confirm["summary"]
        atomic_write_text(out / f"results_{suffix}.md", "\n".join(md))

        plot_rows = [e for e in main["summary"] if e["method"] != "Original"]
        plot_metrics_vs_retrain(plot_rows, out / f"metrics_vs_retrain_{suffix}.png")

    plot_avg_gap(gap_panels, out / "avg_gap.png")
    plot_sweep(sweeps_for_plot, out / "lr_sweep.png")
    atomic_write_json(out / "sweep.json", _json_safe({
        "config": cfg, "mask_ratio": MASK_RATIO, "wall_seconds": wall, "machine": _machine(),
        "runs": records, "confirm_runs": confirm_records or [],
    }))
    return results


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny smoke configuration (about a minute; numbers meaningless)")
    p.add_argument("--seeds", type=int, nargs="+", default=None, help="seeds (default 0 1 2; --quick: 0)")
    p.add_argument("--confirm-seeds", type=int, nargs="*", default=None,
                   help="fresh seeds on which each method is re-run once at its chosen lr (default 3 4 5 6 7; "
                        "--quick: none; pass the flag with no value to skip)")
    p.add_argument("--out", type=Path, default=None,
                   help="output folder (default: this folder; --quick: outputs/unlearning_digits_quick)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (default 1: the tiny CNN gains little from more, and a shared machine "
                        "loses a lot to oversubscription)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("--replot", action="store_true",
                   help="re-write tables and figures from <out>/sweep.json without training anything")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    _quiet()
    if args.threads < 1:
        raise SystemExit(f"--threads must be >= 1, got {args.threads}")
    torch.set_num_threads(args.threads)
    cfg = copy.deepcopy(QUICK if args.quick else FULL)
    if args.seeds is not None:
        if len(set(args.seeds)) != len(args.seeds):
            raise SystemExit(f"--seeds must be distinct, got {args.seeds}")
        cfg["seeds"] = list(args.seeds)
    if args.confirm_seeds is not None:
        cfg["confirm_seeds"] = list(args.confirm_seeds)
    if set(cfg["confirm_seeds"]) & set(cfg["seeds"]) or len(set(cfg["confirm_seeds"])) != len(cfg["confirm_seeds"]):
        raise SystemExit(f"--confirm-seeds must be distinct and disjoint from --seeds {cfg['seeds']}")
    out = args.out if args.out is not None else (Path("outputs/unlearning_digits_quick") if args.quick else HERE)
    out.mkdir(parents=True, exist_ok=True)
    if args.replot:
        saved = json.loads((out / "sweep.json").read_text())
        cfg, wall = saved["config"], saved["wall_seconds"]
        records, confirm_records = saved["runs"], saved.get("confirm_runs", [])
    else:
        start = time.perf_counter()
        records = run_study(cfg, progress=not args.no_progress)["records"]
        confirm_records = []
        if cfg["confirm_seeds"]:
            grids = {}
            for mode in MODES:
                chosen = summarise(records, mode, cfg["seeds"], cfg["seeds"])["chosen_key"]
                grids[mode] = {k: [lr] for k, lr in chosen.items() if lr is not None}
            confirm_cfg = {**cfg, "seeds": cfg["confirm_seeds"], "grids": grids}
            confirm_records = run_study(confirm_cfg, progress=not args.no_progress, desc="fresh seeds")["records"]
        wall = time.perf_counter() - start
    results = write_outputs(out, cfg, records, wall, confirm_records)
    print(f"\nwall time {wall / 60:.1f} min; results in {out}")
    for mode, suffix in MODES.items():
        print(f"\n{TITLES[mode]}:\n" + format_summary(results[mode]["rows"]))
    return {"out": out, "wall_seconds": wall, "results": results, "records": records,
            "confirm_records": confirm_records}


if __name__ == "__main__":
    main()
