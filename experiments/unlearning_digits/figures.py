"""Figures of the digits unlearning study: Avg.Gap per method (mean ± std) and the learning-rate sweep.

Both take plain dicts (as written to ``results_<mode>.json`` / ``sweep.json``) so they can be redrawn from the
result files without re-running anything. PNGs are written atomically.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from salguide.io import atomic_path  # noqa: E402

GAP = "Avg.Gap"
HIGHLIGHT = "SalUn"


def _save(fig: Any, path: str | os.PathLike) -> Path:
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    finally:
        plt.close(fig)
    return Path(path)


def plot_avg_gap(
    summaries: Mapping[str, Sequence[Mapping[str, Any]]], path: str | os.PathLike, retrain_key: str = "Retrain"
) -> Path:
    """One panel per entry (two per row): a bar per method with its mean Avg.Gap to Retrain and ± std error bars.

    ``summaries`` maps a panel title to ``salguide.unlearning.report.aggregate`` entries (``method``,
    ``Avg.Gap``, ``Avg.Gap_std``, ``n``, optionally ``seed_gaps`` drawn as dots); the Retrain row (gap 0 by
    definition) is left out. The axis is logarithmic, so a lower whisker reaching 0 is clipped at the axis floor.
    """
    if not summaries:
        raise ValueError("no summaries to plot")
    ncols = min(len(summaries), 2)
    nrows = -(-len(summaries) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.2 * ncols, 4.2 * nrows), squeeze=False, constrained_layout=True)
    for ax in axes.flat[len(summaries) :]:
        ax.set_visible(False)
    for ax, (title, rows) in zip(axes.flat, summaries.items()):
        rows = [r for r in rows if r["method"] != retrain_key and r.get(GAP) is not None]
        if not rows:
            raise ValueError(f"{title}: no method rows with an {GAP}")
        names = [str(r["method"]) for r in rows]
        means = np.array([float(r[GAP]) for r in rows])
        stds = np.array([float(r.get(f"{GAP}_std", 0.0)) for r in rows])
        floor = max(min(means.min(), (means - stds).clip(min=0).min()) * 0.5, 0.05)
        lower = np.minimum(stds, means - floor)  # a log axis cannot show mean - std <= 0: clip the whisker
        colors = [
            "tab:red" if n == HIGHLIGHT else ("tab:gray" if n.startswith("Original") else "tab:blue") for n in names
        ]
        bars = ax.bar(range(len(rows)), means, yerr=[lower, stds], capsize=4, color=colors, alpha=0.85)
        best = min((i for i in range(len(rows)) if not names[i].startswith("Original")), key=lambda i: means[i])
        bars[best].set_edgecolor("black")
        bars[best].set_linewidth(2)
        for i, r in enumerate(rows):
            seed_gaps = [max(float(g), floor) for g in r.get("seed_gaps", [])]
            ax.scatter([i] * len(seed_gaps), seed_gaps, s=10, color="black", zorder=3)
            ax.text(i, (means[i] + stds[i]) * 1.15, f"{means[i]:.2f}", ha="center", va="bottom", fontsize=7)
        ax.set_xticks(range(len(rows)), names, rotation=30, ha="right")
        ax.set_yscale("log")
        ax.set_ylim(floor * 0.8, (means + stds).max() * 2.5)
        ax.set_ylabel(f"{GAP} to Retrain (%, log)")
        n = rows[0].get("n", "?")
        ax.set_title(f"{title}\nmean ± std over {n} seeds (dots: single seeds)", fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def plot_sweep(sweeps: Mapping[str, Mapping[str, Sequence[Mapping[str, Any]]]], path: str | os.PathLike) -> Path:
    """Avg.Gap (mean ± std over seeds) against the learning rate, one line per method, one panel per mode.

    ``sweeps[mode][method]`` is a list of ``{"lr", "gap_mean", "gap_std", "diverged"}``; diverged points
    (any seed) are drawn as crosses at the top of the panel.
    """
    if not sweeps:
        raise ValueError("no sweeps to plot")
    fig, axes = plt.subplots(1, len(sweeps), figsize=(5.2 * len(sweeps), 3.8), squeeze=False, constrained_layout=True)
    for ax, (title, per_method) in zip(axes[0], sweeps.items()):
        top = max(
            (p["gap_mean"] + p["gap_std"] for pts in per_method.values() for p in pts if _finite(p["gap_mean"])),
            default=1.0,
        )
        for i, (method, points) in enumerate(per_method.items()):
            points = sorted(points, key=lambda p: p["lr"])
            jitter = 1.0 + 0.04 * (i - (len(per_method) - 1) / 2)  # methods sharing a grid stay readable
            ok = [p for p in points if _finite(p["gap_mean"])]
            style = dict(marker="o", lw=2.2) if method == HIGHLIGHT else dict(marker=".", lw=1.2)
            means = np.array([p["gap_mean"] for p in ok])
            stds = np.array([p["gap_std"] for p in ok])
            line = ax.errorbar(
                [p["lr"] * jitter for p in ok],
                means,
                yerr=[np.minimum(stds, means * 0.9), stds],
                capsize=3,
                label=method,
                **style,
            )
            bad = [p["lr"] * jitter for p in points if not _finite(p["gap_mean"])]
            if bad:
                ax.scatter(bad, [top * 1.2] * len(bad), marker="x", color=line[0].get_color())
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel(f"{GAP} to Retrain (%, log)")
        ax.set_title(f"{title}: lr sweep, mean ± std over seeds (x = diverged)", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return _save(fig, path)


def _finite(x: Any) -> bool:
    return x is not None and math.isfinite(float(x))
