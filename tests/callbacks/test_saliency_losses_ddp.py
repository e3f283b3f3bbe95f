"""Two-process DDP on CPU (gloo) with the loss-adding callbacks (input saliency, attention losses).

Both penalties are per-sample means, so two ranks of 8 samples whose gradients DDP averages must train
exactly like one process on the 16 samples. The reference is written out by hand: plain SGD on
cross-entropy + the penalty over the union batch, no Lightning."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as L
import pytest
import torch
import torch.nn.functional as F
from cpu_trainer import cpu_trainer
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from salguide.attention.loss_modules import ConcentrationLoss
from salguide.callbacks import InputSaliencyCallback
from salguide.callbacks.attention_loss import AttentionLossCallback
from salguide.inputs.rrr import RRRLoss, rrr_penalty
from salguide.io import atomic_path
from salguide.models.vit import VisionTransformer

LR, STEPS, PER_RANK, RRR_WEIGHT = 0.5, 2, 8, 3.0


def make_model(kind: str) -> nn.Module:
    torch.manual_seed(0)
    if kind == "rrr":
        return nn.Sequential(nn.Flatten(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 3))
    return VisionTransformer(img_size=8, patch_size=4, in_chans=1, num_classes=3, embed_dim=16, depth=2, num_heads=2)


def make_data() -> TensorDataset:
    """(x [1, 8, 8] for the ViT or the first 16 pixels for the MLP, y, mask of a 4 x 4 quadrant)."""
    g = torch.Generator().manual_seed(1)
    n = PER_RANK * 2 * STEPS
    x, y = torch.randn(n, 1, 8, 8, generator=g), torch.randint(0, 3, (n,), generator=g)
    mask = torch.zeros(n, 1, 8, 8)
    for i in range(n):
        r, c = divmod(i % 4, 2)
        mask[i, :, 4 * r : 4 * r + 4, 4 * c : 4 * c + 4] = 1.0
    return TensorDataset(x, y, mask)


def inputs_for(kind: str, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return (x[..., :2, :].reshape(len(x), 16), mask[..., :2, :].reshape(len(x), 16)) if kind == "rrr" else (x, mask)


def penalty_of(kind: str):
    return RRRLoss(RRR_WEIGHT) if kind == "rrr" else ConcentrationLoss(2.0, layers=[0, 1], target="mask")


class Net(L.LightningModule):
    """An ordinary user module: cross-entropy on (x, y, mask) batches, plain SGD."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind, self.model = kind, make_model(kind)

    def forward(self, x):
        return self.model(x)

    def training_step(self, batch, batch_idx):
        return F.cross_entropy(self(batch[0]), batch[1])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=LR)


class Data(L.LightningDataModule):
    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind

    def train_dataloader(self) -> DataLoader:
        x, y, mask = make_data().tensors
        x, mask = inputs_for(self.kind, x, mask)
        data = TensorDataset(x, y, mask)
        # explicit sampler: Lightning's own distributed sampler for training shuffles
        sampler = DistributedSampler(
            data, num_replicas=self.trainer.world_size, rank=self.trainer.global_rank, shuffle=False
        )
        return DataLoader(data, batch_size=PER_RANK, sampler=sampler)


class SaveParams(L.Callback):
    def __init__(self, out_dir: Path) -> None:
        self.out_dir = Path(out_dir)

    def on_train_end(self, trainer, pl_module) -> None:
        params = {n: p.detach().clone() for n, p in pl_module.model.named_parameters()}
        with atomic_path(self.out_dir / f"rank{trainer.global_rank}.pt") as tmp:
            torch.save({"params": params, "steps": trainer.global_step}, tmp)


def single_process_reference(kind: str) -> dict[str, torch.Tensor]:
    """STEPS of SGD on CE + penalty over the union of the two ranks' batches (an unshuffled
    DistributedSampler deals sample i to rank i % 2, so the union of step s is samples 16 s .. 16 s + 15)."""
    model = make_model(kind)
    x_all, y_all, mask_all = make_data().tensors
    x_all, mask_all = inputs_for(kind, x_all, mask_all)
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    for s in range(STEPS):
        rows = slice(2 * PER_RANK * s, 2 * PER_RANK * (s + 1))
        x, y, mask = x_all[rows].clone().requires_grad_(True), y_all[rows], mask_all[rows]
        logits = model(x)
        if kind == "rrr":  # written out: the functional penalty, weighted
            pen = RRR_WEIGHT * rrr_penalty(logits, x, mask)
        else:
            pen = penalty_of(kind).penalty(model, x, y, mask)
        opt.zero_grad()
        (F.cross_entropy(logits, y) + pen).backward()
        opt.step()
    return {n: p.detach() for n, p in model.named_parameters()}


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["rrr", "attention"])
def test_ddp_two_ranks_train_like_one_process_on_the_union_batch(kind, tmp_path):
    loss = penalty_of(kind)
    callback = InputSaliencyCallback(loss) if kind == "rrr" else AttentionLossCallback(loss)
    trainer = cpu_trainer(
        devices=2,
        strategy="ddp_spawn",
        max_steps=STEPS,
        callbacks=[callback, SaveParams(tmp_path)],
        use_distributed_sampler=False,
    )
    trainer.fit(Net(kind), datamodule=Data(kind))

    reports = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    expected = single_process_reference(kind)
    start = {n: p.detach() for n, p in make_model(kind).named_parameters()}
    for report in reports:
        assert report["steps"] == STEPS
        for name, p in report["params"].items():
            assert not torch.equal(p, start[name]) or name.endswith("cls_token"), f"{name} did not train"
            torch.testing.assert_close(p, expected[name], atol=1e-5, rtol=1e-4, msg=f"{kind}: {name}")
