"""A masked-reconstruction objective to demonstrate attention-guided masking on digits.

``MaskedReconstructionModule(net)`` (a ViT): batches (x, y, patch_mask) from ``AttentionMaskingCallback``; the ViT
sees the image with hidden patches zeroed; loss = cross-entropy of the CLS logits (keeps the CLS
attention meaningful for the teacher) + ``recon_weight`` x MSE of the hidden patches' pixels, predicted by a
linear head on the last layer's patch tokens (SimMIM-style, Xie et al., CVPR 2022).

``evaluate_masked`` gives the hidden-patch reconstruction MSE and CLS accuracy under a given mask. The masking
itself (AttMask / ACMIL, ``cls_attention_scores``, ``mask_patches``) is functional, in ``salguide.attention.masking``."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from salguide._lightning import pl
from salguide.attention.masking import mask_patches, patchify
from salguide.attention.targets import token_grid

from .optim import OptimizerFactory, SchedulerFactory, adamw, check_factories, module_optimizers


class MaskedReconstructionModule(pl.LightningModule):
    """CLS cross-entropy on the masked image + ``recon_weight`` x MSE of the hidden patches (see module docstring)."""

    def __init__(
        self,
        net: Any,
        optimizer: OptimizerFactory | None = None,
        scheduler: SchedulerFactory | None = None,
        recon_weight: float = 1.0,
    ) -> None:
        super().__init__()
        if not hasattr(net, "forward_features") or not hasattr(net, "head"):
            raise TypeError("MaskedReconstructionModule needs a timm-layout ViT (forward_features, head)")
        if not float(recon_weight) >= 0:
            raise ValueError(f"recon_weight must be >= 0, got {recon_weight}")
        check_factories(optimizer, scheduler, "MaskedReconstructionModule")
        self.model, self.recon_weight = net, float(recon_weight)
        self.make_optimizer = optimizer or adamw(lr=1e-3, weight_decay=0.05)
        self.make_scheduler = scheduler  # None: a constant learning rate
        self.grid = token_grid(net)
        ps = net.patch_embed.patch_size
        chans = net.patch_embed.proj.in_channels
        self.decoder = nn.Linear(net.embed_dim, chans * ps * ps)

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)

    def losses(self, x: Tensor, y: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        feats = self.model.forward_features(mask_patches(x, mask, self.grid))
        ce = F.cross_entropy(self.model.head(feats[:, 0]), y)
        pred, true = self.decoder(feats[:, 1:]), patchify(x, self.grid)
        err = (pred - true).pow(2).mean(-1)
        recon = (err * mask).sum() / mask.sum().clamp_min(1)
        return ce, recon

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        if len(batch) < 3:
            raise ValueError(
                "MaskedReconstructionModule needs batches (x, y, patch_mask); add AttentionMaskingCallback"
            )
        x, y, mask = batch[0], batch[1], batch[-1]
        ce, recon = self.losses(x, y, mask)
        self.log_dict({"train/ce": ce, "train/recon": recon}, on_step=False, on_epoch=True)
        return ce + self.recon_weight * recon

    def configure_optimizers(self) -> Any:
        return module_optimizers(self)


@torch.no_grad()
def masked_error_sums(module: MaskedReconstructionModule, x: Tensor, y: Tensor, mask: Tensor) -> tuple[float, int, int]:
    """One batch with the patches of ``mask`` [B, P] hidden: (summed per-pixel squared error of the decoder
    over hidden patches, number of hidden patches, correct CLS-head predictions), for pooling over batches."""
    feats = module.model.forward_features(mask_patches(x, mask, module.grid))
    hits = int((module.model.head(feats[:, 0]).argmax(-1) == y).sum())
    err = (module.decoder(feats[:, 1:]) - patchify(x, module.grid)).pow(2).mean(-1)
    return float((err * mask).sum()), int(mask.sum()), hits


@torch.no_grad()
def evaluate_masked(
    module: MaskedReconstructionModule, x: Tensor, y: Tensor, mask: Tensor, batch_size: int = 256
) -> dict[str, float]:
    """Metrics on images ``x`` with the patches of ``mask`` [B, P] hidden: ``recon_mse``, the per-pixel
    squared error of the decoder on hidden patches averaged over all hidden patches (the training loss,
    pooled over the whole set; NaN when nothing is hidden), and ``acc``, the CLS head's accuracy (%)."""
    if mask.dtype != torch.bool or mask.shape != (x.shape[0], module.grid[0] * module.grid[1]):
        raise ValueError(
            f"mask must be bool [B, P] = {(x.shape[0], module.grid[0] * module.grid[1])}, "
            f"got {mask.dtype} {tuple(mask.shape)}"
        )
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    was_training = module.training
    module.eval()
    err_sum, hidden, hits = 0.0, 0, 0
    for i in range(0, x.shape[0], batch_size):
        sl = slice(i, i + batch_size)
        e, h, c = masked_error_sums(module, x[sl], y[sl], mask[sl])
        err_sum, hidden, hits = err_sum + e, hidden + h, hits + c
    module.train(was_training)
    return {"recon_mse": err_sum / hidden if hidden else float("nan"), "acc": 100.0 * hits / max(x.shape[0], 1)}
