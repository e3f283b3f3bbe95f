"""Backward of the attention op in eager torch: the formula of DESIGN.md written out on the dense
[B, H, N, N] probabilities. It backs the "reference" backend of the custom op (whose backward cannot
re-enter autograd) and is tested against autograd of :func:`attention_reference`."""

from __future__ import annotations

import torch
from torch import Tensor

from .reference import dense_probs, per_head


def reference_backward(
    dout: Tensor, dmass: Tensor, dlse: Tensor, q: Tensor, k: Tensor, v: Tensor, out: Tensor, mass: Tensor,
    key_mask: Tensor | None, key_index: Tensor | None, key_bias: Tensor | None, target: Tensor | None,
    always_self: bool, scale: float,
) -> tuple[Tensor, Tensor, Tensor, Tensor | None, Tensor | None]:  # fmt: skip
    """Return (dq, dk, dv, dbias, dtarget), the last two per head [B, H, N] (None without bias/target).

    dS_ij = p_ij (dO_i.v_j + g_i w_j - D_i),  D_i = dO_i.o_i + g_i m_i - dlse_i."""
    B, H, N, D = q.shape
    ct = torch.float64 if q.dtype == torch.float64 else torch.float32
    q, k, v, dout, out = (t.to(ct) for t in (q, k, v, dout, out))
    if key_index is not None:
        key_mask = torch.zeros(B, N, dtype=torch.bool, device=q.device).scatter(1, key_index.long(), True)
    bias = None if key_bias is None else per_head(key_bias.to(ct))
    p, _ = dense_probs(q, k, key_mask, bias, always_self, scale)
    dp = dout @ v.transpose(-1, -2)
    delta = (dout * out).sum(-1) - dlse.to(ct)
    g = None
    if target is not None:
        g = dmass.to(ct)
        dp = dp + g[..., None] * per_head(target.to(ct))[:, :, None, :]
        delta = delta + g * mass.to(ct)
    ds = p * (dp - delta[..., None])
    dq = scale * ds @ k
    dk = scale * ds.transpose(-1, -2) @ q
    dv = p.transpose(-1, -2) @ dout
    dbias = None if key_bias is None else ds.sum(-2)
    dtarget = None if g is None else (p * g[..., None]).sum(-2)
    return dq, dk, dv, dbias, dtarget
