"""Tiny models, data and independent checks shared by the WeightSaliencyCallback tests.

Module-level classes so that ``ddp_spawn`` can pickle them into its worker processes.
"""

from __future__ import annotations

import lightning.pytorch as L
import pytorch_lightning as PL
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

OPTIMIZERS = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}


def make_net() -> nn.Module:
    return nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 3))


class _NetMixin:
    """An ordinary user LightningModule: cross-entropy and one optimizer, nothing salguide-specific."""

    def __init__(self, optimizer: str = "sgd", **optimizer_kwargs) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = make_net()
        self.optimizer_name, self.optimizer_kwargs = optimizer, optimizer_kwargs

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.cross_entropy(self(x), y)

    def configure_optimizers(self):
        return OPTIMIZERS[self.optimizer_name](self.parameters(), **self.optimizer_kwargs)


class LitNet(_NetMixin, L.LightningModule):
    pass


class PLNet(_NetMixin, PL.LightningModule):
    pass


class ForgetData(L.LightningDataModule):
    """Train data plus a ``forget_dataloader()`` whose content depends on ``seed`` (and the rank if asked)."""

    def __init__(self, seed: int = 1, per_rank: bool = False) -> None:
        super().__init__()
        self.seed, self.per_rank = seed, per_rank

    def train_dataloader(self) -> DataLoader:
        return loader(n=48, seed=0)

    def forget_dataloader(self) -> DataLoader:
        rank = self.trainer.global_rank if self.per_rank else 0
        return loader(n=16, seed=self.seed + 100 * rank)


def loader(n: int = 48, seed: int = 0, batch_size: int = 8) -> DataLoader:
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(n, 8, generator=g), torch.randint(0, 3, (n,), generator=g)
    return DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=False)


def random_mask(module: nn.Module, ratio: float = 0.5, seed: int = 0) -> dict[str, torch.Tensor]:
    """Scattered bool mask (True = may change) with entries of both kinds in every tensor."""
    g = torch.Generator().manual_seed(seed)
    mask = {}
    for name, p in module.named_parameters():
        m = torch.rand(p.shape, generator=g) < ratio
        m.view(-1)[:2] = torch.tensor([True, False])
        mask[name] = m
    return mask


def params_copy(module: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in module.named_parameters()}


def check_guarantee(module: nn.Module, theta0: dict, mask, optimizers=()) -> None:
    """Frozen entries equal θ₀ exactly, trainable ones moved, optimizer state 0 at frozen positions."""
    for name, p in module.named_parameters():
        keep = mask[name]
        assert torch.equal(p.detach()[~keep], theta0[name][~keep]), f"frozen entries of {name} moved"
        assert not torch.equal(p.detach()[keep], theta0[name][keep]), f"trainable entries of {name} did not move"
        for opt in optimizers:
            for key, value in opt.state.get(p, {}).items():
                if torch.is_tensor(value) and value.shape == p.shape:
                    assert not value[~keep].any(), f"{key} of {name} is non-zero at frozen positions"
                    assert value[keep].any(), f"{key} of {name} is zero everywhere (state not used?)"


def fit(module, callback, pkg=L, datamodule=None, ckpt_path=None, **trainer_kwargs):
    """Fit ``module`` for a few steps on CPU with ``callback`` (one or a list); returns the Trainer."""
    settings = dict(
        accelerator="cpu",
        devices=1,
        max_steps=4,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    settings.update(trainer_kwargs)
    callbacks = callback if isinstance(callback, list) else [callback]
    trainer = pkg.Trainer(callbacks=callbacks, **settings)
    data = {"datamodule": datamodule} if datamodule is not None else {"train_dataloaders": loader()}
    trainer.fit(module, ckpt_path=ckpt_path, **data)
    return trainer
