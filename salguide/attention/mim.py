"""A masked-reconstruction objective to demonstrate attention-guided masking on digits.

``MaskedReconstructionModule(vit)``: batches (x, y, patch_mask) from ``AttentionMaskingCallback``; the ViT
sees the image with hidden patches zeroed; loss = cross-entropy of the CLS logits (keeps the CLS
attention meaningful for the teacher) + ``recon_weight`` x MSE of the hidden patches' pixels, predicted by a
linear head on the last layer's patch tokens (SimMIM-style, Xie et al., CVPR 2022)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from salguide._lightning import pl

from .masking import mask_patches, patchify
from .targets import token_grid


class MaskedReconstructionModule(pl.LightningModule):
    def __init__(self, vit: nn.Module, lr: float = 1e-3, recon_weight: float = 1.0) -> None:
        super().__init__()
        if not hasattr(vit, "forward_features") or not hasattr(vit, "head"):
            raise TypeError("MaskedReconstructionModule needs a timm-layout ViT (forward_features, head)")
        self.model, self.lr, self.recon_weight = vit, lr, recon_weight
        self.grid = token_grid(vit)
        ps = vit.patch_embed.patch_size
        chans = vit.patch_embed.proj.in_channels
        self.decoder = nn.Linear(vit.embed_dim, chans * ps * ps)

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
        return torch.optim.AdamW(self.parameters(), lr=self.lr, weight_decay=0.05)
