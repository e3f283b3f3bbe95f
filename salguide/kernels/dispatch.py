"""Which implementation runs: the Triton kernels or the torch reference.

Precedence: an explicit ``backend="triton" | "reference" | "auto"`` argument, else the environment
variable ``SALGUIDE_ATTENTION_BACKEND``, else "auto". "auto" picks Triton only for CUDA tensors of dtype
fp16/bf16/fp32 with head dim <= 128 when triton is installed, and the reference otherwise.
"triton" on CPU tensors needs ``TRITON_INTERPRET=1`` (Triton's interpreter, slow, no bf16)."""

from __future__ import annotations

import importlib.util
import os

import torch

BACKENDS = ("auto", "triton", "reference")
ENV_VAR = "SALGUIDE_ATTENTION_BACKEND"
TRITON_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
MAX_TRITON_HEAD_DIM = 128


def resolve_backend(requested: str | None, q: torch.Tensor) -> str:
    """Return "triton" or "reference" for these inputs, or raise a clear error."""
    choice = requested if requested is not None else os.environ.get(ENV_VAR, "auto")
    if choice not in BACKENDS:
        source = "backend" if requested is not None else ENV_VAR
        raise ValueError(f"{source} must be one of {BACKENDS}, got {choice!r}")
    if choice == "reference":
        return "reference"
    problem = triton_problem(q)
    if choice == "auto":
        return "triton" if q.device.type == "cuda" and problem is None else "reference"
    if problem:
        raise RuntimeError(f"backend 'triton' cannot run here: {problem}")
    return "triton"


def triton_problem(q: torch.Tensor) -> str | None:
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
