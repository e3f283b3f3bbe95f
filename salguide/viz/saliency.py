"""Saliency overlays and study bar charts (PNG, written atomically)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from salguide.viz._save import plt, save_png


def _as_display(img: torch.Tensor) -> np.ndarray:
    """[C, H, W] -> an array imshow can draw: gray for 1 channel, RGB (min-max scaled) for 3."""
    a = img.detach().float().cpu()
    a = (a - a.min()) / (a.max() - a.min()).clamp_min(1e-12)
    return a[0].numpy() if a.shape[0] == 1 else a.permute(1, 2, 0).numpy()


def plot_saliency_overlays(
    images: torch.Tensor,
    maps: Mapping[str, torch.Tensor],
    path: str | os.PathLike,
    labels: Sequence[int] | None = None,
    preds: Sequence[int] | None = None,
    title: str | None = None,
) -> Path:
    """A grid: first row the images ([N, C, H, W], C in {1, 3}), then one row of overlays per map
    ([N, H, W] each, scaled to [0, 1] per image)."""
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"images must be [N, 1|3, H, W], got {tuple(images.shape)}")
    n = images.shape[0]
    if not maps:
        raise ValueError("no saliency maps to plot")
    for name, m in maps.items():
        if tuple(m.shape) != (n, *images.shape[2:]):
            raise ValueError(f"map {name!r} has shape {tuple(m.shape)}, expected {(n, *images.shape[2:])}")
    rows = 1 + len(maps)
    fig, axes = plt.subplots(rows, n, figsize=(1.4 * n + 1.2, 1.4 * rows), squeeze=False)
    for j in range(n):
        img = _as_display(images[j])
        cmap = "gray" if img.ndim == 2 else None
        axes[0, j].imshow(img, cmap=cmap)
        caption = []
        if labels is not None:
            caption.append(f"y={int(labels[j])}")
        if preds is not None:
            caption.append(f"p={int(preds[j])}")
        axes[0, j].set_title(" ".join(caption), fontsize=7)
        for i, (name, m) in enumerate(maps.items(), start=1):
            s = m[j].detach().float().cpu()
            s = (s - s.min()) / (s.max() - s.min()).clamp_min(1e-12)
            axes[i, j].imshow(img, cmap=cmap)
            axes[i, j].imshow(s.numpy(), cmap="jet", alpha=0.5, vmin=0, vmax=1)
            if j == 0:
                axes[i, j].set_ylabel(name, fontsize=7)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=9)
    return save_png(fig, path)


def plot_accuracy_bars(
    results: Mapping[str, Sequence[float]],
    path: str | os.PathLike,
    ylabel: str = "test accuracy (%)",
    title: str | None = None,
    reference: Mapping[str, float] | None = None,
) -> Path:
    """Bars of mean +- std per method (``results``: method -> values over seeds), optional reference dots."""
    if not results:
        raise ValueError("no results to plot")
    names = list(results)
    means = [float(np.mean(results[k])) for k in names]
    stds = [float(np.std(results[k])) for k in names]
    fig, ax = plt.subplots(figsize=(1.3 * len(names) + 1.5, 3.2))
    ax.bar(names, means, yerr=stds, capsize=4, color="tab:blue", alpha=0.8, label="salguide (mean +- std)")
    if reference:
        xs = [i for i, k in enumerate(names) if k in reference]
        ax.scatter(xs, [reference[names[i]] for i in xs], color="tab:red", zorder=3, label="paper")
        ax.legend(fontsize=7)
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 100)
    if title:
        ax.set_title(title, fontsize=9)
    return save_png(fig, path)
