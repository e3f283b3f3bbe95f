"""``DiffusionModule``: a class-conditional DDPM as a LightningModule (and its prompt-conditioned twin).

The protocol the unlearning plugins rely on (a user's own module can provide the same four names):
``eps(x_t, t, cond)`` (the noise prediction), ``noise_scheduler`` (a diffusers training scheduler),
``num_conditions`` (real classes / prompts, ids ``0..n-1``) and ``null_condition`` (the id of the empty
condition used by classifier-free guidance, Ho & Salimans 2022).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from salguide._checks import as_int
from salguide._lightning import pl

from .core import check_conditions, denoising_loss
from .nets import PromptTable, class_unet, prompt_unet
from .sampling import sample_images


def ddpm_scheduler(num_train_timesteps: int = 200, beta_schedule: str = "squaredcos_cap_v2") -> Any:
    """diffusers' ``DDPMScheduler`` (ε-prediction) without x₀ clipping."""
    from diffusers import DDPMScheduler

    # clip_sample=False: the data are standardised (mean 0, std 1), not in [-1, 1]
    return DDPMScheduler(
        num_train_timesteps=as_int(num_train_timesteps, "num_train_timesteps", 2),
        beta_schedule=beta_schedule,
        clip_sample=False,
    )


class DiffusionModule(pl.LightningModule):
    """Class-conditional DDPM on a diffusers ``UNet2DModel`` with ``num_classes + 1`` class embeddings.

    Training drops the class to the null class with probability ``cond_drop_prob`` (classifier-free
    guidance) and minimises DDPM's noise-prediction MSE with AdamW on the trainable parameters. Batches
    are ``(x, y, ...)`` with images in the data module's normalisation and int64 labels.
    """

    def __init__(
        self,
        num_classes: int = 10,
        sample_size: int = 16,
        in_channels: int = 1,
        block_out_channels: Sequence[int] = (32, 64),
        layers_per_block: int = 1,
        norm_num_groups: int = 8,
        attention: bool = True,
        num_train_timesteps: int = 200,
        beta_schedule: str = "squaredcos_cap_v2",
        lr: float = 2e-3,
        weight_decay: float = 0.0,
        cond_drop_prob: float = 0.1,
    ) -> None:
        super().__init__()
        if not 0.0 <= float(cond_drop_prob) < 1.0:
            raise ValueError(f"cond_drop_prob must lie in [0, 1), got {cond_drop_prob}")
        if not float(lr) > 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        self.save_hyperparameters()
        self.num_conditions = as_int(num_classes, "num_classes", 1)
        self.null_condition = self.num_conditions
        self.noise_scheduler = ddpm_scheduler(num_train_timesteps, beta_schedule)
        self.sample_shape = (
            as_int(in_channels, "in_channels", 1),
            as_int(sample_size, "sample_size", 4),
            as_int(sample_size, "sample_size", 4),
        )
        self.build()

    def build(self) -> None:
        h: Any = self.hparams  # Lightning's AttributeDict
        self.unet = class_unet(
            h.num_classes,
            h.sample_size,
            h.in_channels,
            h.block_out_channels,
            h.layers_per_block,
            h.norm_num_groups,
            h.attention,
        )

    def eps(self, x_t: Tensor, t: Tensor, cond: Tensor) -> Tensor:
        return self.unet(x_t, t, class_labels=cond).sample

    def forward(self, x_t: Tensor, t: Tensor, cond: Tensor) -> Tensor:
        return self.eps(x_t, t, cond)

    def drop_conditions(self, cond: Tensor) -> Tensor:
        """Replace each condition by the null one with probability ``cond_drop_prob`` (global torch RNG)."""
        p = float(self.hparams["cond_drop_prob"])
        if p == 0:
            return cond
        drop = torch.rand(cond.shape, device=cond.device) < p
        return torch.where(drop, torch.full_like(cond, self.null_condition), cond)

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        x, y = batch[0], batch[1]
        check_conditions(y, self.num_conditions)
        loss = denoising_loss(self.eps, self.noise_scheduler, x, self.drop_conditions(y))
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> Tensor:
        x, y = batch[0], batch[1]
        gen = torch.Generator().manual_seed(batch_idx)  # the same noise every validation pass
        loss = denoising_loss(self.eps, self.noise_scheduler, x, y, generator=gen)
        self.log("val/loss", loss, on_epoch=True)
        return loss

    def configure_optimizers(self) -> Any:
        params = [p for p in self.parameters() if p.requires_grad]
        return torch.optim.AdamW(params, lr=float(self.hparams["lr"]), weight_decay=float(self.hparams["weight_decay"]))

    @torch.no_grad()
    def sample(
        self,
        cond: Tensor | Sequence[int],
        *,
        guidance_scale: float = 2.0,
        steps: int = 25,
        sampler: str = "ddim",
        seed: int = 0,
    ) -> Tensor:
        """Images for the conditions ``cond`` with classifier-free guidance (see ``sample_images``)."""
        cond = torch.as_tensor(cond, dtype=torch.long, device=self.device)
        check_conditions(cond, self.num_conditions)
        was = self.training
        self.eval()
        try:
            return sample_images(
                self.eps,
                self.noise_scheduler,
                cond,
                self.null_condition,
                self.sample_shape,
                guidance_scale=guidance_scale,
                steps=steps,
                sampler=sampler,
                seed=seed,
            )
        finally:
            self.train(was)


class PromptDiffusionModule(DiffusionModule):
    """The text-conditioned path: a ``UNet2DConditionModel`` (cross-attention) on a learned prompt-embedding
    table (``PromptTable``, ``num_classes`` prompts + the empty prompt). Same protocol and training."""

    def __init__(
        self, num_classes: int = 10, *args: Any, prompt_tokens: int = 4, cross_attention_dim: int = 32, **kwargs: Any
    ) -> None:
        self._prompt_args = (
            as_int(prompt_tokens, "prompt_tokens", 1),
            as_int(cross_attention_dim, "cross_attention_dim", 1),
        )
        super().__init__(num_classes, *args, **kwargs)

    def build(self) -> None:
        h: Any = self.hparams  # Lightning's AttributeDict
        tokens, dim = self._prompt_args
        self.unet = prompt_unet(
            h.sample_size,
            h.in_channels,
            h.block_out_channels,
            h.layers_per_block,
            h.norm_num_groups,
            cross_attention_dim=dim,
        )
        self.prompts = PromptTable(h.num_classes, tokens, dim)

    def eps(self, x_t: Tensor, t: Tensor, cond: Tensor) -> Tensor:
        return self.unet(x_t, t, encoder_hidden_states=self.prompts(cond)).sample


def denoiser_parts(module: nn.Module) -> tuple[Any, Any, int, int]:
    """``(eps, noise_scheduler, num_conditions, null_condition)`` of a module following the protocol, else a
    ValueError naming what is missing."""
    names = ("eps", "noise_scheduler", "num_conditions", "null_condition")
    missing = [n for n in names if not hasattr(module, n)]
    if missing:
        raise ValueError(
            f"{type(module).__name__} is not a diffusion model for salguide: it lacks {missing} (define eps(x_t, t, cond), "
            "noise_scheduler, num_conditions and null_condition, as salguide.diffusion.DiffusionModule does)"
        )
    parts: Any = module  # checked above
    return parts.eps, parts.noise_scheduler, int(parts.num_conditions), int(parts.null_condition)


__all__ = ["DiffusionModule", "PromptDiffusionModule", "ddpm_scheduler", "denoiser_parts"]
