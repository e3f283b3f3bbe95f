"""Small diffusers UNets built from a config (nothing is downloaded).

``class_unet`` is the class-conditional DDPM of SalUn's generation experiments (Fan et al., ICLR 2024,
§5: a conditional DDPM with classifier-free guidance, Ho & Salimans 2022): ``num_classes + 1`` class
embeddings, the last one the null class used for the unconditional score. ``prompt_unet`` is the Stable
Diffusion UNet shape (``UNet2DConditionModel``, cross-attention on prompt embeddings) at toy size, for
ANT's text-to-image setting (Li et al., "Set You Straight", ACM MM 2025).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

from torch import Tensor, nn

from salguide._checks import as_int

ATTENTION_HEAD_DIM = 8  # diffusers' UNet2DModel default: heads = width // 8


def _widths(block_out_channels: Sequence[int], norm_num_groups: int) -> tuple[int, ...]:
    widths = tuple(as_int(w, "block_out_channels entry", 1) for w in block_out_channels)
    if not widths:
        raise ValueError("block_out_channels must list at least one width")
    groups = as_int(norm_num_groups, "norm_num_groups", 1)
    bad = [w for w in widths if w % groups]
    if bad:
        raise ValueError(f"every width in block_out_channels must be divisible by norm_num_groups={groups}, got {bad}")
    return widths


def class_unet(
    num_classes: int = 10,
    sample_size: int = 16,
    in_channels: int = 1,
    block_out_channels: Sequence[int] = (32, 64),
    layers_per_block: int = 1,
    norm_num_groups: int = 8,
    attention: bool = True,
) -> nn.Module:
    """``UNet2DModel`` with ``num_classes + 1`` class embeddings (index ``num_classes`` = null class)."""
    from diffusers import UNet2DModel

    widths = _widths(block_out_channels, norm_num_groups)
    n = as_int(num_classes, "num_classes", 1)
    size = as_int(sample_size, "sample_size", 4)
    if size % 2 ** (len(widths) - 1):
        raise ValueError(
            f"sample_size={size} must be divisible by {2 ** (len(widths) - 1)}: the UNet halves it "
            f"{len(widths) - 1} time(s) for block_out_channels={list(widths)}"
        )
    if attention and len(widths) > 1 and widths[-1] < ATTENTION_HEAD_DIM:
        raise ValueError(
            f"the attention block's width {widths[-1]} (last of block_out_channels) must be at least the head "
            f"dim {ATTENTION_HEAD_DIM}, or pass attention=False"
        )
    down = ["DownBlock2D"] * len(widths)
    if attention and len(widths) > 1:
        down[-1] = "AttnDownBlock2D"
    up = ["AttnUpBlock2D" if b == "AttnDownBlock2D" else "UpBlock2D" for b in reversed(down)]
    return cast(
        nn.Module,
        UNet2DModel(
            sample_size=size,
            in_channels=as_int(in_channels, "in_channels", 1),
            out_channels=in_channels,
            layers_per_block=as_int(layers_per_block, "layers_per_block", 1),
            block_out_channels=widths,
            down_block_types=tuple(down),
            up_block_types=tuple(up),
            norm_num_groups=norm_num_groups,
            num_class_embeds=n + 1,
        ),
    )


def prompt_unet(
    sample_size: int = 16,
    in_channels: int = 1,
    block_out_channels: Sequence[int] = (32, 64),
    layers_per_block: int = 1,
    norm_num_groups: int = 8,
    cross_attention_dim: int = 32,
    attention_head_dim: int = 8,
) -> nn.Module:
    """``UNet2DConditionModel`` (Stable Diffusion's UNet shape) with cross-attention in every down/up block but the
    outermost: the text-conditioned path, conditioned on ``[B, tokens, cross_attention_dim]`` prompt embeddings."""
    from diffusers import UNet2DConditionModel

    widths = _widths(block_out_channels, norm_num_groups)
    down = (
        ["DownBlock2D"] + ["CrossAttnDownBlock2D"] * (len(widths) - 1) if len(widths) > 1 else ["CrossAttnDownBlock2D"]
    )
    up = ["CrossAttnUpBlock2D" if b.startswith("CrossAttn") else "UpBlock2D" for b in reversed(down)]
    return cast(
        nn.Module,
        UNet2DConditionModel(
            sample_size=as_int(sample_size, "sample_size", 4),
            in_channels=as_int(in_channels, "in_channels", 1),
            out_channels=in_channels,
            layers_per_block=as_int(layers_per_block, "layers_per_block", 1),
            block_out_channels=widths,
            down_block_types=tuple(down),
            up_block_types=tuple(up),
            mid_block_type="UNetMidBlock2DCrossAttn",
            norm_num_groups=norm_num_groups,
            cross_attention_dim=as_int(cross_attention_dim, "cross_attention_dim", 1),
            attention_head_dim=as_int(attention_head_dim, "attention_head_dim", 1),
        ),
    )


class PromptTable(nn.Module):
    """A learned prompt-embedding table: prompt id -> ``[tokens, dim]`` embedding (the last id is the empty prompt).

    Stands in for a text encoder offline; a real pipeline passes its CLIP embeddings to the UNet instead.
    """

    def __init__(self, num_prompts: int, tokens: int = 4, dim: int = 32) -> None:
        super().__init__()
        self.num_prompts = as_int(num_prompts, "num_prompts", 1)
        self.tokens, self.dim = as_int(tokens, "tokens", 1), as_int(dim, "dim", 1)
        self.table = nn.Embedding(self.num_prompts + 1, self.tokens * self.dim)

    def forward(self, ids: Tensor) -> Tensor:
        return self.table(ids).view(ids.shape[0], self.tokens, self.dim)


__all__ = ["class_unet", "prompt_unet", "PromptTable"]
