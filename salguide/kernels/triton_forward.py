"""Triton forward: flash attention (online softmax, Dao 2023 "FlashAttention-2") that also carries
the attention mass m_i = sum_j p_ij w_j with the same rescaling as the output, and stores the
log-sum-exp for the backward. One program per (query block, head, sample); scores live in base 2
(log2(e) folded into the scale), accumulation is float32."""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from .triton_common import (
    LOG2E,
    LOG2E_JIT,
    KeySet,
    autotune_configs,
    dot_precision,
    head_strides,
    key_block,
    load_rows,
    load_tile,
    n_keys,
    per_key,
    prune_by_head_dim,
    store_rows,
    unit_last_dim,
)
from .triton_own import own_forward

# (BLOCK_M, BLOCK_N, warps, stages): FlashAttention-2 / FlexAttention-style H100 tiles; configs whose
# accumulators cannot fit in registers at a head dim are pruned before autotuning (see prune_by_head_dim).
# BLOCK_N = 128 tiles are left out: with Triton 3.6 on an H100 they hit an illegal address at N = 197
# (benchmarks/gpu/tile_check.py, one process per config); every config below was checked there.
FORWARD_CONFIGS = [
    (128, 64, 8, 3, 128), (64, 64, 8, 3, 128), (64, 64, 4, 4, 64), (128, 32, 4, 4, 64), (128, 64, 4, 3, 32),
    (128, 32, 8, 3, 128),
]  # fmt: skip
_CONFIGS = autotune_configs(FORWARD_CONFIGS, "forward")


@triton.jit
def _key_block_step(
    acc, m_i, l_i, mass, q, K, V, Bias, W, Index, b, sib, start, n, N, skn, svn, scale_log2,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, INDEXED: tl.constexpr,
    HAS_BIAS: tl.constexpr, HAS_TARGET: tl.constexpr, EDGE: tl.constexpr, PRECISION: tl.constexpr,
):  # fmt: skip
    """One key block of the online softmax. Only the EDGE block (the last, partial one) and key lists
    mask slots; full dense blocks load without masks. Scores stay unscaled until one fused
    multiply-add s * scale_log2 - m; the mass is an exact float32 row sum of p * w (a 16-wide tensor-core
    dot for it miscompiled with Triton 3.6 on an H100: wrong mass, illegal addresses at D = 128)."""
    pos, ok = key_block(Index, b, sib, start, n, N, BLOCK_N, INDEXED)
    masked = EDGE or INDEXED
    k = load_tile(K, pos, ok, skn, HEAD_DIM, BLOCK_D, masked)
    s = tl.dot(q, tl.trans(k), input_precision=PRECISION)
    if HAS_BIAS:
        s = s * scale_log2 + tl.load(Bias + pos, mask=ok, other=0.0)[None, :] * LOG2E_JIT
        if masked:
            s = tl.where(ok[None, :], s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
    else:
        if masked:
            s = tl.where(ok[None, :], s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1) * scale_log2)
    if masked:  # a block of invalid slots only leaves m at -inf
        m_new_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
    else:
        m_new_safe = m_new
    if HAS_BIAS:
        p = tl.math.exp2(s - m_new_safe[:, None])
    else:
        p = tl.math.exp2(s * scale_log2 - m_new_safe[:, None])
    alpha = tl.math.exp2(m_i - m_new_safe)
    l_i = l_i * alpha + tl.sum(p, 1)
    v = load_tile(V, pos, ok, svn, HEAD_DIM, BLOCK_D, masked)
    p_lo = p.to(v.dtype)
    acc = tl.dot(p_lo, v, acc * alpha[:, None], input_precision=PRECISION)
    if HAS_TARGET:
        w = tl.load(W + pos, mask=ok, other=0.0)
        mass = mass * alpha + tl.sum(p * w[None, :], 1)
    return acc, m_new, l_i, mass


@triton.autotune(configs=_CONFIGS, key=["N", "HEAD_DIM", "INDEXED", "HAS_BIAS", "HAS_TARGET"],
                 prune_configs_by={"early_config_prune": prune_by_head_dim})  # fmt: skip
@triton.jit
def _forward_kernel(
    Q, K, V, Out, Lse, Mass, Bias, W, Index, Count,
    sqb, sqh, sqn, skb, skh, skn, svb, svh, svn, sob, soh, son,
    sbb, sbh, swb, swh, sib,
    H, N, scale_log2,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    INDEXED: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_TARGET: tl.constexpr, PRECISION: tl.constexpr,
):  # fmt: skip
    pid_m, h, b = tl.program_id(0), tl.program_id(1).to(tl.int64), tl.program_id(2).to(tl.int64)  # no int32 overflow
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    row_ok = rows < N
    K += b * skb + h * skh
    V += b * svb + h * svh
    if HAS_BIAS:
        Bias += b * sbb + h * sbh
    if HAS_TARGET:
        W += b * swb + h * swh
    stats = (b * H + h) * N + rows
    q = load_rows(Q + b * sqb + h * sqh, rows, row_ok, sqn, HEAD_DIM, BLOCK_D)

    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
    mass = tl.zeros([BLOCK_M], tl.float32)

    n = n_keys(Count, b, N, INDEXED)
    full = n if INDEXED else (n // BLOCK_N) * BLOCK_N  # key lists mask every block; dense ones the edge only
    for start in range(0, full, BLOCK_N):
        acc, m_i, l_i, mass = _key_block_step(
            acc, m_i, l_i, mass, q, K, V, Bias, W, Index, b, sib, start, n, N, skn, svn, scale_log2,
            HEAD_DIM, BLOCK_D, BLOCK_N, INDEXED, HAS_BIAS, HAS_TARGET, False, PRECISION,
        )  # fmt: skip
    if full < n:
        acc, m_i, l_i, mass = _key_block_step(
            acc, m_i, l_i, mass, q, K, V, Bias, W, Index, b, sib, full, n, N, skn, svn, scale_log2,
            HEAD_DIM, BLOCK_D, BLOCK_N, INDEXED, HAS_BIAS, HAS_TARGET, True, PRECISION,
        )  # fmt: skip

    empty = l_i == 0.0  # no allowed key: out 0, mass 0, lse +inf so the backward sees p = 0
    l_safe = tl.where(empty, 1.0, l_i)
    store_rows(Out + b * sob + h * soh, rows, row_ok, son, (acc / l_safe[:, None]).to(Out.dtype.element_ty),
               HEAD_DIM, BLOCK_D)  # fmt: skip
    lse = tl.where(empty, float("inf"), (m_i + tl.math.log2(l_safe)) / LOG2E_JIT)
    tl.store(Lse + stats, lse, mask=row_ok)
    if HAS_TARGET:
        tl.store(Mass + stats, mass / l_safe, mask=row_ok)


def triton_forward(
    q: Tensor, k: Tensor, v: Tensor, keys: KeySet, key_bias: Tensor | None, target: Tensor | None,
    scale: float, want_colsum: bool,
) -> tuple[Tensor, Tensor | None, Tensor, Tensor | None]:  # fmt: skip
    """Return (out, mass or None, lse, colsum or None); colsum only holds the own-key terms here and
    is completed by :func:`triton_colsum`."""
    q, k, v = unit_last_dim(q), unit_last_dim(k), unit_last_dim(v)
    B, H, N, D = q.shape
    out = torch.empty_like(q, memory_format=torch.contiguous_format)
    lse = torch.empty(B, H, N, dtype=torch.float32, device=q.device)
    mass = torch.empty_like(lse) if target is not None else None
    colsum = torch.zeros_like(lse) if want_colsum else None
    bias, sbb, sbh = per_key(key_bias, H)
    w, swb, swh = per_key(target, H)
    grid = lambda meta: (triton.cdiv(N, meta["BLOCK_M"]), H, B)  # noqa: E731
    _forward_kernel[grid](
        q, k, v, out, lse, mass, bias, w, keys.index, keys.count,
        *head_strides(q, k, v, out), sbb, sbh, swb, swh, 0 if keys.index is None else keys.index.stride(0),
        H, N, scale * LOG2E,
        HEAD_DIM=D, BLOCK_D=max(16, triton.next_power_of_2(D)), INDEXED=keys.indexed,
        HAS_BIAS=bias is not None, HAS_TARGET=w is not None, PRECISION=dot_precision(q.dtype),
    )  # fmt: skip
    if keys.own is not None:
        own_forward(q, k, v, out, lse, mass, colsum, keys.own, key_bias, target, scale)
    return out, mass, lse, colsum
