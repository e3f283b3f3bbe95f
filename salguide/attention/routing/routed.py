"""The one attention computation every routed layer runs (salguide's ViT, timm and Hugging Face adapters).

It calls :func:`salguide.kernels.attention` with the forward's token state (DynamicViT key mask with
always-self, ToMe's log-size key bias) and computes exactly what the active recorder and token policy
asked for at this layer.
"""

from __future__ import annotations

import torch
from torch import Tensor

from salguide.kernels import attention, attention_stats

from ..stats import AttentionStats, attention_with_entropy, layer_cls_attention
from .router import Router


def layer_target(target: Tensor, positions: Tensor | None, B: int, N: int) -> Tensor:
    """The recorder's per-token target [B, N0] at the current tokens (a fused / merged token gets 0)."""
    if target.dim() != 2 or target.shape[0] != B:
        raise ValueError(f"attention target must have shape [B, N] with B = {B}, got {tuple(target.shape)}")
    if positions is None:
        if target.shape[1] != N:
            raise ValueError(
                f"attention target has {target.shape[1]} tokens but the layer has N = {N} (class token + patches); "
                "build it with salguide.attention.token_target"
            )
        return target
    t = target.gather(1, positions.clamp_min(0))
    return torch.where(positions >= 0, t, torch.zeros_like(t))


def routed_attention(router: Router, index: int, q: Tensor, k: Tensor, v: Tensor, scale: float) -> Tensor:
    """Attention output [B, H, N, D] of layer ``index`` for q, k, v [B, H, N, D]."""
    st = router.state
    rec = router.recorder if router.recorder is not None and index in router.recorder.layers else None
    want = rec.want if rec is not None else set()
    B, _, N, _ = q.shape
    bias = None if st.size is None else st.size.log().to(q.dtype)
    mask = st.key_mask
    always_self = mask is not None
    target = None
    if rec is not None and "mass" in want:
        if rec.target is None:
            raise ValueError("AttentionRecorder asked for 'mass' but has no target; call set_target first")
        target = layer_target(rec.target, st.positions, B, N).to(q.dtype)
    need_cls = router.wants_cls(index)
    if router.policy is not None and router.policy.wants_keys(index):
        st.keys = k
    entropy = None
    res = None
    if "entropy" in want:
        res, entropy = attention_with_entropy(
            q,
            k,
            v,
            scale=scale,
            key_mask=mask,
            key_bias=bias,
            always_self=always_self,
            target=target,
            return_colsum="colsum" in want,
            backend=router.backend,
            validate=router.validate,
        )
    elif want & {"mass", "colsum", "lse"}:
        res = attention_stats(
            q,
            k,
            v,
            key_mask=mask,
            key_bias=bias,
            always_self=always_self,
            target=target,
            return_colsum="colsum" in want,
            return_lse="lse" in want,
            scale=scale,
            backend=router.backend,
            validate=router.validate,
        )
    out = (
        res.out
        if res is not None
        else attention(
            q,
            k,
            v,
            key_mask=mask,
            key_bias=bias,
            always_self=always_self,
            scale=scale,
            backend=router.backend,
            validate=router.validate,
        )
    )
    cls = None
    if need_cls:  # a one-query softmax: O(N D), no log-sum-exp needed
        cls = layer_cls_attention(q, k, scale, bias, mask, always_self)  # q, k checked by the kernel call above
        if router.policy is not None and router.policy.wants_cls(index):
            st.cls_attn = cls
    if rec is not None:
        rec.records[index] = AttentionStats(
            mass=None if res is None else res.mass,
            colsum=None if res is None else res.colsum,
            cls=cls if "cls" in want else None,
            lse=res.lse if res is not None and "lse" in want else None,
            entropy=entropy,
            q=q if "qk" in want else None,
            k=k if "qk" in want else None,
            scale=scale,
            key_bias=bias,
            key_mask=mask,
            positions=st.positions,
        )
    return out
