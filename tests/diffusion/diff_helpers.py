"""Tiny diffusion models and data for the diffusion tests (16x16 digits, few timesteps)."""

from __future__ import annotations

import torch

from salguide.diffusion import DiffusionModule, PromptDiffusionModule

T = 20  # training timesteps of the tiny schedules


def tiny(prompt: bool = False, seed: int = 0, **kwargs) -> DiffusionModule:
    torch.manual_seed(seed)
    cls = PromptDiffusionModule if prompt else DiffusionModule
    kw = dict(num_classes=4, sample_size=8, block_out_channels=(8, 16), norm_num_groups=4, num_train_timesteps=T)
    if prompt:
        kw.update(prompt_tokens=2, cross_attention_dim=8)
    kw.update(kwargs)
    return cls(**kw)


def batches(n_batches: int = 2, n: int = 6, label: int | None = 0, seed: int = 1, classes: int = 4) -> list:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n_batches):
        x = torch.randn(n, 1, 8, 8, generator=g)
        y = torch.full((n,), label) if label is not None else torch.randint(0, classes, (n,), generator=g)
        out.append((x, y))
    return out
