"""The cases of the callback matrix: for every salguide callback class, a tiny module, datamodule and the
callback(s), built fresh by ``build(name, out_dir)``. Module-level classes, so that ``ddp_spawn`` pickles
them and the ``ddp`` script (``matrix_ddp_script.py``) imports them.

``EFFECT`` says what a plain run (the same module and data without the callback) is to the case:
``trains`` - the callback changes the weights; ``observes`` - it must leave them bit-identical; ``needs`` -
the module cannot train without it (MIM needs the patch mask)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from salguide._lightning import LightningDataModule, pl
from salguide.attention import ConcentrationLoss, EViTPolicy
from salguide.callbacks import (
    AttentionLossCallback,
    AttentionMapCallback,
    AttentionMaskingCallback,
    AuxiliaryLossCallback,
    DataSamplesCallback,
    DiffusionUnlearningCallback,
    ExplanationMetricsCallback,
    InputSaliencyCallback,
    RandomLabelCallback,
    SaliencyOverlayCallback,
    StageProgressBar,
    TestMetricsCallback,
    TokenPruningCallback,
    WeightSaliencyCallback,
)
from salguide.callbacks._strategy import ReleaseSpawnedProcessGroup
from salguide.evaluation import ExplanationScores
from salguide.inputs import RRRLoss
from salguide.models import ClassifierModule
from salguide.models.optim import sgd
from salguide.models.vit import VisionTransformer

CLASSES, BATCH, N_TRAIN = 3, 4, 16  # 4 batches an epoch on one process, 2 per rank on two


class TinyData(LightningDataModule):
    """``(x [1, side, side], y[, mask])`` train / val data plus forget data: every attribute a salguide callback
    reads (``forget_dataset``, ``forget_dataloader()``, ``num_classes``, ``mask_semantics``, ``train_dataset``)."""

    num_classes = CLASSES
    mask_semantics = "relevant"

    def __init__(self, side: int = 4, with_mask: bool = True, classes: int = CLASSES) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        x = torch.rand(N_TRAIN, 1, side, side, generator=g)
        y = torch.arange(N_TRAIN) % classes
        mask = torch.zeros(N_TRAIN, 1, side, side)
        mask[..., : side // 2, : side // 2] = 1.0
        parts = (x, y, mask) if with_mask else (x, y)
        self.num_classes = classes
        self.train_dataset = TensorDataset(*parts)
        self.val_dataset = TensorDataset(*(p[:8] for p in parts))
        self.forget_dataset = TensorDataset(x[y == 0], y[y == 0])

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_dataset, batch_size=BATCH, shuffle=False)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_dataset, batch_size=BATCH)

    def forget_dataloader(self, shuffle: bool = False) -> DataLoader:
        return DataLoader(self.forget_dataset, batch_size=BATCH, shuffle=False)


def mlp(side: int = 4) -> ClassifierModule:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(side * side, 8), nn.Tanh(), nn.Linear(8, CLASSES))
    return ClassifierModule(net, optimizer=sgd(lr=0.1, momentum=0.9, weight_decay=0.0), scheduler=None)


def vit() -> VisionTransformer:
    torch.manual_seed(0)
    return VisionTransformer(
        img_size=8, patch_size=4, in_chans=1, num_classes=CLASSES, embed_dim=16, depth=2, num_heads=2
    )


def vit_module() -> ClassifierModule:
    return ClassifierModule(vit(), optimizer=partial(torch.optim.Adam, lr=1e-2, weight_decay=0.0), scheduler=None)


def mim_module() -> nn.Module:
    from salguide.models.mim import MaskedReconstructionModule

    return MaskedReconstructionModule(vit(), optimizer=partial(torch.optim.AdamW, lr=1e-2, weight_decay=0.05))


def ddpm() -> nn.Module:
    from salguide.diffusion import DiffusionModule, class_unet

    torch.manual_seed(0)
    net = class_unet(CLASSES, sample_size=8, block_out_channels=(8, 16), norm_num_groups=4, attention=False)
    return DiffusionModule(net, num_train_timesteps=20, cond_drop_prob=0.0)


@dataclass
class Case:
    """One fit: the module, the data, the salguide callbacks, extra Trainer arguments, and a check of the
    callback's own output after fit (``done(callbacks) -> bool``)."""

    module: nn.Module
    data: Any
    callbacks: list[Any]
    trainer: dict[str, Any] = field(default_factory=dict)
    done: Callable[[list[Any]], bool] = lambda cbs: True


def _files(out: Path, pattern: str) -> Callable[[list[Any]], bool]:
    return lambda cbs: any(out.rglob(pattern))


def _diffusion_objective() -> Any:
    from salguide.diffusion import SalUnObjective

    return SalUnObjective(beta=0.0)  # the module's own step draws from the global RNG, which checkpoints do not hold


CASES: dict[str, tuple[str, Callable[[Path], Case]]] = {
    "WeightSaliencyCallback": (
        "trains",
        lambda out: Case(
            mlp(),
            TinyData(with_mask=False),
            [WeightSaliencyCallback(ratio=0.5, log_figure=False)],
            done=lambda cbs: cbs[0].mask is not None,
        ),
    ),
    "RandomLabelCallback": (
        "trains",
        lambda out: Case(mlp(), TinyData(with_mask=False), [RandomLabelCallback(seed=3)]),
    ),
    "InputSaliencyCallback": ("trains", lambda out: Case(mlp(), TinyData(), [InputSaliencyCallback(RRRLoss(10.0))])),
    "ExplanationMetricsCallback": (
        "observes",
        lambda out: Case(
            mlp(),
            TinyData(),
            [ExplanationMetricsCallback(num_samples=4, steps=2)],
            done=lambda cbs: bool(cbs[0].history),
        ),
    ),
    "TestMetricsCallback": (  # test-time only: a fit must leave the weights alone
        "observes",
        lambda out: Case(mlp(), TinyData(), [TestMetricsCallback({"explanations": ExplanationScores(steps=2)})]),
    ),
    "SaliencyOverlayCallback": (
        "observes",
        lambda out: Case(
            mlp(),
            TinyData(),
            [SaliencyOverlayCallback(methods=["gradient"], num_images=2, out_dir=str(out / "sal"))],
            done=_files(out, "saliency_epoch*.png"),
        ),
    ),
    "DataSamplesCallback": (
        "observes",
        lambda out: Case(
            mlp(),
            TinyData(),
            [DataSamplesCallback(per_class=2, out_dir=str(out))],
            done=_files(out, "data_samples.png"),
        ),
    ),
    "StageProgressBar": (
        "observes",
        lambda out: Case(mlp(), TinyData(), [StageProgressBar(stage="matrix")], trainer={"enable_progress_bar": True}),
    ),
    "AttentionLossCallback": (
        "trains",
        lambda out: Case(
            vit_module(), TinyData(side=8), [AttentionLossCallback(ConcentrationLoss(1.0, layers=[-1], target="mask"))]
        ),
    ),
    "AuxiliaryLossCallback": (
        "trains",
        lambda out: Case(  # the neutral base, here with an attention loss
            vit_module(), TinyData(side=8), [AuxiliaryLossCallback(ConcentrationLoss(1.0, layers=[-1], target="mask"))]
        ),
    ),
    "TokenPruningCallback": (
        "trains",
        lambda out: Case(vit_module(), TinyData(side=8), [TokenPruningCallback(EViTPolicy([0], 0.5), warmup_steps=2)]),
    ),
    "AttentionMapCallback": (
        "observes",
        lambda out: Case(
            vit_module(),
            TinyData(side=8),
            [AttentionMapCallback(num_images=2, out_dir=str(out / "attn"))],
            done=_files(out, "attention_epoch*.png"),
        ),
    ),
    "AttentionMaskingCallback": (
        "needs",
        lambda out: Case(
            mim_module(),
            TinyData(side=8, with_mask=False),
            [AttentionMaskingCallback("random", ratio=0.5, ema=0.5, seed=1)],
        ),
    ),
    "DiffusionUnlearningCallback": (
        "trains",
        lambda out: Case(
            ddpm(), TinyData(side=8, with_mask=False), [DiffusionUnlearningCallback(_diffusion_objective(), seed=2)]
        ),
    ),
}

# Callbacks that never read or copy parameters (they rewrite batches, read the datamodule or draw a bar):
# strategy-agnostic, so they take sharded strategies too.
ANY_STRATEGY = {"RandomLabelCallback", "DataSamplesCallback", "StageProgressBar"}


def build(name: str, out: Path) -> Case:
    return CASES[name][1](Path(out))


def trainer(case: Case, **kwargs: Any) -> pl.Trainer:
    """A CPU Trainer for ``case``: 2 epochs of 4 batches (2 per rank on two processes), 1 validation batch."""
    settings: dict[str, Any] = {
        "accelerator": "cpu",
        "devices": 1,
        "max_epochs": 2,
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "num_sanity_val_steps": 0,
        "limit_val_batches": 1,
    }
    settings.update(case.trainer)
    settings.update(kwargs)
    return pl.Trainer(**settings)


def weights(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


class RankReport(pl.Callback):
    """Each rank writes its weights and step count to ``out_dir/<name>.rank<r>.pt``."""

    def __init__(self, out_dir: Path, name: str) -> None:
        self.out_dir, self.name = Path(out_dir), name

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        report = {"weights": weights(pl_module), "steps": trainer.global_step}
        torch.save(report, self.out_dir / f"{self.name}.rank{trainer.global_rank}.pt")


def fit_ddp(name: str, out: Path, strategy: str) -> None:
    """``name``'s case on 2 CPU processes (gloo) with ``strategy`` (``ddp_spawn`` or ``ddp``)."""
    case = build(name, out)
    last = [RankReport(out, name), ReleaseSpawnedProcessGroup()]  # no gloo group left to a spawned rank's exit
    trainer(case, devices=2, strategy=strategy, callbacks=[*case.callbacks, *last]).fit(
        case.module, datamodule=case.data
    )
