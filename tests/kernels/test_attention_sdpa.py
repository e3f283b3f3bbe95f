"""The SDPA paths against the dense float64 oracle: outputs, mass, colsum, lse and the gradients of q, k,
v, key_bias and target, for every key mode (with empty rows and always_self), on both vendor layers
(the CPU flash kernel with its log-sum-exp, and F.scaled_dot_product_attention with chunked passes as
on other devices); twice differentiable; no N x N tensor anywhere."""

from __future__ import annotations

import pytest
import torch
from attention_cases import assert_all_close, make_case, run
from torch.utils._python_dispatch import TorchDispatchMode

import salguide.kernels.chunked as chunked
import salguide.kernels.vendor as vendor
from salguide.kernels import attention, attention_reference, attention_stats

# (keys, always_self, bias, target, empty_sample); "equal" = a mask with the same count in every sample
CASES = [
    ("none", False, False, None, False),
    ("none", False, True, "shared", False),
    ("mask", False, True, "per_head", False),
    ("mask", False, True, "shared", True),
    ("mask", True, True, "shared", True),
    ("mask", True, False, "per_head", False),
    ("index", False, True, "per_head", False),
    ("index", True, True, "shared", False),
    ("equal", True, True, "shared", False),
    ("equal", False, False, "per_head", False),
]


@pytest.fixture(params=["cpu_flash", "generic"])
def layer(request, monkeypatch):
    """Which vendor layer runs: the CPU flash op pair, or the device-independent public SDPA + chunks."""
    if request.param == "generic":
        monkeypatch.setattr(vendor, "_CPU_FLASH", None)
    return request.param


def _case(keys, always_self, bias, target, empty, dtype=torch.float64, N=9, seed=3):
    leaves, kwargs = make_case(2, 3, N, 5, keys="index" if keys == "equal" else keys, always_self=always_self,
                               bias=bias, target=target, dtype=dtype, seed=seed, empty_sample=empty)  # fmt: skip
    if keys == "equal":
        kwargs["key_mask"] = torch.zeros(2, N, dtype=torch.bool).scatter(1, kwargs.pop("key_index"), True)
    return leaves, kwargs


def _sdpa(*args, **kwargs):
    return attention_stats(*args, backend="sdpa", **kwargs)


@pytest.mark.parametrize("keys,always_self,bias,target,empty", CASES)
def test_sdpa_matches_float64_oracle_with_all_gradients(layer, keys, always_self, bias, target, empty):
    leaves, kwargs = _case(keys, always_self, bias, target, empty)
    got = run(_sdpa, leaves, kwargs)
    assert_all_close(got, run(attention_reference, leaves, kwargs), atol=1e-11, rtol=1e-10)
    assert not any(torch.isnan(t).any() for t in got.values())
    if empty and not always_self:  # sample 0 has no allowed key: lse +inf, out and gradients 0
        assert torch.isinf(got["lse"][0]).all() and not got["out"][0].any() and not got["dq"][0].any()


@pytest.mark.parametrize("keys,always_self", [("mask", True), ("index", False), ("none", False)])
def test_sdpa_float32_within_kernel_tolerance(layer, keys, always_self):
    leaves, kwargs = _case(keys, always_self, True, "shared", False, dtype=torch.float32, N=33, seed=8)
    assert_all_close(run(_sdpa, leaves, kwargs), run(attention_reference, leaves, kwargs), atol=2e-5, rtol=1e-4)


def test_plain_attention_is_torch_sdpa():
    q, k, v = (torch.randn(2, 3, 17, 8) for _ in range(3))
    torch.testing.assert_close(attention(q, k, v), torch.nn.functional.scaled_dot_product_attention(q, k, v))


@pytest.mark.parametrize("keys,always_self", [("none", False), ("mask", True), ("index", True)])
def test_sdpa_twice_differentiable_gradgradcheck(layer, keys, always_self):
    leaves, kwargs = make_case(1, 2, 5, 3, keys=keys, always_self=always_self, bias=True, target="shared",
                               dtype=torch.float64, seed=11)  # fmt: skip
    names = list(leaves)

    def fn(*tensors):
        a = dict(zip(names, tensors))
        r = _sdpa(a["q"], a["k"], a["v"], key_bias=a["key_bias"], target=a["target"], return_lse=True, **kwargs)
        return r.out, r.mass, r.lse

    assert torch.autograd.gradgradcheck(fn, tuple(leaves.values()), fast_mode=True)


class _LargestTensor(TorchDispatchMode):
    """Records the largest tensor any torch op returns (what would be an N x N attention matrix)."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


@pytest.mark.parametrize("keys,always_self", [("none", False), ("mask", True), ("index", True)])
def test_no_n_by_n_tensor_in_forward_or_backward(layer, keys, always_self, monkeypatch):
    """Every extra at once (bias, target, lse, colsum, always_self); the chunked passes get a small budget."""
    N, D = 256, 8
    monkeypatch.setattr(chunked, "CHUNK_BYTES", 16 * N * 4 * 4)  # 16 query rows per chunk
    leaves, kwargs = make_case(1, 1, N, D, keys=keys, always_self=always_self, bias=True, target="shared", seed=1)
    with _LargestTensor() as seen:
        r = _sdpa(leaves["q"], leaves["k"], leaves["v"], key_bias=leaves["key_bias"], target=leaves["target"],
                  return_lse=True, return_colsum=True, **kwargs)  # fmt: skip
        (r.out.sum() + r.mass.sum() + r.lse.sum()).backward()
    assert seen.largest <= 16 * (N + 1) < N * N // 8, seen.largest  # one chunk of scores at most
