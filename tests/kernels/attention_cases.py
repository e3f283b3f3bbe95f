"""Shared helpers for the attention kernel tests: random inputs and one forward+backward run."""

from __future__ import annotations

import torch
from torch import Tensor

KEY_MODES = ("none", "mask", "index")


def make_case(
    B: int, H: int, N: int, D: int, *, keys: str = "none", always_self: bool = False, bias: bool = False,
    target: str | None = None, dtype: torch.dtype = torch.float32, device: str = "cpu", seed: int = 0,
    empty_sample: bool = False,
) -> tuple[dict[str, Tensor], dict]:  # fmt: skip
    """Leaf tensors (q, k, v and, when present, key_bias / target, all requiring grad) and the keyword
    arguments of one attention call. ``keys`` picks a random half of the keys by mask or by index;
    ``empty_sample`` masks every key of sample 0 (mask mode)."""
    g = torch.Generator().manual_seed(seed)
    leaves = {name: torch.randn(B, H, N, D, generator=g) for name in ("q", "k", "v")}
    kwargs: dict = {"always_self": always_self}
    if bias:
        leaves["key_bias"] = torch.randn(B, N, generator=g)
    if target is not None:
        leaves["target"] = torch.rand((B, N) if target == "shared" else (B, H, N), generator=g)
    if keys == "mask":
        mask = torch.rand(B, N, generator=g) < 0.5
        mask[:, -1] = True
        if empty_sample:
            mask[0] = False
        kwargs["key_mask"] = mask
    elif keys == "index":
        nk = max(1, N // 2)
        kwargs["key_index"] = torch.stack([torch.randperm(N, generator=g)[:nk] for _ in range(B)])
    leaves = {n: t.to(device=device, dtype=dtype).requires_grad_() for n, t in leaves.items()}
    kwargs = {n: t.to(device) if isinstance(t, Tensor) else t for n, t in kwargs.items()}
    return leaves, kwargs


def run(fn, leaves: dict[str, Tensor], kwargs: dict, seed: int = 1) -> dict[str, Tensor]:
    """Call ``fn`` with colsum and lse, back-propagate a random linear loss of out, mass and the finite
    lse entries; return outputs and gradients (detached; float32, float64 for float64 inputs)."""
    leaves = {n: t.detach().clone().requires_grad_() for n, t in leaves.items()}
    r = fn(leaves["q"], leaves["k"], leaves["v"], key_bias=leaves.get("key_bias"), target=leaves.get("target"),
           return_colsum=True, return_lse=True, **kwargs)  # fmt: skip
    g = torch.Generator().manual_seed(seed)
    loss = (r.out.float() * torch.randn(r.out.shape, generator=g).to(r.out.device)).sum()
    lse = torch.where(torch.isfinite(r.lse), r.lse, torch.zeros_like(r.lse))
    loss = loss + (lse * torch.randn(lse.shape, generator=g).to(lse.device)).sum()
    if r.mass is not None:
        loss = loss + (r.mass * torch.randn(r.mass.shape, generator=g).to(r.mass.device)).sum()
    loss.backward()
    found = {"out": r.out, "colsum": r.colsum, "lse": r.lse, "mass": r.mass}
    found.update({f"d{n}": t.grad for n, t in leaves.items()})
    wide = torch.float64 if leaves["q"].dtype == torch.float64 else torch.float32
    return {n: t.detach().to(wide) for n, t in found.items() if t is not None}


def assert_all_close(got: dict[str, Tensor], want: dict[str, Tensor], atol: float, rtol: float) -> None:
    assert got.keys() == want.keys()
    for name in want:
        torch.testing.assert_close(got[name], want[name], atol=atol, rtol=rtol, msg=lambda m, name=name: f"{name}: {m}")
