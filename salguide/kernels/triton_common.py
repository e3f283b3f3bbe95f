"""Pieces the Triton forward, backward and column-sum kernels share.

Key sets. Every kernel walks a list of key *slots*: either all N positions (dense, contiguous loads)
or a per-sample list of key positions ``index[b, :count[b]]`` (indexed). A bool ``key_mask`` is
compacted into such a list (allowed keys first, in order), so masked keys cost no work at all and a
sample with fewer allowed keys runs fewer key blocks; ``key_index`` is used as given, never gathered.
``always_self`` adds each query's own key on top of the list when its position is not listed.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import triton
import triton.language as tl
from torch import Tensor

INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"
LOG2E = 1.4426950408889634  # host-side float (scales computed before a launch)
# The same constant for @triton.jit code: Triton >= 3.0 only lets kernels read globals that are constexpr.
LOG2E_JIT = tl.constexpr(LOG2E)


ONE_CONFIG = os.environ.get("SALGUIDE_TRITON_AUTOTUNE", "1") == "0"


def autotune_configs(gpu: Sequence[tuple[int, ...]], name: str) -> list[triton.Config]:
    """(BLOCK_M, BLOCK_N, num_warps, num_stages, max_head_dim) tuples as configs; one small config when
    interpreted; only config ``I`` of kernel ``name`` when ``SALGUIDE_TRITON_CONFIG_<NAME>=I`` (checking
    one tile shape). ``SALGUIDE_TRITON_AUTOTUNE=0`` keeps the first config that fits the head dim."""
    if INTERPRET:
        return [triton.Config({"BLOCK_M": 16, "BLOCK_N": 16}, num_warps=1, num_stages=1)]
    configs = []
    for m, n, w, s, max_d in gpu:
        c = triton.Config({"BLOCK_M": m, "BLOCK_N": n}, num_warps=w, num_stages=s)
        c.max_head_dim = max_d  # type: ignore[attr-defined]
        configs.append(c)
    only = os.environ.get(f"SALGUIDE_TRITON_CONFIG_{name.upper()}")
    return configs if only is None else [configs[int(only)]]


def prune_by_head_dim(configs: list[triton.Config], named_args: dict, **kwargs) -> list[triton.Config]:
    """Keep the configs that compile without register spills at this head dim (each config's
    ``max_head_dim``, measured ahead of time for sm_90a by tests/kernels/test_compile_sm90.py); only
    the first of them when ``SALGUIDE_TRITON_AUTOTUNE=0`` (for float32 inputs the one with the smallest
    pipelined tiles: the first can exceed an H100's 227 KB of shared memory there)."""
    d = kwargs.get("HEAD_DIM", named_args.get("HEAD_DIM"))
    kept = [c for c in configs if d is None or d <= getattr(c, "max_head_dim", 1 << 30)] or configs[-1:]
    if not ONE_CONFIG:
        return kept  # Triton's autotuner skips any config that runs out of shared memory
    q = named_args.get("Q")
    if getattr(q, "element_size", lambda: 2)() > 2:  # float32 tiles need twice the shared memory
        return [min(kept, key=lambda c: c.num_stages * (c.kwargs["BLOCK_M"] + c.kwargs.get("BLOCK_N", 0)))]
    return kept[:1]


@dataclass(frozen=True)
class KeySet:
    """index int32 [B, L] and count int32 [B] (None when dense); own int8 [B, N], 1 where a query's
    own key is attended on top of the list (None without always_self)."""

    index: Tensor | None
    count: Tensor | None
    own: Tensor | None

    @property
    def indexed(self) -> bool:
        return self.index is not None

    def slots(self, n: int) -> int:
        return n if self.index is None else self.index.shape[1]


def key_set(key_mask: Tensor | None, key_index: Tensor | None, always_self: bool, n: int) -> KeySet:
    if key_mask is not None:
        order = torch.argsort((~key_mask).to(torch.int8), dim=1, stable=True).to(torch.int32)
        count = key_mask.sum(1, dtype=torch.int32)
        own = (~key_mask).to(torch.int8) if always_self else None
        return KeySet(order.contiguous(), count, own)
    if key_index is not None:
        b, nk = key_index.shape
        index = key_index.to(torch.int32).contiguous()
        count = torch.full((b,), nk, dtype=torch.int32, device=key_index.device)
        own = None
        if always_self:
            listed = torch.zeros(b, n, dtype=torch.bool, device=key_index.device).scatter(1, key_index.long(), True)
            own = (~listed).to(torch.int8)
        return KeySet(index, count, own)
    return KeySet(None, None, None)


def per_key(x: Tensor | None, heads: int) -> tuple[Tensor | None, int, int]:
    """A [B, N] or [B, H, N] per-key tensor as float32 [B, H, N] (heads broadcast by a 0 stride)."""
    if x is None:
        return None, 0, 0
    x = x.float()
    x = (x[:, None, :] if x.dim() == 2 else x).expand(x.shape[0], heads, x.shape[-1])
    x = x.contiguous() if x.stride(-1) != 1 else x
    return x, x.stride(0), x.stride(1)


def head_strides(*tensors: Tensor) -> list[int]:
    """(batch, head, row) strides of each [B, H, N, D] tensor, whose last dim must be contiguous."""
    out = []
    for t in tensors:
        assert t.stride(-1) == 1, "last dim must be contiguous"
        out += [t.stride(0), t.stride(1), t.stride(2)]
    return out


def dot_precision(dtype: torch.dtype) -> str:
    """Tensor-core precision of the kernels' dots. float32 inputs follow PyTorch's own switch: exact
    ("ieee", matching the reference to ~1e-5) under the default ``torch.get_float32_matmul_precision()
    == "highest"``, TF32 after ``torch.set_float32_matmul_precision("high")`` (as every fp32 matmul then).
    fp16/bf16 inputs always use the tensor cores."""
    if dtype == torch.float32 and torch.get_float32_matmul_precision() == "highest":
        return "ieee"
    return "tf32"


def unit_last_dim(t: Tensor) -> Tensor:
    return t if t.stride(-1) == 1 else t.contiguous()


@triton.jit
def n_keys(Count, b, N, INDEXED: tl.constexpr):
    if INDEXED:
        return tl.load(Count + b)
    return N


@triton.jit
def key_block(Index, b, stride_ib, start, n, N, BLOCK_N: tl.constexpr, INDEXED: tl.constexpr):
    """Positions of key slots start..start+BLOCK_N and whether each is a real key (< n, in range)."""
    slots = start + tl.arange(0, BLOCK_N)
    ok = slots < n
    if INDEXED:
        pos = tl.load(Index + b * stride_ib + slots, mask=ok, other=0)
        ok = ok & (pos >= 0) & (pos < N)
        return pos, ok
    return slots, ok


@triton.jit
def load_rows(ptr, rows, ok, stride_n, HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr):
    """Tile [len(rows), BLOCK_D] of a row-major [N, HEAD_DIM] matrix; zeros where masked."""
    d = tl.arange(0, BLOCK_D)
    return tl.load(ptr + rows[:, None] * stride_n + d[None, :], mask=ok[:, None] & (d[None, :] < HEAD_DIM), other=0.0)


@triton.jit
def load_tile(ptr, rows, ok, stride_n, HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, MASKED: tl.constexpr):
    """:func:`load_rows` when MASKED (an edge block, or gathered slots), else the same tile without a
    row mask (and with no mask at all when the head dim is a power of two)."""
    if MASKED:
        return load_rows(ptr, rows, ok, stride_n, HEAD_DIM, BLOCK_D)
    d = tl.arange(0, BLOCK_D)
    if HEAD_DIM == BLOCK_D:
        return tl.load(ptr + rows[:, None] * stride_n + d[None, :])
    return tl.load(ptr + rows[:, None] * stride_n + d[None, :], mask=d[None, :] < HEAD_DIM, other=0.0)


@triton.jit
def store_rows(ptr, rows, ok, stride_n, x, HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr):
    d = tl.arange(0, BLOCK_D)
    tl.store(ptr + rows[:, None] * stride_n + d[None, :], x, mask=ok[:, None] & (d[None, :] < HEAD_DIM))
