"""SalUn's generation metrics, offline (Fan et al., ICLR 2024, §5: UA of a classifier on generations).

A separately trained classifier (the project's ``SmallCNN``, the *judge*) labels images generated for every
class: **UA** = share of the forgotten class's generations it does *not* assign to that class; **Acc_r** =
its accuracy on the retained classes' generations; **FD** = a Fréchet distance (Heusel et al., NeurIPS
2017, the FID formula) between the judge's penultimate features of generated and of real retained-class
images. FD is *not* Inception FID: the features are those of a small digits classifier, so the numbers are
only comparable within this protocol.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from salguide._checks import as_int
from salguide.models import SmallCNN

from .core import check_conditions


def fit_judge(
    x: Tensor,
    y: Tensor,
    num_classes: int,
    *,
    epochs: int = 15,
    lr: float = 3e-3,
    width: int = 16,
    batch_size: int = 64,
    seed: int = 0,
) -> nn.Module:
    """Train a ``SmallCNN`` on real images (Adam, seeded shuffles); returned in eval mode."""
    torch.manual_seed(as_int(seed, "seed", 0))
    net = SmallCNN(num_classes, in_channels=x.shape[1], width=width)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(as_int(epochs, "epochs", 1)):
        order = torch.randperm(len(y), generator=gen)
        for i in range(0, len(y), batch_size):
            idx = order[i : i + batch_size]
            loss = F.cross_entropy(net(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return net.eval()


def judge_features(judge: nn.Module, x: Tensor) -> Tensor:
    """Penultimate features of a ``SmallCNN`` judge (global-average-pooled last conv block)."""
    if not isinstance(judge, SmallCNN):
        raise TypeError(f"judge_features needs a SmallCNN judge, got {type(judge).__name__} (pass feature_fn=)")
    return judge.pool(judge.features(x)).flatten(1)


def frechet_distance(a: Tensor, b: Tensor) -> float:
    """‖μ_a − μ_b‖² + tr(Σ_a + Σ_b − 2 (Σ_a^{1/2} Σ_b Σ_a^{1/2})^{1/2}) of two feature sets [N, D], in float64."""
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or min(len(a), len(b)) < 2:
        raise ValueError(f"need two feature sets [N >= 2, D] of equal D, got {tuple(a.shape)} and {tuple(b.shape)}")
    a, b = a.double(), b.double()
    mu = a.mean(0) - b.mean(0)
    sa, sb = torch.cov(a.T).reshape(a.shape[1], -1), torch.cov(b.T).reshape(b.shape[1], -1)
    vals, vecs = torch.linalg.eigh(sa)
    root_a = vecs @ torch.diag(vals.clamp_min(0).sqrt()) @ vecs.T
    cross = torch.linalg.eigvalsh(root_a @ sb @ root_a).clamp_min(0).sqrt().sum()
    return float(mu @ mu + torch.trace(sa) + torch.trace(sb) - 2 * cross)


@torch.no_grad()
def generate_per_class(
    module: Any,
    num_classes: int,
    per_class: int,
    *,
    guidance_scale: float = 2.0,
    steps: int = 25,
    sampler: str = "ddim",
    seed: int = 0,
) -> tuple[Tensor, Tensor]:
    """``per_class`` generations for each class (class c sampled with seed ``seed + c``): images, labels."""
    n = as_int(per_class, "per_class", 1)
    images, labels = [], []
    for c in range(num_classes):
        images.append(
            module.sample([c] * n, guidance_scale=guidance_scale, steps=steps, sampler=sampler, seed=seed + c).cpu()
        )
        labels.append(torch.full((n,), c))
    return torch.cat(images), torch.cat(labels)


@torch.no_grad()
def generation_metrics(
    images: Tensor,
    labels: Tensor,
    judge: nn.Module,
    forget_class: int,
    real_x: Tensor,
    real_y: Tensor,
    feature_fn: Callable[[nn.Module, Tensor], Tensor] = judge_features,
) -> dict[str, float]:
    """UA, Acc_r (percent) and FD of generated ``images`` (conditioned on ``labels``) against real retained images."""
    num_classes = int(real_y.max()) + 1
    check_conditions(torch.tensor([forget_class]), num_classes, "forget class")
    judge.eval()
    pred = judge(images).argmax(1)
    forget = labels == forget_class
    if not forget.any() or forget.all():
        raise ValueError("generations are needed for the forgotten class and for at least one retained class")
    retained_real = real_x[real_y != forget_class]
    return {
        "UA": 100.0 * float((pred[forget] != forget_class).float().mean()),
        "Acc_r": 100.0 * float((pred[~forget] == labels[~forget]).float().mean()),
        "FD": frechet_distance(feature_fn(judge, images[~forget]), feature_fn(judge, retained_real)),
    }


__all__ = ["fit_judge", "judge_features", "frechet_distance", "generate_per_class", "generation_metrics"]
