"""Generative unlearning for diffusion models: class- and prompt-conditioned DDPMs (diffusers UNets), SalUn's
generation mask, ANT's augmentation-enhanced mask and trajectory-aware objective, ESD-style negative guidance,
metrics with a separately trained classifier. Needs the ``diffusion`` extra (``diffusers``, ``peft``).

Functional core: ``core`` (DDPM loss, guidance, checks), ``objectives``, ``saliency``, ``sampling``,
``metrics``; Lightning side: ``DiffusionModule`` and ``salguide.callbacks.DiffusionUnlearningCallback``.
"""

from .core import check_guidance, check_t_range, denoising_loss, guided_eps
from .module import DiffusionModule, PromptDiffusionModule, denoiser_parts
from .nets import PromptTable, class_unet, prompt_unet
from .objectives import ANTObjective, DiffusionObjective, ESDObjective, FTObjective, SalUnObjective
from .saliency import (
    DiffusionForgetLoss,
    check_mask_fits,
    diffusion_ant_mask,
    diffusion_saliency_mask,
    diffusion_saliency_scores,
    gaussian_noise,
    random_shift,
)
from .sampling import sample_images

__all__ = [
    "DiffusionModule",
    "PromptDiffusionModule",
    "denoiser_parts",
    "class_unet",
    "prompt_unet",
    "PromptTable",
    "denoising_loss",
    "guided_eps",
    "check_guidance",
    "check_t_range",
    "sample_images",
    "DiffusionObjective",
    "SalUnObjective",
    "ANTObjective",
    "ESDObjective",
    "FTObjective",
    "DiffusionForgetLoss",
    "diffusion_saliency_scores",
    "diffusion_saliency_mask",
    "diffusion_ant_mask",
    "gaussian_noise",
    "random_shift",
    "check_mask_fits",
]
