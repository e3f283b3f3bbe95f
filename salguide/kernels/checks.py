"""Input checks shared by the attention reference and the Triton kernels.

``check_inputs`` looks only at shapes, dtypes and devices (free, and safe inside ``torch.compile``);
``check_values`` looks at the data (index range, duplicates, target range, NaN/inf) with a single
device-to-host sync for all tests together (on by default on CPU only, see :mod:`.dispatch`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
INDEX_DTYPES = (torch.int32, torch.int64)


def check_inputs(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    key_mask: Tensor | None,
    key_index: Tensor | None,
    key_bias: Tensor | None,
    target: Tensor | None,
    always_self: bool,
    scale: float | None,
) -> float:
    """Raise a clear error for any malformed argument; return the softmax scale (default D**-0.5)."""
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() != 4:
            raise ValueError(f"{name} must have shape [B, H, N, D], got {tuple(t.shape)}")
    if k.shape != q.shape or v.shape != q.shape:
        raise ValueError(
            f"q, k and v must have the same shape [B, H, N, D]; got q {tuple(q.shape)}, "
            f"k {tuple(k.shape)}, v {tuple(v.shape)}"
        )
    if q.dtype not in FLOAT_DTYPES or k.dtype != q.dtype or v.dtype != q.dtype:
        raise TypeError(f"q, k and v must share one dtype among {FLOAT_DTYPES}; got {q.dtype}, {k.dtype}, {v.dtype}")
    if k.device != q.device or v.device != q.device:
        raise ValueError(f"q, k and v must be on one device; got {q.device}, {k.device}, {v.device}")
    if q.numel() == 0:
        raise ValueError(f"q, k and v are empty (shape {tuple(q.shape)}); B, H, N and D must be >= 1")
    B, H, N, D = q.shape
    if key_mask is not None and key_index is not None:
        raise ValueError(
            "key_mask and key_index are mutually exclusive: pass a bool key_mask for any subset, or "
            "key_index for a fixed number of keys per sample"
        )
    if key_mask is not None:
        _check_tensor("key_mask", key_mask, q.device)
        if key_mask.dtype != torch.bool:
            raise TypeError(f"key_mask must be a bool tensor (True = may be attended), got {key_mask.dtype}")
        if tuple(key_mask.shape) != (B, N):
            raise ValueError(f"key_mask must have shape [B, N] = {(B, N)}, got {tuple(key_mask.shape)}")
    if key_index is not None:
        _check_tensor("key_index", key_index, q.device)
        if key_index.dtype not in INDEX_DTYPES:
            raise TypeError(f"key_index must be int32 or int64, got {key_index.dtype}")
        if key_index.dim() != 2 or key_index.shape[0] != B or not 1 <= key_index.shape[1] <= N:
            raise ValueError(
                f"key_index must have shape [B, Nk] with B = {B} and 1 <= Nk <= N = {N}, got {tuple(key_index.shape)}"
            )
    _check_per_key("key_bias", key_bias, B, H, N, q.device)
    _check_per_key("target", target, B, H, N, q.device)
    if not isinstance(always_self, bool):
        raise TypeError(f"always_self must be a bool, got {type(always_self).__name__}")
    if scale is None:
        return D**-0.5
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale) or scale <= 0:
        raise ValueError(f"scale must be a positive finite number, got {scale!r}")
    return float(scale)


def check_values(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    key_index: Tensor | None,
    key_bias: Tensor | None,
    target: Tensor | None,
) -> None:
    """Raise ValueError on NaN/inf inputs, out-of-range or repeated key_index entries, or a target
    outside [0, 1]. Float tensors are read once each by ``aminmax`` (NaN and inf propagate to its
    result), and all tests share one device-to-host sync."""
    tests: list[tuple[Tensor, str]] = []
    for name, t in (("q", q), ("k", k), ("v", v), ("key_bias", key_bias), ("target", target)):
        if t is not None:
            lo, hi = torch.aminmax(t)
            tests.append((~(torch.isfinite(lo) & torch.isfinite(hi)), f"{name} contains NaN or inf"))
            if name == "target":
                tests.append(((lo < 0) | (hi > 1), "target weights must lie in [0, 1]"))
    if key_index is not None:
        n = q.shape[2]
        tests.append((((key_index < 0) | (key_index >= n)).any(), f"key_index entries must lie in [0, N = {n})"))
        ordered = key_index.sort(dim=1).values
        tests.append(((ordered[:, 1:] == ordered[:, :-1]).any(), "key_index repeats a key within a sample"))
    failed = torch.stack([flag for flag, _ in tests]).tolist()
    for bad, (_, message) in zip(failed, tests):
        if bad:
            raise ValueError(message)


def _check_tensor(name: str, t: object, device: torch.device) -> None:
    if not isinstance(t, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.device != device:
        raise ValueError(f"{name} is on {t.device} but q is on {device}")


def _check_per_key(name: str, t: Tensor | None, B: int, H: int, N: int, device: torch.device) -> None:
    if t is None:
        return
    _check_tensor(name, t, device)
    if not t.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {t.dtype}")
    if tuple(t.shape) not in ((B, N), (B, H, N)):
        raise ValueError(f"{name} must have shape [B, N] = {(B, N)} or [B, H, N] = {(B, H, N)}, got {tuple(t.shape)}")
