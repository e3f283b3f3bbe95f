"""Weight saliency for diffusion models: SalUn's generation mask and ANT's augmentation-enhanced map.

SalUn (Fan et al., ICLR 2024, §5 and ``DDPM/runners/diffusion.py:generate_mask``): the saliency of a weight
is ``|Σ_batches ∇θ ℓ_MSE(θ; D_f)|``, the absolute gradient at θ₀ of the noise-prediction loss of the forget
class (true class condition, random antithetic timesteps and noise, model in eval mode), summed over
forget batches; the mask keeps the top ``ratio`` (0.5 in SalUn) of all weights. ANT (Li et al., ACM MM
2025) repeats the scoring under several seeds and augmentations and keeps the weights salient in every run
(per-layer top-k, intersected: ``salguide.weights.ant_mask``). The masks are ``WeightMask``s over
``module.named_parameters()`` and are enforced with the same bit-exact ``MaskedUpdate``.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from functools import reduce
from operator import and_

import torch
from torch import Tensor, nn

from salguide._checks import as_int
from salguide.weights import WeightMask, ant_scores, saliency_scores
from salguide.weights.ant import Augmentation, gaussian_noise
from salguide.weights.mask import name_shape_mismatches
from salguide.weights.select import check_ratio, check_scope

from .core import check_conditions, check_t_range, denoising_loss
from .module import denoiser_parts
from .objectives import DiffusionObjective


class DiffusionForgetLoss:
    """``batch_loss(model, x, y)`` for ``saliency_scores``/``ant_mask``: DDPM's noise-prediction MSE of ``model``
    (following the ``DiffusionModule`` protocol) on forget images ``x`` with their true conditions ``y``
    (SalUn's rule), or, with ``objective``, that objective's forget term against the frozen ``original``
    (ANT's code scores its own loss). Noise and timesteps come from torch's global RNG (seeded by the
    caller, e.g. per ANT run)."""

    def __init__(
        self,
        t_range: Sequence[int] | None = None,
        objective: DiffusionObjective | None = None,
        original: nn.Module | None = None,
    ) -> None:
        self.t_range = None if t_range is None else tuple(t_range)
        if objective is not None and objective.needs_original and original is None:
            raise ValueError(f"{type(objective).__name__} compares with the original model: pass original=")
        self.objective, self.original = objective, original

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        eps, scheduler, num_conditions, null = denoiser_parts(model)
        check_conditions(y, num_conditions, "forget class")
        if self.objective is None:
            return denoising_loss(eps, scheduler, x, y, t_range=self.t_range)
        frozen = denoiser_parts(self.original)[0] if self.original is not None else None
        return self.objective.forget_loss(eps, frozen, scheduler, null, num_conditions, x, y)


def _check_forget(module: nn.Module, loader: Iterable, t_range: Sequence[int] | None) -> None:
    _, scheduler, _, _ = denoiser_parts(module)
    check_t_range(t_range, scheduler)


def diffusion_saliency_scores(
    module: nn.Module,
    forget_loader: Iterable,
    *,
    seed: int = 0,
    t_range: Sequence[int] | None = None,
    progress: bool = False,
) -> dict[str, Tensor]:
    """SalUn generation saliency ``|Σ ∇θ ℓ_MSE|`` per parameter of ``module``; seeded (the caller's RNG is restored)."""
    _check_forget(module, forget_loader, t_range)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(as_int(seed, "seed", 0))
        return saliency_scores(module, forget_loader, batch_loss=DiffusionForgetLoss(t_range), progress=progress)


def diffusion_saliency_mask(
    module: nn.Module,
    forget_loader: Iterable,
    ratio: float = 0.5,
    *,
    scope: str = "global",
    seed: int = 0,
    t_range: Sequence[int] | None = None,
    trainable_only: bool = True,
) -> WeightMask:
    """SalUn's generation mask: top ``ratio`` of the saliency scores (globally by default, as in SalUn).

    ``trainable_only``: score only parameters with ``requires_grad`` (e.g. LoRA adapters on a frozen base);
    the mask then covers just those, and the frozen base stays untouched by construction."""
    scores = diffusion_saliency_scores(module, forget_loader, seed=seed, t_range=t_range)
    return WeightMask.from_scores(_trainable(module, scores) if trainable_only else scores, ratio, scope=scope)


def diffusion_ant_mask(
    module: nn.Module,
    forget_loader: Iterable,
    ratio: float = 0.5,
    *,
    scope: str = "layer",
    seeds: Sequence[int] = (0, 1, 2),
    augmentations: Augmentation | Sequence[Augmentation | None] | None = None,
    t_range: Sequence[int] | None = None,
    trainable_only: bool = True,
    objective: DiffusionObjective | None = None,
    trajectory_steps: int = 0,
    lr: float = 1e-2,
) -> WeightMask:
    """ANT's augmentation-enhanced mask: per-layer top ``ratio`` of the saliency in every (seed, augmentation)
    run, intersected. ``augmentations``: ``aug(x, generator) -> x`` (None = identity). The saliency is the
    diffusion MSE of the forget class, or ``objective``'s forget term (e.g. ``ANTObjective()``, as ANT's
    code) against a frozen copy of ``module``; ``trajectory_steps``/``lr``: scores summed along that many
    gradient-descent steps of a copy (ANT accumulates gradients over its first training iterations)."""
    _check_forget(module, forget_loader, t_range)
    check_ratio(ratio)
    check_scope(scope)
    original = copy.deepcopy(module).eval().requires_grad_(False) if objective is not None else None
    if objective is not None:
        objective.check(denoiser_parts(module)[1], denoiser_parts(module)[2])
    runs = ant_scores(
        module,
        forget_loader,
        seeds=seeds,
        augmentations=augmentations,
        batch_loss=DiffusionForgetLoss(t_range, objective, original),
        progress=False,
        trajectory_steps=trajectory_steps,
        lr=lr,
    )
    pick = (lambda s: _trainable(module, s)) if trainable_only else (lambda s: s)
    return reduce(and_, (WeightMask.from_scores(pick(s), ratio, scope=scope) for s in runs))


def _trainable(module: nn.Module, scores: dict[str, Tensor]) -> dict[str, Tensor]:
    keep = {n for n, p in module.named_parameters() if p.requires_grad}
    if not keep:
        raise ValueError(f"{type(module).__name__} has no trainable parameters to build a mask for")
    return {n: s for n, s in scores.items() if n in keep}


def random_shift(max_shift: int = 1) -> Augmentation:
    """ANT augmentation: roll each batch by one random offset in ``[-max_shift, max_shift]`` pixels per axis."""
    shift = as_int(max_shift, "max_shift", 1)

    def augment(x: Tensor, generator: torch.Generator) -> Tensor:
        dy, dx = (int(v) for v in torch.randint(-shift, shift + 1, (2,), generator=generator))
        return torch.roll(x, shifts=(dy, dx), dims=(-2, -1))

    return augment


def check_mask_fits(mask: WeightMask, module: nn.Module, *, strict: bool = False) -> None:
    """Raise ValueError when ``mask`` was not made for ``module`` (e.g. a classifier's mask on a UNet)."""
    params = {n: tuple(p.shape) for n, p in module.named_parameters()}
    problems = name_shape_mismatches({n: tuple(m.shape) for n, m in mask.items()}, params, strict=strict)
    if problems:
        raise ValueError(
            f"the weight mask does not fit {type(module).__name__} (was it computed for another model, e.g. a "
            f"classifier?): {problems}"
        )


__all__ = [
    "DiffusionForgetLoss",
    "diffusion_saliency_scores",
    "diffusion_saliency_mask",
    "diffusion_ant_mask",
    "gaussian_noise",
    "random_shift",
    "check_mask_fits",
]
