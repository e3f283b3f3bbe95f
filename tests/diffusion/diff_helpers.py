"""Tiny diffusion models and data for the diffusion tests (16x16 digits, few timesteps)."""

from __future__ import annotations

import torch

from salguide.diffusion import DiffusionModule, PromptDiffusionModule, PromptTable, class_unet, prompt_unet

T = 20  # training timesteps of the tiny schedules


def tiny(prompt: bool = False, seed: int = 0, **kwargs) -> DiffusionModule:
    """A 4-class DDPM on 8x8 images (``prompt``: the prompt-conditioned one); ``kwargs`` go to the module."""
    torch.manual_seed(seed)
    net = dict(sample_size=8, block_out_channels=(8, 16), norm_num_groups=4)
    kwargs = {"num_train_timesteps": T, **kwargs}
    if prompt:
        return PromptDiffusionModule(
            prompt_unet(**net, cross_attention_dim=8), PromptTable(4, tokens=2, dim=8), **kwargs
        )
    return DiffusionModule(class_unet(4, **net), **kwargs)


def batches(n_batches: int = 2, n: int = 6, label: int | None = 0, seed: int = 1, classes: int = 4) -> list:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n_batches):
        x = torch.randn(n, 1, 8, 8, generator=g)
        y = torch.full((n,), label) if label is not None else torch.randint(0, classes, (n,), generator=g)
        out.append((x, y))
    return out
