"""ToMe bipartite soft matching (Bolya et al., "Token Merging: Your ViT but Faster", ICLR 2023).

Tokens alternate into sets A (even positions, with the class token, which is never merged) and B (odd);
each A token's most similar B token (cosine similarity of the keys' head mean) is its edge; the ``r``
A tokens with the strongest edges are merged into their B partners by a size-weighted mean, sizes add.
Later layers use proportional attention: key bias = log(size)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def bipartite_merge(
    x: Tensor, metric: Tensor, r: int, size: Tensor | None = None, positions: Tensor | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """x [B, N, C] (token 0 = CLS), metric [B, N, D] (e.g. keys averaged over heads), r merges.

    Returns (tokens [B, N - r, C], size [B, N - r], positions [B, N - r]): unmerged A tokens first in their
    original order (so the class token stays first), then the B tokens; a merged token keeps its B
    token's position."""
    B, N, C = x.shape
    if metric.dim() != 3 or metric.shape[:2] != (B, N):
        raise ValueError(f"metric must have shape [B={B}, N={N}, D] like the tokens, got {tuple(metric.shape)}")
    na = (N + 1) // 2
    if not 0 <= r <= na - 1:
        raise ValueError(f"ToMe can merge between 0 and {na - 1} tokens of {N}, got r = {r}")
    size = torch.ones(B, N, dtype=x.dtype, device=x.device) if size is None else size
    pos = torch.arange(N, device=x.device).expand(B, N) if positions is None else positions
    if r == 0:
        return x, size, pos
    m = F.normalize(metric.float(), dim=-1)
    scores = m[:, ::2] @ m[:, 1::2].transpose(1, 2)  # [B, Na, Nb]
    scores[:, 0] = -float("inf")  # the class token is never merged
    best, partner = scores.max(-1)
    order = best.argsort(-1, descending=True)
    src, unm = order[:, :r], order[:, r:].sort(-1).values
    dst = partner.gather(1, src)
    xa, xb = x[:, ::2] * size[:, ::2, None], x[:, 1::2] * size[:, 1::2, None]
    sa, sb = size[:, ::2], size[:, 1::2]
    xb = xb.scatter_add(1, dst[..., None].expand(B, r, C), xa.gather(1, src[..., None].expand(B, r, C)))
    sb = sb.scatter_add(1, dst, sa.gather(1, src))
    nu = unm.shape[1]
    x_new = torch.cat([xa.gather(1, unm[..., None].expand(B, nu, C)), xb], 1)
    s_new = torch.cat([sa.gather(1, unm), sb], 1)
    p_new = torch.cat([pos[:, ::2].gather(1, unm), pos[:, 1::2]], 1)
    return x_new / s_new[..., None], s_new, p_new
