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

from salguide._checks import as_int, check_finite_loss
from salguide._lightning import pl
from salguide.models.optim import OptimizerFactory, SchedulerFactory, adamw, check_factories, module_optimizers

from .core import check_conditions, denoising_loss
from .nets import PromptTable
from .sampling import sample_images

BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2", "sigmoid")  # what DDPMScheduler implements


def ddpm_scheduler(num_train_timesteps: int = 200, beta_schedule: str = "squaredcos_cap_v2") -> Any:
    """diffusers' ``DDPMScheduler`` (ε-prediction) without x₀ clipping."""
    from diffusers import DDPMScheduler

    if beta_schedule not in BETA_SCHEDULES:
        raise ValueError(f"beta_schedule must be one of {BETA_SCHEDULES}, got {beta_schedule!r}")
    # clip_sample=False: the data are standardised (mean 0, std 1), not in [-1, 1]
    return DDPMScheduler(
        num_train_timesteps=as_int(num_train_timesteps, "num_train_timesteps", 2),
        beta_schedule=beta_schedule,
        clip_sample=False,
    )


def _net_setting(net: nn.Module, key: str, owner: str) -> Any:
    """``net.config[key]`` of a diffusers UNet, else a ValueError naming ``owner``'s net and what it lacks."""
    config = getattr(net, "config", None)
    value = getattr(config, key, None) if config is not None else None
    if value is None:
        raise ValueError(
            f"{owner}: net must be a diffusers UNet whose config has {key} (salguide.diffusion.class_unet or "
            f"prompt_unet), got {type(net).__name__}"
        )
    return value


def _sample_shape(net: nn.Module, owner: str) -> tuple[int, int, int]:
    """``(channels, height, width)`` of the images ``net`` denoises (its config's in_channels, sample_size)."""
    size = _net_setting(net, "sample_size", owner)
    height, width = (size, size) if isinstance(size, int) else tuple(size)
    return (
        as_int(_net_setting(net, "in_channels", owner), "net in_channels", 1),
        as_int(height, "net sample_size", 4),
        as_int(width, "net sample_size", 4),
    )


class DiffusionModule(pl.LightningModule):
    """Class-conditional DDPM on ``net``, a diffusers ``UNet2DModel`` with ``num_classes + 1`` class embeddings
    (``salguide.diffusion.class_unet``; the last one is the null class): ``DiffusionModule(class_unet(10))``.

    Training drops the class to the null class with probability ``cond_drop_prob`` (classifier-free
    guidance) and minimises DDPM's noise-prediction MSE on the trainable parameters with ``optimizer``
    (``optimizer(params)``, a ``_partial_`` node in ``model.optimizer``; default AdamW, lr 2e-3, no weight
    decay) and ``scheduler`` (None, or ``scheduler(optimizer)``; one taking ``max_epochs`` gets the
    Trainer's). The classes, image size and channels are the net's. Batches are ``(x, y, ...)`` with images
    in the data module's normalisation and int64 labels. The net is ``self.unet``.
    """

    def __init__(
        self,
        net: nn.Module,
        optimizer: OptimizerFactory | None = None,
        scheduler: SchedulerFactory | None = None,
        num_train_timesteps: int = 200,
        beta_schedule: str = "squaredcos_cap_v2",
        cond_drop_prob: float = 0.1,
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        if not 0.0 <= float(cond_drop_prob) < 1.0:
            raise ValueError(f"cond_drop_prob must lie in [0, 1), got {cond_drop_prob}")
        check_factories(optimizer, scheduler, owner)
        # the net and the factories are not hyper-parameters: checkpoints stay loadable with weights_only=True
        self.save_hyperparameters(ignore=["net", "optimizer", "scheduler", "prompts"])
        self.unet = net
        self.make_optimizer: OptimizerFactory = optimizer if optimizer is not None else adamw()
        self.make_scheduler = scheduler
        self.num_conditions, self.sample_shape = self._conditions(net), _sample_shape(net, owner)
        self.null_condition = self.num_conditions
        self.noise_scheduler = ddpm_scheduler(num_train_timesteps, beta_schedule)

    def _conditions(self, net: nn.Module) -> int:
        """The real classes of ``net``: its class embeddings but the null one."""
        return as_int(_net_setting(net, "num_class_embeds", type(self).__name__), "net num_class_embeds", 2) - 1

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
        _check_batch(x, y, self.num_conditions)
        loss = denoising_loss(self.eps, self.noise_scheduler, x, self.drop_conditions(y))
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True)
        return check_finite_loss(loss, f"DiffusionModule at step {self.global_step}")

    def validation_step(self, batch: Any, batch_idx: int) -> Tensor:
        x, y = batch[0], batch[1]
        _check_batch(x, y, self.num_conditions)
        gen = torch.Generator().manual_seed(batch_idx)  # the same noise every validation pass
        loss = denoising_loss(self.eps, self.noise_scheduler, x, y, generator=gen)
        self.log("val/loss", loss, on_epoch=True)
        return loss

    def configure_optimizers(self) -> Any:
        return module_optimizers(self)

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
        given = torch.as_tensor(cond)
        if given.numel() == 0:
            raise ValueError("sample() needs at least one condition")
        check_conditions(given, self.num_conditions)
        cond = given.to(dtype=torch.long, device=self.device)
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
    """The text-conditioned path: ``net`` a ``UNet2DConditionModel`` (cross-attention; ``prompt_unet``) on
    ``prompts``, a learned prompt-embedding table (``PromptTable``: ``num_prompts`` prompts + the empty one)
    whose width is the net's ``cross_attention_dim``: ``PromptDiffusionModule(prompt_unet(), PromptTable(10))``.
    Same protocol, training and arguments as ``DiffusionModule``."""

    def __init__(self, net: nn.Module, prompts: PromptTable, *args: Any, **kwargs: Any) -> None:
        if not isinstance(prompts, PromptTable):
            raise TypeError(f"PromptDiffusionModule: prompts must be a PromptTable, got {type(prompts).__name__}")
        width = _net_setting(net, "cross_attention_dim", type(self).__name__)
        if prompts.dim != width:
            raise ValueError(
                f"PromptDiffusionModule: the prompt embeddings' dim={prompts.dim} must equal the net's "
                f"cross_attention_dim={width}"
            )
        self._num_prompts = prompts.num_prompts  # a plain int: read by _conditions in DiffusionModule.__init__
        super().__init__(net, *args, **kwargs)
        self.prompts = prompts

    def _conditions(self, net: nn.Module) -> int:
        return self._num_prompts

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


def _check_batch(x: Tensor, y: Tensor, num_conditions: int) -> None:
    """A training or validation batch: at least one image, one valid condition id per image."""
    if x.shape[0] == 0:
        raise ValueError("the batch is empty: a denoising loss over no images is undefined")
    check_conditions(y, num_conditions)
    if y.shape[0] != x.shape[0]:
        raise ValueError(f"the batch has {x.shape[0]} images but {y.shape[0]} condition ids")


__all__ = ["DiffusionModule", "PromptDiffusionModule", "adamw", "ddpm_scheduler", "denoiser_parts"]
