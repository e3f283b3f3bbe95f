"""Attention with per-sample key masks / key subsets, per-key bias and a differentiable attention mass,
on torch's SDPA kernels (every device), fused Triton kernels (CUDA) or a dense torch reference.
See docs/methods/attention_kernel.md."""

from .api import attention, attention_stats
from .dispatch import ENV_VAR as BACKEND_ENV_VAR
from .dispatch import VALIDATE_ENV_VAR
from .reference import attention_reference
from .result import AttentionResult

__all__ = [
    "AttentionResult",
    "BACKEND_ENV_VAR",
    "VALIDATE_ENV_VAR",
    "attention",
    "attention_reference",
    "attention_stats",
]
