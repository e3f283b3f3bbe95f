"""Result tables for unlearning runs in the layout of SalUn's tables (Fan et al., ICLR 2024).

Each row is a dict with ``method``, ``UA``, ``RA``, ``TA``, ``MIA`` (percent) and optionally ``RTE``
(seconds); metrics are shown with their gap to the Retrain row in parentheses, plus the Avg.Gap.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from salguide.io import atomic_write_csv, atomic_write_json, atomic_write_text
from salguide.unlearning.metrics import METRIC_KEYS, avg_gap

GAP = "Avg.Gap"


def _check_rows(rows: Sequence[dict[str, Any]], keys: Sequence[str] = METRIC_KEYS) -> None:
    if not rows:
        raise ValueError("no result rows given")
    for i, row in enumerate(rows):
        if "method" not in row:
            raise ValueError(f"row {i} has no 'method' key: {row}")
        for k in keys:
            if k not in row:
                raise ValueError(f"row {i} ({row['method']}) has no {k!r} value")
            if not math.isfinite(float(row[k])):
                raise ValueError(f"row {i} ({row['method']}) has a non-finite {k}: {row[k]}")


def _retrain_row(rows: Sequence[dict[str, Any]], retrain_key: str) -> dict[str, Any] | None:
    found = [r for r in rows if r["method"] == retrain_key]
    if len(found) > 1:
        raise ValueError(f"{len(found)} rows are named {retrain_key!r}; one Retrain reference is needed")
    return found[0] if found else None


def with_gaps(rows: Sequence[dict[str, Any]], retrain_key: str = "Retrain") -> list[dict[str, Any]]:
    """Copies of ``rows`` with ``Avg.Gap`` added (``None`` when no row is named ``retrain_key``)."""
    _check_rows(rows)
    ref = _retrain_row(rows, retrain_key)
    return [{**r, GAP: avg_gap(r, ref) if ref is not None else None} for r in rows]


def _markdown(header: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    return "\n".join(lines) + "\n"


def format_table(rows: Sequence[dict[str, Any]], retrain_key: str = "Retrain", *, digits: int = 2) -> str:
    """Markdown table: method, UA, RA, TA, MIA (with ``(gap to Retrain)``), RTE (s), Avg.Gap."""
    rows = with_gaps(rows, retrain_key)
    ref = _retrain_row(rows, retrain_key)
    body = []
    for r in rows:
        cells = [str(r["method"])]
        for k in METRIC_KEYS:
            value = f"{float(r[k]):.{digits}f}"
            gap = None if ref is None or r["method"] == retrain_key else abs(float(r[k]) - float(ref[k]))
            cells.append(value if gap is None else f"{value} ({gap:.{digits}f})")
        rte = f"{float(r['RTE']):.{digits}f}" if r.get("RTE") is not None else "-"
        cells.append(f"{rte} (cached)" if r.get("RTE_cached") and r.get("RTE") is not None else rte)
        cells.append(f"{r[GAP]:.{digits}f}" if r[GAP] is not None else "-")
        body.append(cells)
    return _markdown(["method", *METRIC_KEYS, "RTE(s)", GAP], body)


def write_results(
    out_dir: str | os.PathLike, rows: Sequence[dict[str, Any]], *, name: str = "results", retrain_key: str = "Retrain"
) -> tuple[Path, Path]:
    """Write ``<name>.json`` (rows with Avg.Gap), ``<name>.csv`` (the same rows) and ``<name>.md``
    (``format_table``) atomically; return the JSON and markdown paths."""
    out = Path(out_dir)
    table = format_table(rows, retrain_key)
    json_path = atomic_write_json(out / f"{name}.json", with_gaps(rows, retrain_key))
    atomic_write_csv(out / f"{name}.csv", with_gaps(rows, retrain_key))
    md_path = atomic_write_text(out / f"{name}.md", table)
    return json_path, md_path


def aggregate(rows: Sequence[dict[str, Any]], retrain_key: str = "Retrain") -> list[dict[str, Any]]:
    """Mean and sample std per method over seeds, for every numeric column (``<key>`` and ``<key>_std``).

    Rows carry ``method`` and ``seed``; when a Retrain row with the classifier metrics (UA, RA, TA, MIA)
    exists for a seed, each row of that seed gets its Avg.Gap to it first (generative-unlearning rows,
    with UA, Acc_r and FD, get none). ``n`` counts the seeds; the std of a single seed is 0.
    """
    _check_rows(rows, ("seed",))
    seen: set[tuple[Any, Any]] = set()
    for r in rows:
        if (r["method"], r["seed"]) in seen:
            raise ValueError(f"duplicate row for method {r['method']!r} and seed {r['seed']!r}")
        seen.add((r["method"], r["seed"]))
    by_seed: dict[Any, list[dict[str, Any]]] = {}
    for r in rows:
        by_seed.setdefault(r["seed"], []).append(r)
    gapped = []
    for seed_rows in by_seed.values():
        ref = _retrain_row(seed_rows, retrain_key)
        if ref is not None and not all(k in ref for k in METRIC_KEYS):
            ref = None  # not a classifier-unlearning reference: no Avg.Gap
        gapped += [{**r, GAP: avg_gap(r, ref)} if ref is not None else dict(r) for r in seed_rows]
    summary = []
    for method in dict.fromkeys(r["method"] for r in gapped):
        group = [r for r in gapped if r["method"] == method]
        entry: dict[str, Any] = {"method": method, "n": len(group)}
        numeric = [k for k in group[0] if k not in ("method", "seed") and _is_number(group[0][k])]
        for k in numeric:
            values = np.array([float(r[k]) for r in group if k in r])
            if len(values) != len(group):
                raise ValueError(f"method {method!r}: {k!r} is missing for some seeds")
            entry[k] = float(values.mean())
            entry[f"{k}_std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
        summary.append(entry)
    return summary


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float, np.number)) and not isinstance(x, bool)


def format_aggregate(summary: Sequence[dict[str, Any]], *, digits: int = 2) -> str:
    """Markdown ``mean ± std`` table of an ``aggregate`` result (columns present in the first entry)."""
    if not summary:
        raise ValueError("no aggregated rows given")
    keys = [k for k in summary[0] if f"{k}_std" in summary[0]]
    body = [
        [str(e["method"]), str(e["n"])] + [f"{e[k]:.{digits}f} ± {e[f'{k}_std']:.{digits}f}" for k in keys]
        for e in summary
    ]
    return _markdown(["method", "n", *keys], body)
