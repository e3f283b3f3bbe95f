"""A Vision Transformer (Dosovitskiy et al., ICLR 2021) with timm's attribute layout whose attention
runs through :func:`salguide.kernels.attention` (so attention statistics, losses and token pruning
work on it out of the box).

Layout: ``patch_embed.proj``, ``cls_token``, ``pos_embed``, ``blocks[i].attn.{qkv, proj, num_heads}``,
``blocks[i].{norm1, norm2, mlp.fc1, mlp.fc2}``, ``norm``, ``head``; class-token pooling.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from salguide._checks import as_int
from salguide.attention.routing import Router, attach_router
from salguide.attention.routing.timm_layout import attention_forward, block_forward


class PatchEmbed(nn.Module):
    def __init__(self, img_size: int, patch_size: int, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        img_size, patch_size = as_int(img_size, "img_size", 1), as_int(patch_size, "patch_size", 1)
        in_chans, embed_dim = as_int(in_chans, "in_chans", 1), as_int(embed_dim, "embed_dim", 1)
        if img_size % patch_size:
            raise ValueError(f"img_size ({img_size}) must be a multiple of patch_size ({patch_size})")
        self.img_size, self.patch_size = img_size, patch_size
        self.grid_size = (img_size // patch_size, img_size // patch_size)
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.in_chans = in_chans
        self.proj = nn.Conv2d(in_chans, embed_dim, patch_size, stride=patch_size)

    def forward(self, x: Tensor) -> Tensor:
        expected = (self.in_chans, self.img_size, self.img_size)
        if x.dim() != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(f"expected images [B, {', '.join(map(str, expected))}], got {tuple(x.shape)}")
        if x.shape[0] == 0:
            raise ValueError("the batch is empty: a ViT needs at least one image")
        return self.proj(x).flatten(2).transpose(1, 2)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True) -> None:
        super().__init__()
        num_heads = as_int(num_heads, "num_heads", 1)
        if dim % num_heads:
            raise ValueError(f"embed_dim ({dim}) must be divisible by num_heads ({num_heads})")
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.scale = self.head_dim**-0.5
        self.qkv, self.proj = nn.Linear(dim, 3 * dim, bias=qkv_bias), nn.Linear(dim, dim)

    forward = attention_forward


class Block(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True) -> None:
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim, eps=1e-6), Attention(dim, num_heads, qkv_bias)
        self.norm2, self.mlp = nn.LayerNorm(dim, eps=1e-6), Mlp(dim, int(dim * mlp_ratio))

    forward = block_forward


class VisionTransformer(nn.Module):
    """ViT classifier (class token, learned position embedding, pre-norm blocks).

    Args: img_size, patch_size, in_chans, num_classes, embed_dim, depth, num_heads, mlp_ratio, qkv_bias;
    ``backend`` is the kernel backend (None: ``SALGUIDE_ATTENTION_BACKEND`` or auto).
    """

    def __init__(
        self,
        img_size: int = 32,
        patch_size: int = 4,
        in_chans: int = 1,
        num_classes: int = 10,
        embed_dim: int = 64,
        depth: int = 4,
        num_heads: int = 4,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        backend: str | None = None,
    ) -> None:
        super().__init__()
        if depth < 1 or num_classes < 1:
            raise ValueError(f"depth and num_classes must be >= 1, got {depth}, {num_classes}")
        self.num_classes, self.embed_dim, self.global_pool = num_classes, embed_dim, "token"
        self.patch_embed = PatchEmbed(img_size, patch_size, in_chans, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.randn(1, self.patch_embed.num_patches + 1, embed_dim) * 0.02)
        self.blocks = nn.Sequential(*[Block(embed_dim, num_heads, mlp_ratio, qkv_bias) for _ in range(depth)])
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.head = nn.Linear(embed_dim, num_classes)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        self.apply(_init)
        attach_router(self, Router(depth, backend))

    def forward_features(self, x: Tensor) -> Tensor:
        x = self.patch_embed(x)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], 1) + self.pos_embed
        return self.norm(self.blocks(x))

    def forward_head(self, x: Tensor) -> Tensor:
        return self.head(x[:, 0])

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))


def _init(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)


def vit_digits(**kwargs: Any) -> VisionTransformer:
    """The digits ViT: 32 x 32 grey images, patch 4 (64 tokens + CLS), width 64, depth 4, 4 heads."""
    return VisionTransformer(**{"img_size": 32, "patch_size": 4, "in_chans": 1, **kwargs})


def vit_small_patch16(**kwargs: Any) -> VisionTransformer:
    """ViT-S/16 sizes (224 px, width 384, depth 12, 6 heads; 196 tokens + CLS)."""
    cfg = dict(img_size=224, patch_size=16, in_chans=3, num_classes=1000, embed_dim=384, depth=12, num_heads=6)
    return VisionTransformer(**{**cfg, **kwargs})
