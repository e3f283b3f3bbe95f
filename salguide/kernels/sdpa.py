"""The attention op on torch's SDPA kernels, every extra folded into their inputs (exact reformulations;
the vendor backward then gives every gradient):

- mass m_i = sum_j p_ij w_j: w is one more value column, v' = [v, w]; out = o'[:D], mass = o'[D];
- key bias b_j: one more query/key column, q' = [q, 1/scale], k' = [k, b], so scale q'.k' = s_ij and
  dL/db_j comes out of the vendor's dk (no float mask with a gradient, which SDPA would run densely);
- key masks: a bool [B, 1, 1, N] mask; masks with the same number of keys in every sample (DynamicViT)
  and key_index lists gather their keys first, so skipped keys cost nothing;
- always_self: query i's own key joins afterwards by a log-sum-exp merge, for the queries whose key is
  not allowed, out = (e^{lse_a} out_a + e^{s_ii} v_i) / (e^{lse_a} + e^{s_ii}) (the same for the mass);
- lse: from the CPU kernel (differentiable, :mod:`.vendor`), elsewhere from a query-chunked pass;
  colsum: a query-chunked pass (:mod:`.chunked`). No N x N tensor anywhere.

q, k and v' are zero-padded to one head width (SDPA kernels need equal widths; CUDA ones a multiple of 8).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .chunked import chunked_colsum, chunked_lse
from .reference import equal_count_index, per_head, take_keys
from .vendor import vendor_sdpa


def sdpa_attention(
    q: Tensor, k: Tensor, v: Tensor, key_mask: Tensor | None, key_index: Tensor | None, key_bias: Tensor | None,
    target: Tensor | None, always_self: bool, scale: float, want_colsum: bool, want_lse: bool,
) -> tuple[Tensor, Tensor | None, Tensor | None, Tensor | None]:  # fmt: skip
    """(out, mass or None, lse or None, colsum or None), as :func:`salguide.kernels.attention_stats`."""
    B, H, N, D = q.shape
    ct = torch.float64 if q.dtype == torch.float64 else torch.float32
    full_mask, full_index = key_mask, key_index  # the caller's key set, for the chunked passes
    if key_mask is not None and not torch.compiler.is_compiling():  # (a host sync: not while tracing)
        if (index := equal_count_index(key_mask)) is not None:
            key_mask, key_index = None, index
    bias = None if key_bias is None else per_head(key_bias).to(q.dtype)  # [B, 1|H, N]
    w = None if target is None else per_head(target).to(q.dtype)
    own = None  # queries whose own key joins by the merge (always_self)
    empty = None  # samples with no allowed key at all (mask without always_self)
    mask = None
    kk, vv, bb, ww = k, v, bias, w
    if key_index is not None:
        idx = key_index.long()
        rows = idx[:, None, :, None].expand(B, H, idx.shape[1], D)
        kk, vv = k.gather(2, rows), v.gather(2, rows)
        bb = None if bias is None else take_keys(bias, idx)
        ww = None if w is None else take_keys(w, idx)
        if always_self:
            own = torch.ones(B, N, dtype=torch.bool, device=q.device).scatter(1, idx, False)
    elif key_mask is not None:
        empty = ~key_mask.any(1)
        mask = (key_mask | empty[:, None])[:, None, None, :]  # an empty sample runs unmasked, zeroed below
        if always_self:
            own = ~key_mask
    o, lse = vendor_sdpa(*_augment(q, kk, vv, bb, ww, scale), mask, scale)
    out, mass = o[..., :D], None if w is None else o[..., D].to(ct)
    if (want_lse or own is not None) and lse is None:
        lse = chunked_lse(q, k, key_mask, key_index, key_bias, False, scale)
    lse = None if lse is None else lse.to(ct)
    if empty is not None:
        gone = empty[:, None, None]
        out = torch.where(gone[..., None], torch.zeros_like(out), out)
        mass = None if mass is None else torch.where(gone, torch.zeros_like(mass), mass)
        lse = None if lse is None else torch.where(gone, torch.full_like(lse, float("inf")), lse)
    if own is not None and lse is not None:
        out, mass, lse = _merge_own(q, k, v, bias, w, own, out, mass, lse, scale)
    colsum = None
    if want_colsum:
        colsum = chunked_colsum(q, k, full_mask, full_index, key_bias, always_self, scale)
    return out, mass, lse if want_lse else None, colsum


def _augment(
    q: Tensor, k: Tensor, v: Tensor, bias: Tensor | None, w: Tensor | None, scale: float
) -> tuple[Tensor, Tensor, Tensor]:
    """q' = [q, 1/scale], k' = [k, b], v' = [v, w], zero-padded to one width (a multiple of 8 on CUDA)."""
    qs, ks, vs = [q], [k], [v]
    if bias is not None:
        qs.append(torch.full_like(q[..., :1], 1.0 / scale))
        ks.append(bias.expand(k.shape[0], k.shape[1], k.shape[2])[..., None])
    if w is not None:
        vs.append(w.expand(v.shape[0], v.shape[1], v.shape[2])[..., None])
    width = max(sum(t.shape[-1] for t in ts) for ts in (qs, vs))
    if q.device.type == "cuda":
        width = -(-width // 8) * 8
    return _cat_pad(qs, width), _cat_pad(ks, width), _cat_pad(vs, width)


def _cat_pad(parts: list[Tensor], width: int) -> Tensor:
    x = parts[0] if len(parts) == 1 else torch.cat(parts, -1)
    return x if x.shape[-1] == width else F.pad(x, (0, width - x.shape[-1]))


def _merge_own(
    q: Tensor, k: Tensor, v: Tensor, bias: Tensor | None, w: Tensor | None, own: Tensor, out: Tensor,
    mass: Tensor | None, lse: Tensor, scale: float,
) -> tuple[Tensor, Tensor | None, Tensor]:  # fmt: skip
    """Add each query's own key (where ``own`` [B, N]) to its softmax by a log-sum-exp merge."""
    s_own = scale * (q.to(lse.dtype) * k.to(lse.dtype)).sum(-1)
    if bias is not None:
        s_own = s_own + bias.to(lse.dtype)
    s_own = torch.where(own[:, None, :], s_own, torch.full_like(s_own, float("-inf")))
    lse_a = torch.where(torch.isinf(lse), torch.full_like(lse, float("-inf")), lse)  # +inf marks "no key"
    top = torch.maximum(lse_a, s_own).detach()  # finite: a row lacks either its own key or any listed key
    a, c = torch.exp(lse_a - top), torch.exp(s_own - top)  # (logaddexp's double backward is NaN at -inf)
    total = top + torch.log(a + c)
    a, c = a / (a + c), c / (a + c)
    out = (a[..., None] * out.to(lse.dtype) + c[..., None] * v.to(lse.dtype)).to(out.dtype)
    if mass is not None and w is not None:
        mass = a * mass + c * w.to(mass.dtype).expand_as(mass)
    return out, mass, total
