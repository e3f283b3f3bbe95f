"""One results table for a whole ``salguide-train -m`` sweep (a Hydra callback, set in ``train.yaml``).

After the last job, every job's ``results.json`` (one row, or the rows of an unlearning run) is read,
each row tagged with its job number and overrides, and written as ``results.{md,json,csv}`` in the
sweep folder. Unlearning sweeps also get ``summary.md``: mean ± std per method over seeds (the Original
and Retrain rows that every job of a seed shares are counted once)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from salguide.io import atomic_write_csv, atomic_write_json, atomic_write_text
from salguide.unlearning.report import aggregate, format_aggregate

log = logging.getLogger(__name__)


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """Every column of ``rows`` (in first-seen order); floats with 4 significant digits."""
    keys = list(dict.fromkeys(k for row in rows for k in row))
    cell = lambda v: f"{v:.4g}" if isinstance(v, float) else "" if v is None else str(v)  # noqa: E731
    lines = [f"| {' | '.join(keys)} |", f"|{'---|' * len(keys)}"]
    lines += [f"| {' | '.join(cell(row.get(k)) for k in keys)} |" for row in rows]
    return "\n".join(lines) + "\n"


def sweep_rows(sweep_dir: Path) -> list[dict[str, Any]]:
    """The rows of every job folder's ``results.json`` under ``sweep_dir``, tagged with job and overrides."""
    rows = []
    for result in sorted(sweep_dir.glob("*/results.json"), key=lambda p: (len(p.parent.name), p.parent.name)):
        overrides_file = result.parent / ".hydra" / "overrides.yaml"
        overrides: Any = OmegaConf.load(overrides_file) if overrides_file.exists() else []
        data = json.loads(result.read_text())
        for row in data if isinstance(data, list) else [data]:
            rows.append({"job": result.parent.name, "overrides": " ".join(map(str, overrides)), **row})
    return rows


def unlearning_summary(rows: list[dict[str, Any]]) -> str | None:
    """``format_aggregate`` over methods and seeds, or None when the rows are not an unlearning sweep or a
    (method, seed) pair has different results in different jobs (the sweep varied something else) or
    a column only some seeds have."""
    unique: dict[tuple[Any, Any], dict[str, Any]] = {}
    for row in rows:
        if not {"method", "seed", "UA"} <= set(row):
            return None
        metrics = {k: v for k, v in row.items() if k not in ("job", "overrides", "RTE", "RTE_cached")}
        key = (row["method"], row["seed"])
        if key in unique and unique[key] != metrics:
            return None
        unique.setdefault(key, metrics)
    try:
        return format_aggregate(aggregate(list(unique.values()))) if unique else None
    except ValueError as err:  # some seeds lack a column (e.g. a Retrain reference): no summary, say why
        log.warning("no per-method summary for this sweep: %s", err)
        return None


def write_sweep_results(sweep_dir: str | Path) -> Path | None:
    """Write the combined tables; return the markdown path (None when no job wrote results)."""
    sweep_dir = Path(sweep_dir)
    rows = sweep_rows(sweep_dir)
    if not rows:
        return None
    atomic_write_json(sweep_dir / "results.json", rows)
    atomic_write_csv(sweep_dir / "results.csv", rows)
    md = atomic_write_text(sweep_dir / "results.md", markdown_table(rows))
    summary = unlearning_summary(rows)
    if summary is not None:
        atomic_write_text(sweep_dir / "summary.md", summary)
    return md


class CombinedResults(Callback):
    """Hydra callback: ``write_sweep_results`` at the end of a multirun."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        md = write_sweep_results(config.hydra.sweep.dir)
        if md is not None:
            print(f"\nsweep results: {md}")
