"""Bar chart of the frozen share of each tensor of a weight-saliency mask (SalUn / ANT masks)."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from salguide.viz._save import plt, save_png


def _layer_values(mask: Any) -> tuple[dict[str, float], float, str]:
    """``(name -> frozen share, total, total label)`` from a mask object or a plain dict."""
    if hasattr(mask, "layer_sparsity") and hasattr(mask, "sparsity"):  # checked first: a WeightMask is a Mapping
        layers = dict(mask.layer_sparsity())
        total = mask.sparsity() if callable(mask.sparsity) else mask.sparsity
        label = "total"
    elif isinstance(mask, Mapping):
        layers, total, label = dict(mask), None, "mean over tensors"
    else:
        raise TypeError(
            "expected a dict name -> frozen share or an object with layer_sparsity() and sparsity, "
            f"got {type(mask).__name__!r}"
        )
    if not layers:
        raise ValueError("no layers to plot: the sparsity dict is empty")
    values = {str(k): float(v) for k, v in layers.items()}
    for k, v in values.items():
        if not (math.isfinite(v) and 0.0 <= v <= 1.0):
            raise ValueError(f"sparsity of {k!r} must be a share in [0, 1], got {v}")
    if total is None:
        total = sum(values.values()) / len(values)
    return values, float(total), label


def plot_mask_sparsity(mask: Any, path: str | os.PathLike, title: str | None = None) -> Path:
    """Horizontal bars of the frozen share per layer/tensor; the total (or mean) share goes in the title."""
    values, total, label = _layer_values(mask)
    names = list(values)
    fig, ax = plt.subplots(figsize=(7, 1.0 + 0.25 * len(names)))
    ax.barh(range(len(names)), [values[n] for n in names], color="tab:blue")
    ax.set_yticks(range(len(names)), names, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("frozen share")
    ax.set_title(f"{title or 'weight-saliency mask'} ({label} frozen: {100 * total:.1f}%)")
    return save_png(fig, path)
