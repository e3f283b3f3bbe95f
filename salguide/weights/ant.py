"""ANT-style robust weight masks: per-layer top-k, intersected over seeds × augmentations.

Li, Lu, Ren and Kong, "Set You Straight: Auto-Steering Denoising Trajectories to Sidestep Unwanted
Concepts" (ANT, arXiv:2504.12782, 2025) compute SalUn's gradient saliency (Fan et al., ICLR 2024)
several times, under different random seeds and data augmentations (prompts, for a text-to-image
model), select the top weights of every layer separately in each run, and fine-tune only the
"heavy hitters": the weights selected in every run (the intersection). A weight that is salient under
one augmentation only is left frozen, so the mask is robust to the particular forget samples seen.

Optionally each run also follows a short trajectory: a copy of the model takes ``trajectory_steps``
full-batch gradient steps on the loss and the absolute gradients are summed over every point of it.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Sequence
from functools import reduce
from operator import and_

import torch
from torch import Tensor, nn

from salguide._checks import as_finite, as_int

from .mask import WeightMask
from .scores import BatchLoss, LossFn, check_finite, loss_gradients
from .select import check_ratio, check_scope

Augmentation = Callable[[Tensor, torch.Generator], Tensor]


def gaussian_noise(std: float = 0.1) -> Augmentation:
    """ANT augmentation: add N(0, std²) input noise (drawn from the run's generator)."""
    if not float(std) > 0:
        raise ValueError(f"std must be > 0, got {std}")

    def augment(x: Tensor, generator: torch.Generator) -> Tensor:
        return x + float(std) * torch.randn(x.shape, generator=generator).to(x)

    return augment


def _augmentation_list(
    augmentations: Augmentation | Sequence[Augmentation | None] | None,
) -> list[Augmentation | None]:
    augs = list(augmentations) if isinstance(augmentations, Sequence) else [augmentations]
    if not augs:
        raise ValueError("augmentations must not be an empty list (use None for the identity)")
    for i, a in enumerate(augs):
        if a is not None and not callable(a):
            raise ValueError(f"augmentation {i} must be a callable (x, generator) -> x, got {type(a).__name__}")
    return augs


def _check_run_args(seeds: Sequence[int], trajectory_steps: int, lr: float) -> None:
    try:
        if len(seeds) == 0:
            raise ValueError("empty")
        for s in seeds:
            as_int(s, "seed")
    except (ValueError, TypeError):
        raise ValueError(f"seeds must be a non-empty sequence of integers, got {seeds!r}") from None
    as_int(trajectory_steps, "trajectory_steps", 0)
    as_finite(lr, "lr", positive=True)


def _seeded(augmentation: Augmentation | None, generator: torch.Generator) -> Callable[[Tensor], Tensor] | None:
    if augmentation is None:
        return None

    def apply(x: Tensor) -> Tensor:
        out = augmentation(x, generator)
        if not isinstance(out, Tensor):
            raise ValueError(f"augmentation {augmentation!r} returned {type(out).__name__}, expected a Tensor")
        return out

    return apply


def _run_scores(
    model: nn.Module,
    dataloader: Iterable,
    transform: Callable[[Tensor], Tensor] | None,
    steps: int,
    lr: float,
    loss_fn: LossFn | None,
    device: torch.device | str | None,
    progress: bool,
    batch_loss: BatchLoss | None = None,
) -> dict[str, Tensor]:
    """Absolute gradients summed over the points θ₀, θ₁, ..., θ_steps of a gradient-descent trajectory."""
    walker = copy.deepcopy(model) if steps else model
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    total: dict[str, Tensor] | None = None
    for step in range(steps + 1):
        grads, n_batches = loss_gradients(
            walker, dataloader, loss_fn, device=device, transform=transform, progress=progress, batch_loss=batch_loss
        )
        if total is None:
            total = {n: g.abs() for n, g in grads.items()}
        else:
            for n, g in grads.items():
                total[n] += g.abs()
        if step < steps:
            with torch.no_grad():
                for name, p in walker.named_parameters():
                    if name in trainable:
                        p.sub_(grads[name].to(p.dtype), alpha=lr / n_batches)
    assert total is not None  # range(steps + 1) runs at least once
    check_finite(total)
    return total


def ant_scores(
    model: nn.Module,
    dataloader: Iterable,
    *,
    seeds: Sequence[int] = (0, 1, 2),
    augmentations: Augmentation | Sequence[Augmentation | None] | None = None,
    trajectory_steps: int = 0,
    lr: float = 1e-3,
    loss_fn: LossFn | None = None,
    device: torch.device | str | None = None,
    progress: bool = True,
    batch_loss: BatchLoss | None = None,
) -> list[dict[str, Tensor]]:
    """One SalUn score dict per (seed, augmentation) run, seed-major order.

    Each run seeds torch's global RNG with its seed (the caller's RNG state is restored afterwards)
    and hands the augmentation ``aug(x, generator)`` a ``torch.Generator`` seeded the same way;
    ``None`` is the identity. With ``trajectory_steps > 0`` a deep copy of the model descends
    ``loss_fn`` (default cross-entropy; pass a negated loss to ascend) with full-batch steps of size
    ``lr`` on the mean batch gradient, and scores are summed over all ``trajectory_steps + 1`` points.
    The caller's model is never modified. ``batch_loss(model, x, y)`` replaces ``loss_fn`` (see
    ``saliency_scores``); a diffusion loss drawing from torch's global RNG gets the run's seed.
    """
    augs = _augmentation_list(augmentations)
    _check_run_args(seeds, trajectory_steps, lr)
    runs = []
    for seed in seeds:
        for aug in augs:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                generator = torch.Generator().manual_seed(seed)
                runs.append(
                    _run_scores(
                        model,
                        dataloader,
                        _seeded(aug, generator),
                        trajectory_steps,
                        lr,
                        loss_fn,
                        device,
                        progress,
                        batch_loss,
                    )
                )
    return runs


def ant_mask(
    model: nn.Module,
    dataloader: Iterable,
    ratio: float,
    *,
    scope: str = "layer",
    seeds: Sequence[int] = (0, 1, 2),
    augmentations: Augmentation | Sequence[Augmentation | None] | None = None,
    trajectory_steps: int = 0,
    lr: float = 1e-3,
    loss_fn: LossFn | None = None,
    device: torch.device | str | None = None,
    progress: bool = True,
    batch_loss: BatchLoss | None = None,
) -> WeightMask:
    """ANT mask: intersection over runs of the per-run top-``ratio`` masks (per layer by default).

    Each run keeps ``ratio`` of the weights, so the intersection keeps at most that share.
    """
    check_ratio(ratio)
    check_scope(scope)
    runs = ant_scores(
        model,
        dataloader,
        seeds=seeds,
        augmentations=augmentations,
        trajectory_steps=trajectory_steps,
        lr=lr,
        loss_fn=loss_fn,
        device=device,
        progress=progress,
        batch_loss=batch_loss,
    )
    return reduce(and_, (WeightMask.from_scores(s, ratio, scope=scope) for s in runs))


ant_mask.label = "ANT"  # type: ignore[attr-defined]  # the name of SalUn with this mask in tables and figures

__all__ = ["ant_scores", "ant_mask", "gaussian_noise"]
