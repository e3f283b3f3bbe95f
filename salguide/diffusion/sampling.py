"""Seeded DDPM / DDIM sampling with classifier-free guidance (Ho & Salimans, 2022)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from salguide._checks import as_int

from .core import Eps, check_guidance, guided_eps, train_steps

SAMPLERS = ("ddim", "ddpm")


def sample_images(
    eps_fn: Eps,
    scheduler: object,
    cond: Tensor,
    null: int,
    shape: Sequence[int],
    *,
    guidance_scale: float = 2.0,
    steps: int = 25,
    sampler: str = "ddim",
    seed: int = 0,
) -> Tensor:
    """Denoise Gaussian noise into ``[len(cond), *shape]`` images with guided ε̂ = ε_∅ + w (ε_c − ε_∅).

    ``sampler`` is ``"ddim"`` (η = 0, deterministic given the start noise) or ``"ddpm"`` (ancestral); the
    sampling scheduler is built from the training ``scheduler``'s config. Start noise and DDPM's step
    noise come from one CPU generator seeded with ``seed``, so the same call gives the same images.
    """
    from diffusers import DDIMScheduler, DDPMScheduler

    scale = check_guidance(guidance_scale)
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
    total = train_steps(scheduler)
    n_steps = as_int(steps, "steps", 1)
    if n_steps > total:
        raise ValueError(f"steps={n_steps} exceeds the schedule's {total} training timesteps")
    cls = DDIMScheduler if sampler == "ddim" else DDPMScheduler
    sched = cls.from_config(scheduler.config)  # type: ignore[attr-defined]
    sched.set_timesteps(n_steps)
    gen = torch.Generator().manual_seed(as_int(seed, "seed"))
    x = torch.randn((cond.shape[0], *shape), generator=gen).to(cond.device)
    for t in sched.timesteps:
        tt = torch.full((cond.shape[0],), int(t), dtype=torch.long, device=cond.device)
        e = guided_eps(eps_fn, x, tt, cond, null, scale)
        kwargs = {"generator": gen} if sampler == "ddpm" else {}
        x = sched.step(e.cpu(), int(t), x.cpu(), **kwargs).prev_sample.to(cond.device)
    return x


__all__ = ["sample_images", "SAMPLERS"]
