"""The ``always_self`` key (query i also attends key i when i is not in its key list) as two small
row-wise Triton kernels, so the main forward and dQ loops carry no own-key state (which made them
spill registers on sm_90a).

Forward: the main kernel returns the softmax over the listed keys (out, mass, lse, +inf lse for an
empty list); ``_own_forward_kernel`` merges key i in, exactly as one more online-softmax step:
lse' = logaddexp(lse, s_ii), out' = e^(lse - lse') out + e^(s_ii - lse') v_i (mass likewise), and
writes the own key's column sum p_ii. Backward: with the merged lse and D_i, the own key's terms only
touch row i (docs/methods/attention_kernel.md, "Math"): ds_ii = p_ii (dO_i.v_i + g_i w_i - D_i),
dq_i += scale ds_ii k_i, dk_i = scale ds_ii q_i, dv_i = p_ii dO_i, dbias_i = ds_ii, dw_i = p_ii g_i."""

from __future__ import annotations

import triton
import triton.language as tl
from torch import Tensor

from .triton_common import LOG2E_JIT, head_strides, load_rows, per_key, store_rows

BLOCK_M_OWN = 32
OWN_WARPS = 8


@triton.jit
def _own_score(Q, K, Bias, Own, b, h, rows, N, sqb, sqh, sqn, skb, skh, skn, sbb, sbh, scale,
               HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, HAS_BIAS: tl.constexpr):  # fmt: skip
    """Which rows attend their own key, q_i and k_i (float32) and the natural-log score s_ii."""
    own = (rows < N) & (tl.load(Own + b * N + rows, mask=rows < N, other=0) != 0)
    q = load_rows(Q + b * sqb + h * sqh, rows, own, sqn, HEAD_DIM, BLOCK_D).to(tl.float32)
    k = load_rows(K + b * skb + h * skh, rows, own, skn, HEAD_DIM, BLOCK_D).to(tl.float32)
    s = tl.sum(q * k, 1) * scale
    if HAS_BIAS:
        s += tl.load(Bias + b * sbb + h * sbh + rows, mask=own, other=0.0)
    return own, q, k, s


@triton.jit
def _own_forward_kernel(
    Q, K, V, Out, Lse, Mass, Colsum, Bias, W, Own,
    sqb, sqh, sqn, skb, skh, skn, svb, svh, svn, sob, soh, son, sbb, sbh, swb, swh, H, N, scale,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr, HAS_BIAS: tl.constexpr,
    HAS_TARGET: tl.constexpr, HAS_COLSUM: tl.constexpr,
):  # fmt: skip
    pid_m, h, b = tl.program_id(0), tl.program_id(1).to(tl.int64), tl.program_id(2).to(tl.int64)
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    own, _, _, s = _own_score(Q, K, Bias, Own, b, h, rows, N, sqb, sqh, sqn, skb, skh, skn, sbb, sbh, scale,
                              HEAD_DIM, BLOCK_D, HAS_BIAS)  # fmt: skip
    stats = (b * H + h) * N + rows
    lse = tl.load(Lse + stats, mask=own, other=0.0)
    empty = lse == float("inf")  # no listed key: the own key is the whole softmax
    top = tl.where(empty, s, tl.maximum(lse, s))
    new = top + tl.math.log2(tl.where(empty, 0.0, tl.math.exp2((lse - top) * LOG2E_JIT)) +
                             tl.math.exp2((s - top) * LOG2E_JIT)) / LOG2E_JIT  # fmt: skip
    keep = tl.where(empty, 0.0, tl.math.exp2((lse - new) * LOG2E_JIT))
    p = tl.math.exp2((s - new) * LOG2E_JIT)
    out = load_rows(Out + b * sob + h * soh, rows, own, son, HEAD_DIM, BLOCK_D).to(tl.float32)
    v = load_rows(V + b * svb + h * svh, rows, own, svn, HEAD_DIM, BLOCK_D).to(tl.float32)
    out = keep[:, None] * out + p[:, None] * v
    store_rows(Out + b * sob + h * soh, rows, own, son, out.to(Out.dtype.element_ty), HEAD_DIM, BLOCK_D)
    tl.store(Lse + stats, new, mask=own)
    if HAS_TARGET:
        w = tl.load(W + b * swb + h * swh + rows, mask=own, other=0.0)
        tl.store(Mass + stats, keep * tl.load(Mass + stats, mask=own, other=0.0) + p * w, mask=own)
    if HAS_COLSUM:  # the own key is attended by its own query only
        tl.store(Colsum + stats, p, mask=own)


@triton.jit
def _own_backward_kernel(
    Q, K, V, DO, DQ, DK, DV, Lse, Delta, G, Bias, W, DBias, DW, Own,
    sqb, sqh, sqn, skb, skh, skn, svb, svh, svn, sdb, sdh, sdn, sdqb, sdqh, sdqn,
    sdkb, sdkh, sdkn, sdvb, sdvh, sdvn, sbb, sbh, swb, swh, H, N, scale,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr, HAS_BIAS: tl.constexpr,
    HAS_TARGET: tl.constexpr, NEED_DBIAS: tl.constexpr, NEED_DW: tl.constexpr,
):  # fmt: skip
    pid_m, h, b = tl.program_id(0), tl.program_id(1).to(tl.int64), tl.program_id(2).to(tl.int64)
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    own, q, k, s = _own_score(Q, K, Bias, Own, b, h, rows, N, sqb, sqh, sqn, skb, skh, skn, sbb, sbh, scale,
                              HEAD_DIM, BLOCK_D, HAS_BIAS)  # fmt: skip
    stats = (b * H + h) * N + rows
    p = tl.where(own, tl.math.exp2((s - tl.load(Lse + stats, mask=own, other=0.0)) * LOG2E_JIT), 0.0)
    do = load_rows(DO + b * sdb + h * sdh, rows, own, sdn, HEAD_DIM, BLOCK_D).to(tl.float32)
    v = load_rows(V + b * svb + h * svh, rows, own, svn, HEAD_DIM, BLOCK_D).to(tl.float32)
    dp = tl.sum(do * v, 1)
    if HAS_TARGET:
        g = tl.load(G + stats, mask=own, other=0.0)
        dp += g * tl.load(W + b * swb + h * swh + rows, mask=own, other=0.0)
        if NEED_DW:
            tl.store(DW + stats, p * g, mask=own)
    ds = p * (dp - tl.load(Delta + stats, mask=own, other=0.0))
    dq = load_rows(DQ + b * sdqb + h * sdqh, rows, own, sdqn, HEAD_DIM, BLOCK_D).to(tl.float32)
    store_rows(DQ + b * sdqb + h * sdqh, rows, own, sdqn, (dq + ds[:, None] * k * scale).to(DQ.dtype.element_ty),
               HEAD_DIM, BLOCK_D)  # fmt: skip
    store_rows(DK + b * sdkb + h * sdkh, rows, own, sdkn, (ds[:, None] * q * scale).to(DK.dtype.element_ty),
               HEAD_DIM, BLOCK_D)  # fmt: skip
    store_rows(DV + b * sdvb + h * sdvh, rows, own, sdvn, (p[:, None] * do).to(DV.dtype.element_ty), HEAD_DIM, BLOCK_D)
    if NEED_DBIAS:
        tl.store(DBias + stats, ds, mask=own)


def _grid(q: Tensor) -> tuple[int, int, int]:
    B, H, N, _ = q.shape
    return triton.cdiv(N, BLOCK_M_OWN), H, B


def own_forward(q: Tensor, k: Tensor, v: Tensor, out: Tensor, lse: Tensor, mass: Tensor | None,
                colsum: Tensor | None, own: Tensor, key_bias: Tensor | None, target: Tensor | None,
                scale: float) -> None:  # fmt: skip
    """Merge each query's own key into out, lse and mass in place; write its column sum into colsum."""
    H, N, D = q.shape[1], q.shape[2], q.shape[3]
    bias, sbb, sbh = per_key(key_bias, H)
    w, swb, swh = per_key(target, H)
    _own_forward_kernel[_grid(q)](
        q, k, v, out, lse, mass, colsum, bias, w, own, *head_strides(q, k, v, out), sbb, sbh, swb, swh, H, N, scale,
        HEAD_DIM=D, BLOCK_D=max(16, triton.next_power_of_2(D)), BLOCK_M=BLOCK_M_OWN, HAS_BIAS=bias is not None,
        HAS_TARGET=w is not None, HAS_COLSUM=colsum is not None, num_warps=OWN_WARPS,
    )  # fmt: skip


def own_backward(q: Tensor, k: Tensor, v: Tensor, dout: Tensor, dq: Tensor, dk: Tensor, dv: Tensor, lse: Tensor,
                 delta: Tensor, dmass: Tensor | None, own: Tensor, key_bias: Tensor | None, target: Tensor | None,
                 dbias: Tensor | None, dw: Tensor | None, scale: float) -> None:  # fmt: skip
    """Add the own keys' terms: dq rows in place; dk, dv, dbias, dw at the own positions (unlisted keys,
    which the key-major pass leaves at zero)."""
    H, N, D = q.shape[1], q.shape[2], q.shape[3]
    bias, sbb, sbh = per_key(key_bias, H)
    w, swb, swh = per_key(target, H)
    _own_backward_kernel[_grid(q)](
        q, k, v, dout, dq, dk, dv, lse, delta, dmass, bias, w, dbias, dw, own,
        *head_strides(q, k, v, dout, dq, dk, dv), sbb, sbh, swb, swh, H, N, scale,
        HEAD_DIM=D, BLOCK_D=max(16, triton.next_power_of_2(D)), BLOCK_M=BLOCK_M_OWN, HAS_BIAS=bias is not None,
        HAS_TARGET=w is not None, NEED_DBIAS=dbias is not None, NEED_DW=dw is not None, num_warps=OWN_WARPS,
    )  # fmt: skip
