"""Backward of the attention op in eager torch: the formula of docs/methods/attention_kernel.md on the dense
[B, H, N, N] probabilities, or on the [B, H, N, Nk] probabilities of a key list (gathered keys,
scattered gradients). It backs the "reference" backend of the custom op (whose backward cannot
re-enter autograd) and is tested against autograd of :func:`attention_reference`."""

from __future__ import annotations

import torch
from torch import Tensor

from .reference import dense_probs, indexed_probs, per_head, take_keys


def reference_backward(
    dout: Tensor, dmass: Tensor, dlse: Tensor, q: Tensor, k: Tensor, v: Tensor, out: Tensor, mass: Tensor,
    key_mask: Tensor | None, key_index: Tensor | None, key_bias: Tensor | None, target: Tensor | None,
    always_self: bool, scale: float,
) -> tuple[Tensor, Tensor, Tensor, Tensor | None, Tensor | None]:  # fmt: skip
    """Return (dq, dk, dv, dbias, dtarget), the last two per head [B, H, N] (None without bias/target).

    dS_ij = p_ij (dO_i.v_j + g_i w_j - D_i),  D_i = dO_i.o_i + g_i m_i - dlse_i."""
    ct = torch.float64 if q.dtype == torch.float64 else torch.float32
    q, k, v, dout, out = (t.to(ct) for t in (q, k, v, dout, out))
    bias = None if key_bias is None else per_head(key_bias.to(ct))
    w = None if target is None else per_head(target.to(ct))
    delta = (dout * out).sum(-1) - dlse.to(ct)  # D_i
    g = None
    if w is not None:
        g = dmass.to(ct)
        delta = delta + g * mass.to(ct)
    if key_index is not None:
        return _indexed_backward(dout, g, delta, q, k, v, key_index.long(), bias, w, always_self, scale)
    p, _ = dense_probs(q, k, key_mask, bias, always_self, scale)
    dp = dout @ v.transpose(-1, -2)
    if g is not None and w is not None:
        dp = dp + g[..., None] * w[:, :, None, :]
    ds = p * (dp - delta[..., None])
    dq = scale * ds @ k
    dk = scale * ds.transpose(-1, -2) @ q
    dv = p.transpose(-1, -2) @ dout
    dbias = None if key_bias is None else ds.sum(-2)
    dtarget = None if g is None else (p * g[..., None]).sum(-2)
    return dq, dk, dv, dbias, dtarget


def _indexed_backward(
    dout: Tensor, g: Tensor | None, delta: Tensor, q: Tensor, k: Tensor, v: Tensor, idx: Tensor,
    bias: Tensor | None, w: Tensor | None, always_self: bool, scale: float,
) -> tuple[Tensor, Tensor, Tensor, Tensor | None, Tensor | None]:  # fmt: skip
    """The same formula over the listed keys (and the own key with always_self); key gradients are
    scattered back to their positions."""
    B, H, N, D = q.shape
    nk = idx.shape[1]
    p, _, k_sub = indexed_probs(q, k, idx, bias, always_self, scale)
    rows = idx[:, None, :, None].expand(B, H, nk, D)
    p_keys = p[..., :nk]
    dp = dout @ v.gather(2, rows).transpose(-1, -2)
    if g is not None and w is not None:
        dp = dp + g[..., None] * take_keys(w, idx)[:, :, None, :]
    ds = p_keys * (dp - delta[..., None])  # [B, H, N, Nk]
    dq = scale * ds @ k_sub
    dk = torch.zeros_like(k).scatter_add(2, rows, scale * ds.transpose(-1, -2) @ q)
    dv = torch.zeros_like(v).scatter_add(2, rows, p_keys.transpose(-1, -2) @ dout)
    cols = idx[:, None, :].expand(B, H, nk)
    dbias = (
        None if bias is None else torch.zeros(B, H, N, dtype=q.dtype, device=q.device).scatter_add(2, cols, ds.sum(-2))
    )
    dtarget = None
    if g is not None:
        dtarget = torch.zeros(B, H, N, dtype=q.dtype, device=q.device).scatter_add(
            2, cols, (p_keys * g[..., None]).sum(-2)
        )
    if always_self:  # the own-key column: query i and key i only
        p_own = p[..., nk]
        dp_own = (dout * v).sum(-1) + (0 if g is None or w is None else g * w)
        ds_own = p_own * (dp_own - delta)
        dq = dq + scale * ds_own[..., None] * k
        dk = dk + scale * ds_own[..., None] * q
        dv = dv + p_own[..., None] * dout
        dbias = None if dbias is None else dbias + ds_own
        dtarget = None if dtarget is None or g is None else dtarget + p_own * g
    return dq, dk, dv, dbias, dtarget
