"""Fused attention with per-sample key masks / key subsets, per-key bias and a differentiable
attention mass (Triton on CUDA, a torch reference elsewhere). See docs/methods/attention_kernel.md."""

from .api import attention
from .dispatch import ENV_VAR as BACKEND_ENV_VAR
from .reference import attention_reference
from .result import AttentionResult

__all__ = ["AttentionResult", "BACKEND_ENV_VAR", "attention", "attention_reference"]
