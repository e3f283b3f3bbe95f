"""Summarise the generative unlearning study: mean ± std over seeds of UA, Acc_r, FD and RTE per method.

Reads every ``results.json`` under RUNS (rows: Original, Retrain and the run's method, one seed each),
keeps one Original and one Retrain row per seed, writes ``results.json`` and ``results.md`` to ``--out``
and copies one seed's sample grids into ``figures/``. Usage: ``python summarise.py RUNS --out DIR``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
from pathlib import Path

from salguide.studies import job_results

KEYS = ("UA", "Acc_r", "FD", "RTE")


def collect(runs: Path) -> list[dict]:
    """Unique (method, seed) rows of all results.json files under ``runs``."""
    rows: dict[tuple[str, int], dict] = {}
    for run, _, results in job_results(runs):
        for row in results:
            rows.setdefault((row["method"], int(row["seed"])), {**row, "_dir": str(run)})
    if not rows:
        raise SystemExit(f"no results.json under {runs}")
    return list(rows.values())


def aggregate(rows: list[dict]) -> list[dict]:
    """Per method: n seeds and mean/std (sample std; 0 for one seed) of each metric present."""
    out = []
    for method in dict.fromkeys(r["method"] for r in rows):
        group = [r for r in rows if r["method"] == method]
        entry: dict = {"method": method, "n": len(group)}
        for k in KEYS:
            values = [float(r[k]) for r in group if r.get(k) is not None]
            if values:
                entry[k] = statistics.fmean(values)
                entry[f"{k}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
        out.append(entry)
    return out


def markdown(summary: list[dict]) -> str:
    lines = [
        "| method | seeds | UA (%) | Acc_r (%) | FD (judge features) | RTE (s) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for e in summary:
        cells = [f"{e[k]:.2f} ± {e[k + '_std']:.2f}" if k in e else "-" for k in KEYS]
        lines.append(f"| {e['method']} | {e['n']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", type=Path)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent)
    parser.add_argument("--wall-seconds", type=float, default=None)
    args = parser.parse_args(argv)
    rows = collect(args.runs)
    summary = aggregate(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(
        json.dumps(
            {
                "summary": summary,
                "wall_seconds": args.wall_seconds,
                "rows": [{k: v for k, v in r.items() if k != "_dir"} for r in rows],
            },
            indent=2,
        )
    )
    note = f"\nwhole study: {args.wall_seconds / 60:.1f} min\n" if args.wall_seconds else ""
    (args.out / "results.md").write_text(markdown(summary) + note)
    figures = args.out / "figures"
    first_seed = min(int(r["seed"]) for r in rows)
    for r in rows:
        grid = Path(r["_dir"]) / f"samples_{r['method']}.png"
        if int(r["seed"]) == first_seed and grid.is_file():
            figures.mkdir(exist_ok=True)
            shutil.copyfile(grid, figures / grid.name)
    print(markdown(summary))


if __name__ == "__main__":
    main()
