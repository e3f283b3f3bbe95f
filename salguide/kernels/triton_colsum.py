"""Triton column sums c_j = sum_i p_ij (attention each key receives), no gradient.

A key-major second pass: one program per (key block, head, sample) walks all queries and recomputes
p_ij = exp(s_ij - lse_i) from the forward's log-sum-exp (the two-pass scheme of docs/methods/attention_kernel.md)."""

from __future__ import annotations

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
    n_keys,
    per_key,
    prune_by_head_dim,
    unit_last_dim,
)

COLSUM_CONFIGS = [(64, 128, 4, 3, 128), (64, 64, 4, 3, 128), (128, 128, 8, 3, 128), (32, 128, 4, 4, 128)]
_CONFIGS = autotune_configs(COLSUM_CONFIGS, "colsum")


@triton.autotune(configs=_CONFIGS, key=["N", "HEAD_DIM", "INDEXED", "HAS_BIAS"],
                 prune_configs_by={"early_config_prune": prune_by_head_dim})  # fmt: skip
@triton.jit
def _colsum_kernel(
    Q, K, Lse, Colsum, Bias, Index, Count,
    sqb, sqh, sqn, skb, skh, skn, sbb, sbh, sib,
    H, N, scale_log2,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    INDEXED: tl.constexpr, HAS_BIAS: tl.constexpr, PRECISION: tl.constexpr,
):  # fmt: skip
    pid_n, h, b = tl.program_id(0), tl.program_id(1).to(tl.int64), tl.program_id(2).to(tl.int64)  # no int32 overflow
    n = n_keys(Count, b, N, INDEXED)
    start = pid_n * BLOCK_N
    pos, ok = key_block(Index, b, sib, start, n, N, BLOCK_N, INDEXED)
    k = load_rows(K + b * skb + h * skh, pos, ok, skn, HEAD_DIM, BLOCK_D)
    bias = tl.zeros([BLOCK_N], tl.float32)
    if HAS_BIAS:
        bias = tl.load(Bias + b * sbb + h * sbh + pos, mask=ok, other=0.0) * LOG2E_JIT
    Q += b * sqb + h * sqh
    Lse += (b * H + h) * N
    c = tl.zeros([BLOCK_N], tl.float32)
    for m0 in range(0, tl.where(start < n, N, 0), BLOCK_M):  # blocks past the key list do nothing
        rows = m0 + tl.arange(0, BLOCK_M)
        row_ok = rows < N
        q = load_rows(Q, rows, row_ok, sqn, HEAD_DIM, BLOCK_D)
        lse = tl.load(Lse + rows, mask=row_ok, other=float("inf")) * LOG2E_JIT
        s = tl.dot(k, tl.trans(q), input_precision=PRECISION) * scale_log2 + bias[:, None]
        c += tl.sum(tl.math.exp2(s - lse[None, :]), 1)
    tl.store(Colsum + (b * H + h) * N + pos, c, mask=ok)


def triton_colsum(q: Tensor, k: Tensor, lse: Tensor, keys: KeySet, key_bias: Tensor | None, scale: float,
                  colsum: Tensor) -> Tensor:  # fmt: skip
    """Write the column sums of the listed keys into ``colsum`` (float32 [B, H, N], zero elsewhere,
    own-key terms already there from the forward) and return it."""
    q, k = unit_last_dim(q), unit_last_dim(k)
    B, H, N, D = q.shape
    bias, sbb, sbh = per_key(key_bias, H)
    slots = keys.slots(N)
    grid = lambda meta: (triton.cdiv(slots, meta["BLOCK_N"]), H, B)  # noqa: E731
    _colsum_kernel[grid](
        q, k, lse, colsum, bias, keys.index, keys.count,
        *head_strides(q, k), sbb, sbh, 0 if keys.index is None else keys.index.stride(0),
        H, N, scale * LOG2E,
        HEAD_DIM=D, BLOCK_D=max(16, triton.next_power_of_2(D)), INDEXED=keys.indexed,
        HAS_BIAS=bias is not None, PRECISION=dot_precision(q.dtype),
    )  # fmt: skip
    return colsum
