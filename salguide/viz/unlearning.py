"""Grouped bars of unlearning metrics per method with the Retrain reference marked (SalUn protocol)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from salguide.unlearning.metrics import METRIC_KEYS
from salguide.unlearning.report import with_gaps
from salguide.viz._save import plt, save_png


def plot_metrics_vs_retrain(
    rows: Sequence[dict[str, Any]], path: str | os.PathLike, retrain_key: str = "Retrain"
) -> Path:
    """One group per metric (UA, RA, TA, MIA), one bar per method; Retrain is a dashed black line over each group."""
    rows = with_gaps(rows, retrain_key)
    refs = [r for r in rows if r["method"] == retrain_key]
    if not refs:
        raise ValueError(f"no row named {retrain_key!r}: the Retrain reference is needed to plot against")
    methods = [r for r in rows if r["method"] != retrain_key]
    if not methods:
        raise ValueError("only the Retrain row was given: nothing to compare against it")
    x = np.arange(len(METRIC_KEYS))
    width = 0.8 / len(methods)
    fig, ax = plt.subplots(figsize=(2 + 1.5 * len(METRIC_KEYS), 4))
    for i, r in enumerate(methods):
        ax.bar(x - 0.4 + (i + 0.5) * width, [float(r[k]) for k in METRIC_KEYS], width, label=str(r["method"]))
    for j, k in enumerate(METRIC_KEYS):
        label = retrain_key if j == 0 else "_nolegend_"  # one legend entry for the reference lines
        ax.hlines(float(refs[0][k]), x[j] - 0.45, x[j] + 0.45, colors="black", linestyles="--", label=label)
    ax.set_xticks(x, list(METRIC_KEYS))
    ax.set_ylabel("%")
    ax.set_ylim(0, 105)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.set_title("unlearning metrics vs Retrain")
    return save_png(fig, path)
