"""Deletion and insertion AUC of a saliency map (Petsiuk, Das & Saenko, "RISE", BMVC 2018).

Deletion: remove pixels from most to least salient (set them to a baseline) and track the target
class probability; a good map makes it drop fast (low AUC). Insertion: start from the baseline and
put pixels back from most salient on; a good map makes it rise fast (high AUC). Curves have
``steps + 1`` points at removed/inserted fractions k/steps; the AUC uses the trapezoid rule on [0, 1].
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import Metric

from salguide._checks import as_int, check_labels

MODES = ("deletion", "insertion")


def blur(x: Tensor, kernel: int = 5) -> Tensor:
    """Box blur (odd ``kernel``, reflect padding): RISE's insertion canvas."""
    kernel = as_int(kernel, "blur kernel", 1)
    if kernel % 2 == 0:
        raise ValueError(f"blur kernel must be odd (the image keeps its size), got {kernel}")
    pad = kernel // 2
    return F.avg_pool2d(F.pad(x, (pad, pad, pad, pad), mode="reflect"), kernel, stride=1)


def _baseline(x: Tensor, baseline: Tensor | float | str) -> Tensor:
    if isinstance(baseline, str):
        if baseline != "blur":
            raise ValueError(f"baseline must be a number, a tensor or 'blur', got {baseline!r}")
        return blur(x)
    if isinstance(baseline, (int, float)):
        return torch.full_like(x, float(baseline))
    try:
        return torch.broadcast_to(baseline.to(x), x.shape)
    except RuntimeError:
        raise ValueError(
            f"baseline {tuple(baseline.shape)} does not broadcast to the images {tuple(x.shape)}"
        ) from None


@torch.no_grad()
def deletion_curve(
    model: Callable[[Tensor], Tensor],
    x: Tensor,
    saliency: Tensor,
    target: Tensor,
    *,
    mode: str = "deletion",
    steps: int = 16,
    baseline: Tensor | float | str | None = None,
    batch_size: int = 256,
) -> Tensor:
    """Target-class probabilities [B, steps + 1] along the deletion or insertion path.

    ``x`` is [B, C, H, W], ``saliency`` a pixel map [B, H, W] (all channels of a pixel move together;
    ties are broken by pixel index). ``baseline`` defaults to 0 for deletion and ``"blur"`` for
    insertion. Runs under ``no_grad``; call it with the model in the mode you want measured.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    steps = as_int(steps, "steps", 1)
    batch_size = as_int(batch_size, "batch_size", 1)
    if x.ndim != 4 or saliency.shape != (x.shape[0], *x.shape[2:]):
        raise ValueError(
            f"need x [B, C, H, W] and a pixel saliency map [B, H, W]; got {tuple(x.shape)} and {tuple(saliency.shape)}"
        )
    b, c, h, w = x.shape
    base = _baseline(x, baseline if baseline is not None else (0.0 if mode == "deletion" else "blur"))
    order = torch.argsort(-saliency.reshape(b, -1).float(), dim=1, stable=True)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(h * w, device=x.device).expand(b, -1))
    counts = [round(k * h * w / steps) for k in range(steps + 1)]
    probs = []
    for k in counts:
        moved = (rank < k).view(b, 1, h, w)
        img = torch.where(moved, base, x) if mode == "deletion" else torch.where(moved, x, base)
        out = torch.cat([model(chunk) for chunk in img.split(batch_size)])
        if k == 0:
            check_labels(target, out, "deletion_curve target")
        probs.append(F.softmax(out.float(), -1).gather(1, target.view(-1, 1).to(out.device)).squeeze(1))
    return torch.stack(probs, 1)


def curve_auc(curve: Tensor) -> Tensor:
    """Trapezoid-rule area of [B, K + 1] curves over equally spaced points on [0, 1]."""
    k = curve.shape[1] - 1
    if k < 1:
        raise ValueError("a curve needs at least 2 points")
    return (curve[:, 1:] + curve[:, :-1]).sum(1) / (2 * k)


class _CurveAUC(Metric):
    total: Tensor  # metric states (add_state)
    count: Tensor  # metric states (add_state)
    mode = "deletion"
    full_state_update = False

    def __init__(self, steps: int = 16, baseline: float | str | None = None, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.steps, self.baseline = as_int(steps, "steps", 1), baseline
        self.add_state("total", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, model: Callable[[Tensor], Tensor], x: Tensor, saliency: Tensor, target: Tensor) -> None:
        """Add the AUCs of one batch; ``saliency`` is a pixel map [B, H, W]."""
        auc = curve_auc(
            deletion_curve(model, x, saliency, target, mode=self.mode, steps=self.steps, baseline=self.baseline)
        )
        self.total += auc.double().sum().to(self.total.device)
        self.count += auc.numel()

    def compute(self) -> Tensor:
        if int(self.count) == 0:
            raise ValueError(f"{type(self).__name__}: no sample was scored (update() was never called)")
        return (self.total / self.count.clamp_min(1)).float()


class DeletionAUC(_CurveAUC):
    """Mean deletion AUC (lower is better)."""

    mode = "deletion"
    higher_is_better = False


class InsertionAUC(_CurveAUC):
    """Mean insertion AUC (higher is better)."""

    mode = "insertion"
    higher_is_better = True
