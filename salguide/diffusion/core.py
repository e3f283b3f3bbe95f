"""The diffusion training objective and its checks, as plain torch functions.

DDPM (Ho et al., NeurIPS 2020): x_t = √ᾱ_t x₀ + √(1 − ᾱ_t) ε, and the model ε_θ(x_t, t, c) is trained
with ‖ε − ε_θ(x_t, t, c)‖². Timesteps are drawn antithetically (t and T − 1 − t in one batch) as in
SalUn's DDPM code (Fan et al., ICLR 2024). Classifier-free guidance (Ho & Salimans, 2022) combines the
conditional and the null-condition prediction: ε̂ = ε_∅ + w (ε_c − ε_∅).

A *denoiser* here is any ``eps(x_t, t, cond) -> Tensor`` callable; a scheduler is a diffusers scheduler
(``config.num_train_timesteps`` and ``add_noise``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from salguide._checks import as_finite, as_int, is_integer_tensor

Eps = Callable[[Tensor, Tensor, Tensor], Tensor]


def train_steps(scheduler: object) -> int:
    """The number of training timesteps T of a diffusers scheduler."""
    try:
        return int(scheduler.config.num_train_timesteps)  # type: ignore[attr-defined]
    except AttributeError:
        raise ValueError(
            f"{type(scheduler).__name__} is not a diffusers scheduler (no config.num_train_timesteps)"
        ) from None


def check_t_range(t_range: Sequence[int] | None, scheduler: object) -> tuple[int, int]:
    """``(lo, hi)``: timesteps ``lo <= t < hi`` inside the schedule's ``[0, T)``; ``None`` is the whole schedule."""
    total = train_steps(scheduler)
    if t_range is None:
        return 0, total
    try:
        lo, hi = (as_int(v, "t_range entry") for v in t_range)
    except (TypeError, ValueError):
        raise ValueError(f"t_range must be two integers (lo, hi), got {t_range!r}") from None
    if not 0 <= lo < hi <= total:
        raise ValueError(
            f"timestep range t_range=({lo}, {hi}) lies outside the schedule: it needs 0 <= lo < hi <= {total} "
            f"(the scheduler has {total} training timesteps)"
        )
    return lo, hi


def check_guidance(scale: float, name: str = "guidance_scale") -> float:
    """A finite guidance scale > 0 (``w = 1`` is the plain conditional model)."""
    return as_finite(scale, name, positive=True)


def check_conditions(cond: Tensor, num_conditions: int, what: str = "class") -> None:
    """Raise ValueError unless ``cond`` is a 1-D integer tensor whose every entry is a real condition id in
    ``[0, num_conditions)`` (an empty one passes)."""
    if not is_integer_tensor(cond):
        got = f"a {cond.dtype} tensor" if isinstance(cond, Tensor) else type(cond).__name__
        raise ValueError(f"{what} ids must be integers, got {got}")
    if cond.ndim != 1:
        raise ValueError(f"{what} ids must be a 1-D tensor [B], got shape {tuple(cond.shape)}")
    if cond.numel() == 0:
        return
    lo, hi = int(cond.min()), int(cond.max())
    if lo < 0 or hi >= num_conditions:
        bad = lo if lo < 0 else hi
        raise ValueError(
            f"{what} {bad} is outside the model's {what}es 0..{num_conditions - 1} "
            f"(index {num_conditions} is the null {what} of classifier-free guidance)"
        )


def draw_timesteps(
    n: int, lo: int, hi: int, generator: torch.Generator | None = None, antithetic: bool = True
) -> Tensor:
    """``n`` int64 timesteps in ``[lo, hi)`` on CPU; antithetic: the second half mirrors the first (``lo + hi − 1 − t``)."""
    if not antithetic:
        return torch.randint(lo, hi, (n,), generator=generator)
    half = torch.randint(lo, hi, (n // 2 + 1,), generator=generator)
    return torch.cat([half, lo + hi - 1 - half])[:n]


def noisy(scheduler: object, x0: Tensor, t: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """``(x_t, ε)``: ``x0`` noised to timesteps ``t`` with fresh Gaussian noise ε (drawn on CPU, then moved)."""
    eps = torch.randn(x0.shape, generator=generator, dtype=x0.dtype).to(x0.device)
    return scheduler.add_noise(x0, eps, t.to(x0.device)), eps  # type: ignore[attr-defined]


def denoising_loss(
    eps_fn: Eps,
    scheduler: object,
    x0: Tensor,
    cond: Tensor,
    *,
    generator: torch.Generator | None = None,
    t_range: Sequence[int] | None = None,
) -> Tensor:
    """DDPM's noise-prediction MSE ``mean ‖ε − ε_θ(x_t, t, c)‖²`` over random (antithetic) timesteps and noise."""
    lo, hi = check_t_range(t_range, scheduler)
    t = draw_timesteps(x0.shape[0], lo, hi, generator)
    x_t, eps = noisy(scheduler, x0, t, generator)
    return F.mse_loss(eps_fn(x_t, t.to(x0.device), cond.to(x0.device)), eps)


def guided_eps(eps_fn: Eps, x_t: Tensor, t: Tensor, cond: Tensor, null: int, scale: float) -> Tensor:
    """Classifier-free guidance ``ε_∅ + w (ε_c − ε_∅)`` in one batched call."""
    null_cond = torch.full_like(cond, null)
    both = eps_fn(torch.cat([x_t, x_t]), torch.cat([t, t]), torch.cat([cond, null_cond]))
    e_c, e_u = both.chunk(2)
    return e_u + scale * (e_c - e_u)


__all__ = [
    "Eps",
    "train_steps",
    "check_t_range",
    "check_guidance",
    "check_conditions",
    "draw_timesteps",
    "noisy",
    "denoising_loss",
    "guided_eps",
]
