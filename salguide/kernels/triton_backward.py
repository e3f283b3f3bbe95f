"""Triton backward of attention with mass (FlashAttention-2 backward, Dao 2023, two kernels, no atomics).

With g_i = dL/dm_i and l_i = dL/dlse_i, dL/ds_ij = p_ij (dO_i.v_j + g_i w_j - D_i) where
D_i = dO_i.o_i + g_i m_i - l_i (docs/methods/attention_kernel.md, "Math"): the mass only adds g_i w_j to dP and g_i m_i to D.
p is recomputed from the saved log-sum-exp. ``_dkdv_kernel`` is key-major (dK, dV, d target, d bias
per key slot), ``_dq_kernel`` query-major (dQ); the always_self key's terms are added by
:mod:`.triton_own`."""

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
from .triton_own import own_backward

# (BLOCK_M, BLOCK_N, warps, stages, largest head dim without register spills on sm_90a; measured by
# tests/kernels/test_compile_sm90.py)
DKDV_CONFIGS = [
    (32, 128, 8, 3, 64), (64, 64, 8, 3, 64), (32, 64, 4, 4, 64), (32, 64, 8, 3, 64), (16, 64, 8, 3, 128),
    (32, 128, 4, 3, 32), (64, 128, 8, 3, 32), (64, 64, 4, 3, 32), (16, 128, 4, 3, 32),
]  # fmt: skip
DQ_CONFIGS = [
    (128, 64, 8, 3, 64), (64, 32, 8, 3, 128), (128, 32, 8, 3, 64), (64, 64, 4, 3, 64), (64, 32, 4, 4, 64),
    (64, 16, 4, 3, 128), (128, 32, 4, 3, 32),
]  # fmt: skip
DELTA_CONFIG = (64, 0, 4, 3, 128)  # BLOCK_M of the launch; Triton's default warps and stages
_DKDV_CONFIGS = autotune_configs(DKDV_CONFIGS, "dkdv")
_DQ_CONFIGS = autotune_configs(DQ_CONFIGS, "dq")
_KEY = ["N", "HEAD_DIM", "INDEXED", "HAS_BIAS", "HAS_TARGET"]


@triton.jit
def _delta_kernel(
    Out, DOut, Mass, DMass, DLse, Delta, sob, soh, son, sdb, sdh, sdn, H, N,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr, HAS_TARGET: tl.constexpr,
):  # fmt: skip
    """D_i = dO_i.o_i + g_i m_i - dlse_i."""
    pid_m, h, b = tl.program_id(0), tl.program_id(1).to(tl.int64), tl.program_id(2).to(tl.int64)  # no int32 overflow
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    ok = rows < N
    o = load_rows(Out + b * sob + h * soh, rows, ok, son, HEAD_DIM, BLOCK_D).to(tl.float32)
    do = load_rows(DOut + b * sdb + h * sdh, rows, ok, sdn, HEAD_DIM, BLOCK_D).to(tl.float32)
    stats = (b * H + h) * N + rows
    delta = tl.sum(o * do, 1) - tl.load(DLse + stats, mask=ok, other=0.0)
    if HAS_TARGET:
        delta += tl.load(DMass + stats, mask=ok, other=0.0) * tl.load(Mass + stats, mask=ok, other=0.0)
    tl.store(Delta + stats, delta, mask=ok)


@triton.jit
def _query_block_step(
    dk, dv, db, dw, k, v, bias, w, Q, DO, Lse, Delta, G, stats, m0, N, sqn, sdn, scale_log2,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr, HAS_TARGET: tl.constexpr,
    NEED_DBIAS: tl.constexpr, NEED_DW: tl.constexpr, EDGE: tl.constexpr, PRECISION: tl.constexpr,
):  # fmt: skip
    """One query block of the key-major backward; only the EDGE block (the last, partial one) masks rows.
    d target is an exact float32 sum of p * g over the block's queries."""
    rows = m0 + tl.arange(0, BLOCK_M)
    row_ok = rows < N
    q = load_tile(Q, rows, row_ok, sqn, HEAD_DIM, BLOCK_D, EDGE)
    do = load_tile(DO, rows, row_ok, sdn, HEAD_DIM, BLOCK_D, EDGE)
    if EDGE:
        lse = tl.load(Lse + stats + rows, mask=row_ok, other=float("inf")) * LOG2E_JIT
        delta = tl.load(Delta + stats + rows, mask=row_ok, other=0.0)
    else:
        lse = tl.load(Lse + stats + rows) * LOG2E_JIT
        delta = tl.load(Delta + stats + rows)
    s = tl.dot(k, tl.trans(q), input_precision=PRECISION) * scale_log2 + bias[:, None]
    p = tl.math.exp2(s - lse[None, :])  # [keys, queries]; empty and padded rows have p = 0
    p_lo = p.to(do.dtype)
    dv = tl.dot(p_lo, do, dv, input_precision=PRECISION)
    dp = tl.dot(v, tl.trans(do), input_precision=PRECISION)
    if HAS_TARGET:
        if EDGE:
            g = tl.load(G + stats + rows, mask=row_ok, other=0.0)
        else:
            g = tl.load(G + stats + rows)
        dp += w[:, None] * g[None, :]
        if NEED_DW:
            dw += tl.sum(p * g[None, :], 1)
    ds = p * (dp - delta[None, :])
    dk = tl.dot(ds.to(q.dtype), q, dk, input_precision=PRECISION)
    if NEED_DBIAS:
        db += tl.sum(ds, 1)
    return dk, dv, db, dw


@triton.autotune(configs=_DKDV_CONFIGS, key=_KEY, prune_configs_by={"early_config_prune": prune_by_head_dim})
@triton.jit
def _dkdv_kernel(
    Q, K, V, DO, DK, DV, Lse, Delta, G, Bias, W, DBias, DW, Index, Count,
    sqb, sqh, sqn, skb, skh, skn, svb, svh, svn, sdb, sdh, sdn, sdkb, sdkh, sdkn, sdvb, sdvh, sdvn,
    sbb, sbh, swb, swh, sib,
    H, N, scale, scale_log2,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    INDEXED: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_TARGET: tl.constexpr,
    NEED_DBIAS: tl.constexpr, NEED_DW: tl.constexpr, PRECISION: tl.constexpr,
):  # fmt: skip
    pid_n, h, b = tl.program_id(0), tl.program_id(1).to(tl.int64), tl.program_id(2).to(tl.int64)  # no int32 overflow
    n = n_keys(Count, b, N, INDEXED)
    start = pid_n * BLOCK_N
    pos, ok = key_block(Index, b, sib, start, n, N, BLOCK_N, INDEXED)
    k = load_rows(K + b * skb + h * skh, pos, ok, skn, HEAD_DIM, BLOCK_D)
    v = load_rows(V + b * svb + h * svh, pos, ok, svn, HEAD_DIM, BLOCK_D)
    bias = tl.zeros([BLOCK_N], tl.float32)
    if HAS_BIAS:
        bias = tl.load(Bias + b * sbb + h * sbh + pos, mask=ok, other=0.0) * LOG2E_JIT
    w = tl.zeros([BLOCK_N], tl.float32)
    if HAS_TARGET:
        w = tl.load(W + b * swb + h * swh + pos, mask=ok, other=0.0)
    Q += b * sqb + h * sqh
    DO += b * sdb + h * sdh
    stats = (b * H + h) * N
    dk = tl.zeros([BLOCK_N, BLOCK_D], tl.float32)
    dv = tl.zeros([BLOCK_N, BLOCK_D], tl.float32)
    db = tl.zeros([BLOCK_N], tl.float32)
    dw = tl.zeros([BLOCK_N], tl.float32)
    last = tl.where(start < n, N, 0)  # blocks past the key list do nothing
    full = (last // BLOCK_M) * BLOCK_M
    for m0 in range(0, full, BLOCK_M):
        dk, dv, db, dw = _query_block_step(
            dk, dv, db, dw, k, v, bias, w, Q, DO, Lse, Delta, G, stats, m0, N, sqn, sdn, scale_log2,
            HEAD_DIM, BLOCK_D, BLOCK_M, HAS_TARGET, NEED_DBIAS, NEED_DW, False, PRECISION,
        )  # fmt: skip
    if full < last:
        dk, dv, db, dw = _query_block_step(
            dk, dv, db, dw, k, v, bias, w, Q, DO, Lse, Delta, G, stats, full, N, sqn, sdn, scale_log2,
            HEAD_DIM, BLOCK_D, BLOCK_M, HAS_TARGET, NEED_DBIAS, NEED_DW, True, PRECISION,
        )  # fmt: skip
    store_rows(DK + b * sdkb + h * sdkh, pos, ok, sdkn, (dk * scale).to(DK.dtype.element_ty), HEAD_DIM, BLOCK_D)
    store_rows(DV + b * sdvb + h * sdvh, pos, ok, sdvn, dv.to(DV.dtype.element_ty), HEAD_DIM, BLOCK_D)
    if NEED_DBIAS:
        tl.store(DBias + stats + pos, db, mask=ok)
    if NEED_DW:
        tl.store(DW + stats + pos, dw, mask=ok)


@triton.jit
def _key_block_dq(
    dq, q, do, lse, delta, g, K, V, Bias, W, Index, b, sib, start, n, N, skn, svn, scale_log2,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, INDEXED: tl.constexpr,
    HAS_BIAS: tl.constexpr, HAS_TARGET: tl.constexpr, EDGE: tl.constexpr, PRECISION: tl.constexpr,
):  # fmt: skip
    """One key block of the query-major dQ pass; only the EDGE block and key lists mask slots."""
    pos, ok = key_block(Index, b, sib, start, n, N, BLOCK_N, INDEXED)
    masked = EDGE or INDEXED
    k = load_tile(K, pos, ok, skn, HEAD_DIM, BLOCK_D, masked)
    v = load_tile(V, pos, ok, svn, HEAD_DIM, BLOCK_D, masked)
    s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * scale_log2
    if HAS_BIAS:
        s += tl.load(Bias + pos, mask=ok, other=0.0)[None, :] * LOG2E_JIT
    p = tl.math.exp2(s - lse[:, None])
    if masked:
        p = tl.where(ok[None, :], p, 0.0)
    dp = tl.dot(do, tl.trans(v), input_precision=PRECISION)
    if HAS_TARGET:
        dp += g[:, None] * tl.load(W + pos, mask=ok, other=0.0)[None, :]
    ds = p * (dp - delta[:, None])
    return tl.dot(ds.to(k.dtype), k, dq, input_precision=PRECISION)


@triton.autotune(configs=_DQ_CONFIGS, key=_KEY, prune_configs_by={"early_config_prune": prune_by_head_dim})
@triton.jit
def _dq_kernel(
    Q, K, V, DO, DQ, Lse, Delta, G, Bias, W, Index, Count,
    sqb, sqh, sqn, skb, skh, skn, svb, svh, svn, sdb, sdh, sdn, sdqb, sdqh, sdqn, sbb, sbh, swb, swh, sib,
    H, N, scale, scale_log2,
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
    do = load_rows(DO + b * sdb + h * sdh, rows, row_ok, sdn, HEAD_DIM, BLOCK_D)
    lse = tl.load(Lse + stats, mask=row_ok, other=float("inf")) * LOG2E_JIT
    delta = tl.load(Delta + stats, mask=row_ok, other=0.0)
    g = tl.zeros([BLOCK_M], tl.float32)
    if HAS_TARGET:
        g = tl.load(G + stats, mask=row_ok, other=0.0)
    dq = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)

    n = n_keys(Count, b, N, INDEXED)
    full = n if INDEXED else (n // BLOCK_N) * BLOCK_N  # key lists mask every block; dense ones the edge only
    for start in range(0, full, BLOCK_N):
        dq = _key_block_dq(dq, q, do, lse, delta, g, K, V, Bias, W, Index, b, sib, start, n, N, skn, svn, scale_log2,
                           HEAD_DIM, BLOCK_D, BLOCK_N, INDEXED, HAS_BIAS, HAS_TARGET, False, PRECISION)  # fmt: skip
    if full < n:
        dq = _key_block_dq(dq, q, do, lse, delta, g, K, V, Bias, W, Index, b, sib, full, n, N, skn, svn, scale_log2,
                           HEAD_DIM, BLOCK_D, BLOCK_N, INDEXED, HAS_BIAS, HAS_TARGET, True, PRECISION)  # fmt: skip
    store_rows(DQ + b * sdqb + h * sdqh, rows, row_ok, sdqn, (dq * scale).to(DQ.dtype.element_ty), HEAD_DIM, BLOCK_D)


def triton_backward(
    dout: Tensor, dmass: Tensor | None, dlse: Tensor, q: Tensor, k: Tensor, v: Tensor, out: Tensor,
    mass: Tensor | None, lse: Tensor, keys: KeySet, key_bias: Tensor | None, target: Tensor | None,
    scale: float, need_dbias: bool, need_dtarget: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor | None, Tensor | None]:  # fmt: skip
    """Return (dq, dk, dv, dbias, dtarget); dbias/dtarget are float32 [B, H, N] per-head (None unless
    needed); the caller sums them over heads for [B, N] inputs."""
    q, k, v, out, dout = (unit_last_dim(t) for t in (q, k, v, out, dout))
    B, H, N, D = q.shape
    block_d = max(16, triton.next_power_of_2(D))
    has_target = target is not None
    delta = torch.empty_like(lse)
    dlse = dlse.float().contiguous()
    dmass = dmass.float().contiguous() if has_target and dmass is not None else None
    delta_m, _, delta_warps, delta_stages, _ = DELTA_CONFIG
    _delta_kernel[(triton.cdiv(N, delta_m), H, B)](
        out, dout, mass, dmass, dlse, delta, *head_strides(out, dout), H, N,
        HEAD_DIM=D, BLOCK_D=block_d, BLOCK_M=delta_m, HAS_TARGET=has_target, num_warps=delta_warps,
        num_stages=delta_stages,
    )  # fmt: skip
    # listed keys get stores from _dkdv_kernel, own keys from own_backward; any other key keeps 0
    alloc = torch.zeros if keys.indexed else torch.empty
    dq = torch.empty(q.shape, dtype=q.dtype, device=q.device)
    dk = alloc(q.shape, dtype=q.dtype, device=q.device)
    dv = alloc(q.shape, dtype=q.dtype, device=q.device)
    need_dbias = need_dbias and key_bias is not None
    need_dw = need_dtarget and has_target
    dbias = alloc(B, H, N, dtype=torch.float32, device=q.device) if need_dbias else None
    dw = alloc(B, H, N, dtype=torch.float32, device=q.device) if need_dw else None
    bias, sbb, sbh = per_key(key_bias, H)
    w, swb, swh = per_key(target, H)
    sib = 0 if keys.index is None else keys.index.stride(0)
    common = dict(
        HEAD_DIM=D, BLOCK_D=block_d, INDEXED=keys.indexed, HAS_BIAS=bias is not None, HAS_TARGET=has_target,
        PRECISION=dot_precision(q.dtype),
    )  # fmt: skip
    slots = keys.slots(N)
    _dkdv_kernel[lambda meta: (triton.cdiv(slots, meta["BLOCK_N"]), H, B)](
        q, k, v, dout, dk, dv, lse, delta, dmass, bias, w, dbias, dw, keys.index, keys.count,
        *head_strides(q, k, v, dout, dk, dv), sbb, sbh, swb, swh, sib, H, N, scale, scale * LOG2E,
        NEED_DBIAS=need_dbias, NEED_DW=need_dw, **common,
    )  # fmt: skip
    _dq_kernel[lambda meta: (triton.cdiv(N, meta["BLOCK_M"]), H, B)](
        q, k, v, dout, dq, lse, delta, dmass, bias, w, keys.index, keys.count,
        *head_strides(q, k, v, dout, dq), sbb, sbh, swb, swh, sib, H, N, scale, scale * LOG2E, **common,
    )  # fmt: skip
    if keys.own is not None:
        own_backward(q, k, v, dout, dq, dk, dv, lse, delta, dmass, keys.own, key_bias, target, dbias, dw, scale)
    return dq, dk, dv, dbias, dw
