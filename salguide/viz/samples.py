"""A grid of dataset samples: one row per class, annotation masks outlined in red."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch

from salguide.viz._save import plt, save_png
from salguide.viz.saliency import _as_display


def plot_sample_grid(
    images: torch.Tensor,
    labels: torch.Tensor,
    path: str | os.PathLike,
    class_names: Sequence[str] | None = None,
    masks: torch.Tensor | None = None,
    title: str | None = None,
) -> Path:
    """Images [N, 1|3, H, W] in rows by label (each row titled with its class name); ``masks``
    [N, 1, H, W] are outlined. Each image is min-max scaled for display."""
    if images.ndim != 4 or images.shape[1] not in (1, 3) or labels.shape != (images.shape[0],):
        raise ValueError(f"need images [N, 1|3, H, W] and labels [N], got {tuple(images.shape)}, {tuple(labels.shape)}")
    classes = labels.unique().tolist()
    rows = [(labels == c).nonzero().flatten().tolist() for c in classes]
    cols = max(len(r) for r in rows)
    fig, axes = plt.subplots(len(rows), cols, figsize=(1.1 * cols + 1.2, 1.1 * len(rows)), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for r, (c, idx) in enumerate(zip(classes, rows)):
        name = class_names[c] if class_names is not None and c < len(class_names) else str(c)
        axes[r, 0].text(-0.1, 0.5, name, transform=axes[r, 0].transAxes, ha="right", va="center", fontsize=8)
        for j, i in enumerate(idx):
            axes[r, j].imshow(_as_display(images[i]), cmap="gray", interpolation="nearest")
            if masks is not None and bool(masks[i].any()):
                axes[r, j].contour(masks[i, 0].float().numpy(), levels=[0.5], colors="red", linewidths=0.8)
    if title:
        fig.suptitle(title, fontsize=9)
    return save_png(fig, path)
