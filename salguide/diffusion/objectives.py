"""Generative unlearning objectives (loss modules) over a denoiser and, where needed, its frozen original.

* ``SalUnObjective`` — SalUn for generation (Fan et al., ICLR 2024, Eq. 7 and the DDPM code): forget
  samples are noised and the model's prediction for their true class c is pulled towards its own (detached)
  prediction for a misaligned class c' ≠ c; the retain MSE is added with weight β.
* ``ESDObjective`` — ESD (Gandikota et al., "Erasing Concepts from Diffusion Models", ICCV 2023): the
  prediction for c is trained towards the frozen original's negatively guided ε₀(∅) − η (ε₀(c) − ε₀(∅)).
* ``ANTObjective`` — ANT (Li, Lu, Ren and Kong, "Set You Straight: Auto-Steering Denoising Trajectories to
  Sidestep Unwanted Concepts", ACM MM 2025): ESD's reversed guidance only in the mid-to-late (low-noise)
  timesteps; in the early (high-noise) timesteps the prediction is kept on the original's *positively*
  guided target ε₀(∅) + η (ε₀(c) − ε₀(∅)), so the early score field is preserved; both ranges also keep the
  unconditional prediction at the original's (weight α₂), the early range is weighted α₁:
  ``L = L_late + α₂ L_late,∅ + α₁ (L_early + α₂ L_early,∅)``.
* ``FTObjective`` — no forget term: fine-tuning on the retain data alone (β = 1).

``forget_loss(eps, original, scheduler, null, x, y, generator)`` returns the forget term of one forget batch;
the retain term is the user's own training step, added by ``DiffusionUnlearningCallback`` with weight ``beta``.
"""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Real

import torch
import torch.nn.functional as F
from torch import Tensor

from salguide._checks import as_finite

from .core import Eps, check_guidance, check_t_range, draw_timesteps, noisy, train_steps

PSEUDO = ("next", "random")


def _weight(value: float, name: str) -> float:
    return as_finite(value, name)


def misaligned(y: Tensor, num_conditions: int, mode: str = "next", generator: torch.Generator | None = None) -> Tensor:
    """A condition c' ≠ c for each c: ``(c + 1) mod n`` (SalUn's DDPM code) or uniform over the others."""
    if num_conditions < 2:
        raise ValueError("a misaligned condition needs at least 2 conditions")
    if mode == "next":
        return (y + 1) % num_conditions
    shift = torch.randint(1, num_conditions, y.shape, generator=generator).to(y.device)
    return (y + shift) % num_conditions


def salun_forget_loss(eps_fn: Eps, x_t: Tensor, t: Tensor, y: Tensor, pseudo: Tensor) -> Tensor:
    """``mean ‖ε_θ(x_t, t, c) − sg[ε_θ(x_t, t, c')]‖²`` (sg = stop-gradient)."""
    with torch.no_grad():
        target = eps_fn(x_t, t, pseudo)
    return F.mse_loss(eps_fn(x_t, t, y), target)


def guided_target(original: Eps, x_t: Tensor, t: Tensor, y: Tensor, null: int, eta: float) -> Tensor:
    """The original's ``ε₀(∅) + η (ε₀(c) − ε₀(∅))`` (η < 0 reverses the guidance), no gradient."""
    with torch.no_grad():
        e_c = original(x_t, t, y)
        e_u = original(x_t, t, torch.full_like(y, null))
    return e_u + eta * (e_c - e_u)


def esd_loss(eps_fn: Eps, original: Eps, x_t: Tensor, t: Tensor, y: Tensor, null: int, eta: float) -> Tensor:
    """ESD: ``mean ‖ε_θ(x_t, t, c) − [ε₀(∅) − η (ε₀(c) − ε₀(∅))]‖²``."""
    return F.mse_loss(eps_fn(x_t, t, y), guided_target(original, x_t, t, y, null, -eta))


def ant_loss(
    eps_fn: Eps,
    original: Eps,
    early: tuple[Tensor, Tensor],
    late: tuple[Tensor, Tensor],
    y: Tensor,
    null: int,
    eta: float,
    alpha1: float,
    alpha2: float,
) -> Tensor:
    """ANT's trajectory-aware loss on an early ``(x_t, t)`` and a mid-to-late ``(x_t, t)`` batch of the same samples."""
    null_y = torch.full_like(y, null)
    terms = []
    for (x_t, t), sign in ((late, -1.0), (early, 1.0)):
        with torch.no_grad():
            e_u0 = original(x_t, t, null_y)
        cond = F.mse_loss(eps_fn(x_t, t, y), guided_target(original, x_t, t, y, null, sign * eta))
        uncond = F.mse_loss(eps_fn(x_t, t, null_y), e_u0)
        terms.append(cond + alpha2 * uncond)
    return terms[0] + alpha1 * terms[1]


class DiffusionObjective:
    """Base of the loss modules: ``beta`` weighs the retain term; ``needs_original``: a frozen θ₀ copy is kept."""

    name = "objective"
    needs_original = False

    def __init__(self, beta: float = 0.0, t_range: Sequence[int] | None = None) -> None:
        self.beta = _weight(beta, "beta")
        self.t_range = None if t_range is None else tuple(t_range)

    def check(self, scheduler: object, num_conditions: int) -> None:
        """Raise ValueError for settings that do not fit the model (before any training)."""
        check_t_range(self.t_range, scheduler)

    def forget_loss(
        self,
        eps_fn: Eps,
        original: Eps | None,
        scheduler: object,
        null: int,
        num_conditions: int,
        x: Tensor,
        y: Tensor,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        raise NotImplementedError

    def _noised(
        self, scheduler: object, x: Tensor, generator: torch.Generator | None, t_range: Sequence[int] | None = None
    ) -> tuple[Tensor, Tensor]:
        lo, hi = check_t_range(t_range if t_range is not None else self.t_range, scheduler)
        t = draw_timesteps(x.shape[0], lo, hi, generator)
        x_t, _ = noisy(scheduler, x, t, generator)
        return x_t, t.to(x.device)

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({fields})"


class SalUnObjective(DiffusionObjective):
    """SalUn for generation: misaligned-condition forget loss + ``beta`` × retain MSE (use with a weight mask)."""

    name = "SalUn"

    def __init__(self, beta: float = 1.0, pseudo: str = "next", t_range: Sequence[int] | None = None) -> None:
        super().__init__(beta, t_range)
        if pseudo not in PSEUDO:
            raise ValueError(f"pseudo must be one of {PSEUDO}, got {pseudo!r}")
        self.pseudo = pseudo

    def check(self, scheduler: object, num_conditions: int) -> None:
        super().check(scheduler, num_conditions)
        if num_conditions < 2:
            raise ValueError("SalUn maps the forget class to another class: the model needs at least 2 classes")

    def forget_loss(self, eps_fn, original, scheduler, null, num_conditions, x, y, generator=None):  # noqa: D102
        x_t, t = self._noised(scheduler, x, generator)
        return salun_forget_loss(eps_fn, x_t, t, y, misaligned(y, num_conditions, self.pseudo, generator))


class ESDObjective(DiffusionObjective):
    """ESD-style negative guidance towards the frozen original's ``ε₀(∅) − η (ε₀(c) − ε₀(∅))`` (``anchor="null"``,
    the paper's Eq. 6 and ANT's late range), or ``ε₀(c) − η (ε₀(c) − ε₀(∅))`` (``anchor="concept"``, the current
    ``esd_sd.py`` of ``rohitgandikota/erasing``, whose default η is 2)."""

    name = "ESD"
    needs_original = True

    def __init__(
        self, eta: float = 1.0, beta: float = 0.0, t_range: Sequence[int] | None = None, anchor: str = "null"
    ) -> None:
        super().__init__(beta, t_range)
        self.eta = check_guidance(eta, "eta (the negative guidance scale)")
        if anchor not in ("null", "concept"):
            raise ValueError(f"anchor must be 'null' or 'concept', got {anchor!r}")
        self.anchor = anchor

    def forget_loss(self, eps_fn, original, scheduler, null, num_conditions, x, y, generator=None):  # noqa: D102
        x_t, t = self._noised(scheduler, x, generator)
        if self.anchor == "null":
            return esd_loss(eps_fn, original, x_t, t, y, null, self.eta)
        return F.mse_loss(eps_fn(x_t, t, y), guided_target(original, x_t, t, y, null, 1.0 - self.eta))


class ANTObjective(DiffusionObjective):
    """ANT: reversed guidance for ``t < t_split`` (mid-to-late denoising), original guided target for
    ``t >= t_split`` (early denoising); ``t_split`` defaults to ``round((1 − early_fraction) · T)``.
    Defaults are the official single-concept config (``lileyang1210/ANT``, ``Single/configs/ant_train.yaml``):
    negative_guidance η = 1, α₁ = 1, α₂ = 0.5, before_step 7 of 50 DDIM steps (early_fraction 0.14)."""

    name = "ANT"
    needs_original = True

    def __init__(
        self,
        eta: float = 1.0,
        alpha1: float = 1.0,
        alpha2: float = 0.5,
        early_fraction: float = 0.14,
        t_split: int | None = None,
        beta: float = 0.0,
    ) -> None:
        super().__init__(beta, None)
        self.eta = check_guidance(eta, "eta (the guidance scale of the targets)")
        self.alpha1, self.alpha2 = _weight(alpha1, "alpha1"), _weight(alpha2, "alpha2")
        if isinstance(early_fraction, bool) or not isinstance(early_fraction, Real) or not 0 < early_fraction < 1:
            raise ValueError(f"early_fraction must lie in (0, 1), got {early_fraction!r}")
        self.early_fraction: float = float(early_fraction)
        self.t_split: int | None = t_split

    def split(self, scheduler: object) -> int:
        total = train_steps(scheduler)
        split = round((1 - self.early_fraction) * total) if self.t_split is None else self.t_split
        if isinstance(split, bool) or not isinstance(split, int) or not 0 < split < total:
            raise ValueError(
                f"ANT's t_split={split!r} must lie strictly inside the schedule (0 < t_split < {total}): timesteps "
                "below it are the mid-to-late range, the others the early range"
            )
        return split

    def check(self, scheduler: object, num_conditions: int) -> None:
        self.split(scheduler)

    def forget_loss(self, eps_fn, original, scheduler, null, num_conditions, x, y, generator=None):  # noqa: D102
        split, total = self.split(scheduler), train_steps(scheduler)
        early = self._noised(scheduler, x, generator, (split, total))
        late = self._noised(scheduler, x, generator, (0, split))
        return ant_loss(eps_fn, original, early, late, y, null, self.eta, self.alpha1, self.alpha2)


class FTObjective(DiffusionObjective):
    """Fine-tuning on the retain data only (no forget term)."""

    name = "FT"

    def __init__(self) -> None:
        super().__init__(beta=1.0)

    def forget_loss(self, eps_fn, original, scheduler, null, num_conditions, x, y, generator=None):  # noqa: D102
        return x.new_zeros(())


__all__ = [
    "DiffusionObjective",
    "SalUnObjective",
    "ESDObjective",
    "ANTObjective",
    "FTObjective",
    "misaligned",
    "salun_forget_loss",
    "esd_loss",
    "ant_loss",
    "guided_target",
]
