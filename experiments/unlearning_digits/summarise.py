"""Machine-unlearning study on scikit-learn's digits: choose each method's lr, then tabulate and plot the runs.

Reads what ``salguide-train`` leaves in each run directory (``run.sh``: the presets unlearn_digits and
unlearn_digits_random over the methods' learning-rate grids): ``results.json`` (Original, Retrain and the
method: UA, RA, TA, MIA, RTE, Avg.Gap) and ``.hydra/config.yaml`` (forget mode, method, lr, seed). Two steps::

    python summarise.py select  RUNS/study --out DIR   # prints LR_<mode>_<method>=<lr> (smallest mean Avg.Gap)
    python summarise.py results RUNS       --out DIR   # RUNS/study (+ RUNS/confirm): the tables and figures

Protocol (SalUn, Fan et al. ICLR 2024, on a small scale): per (method, mode) the learning rate with the smallest
mean Avg.Gap over the study's seeds is reported (SalUn's selection rule; optimistic because it selects on the
seeds it reports). Two checks: the learning rate chosen on the first seed, reported on the remaining seeds; and
every method re-run once at its chosen learning rate on fresh seeds (``RUNS/confirm``). See README.md.
"""

from __future__ import annotations

import math
import os
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from figures import plot_avg_gap, plot_sweep  # this script's folder (sys.path[0] when run as a script)

from salguide.io import atomic_write_json, atomic_write_text
from salguide.studies import job_results, log_results_table, run_epochs, run_lr, summary_arguments
from salguide.unlearning.methods import run_method_key
from salguide.unlearning.report import aggregate
from salguide.viz import plot_metrics_vs_retrain

METRICS = ("UA", "RA", "TA", "MIA")
GAP = "Avg.Gap"
METHODS = ("ft", "ga", "rl", "l1_sparse", "salun")  # Retrain is the reference, run once per (seed, mode)
NAMES = {"ft": "FT", "ga": "GA", "rl": "RL", "l1_sparse": "l1-sparse", "salun": "SalUn"}
MODES = {"class": "classwise", "random": "random"}  # forget mode -> result-file suffix
TITLES = {"class": "class-wise (class 0)", "random": "random 10 %"}


def load_records(root: Path) -> list[dict[str, Any]]:
    """One record per run and stage: the method's row of every run below ``root``, and the Original and
    Retrain rows once per (seed, mode) (every run of a seed reports the same cached models)."""
    records: list[dict[str, Any]] = []
    refs: dict[tuple[int, str], dict[str, dict[str, Any]]] = {}
    for run, cfg, rows in job_results(root):
        mode, seed, key = str(cfg["data"]["forget"]), int(cfg["seed"]), run_method_key(cfg["unlearning"])
        if mode not in MODES or key not in METHODS:
            raise ValueError(
                f"{run}: forget={mode!r} / unlearning={key!r} is not part of this study "
                f"(modes {list(MODES)}, methods {list(METHODS)})"
            )
        by_name = {r["method"]: r for r in rows}
        if not {"Original", "Retrain"} <= set(by_name) or len(by_name) != 3:
            raise ValueError(
                f"{run}: results.json must hold the Original, Retrain and method rows, got {list(by_name)}"
            )
        method = next(r for name, r in by_name.items() if name not in ("Original", "Retrain"))
        base = {"seed": seed, "mode": mode, "diverged": False, "run": str(run)}
        records.append(
            {
                **base,
                "method": NAMES[key],
                "key": key,
                "lr": run_lr(cfg, "unlearning"),
                "epochs": run_epochs(cfg, "unlearning"),
                "RTE": method["RTE"],
                **{k: method[k] for k in (*METRICS, GAP)},
            }
        )
        for name, stage in (("Original", "original"), ("Retrain", "retrain")):
            r = by_name[name]
            rec = {
                **base,
                "method": name,
                "key": stage,
                "RTE": r.get("RTE"),
                **{k: r[k] for k in (*METRICS, GAP)},
                # Retrain: its own node (by default the original's recipe; runs before it: the original's)
                "lr": None if stage == "original" else run_lr(cfg, stage if stage in cfg else "original"),
                "epochs": run_epochs(cfg, stage if stage in cfg else "original"),
            }
            seen = refs.setdefault((seed, mode), {})
            if name not in seen:
                seen[name] = rec
                records.append(rec)
            elif any(abs(seen[name][k] - rec[k]) > 1e-6 for k in METRICS):
                raise ValueError(
                    f"{run}: its {name} model differs from another run's of seed {seed}, {mode} "
                    "(runs of one study must share the original recipe)"
                )
    if not records:
        raise FileNotFoundError(f"no results.json below {root}")
    return records


def public(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Records without their machine-specific run directory."""
    return [{k: v for k, v in r.items() if k != "run"} for r in records]


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
        "cpu_count": os.cpu_count(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }


def study_config(records: Sequence[dict[str, Any]], confirm: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The settings read back from the runs: seeds, epochs per method, lr grids per (mode, method)."""
    grids: dict[str, dict[str, list[float]]] = {}
    for r in records:
        if r["key"] in METHODS:
            grids.setdefault(r["mode"], {}).setdefault(r["key"], [])
            if r["lr"] not in grids[r["mode"]][r["key"]]:
                grids[r["mode"]][r["key"]].append(r["lr"])
    for g in grids.values():
        for lrs in g.values():
            lrs.sort()
    return {
        "seeds": sorted({r["seed"] for r in records}),
        "confirm_seeds": sorted({r["seed"] for r in confirm}),
        "epochs": {r["key"]: r["epochs"] for r in records if r["key"] != "original"},
        "original_epochs": next(r["epochs"] for r in records if r["key"] == "original"),
        "grids": grids,
    }


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


def summarise(
    records: Sequence[dict[str, Any]], mode: str, select_seeds: Sequence[int], report_seeds: Sequence[int]
) -> dict[str, Any]:
    """Choose each method's lr on ``select_seeds``; aggregate its runs on ``report_seeds`` (mean ± std)."""
    chosen: dict[str, float | None] = {}
    rows = [
        r for r in records if r["mode"] == mode and r["seed"] in report_seeds and r["key"] in ("original", "retrain")
    ]
    for key in METHODS:
        lr = choose_lr(sweep_table(records, mode, key, select_seeds))
        chosen[key] = lr
        if lr is not None:
            rows += [
                r
                for r in records
                if r["mode"] == mode and r["key"] == key and r["lr"] == lr and r["seed"] in report_seeds
            ]
    order = {"original": 0, "retrain": 1, **{k: i + 2 for i, k in enumerate(METHODS)}}
    rows.sort(key=lambda r: (order[r["key"]], r["seed"]))
    if any(r["diverged"] for r in rows):
        raise RuntimeError(f"{mode}: a chosen run diverged on a reported seed; widen or lower the grid")
    lean = [
        {
            "method": r["method"],
            "seed": r["seed"],
            **{k: r[k] for k in METRICS},
            **({"RTE": r["RTE"]} if r["RTE"] is not None else {}),
        }
        for r in rows
    ]
    summary = aggregate(lean)
    lr_of = {NAMES[k]: lr for k, lr in chosen.items()}
    for entry in summary:
        entry["seed_gaps"] = [r[GAP] for r in rows if r["method"] == entry["method"]]
        entry["lr"] = lr_of.get(entry["method"])
        if entry["method"] == "Retrain":
            entry["lr"] = next(r["lr"] for r in rows if r["key"] == "retrain")
    return {
        "chosen_lr": {NAMES[k]: lr for k, lr in chosen.items()},
        "chosen_key": chosen,
        "summary": summary,
        "select_seeds": list(select_seeds),
        "report_seeds": list(report_seeds),
    }


def wins(
    records: Sequence[dict[str, Any]], mode: str, chosen: dict[str, float | None], seeds: Sequence[int]
) -> dict[str, int]:
    """How many seeds each method (at its chosen lr) has the smallest Avg.Gap on (a tie counts for each)."""
    count = {name: 0 for name in chosen}
    for seed in seeds:
        gaps = {
            r["method"]: r[GAP]
            for r in records
            if r["mode"] == mode
            and r["seed"] == seed
            and r["method"] in chosen
            and r["lr"] == chosen[r["method"]]
            and r[GAP] is not None
        }
        if gaps:
            best = min(gaps.values())
            for name, gap in gaps.items():
                if gap <= best + 1e-9:
                    count[name] += 1
    return count


def paired(
    records: Sequence[dict[str, Any]],
    mode: str,
    chosen: dict[str, float | None],
    seeds: Sequence[int],
    ref: str = "SalUn",
) -> list[dict[str, Any]]:
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
        out.append(
            {
                "method": name,
                "n": len(d),
                "diff_mean": float(d.mean()),
                "diff_std": float(d.std(ddof=1)) if len(d) > 1 else 0.0,
                "salun_smaller": int((d < -1e-9).sum()),
                "tie": int((abs(d) <= 1e-9).sum()),
                "salun_larger": int((d > 1e-9).sum()),
            }
        )
    return out


def format_paired(rows: Sequence[dict[str, Any]]) -> str:
    lines = ["| SalUn vs | SalUn gap − its gap (mean ± std) | seeds SalUn smaller / tie / larger |", "|---|---:|:---:|"]
    for r in rows:
        lines.append(
            f"| {r['method']} | {r['diff_mean']:+.2f} ± {r['diff_std']:.2f} | "
            f"{r['salun_smaller']} / {r['tie']} / {r['salun_larger']} |"
        )
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
            gap = (
                f"diverged on {row['diverged']}/{row['n']} seeds"
                if row["diverged"]
                else f"{row['gap_mean']:.2f} ± {row['gap_std']:.2f}"
            )
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


def write_outputs(
    out: Path,
    cfg: dict[str, Any],
    records: list[dict[str, Any]],
    wall: float | None,
    confirm_records: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    seeds = list(cfg["seeds"])
    confirm_seeds = sorted({r["seed"] for r in confirm_records or []})
    gap_panels: dict[str, Sequence[dict[str, Any]]] = {}
    names = NAMES
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
        ranked = sorted(
            (e for e in main["summary"] if e["method"] not in ("Retrain", "Original")), key=lambda e: e[GAP]
        )
        salun_rank = next((i + 1 for i, e in enumerate(ranked) if e["method"] == "SalUn"), None)
        doc = {
            "mode": mode,
            "title": TITLES[mode],
            "seeds": seeds,
            "selection": "lr with the smallest mean Avg.Gap over the reported seeds (SalUn's rule)",
            "rows": main["summary"],
            "chosen_lr": main["chosen_lr"],
            "salun_rank": salun_rank,
            "n_methods": len(ranked),
            "seed_wins": seed_wins,
            "paired": pairs,
            "sweep": tables,
            "held_out": held_out,
            "confirm": confirm,
        }
        results[mode] = doc
        atomic_write_json(out / f"results_{suffix}.json", _json_safe(doc))

        md = [
            f"# Unlearning on digits: {TITLES[mode]} forgetting\n",
            f"SmallCNN, original {cfg['original_epochs']} epochs, seeds {seeds}; mean ± std over the seeds. Each method's lr is the "
            "one with the smallest mean Avg.Gap over these same seeds (SalUn's rule: optimistic). "
            "Gaps are to the Retrain model of the same seed. RTE = wall-clock seconds of the unlearning run "
            "(SalUn's mask included) on a shared 2-core CPU.\n",
            format_summary(main["summary"]),
            f"SalUn ranks {salun_rank} of {len(ranked)} unlearning methods by mean Avg.Gap. "
            "Seeds on which each method has the smallest Avg.Gap (ties count for each): "
            + ", ".join(f"{k} {v}" for k, v in seed_wins.items())
            + ".\n",
            "Paired per seed (negative = SalUn closer to Retrain):\n",
            format_paired(pairs),
            "## Learning-rate sweep\n",
            format_sweep(tables, main["chosen_lr"]),
        ]
        if held_out is not None:
            md += [
                f"## Held-out check: lr chosen on seed {seeds[0]}, reported on seeds {seeds[1:]}\n",
                format_summary(held_out["summary"]),
            ]
        if confirm is not None:
            md += [
                f"## Fresh seeds {confirm_seeds}: learning rates fixed from the study above, not re-tuned\n",
                "An out-of-sample check of the selection: new train/test splits, forget sets, originals and "
                "Retrain models; each method runs once per seed at the lr chosen above.\n",
                format_summary(confirm["summary"]),
                "Seeds on which each method has the smallest Avg.Gap (ties count for each): "
                + ", ".join(f"{k} {v}" for k, v in confirm["seed_wins"].items())
                + ".\n",
                format_paired(confirm["paired"]),
            ]
        gap_panels[f"{TITLES[mode]}, seeds {seeds} (lr tuned)"] = main["summary"]
        if confirm is not None:
            gap_panels[f"{TITLES[mode]}, fresh seeds {confirm_seeds}"] = confirm["summary"]
        atomic_write_text(out / f"results_{suffix}.md", "\n".join(md))

        plot_rows = [e for e in main["summary"] if e["method"] != "Original"]
        plot_metrics_vs_retrain(plot_rows, out / f"metrics_vs_retrain_{suffix}.png")

    plot_avg_gap(gap_panels, out / "avg_gap.png")
    plot_sweep(sweeps_for_plot, out / "lr_sweep.png")
    atomic_write_json(
        out / "sweep.json",
        _json_safe(
            {
                "config": cfg,
                "wall_seconds": wall,
                "machine": _machine(),
                "runs": public(records),
                "confirm_runs": public(confirm_records or []),
            }
        ),
    )
    return results


def main() -> None:
    args = summary_arguments(__doc__.splitlines()[0], Path(__file__).parent, steps=("select", "results"))
    if args.step == "select":
        records = load_records(args.runs)
        seeds = sorted({r["seed"] for r in records})
        for mode in MODES:
            for key in METHODS:
                lr = choose_lr(sweep_table(records, mode, key, seeds))
                if lr is None:
                    raise SystemExit(f"{mode} {key}: every learning rate diverged; widen or lower the grid")
                print(f"LR_{mode}_{key}={lr:g}")  # for run.sh: eval "$(python summarise.py select ...)"
        return
    study = args.runs / "study"
    records = load_records(study if study.is_dir() else args.runs)
    confirm_dir = args.runs / "confirm"
    confirm = load_records(confirm_dir) if confirm_dir.is_dir() else []
    cfg = study_config(records, confirm)
    results = write_outputs(args.out, cfg, records, args.wall_seconds, confirm)
    log_results_table(public(records + confirm), args.runs, "unlearning_digits")
    for mode in MODES:
        print(f"\n{TITLES[mode]}:\n" + format_summary(results[mode]["rows"]))


if __name__ == "__main__":
    main()
