"""Which path runs an attention call, and whether its data is checked.

Paths: "sdpa" (``torch.nn.functional.scaled_dot_product_attention`` with the extras folded into its
inputs, :mod:`.sdpa`), "triton" (the fused kernels) and "reference" (the dense torch oracle).
Precedence: an explicit ``backend`` argument, else ``SALGUIDE_ATTENTION_BACKEND``, else "auto".
"auto" looks the call's case up in :data:`AUTO` for the tensors' device; a Triton choice that cannot
run the call (no triton, fp64, head dim > 128) falls back to "sdpa". A forced path that cannot run
raises a clear error. "triton" on CPU tensors needs ``TRITON_INTERPRET=1`` (slow, no bf16)."""

from __future__ import annotations

import importlib.util
import os

import torch
from torch import Tensor

BACKENDS = ("auto", "sdpa", "triton", "reference")
ENV_VAR = "SALGUIDE_ATTENTION_BACKEND"
VALIDATE_ENV_VAR = "SALGUIDE_ATTENTION_VALIDATE"
TRITON_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
MAX_TRITON_HEAD_DIM = 128

# A call's case is its most demanding feature, in this order: "stats" (colsum or lse asked for),
# "mass" (a target), "index" (key_index), "mask" (key_mask / always_self), "bias" (key_bias), "plain".
CASES = ("plain", "bias", "mask", "index", "mass", "stats")
# The path "auto" takes per device and case. CPU: SDPA everywhere (docs/benchmarks.md, CPU table).
# CUDA (benchmarks/attention.py on an H200, docs/benchmarks.md): the Triton kernels where they won, the
# vendor path elsewhere. The mass and the statistics go to Triton (1.69x flash at N = 577 and 0.81x at
# 2048, against 1.67x and 1.24x for SDPA with the target as an extra V column), except on long sequences
# (LONG_MASS_KEYS: 1.21x SDPA vs 2.08x Triton at (2,32,8192,128)). Key lists go to gather + SDPA (0.91x
# and 0.54x flash at N = 577 and 8192, against 1.90x and 1.02x for the Triton key_index path, which is
# host-bound: ~1 ms of Python per forward + backward). Masks and biases: not yet measured, so the vendor path.
AUTO: dict[str, dict[str, str]] = {
    "cpu": dict.fromkeys(CASES, "sdpa"),
    "cuda": {"plain": "sdpa", "bias": "sdpa", "mask": "sdpa", "index": "sdpa", "mass": "triton", "stats": "triton"},
}
AUTO_OTHER = "sdpa"  # devices not in AUTO (mps, xpu, ...)
LONG_MASS_KEYS = 4096  # from this many keys "auto" computes the mass on SDPA on CUDA


def case_of(
    key_mask: Tensor | None, key_index: Tensor | None, key_bias: Tensor | None, target: Tensor | None,
    always_self: bool, return_colsum: bool, return_lse: bool,
) -> str:  # fmt: skip
    """The row of :data:`AUTO` a call belongs to."""
    if return_colsum or return_lse:
        return "stats"
    if target is not None:
        return "mass"
    if key_index is not None:
        return "index"
    if key_mask is not None or always_self:
        return "mask"
    return "bias" if key_bias is not None else "plain"


def resolve_backend(requested: str | None, q: Tensor, case: str = "plain") -> str:
    """Return "sdpa", "triton" or "reference" for a call of ``case`` on ``q``, or raise a clear error."""
    choice = requested if requested is not None else os.environ.get(ENV_VAR, "auto")
    if choice not in BACKENDS:
        source = "backend" if requested is not None else ENV_VAR
        raise ValueError(f"{source} must be one of {BACKENDS}, got {choice!r}")
    if choice == "auto":
        choice = AUTO.get(q.device.type, {}).get(case, AUTO_OTHER)
        if q.device.type == "cuda" and case == "mass" and q.shape[-2] >= LONG_MASS_KEYS:
            choice = "sdpa"
        return "sdpa" if choice == "triton" and triton_problem(q) else choice
    if choice == "triton" and (problem := triton_problem(q)):
        raise RuntimeError(f"backend 'triton' cannot run here: {problem}")
    return choice


def triton_problem(q: Tensor) -> str | None:
    """Why the Triton kernels cannot take ``q`` (None when they can)."""
    if importlib.util.find_spec("triton") is None:
        return "triton is not installed (pip install 'salguide[triton]')"
    if q.device.type != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
        return f"tensors are on {q.device}; Triton needs CUDA, or TRITON_INTERPRET=1 for its CPU interpreter"
    if q.dtype not in TRITON_DTYPES:
        return f"dtype {q.dtype} is not supported (use one of {TRITON_DTYPES})"
    if q.device.type != "cuda" and q.dtype == torch.bfloat16:
        return "Triton's CPU interpreter has no bfloat16"
    if q.shape[-1] > MAX_TRITON_HEAD_DIM:
        return f"head dim {q.shape[-1]} > {MAX_TRITON_HEAD_DIM}"
    return None


def resolve_validate(validate: bool | None, q: Tensor) -> bool:
    """The data checks run when asked; by default on CPU, and on CUDA only with
    ``SALGUIDE_ATTENTION_VALIDATE=1`` (they cost a device sync per call)."""
    if validate is not None:
        return validate
    flag = os.environ.get(VALIDATE_ENV_VAR)
    if flag not in (None, "", "0", "1"):
        raise ValueError(f"{VALIDATE_ENV_VAR} must be 0 or 1, got {flag!r}")
    return flag == "1" if flag else q.device.type != "cuda"
