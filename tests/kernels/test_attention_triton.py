"""Triton kernels against the torch reference: outputs, mass, column sums, lse and all gradients.

On CPU they run in Triton's interpreter (TRITON_INTERPRET=1, set by tests/conftest.py) on small
shapes; on a machine with CUDA the same cases also run on the GPU, with bf16 added."""

from __future__ import annotations

import os

import pytest
import torch
from attention_cases import assert_all_close, make_case, run

from salguide.kernels import attention, attention_reference, attention_stats

pytest.importorskip("triton")

_AVAILABLE = (("cpu", os.environ.get("TRITON_INTERPRET") == "1"), ("cuda", torch.cuda.is_available()))
DEVICES = [device for device, available in _AVAILABLE if available]
# dtype -> (atol, rtol) for outputs and gradients
TOLERANCES = {torch.float32: (5e-5, 1e-4), torch.float16: (1e-2, 1e-2), torch.bfloat16: (5e-2, 5e-2)}
# (B, H, N, D, keys, always_self, bias, target): odd N, one and several key blocks, every key mode
CASES = [
    (1, 1, 1, 16, "none", False, False, "shared"),
    (2, 2, 7, 32, "mask", True, True, "per_head"),
    (2, 1, 33, 64, "index", True, True, "shared"),
    (2, 2, 70, 32, "mask", False, True, "shared"),
    (2, 2, 33, 16, "index", False, False, "per_head"),
    (1, 2, 70, 64, "none", True, True, None),
    (1, 1, 17, 128, "mask", True, False, "per_head"),
    (1, 2, 20, 48, "index", False, True, "shared"),
]


def _triton(*args, **kwargs):
    return attention_stats(*args, backend="triton", **kwargs)


def _dtypes(device: str) -> list[torch.dtype]:
    return [torch.float32, torch.float16] + ([torch.bfloat16] if device == "cuda" else [])


@pytest.mark.parametrize("device,dtype", [(d, t) for d in DEVICES for t in _dtypes(d)])
@pytest.mark.parametrize("B,H,N,D,keys,always_self,bias,target", CASES)
def test_triton_matches_reference(device, dtype, B, H, N, D, keys, always_self, bias, target):
    leaves, kwargs = make_case(B, H, N, D, keys=keys, always_self=always_self, bias=bias, target=target,
                               dtype=dtype, device=device, seed=N + D)  # fmt: skip
    atol, rtol = TOLERANCES[dtype]
    assert_all_close(run(_triton, leaves, kwargs), run(attention_reference, leaves, kwargs), atol, rtol)


@pytest.mark.parametrize("device", DEVICES)
def test_fully_masked_sample_gives_zero_output_and_zero_finite_gradients(device):
    leaves, kwargs = make_case(2, 2, 33, 32, keys="mask", target="shared", bias=True, device=device, empty_sample=True)
    got = run(_triton, leaves, kwargs)
    assert_all_close(got, run(attention_reference, leaves, kwargs), *TOLERANCES[torch.float32])
    for name in ("out", "mass", "colsum", "dq", "dk", "dv", "dkey_bias", "dtarget"):
        assert torch.equal(got[name][0], torch.zeros_like(got[name][0])), name
    assert torch.isinf(got["lse"][0]).all() and torch.isfinite(got["lse"][1]).all()
    assert all(torch.isfinite(got[n]).all() for n in ("dq", "dk", "dv", "dkey_bias", "dtarget"))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("always_self", [False, True])
def test_key_index_equals_equivalent_key_mask(device, always_self):
    leaves, kwargs = make_case(2, 2, 40, 32, keys="index", always_self=always_self, bias=True, target="shared",
                               device=device)  # fmt: skip
    mask = torch.zeros(2, 40, dtype=torch.bool, device=device).scatter(1, kwargs.pop("key_index"), True)
    by_index = run(_triton, leaves, {**kwargs, "key_index": mask.nonzero()[:, 1].view(2, -1)})
    by_mask = run(_triton, leaves, {**kwargs, "key_mask": mask})
    assert_all_close(by_index, by_mask, *TOLERANCES[torch.float32])


@pytest.mark.parametrize("device", DEVICES)
def test_strided_qkv_from_one_projection(device):
    """q, k, v as views of a [B, N, 3, H, D] projection (non-contiguous, ViT layout) need no copy."""
    B, N, H, D = 2, 19, 2, 32
    qkv = torch.randn(B, N, 3, H, D, device=device).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)
    assert not q.is_contiguous()
    torch.testing.assert_close(attention(q, k, v, backend="triton"), attention_reference(q, k, v).out, atol=5e-5,
                               rtol=1e-4)  # fmt: skip


# Real GPU tiles are 32-128 wide: several full key/query blocks and a partial edge block, every key mode
GPU_CASES = [
    (2, 3, 300, 64, "none", False, False, "shared"),
    (2, 3, 300, 64, "mask", True, True, "per_head"),
    (2, 2, 517, 32, "index", True, True, "shared"),
    (1, 2, 1030, 128, "none", False, True, "per_head"),
    (1, 2, 1030, 128, "index", False, False, "shared"),
]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="GPU tiles need CUDA (the interpreter uses 16-wide tiles)")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("B,H,N,D,keys,always_self,bias,target", GPU_CASES)
def test_triton_matches_reference_on_gpu_tiles(dtype, B, H, N, D, keys, always_self, bias, target):
    leaves, kwargs = make_case(B, H, N, D, keys=keys, always_self=always_self, bias=bias, target=target,
                               dtype=dtype, device="cuda", seed=N + D)  # fmt: skip
    atol, rtol = TOLERANCES[dtype]
    assert_all_close(run(_triton, leaves, kwargs), run(attention_reference, leaves, kwargs), atol, rtol)


@pytest.mark.parametrize("device", DEVICES)
def test_float32_follows_torch_matmul_precision(device):
    """Exact fp32 dots by default; TF32 once the user allows it for every fp32 matmul (the switch is
    read per call, the result stays within TF32's error of the reference)."""
    from salguide.kernels.triton_common import dot_precision

    assert dot_precision(torch.float32) == "ieee" and dot_precision(torch.float16) == "tf32"
    leaves, kwargs = make_case(2, 2, 40, 32, target="shared", device=device)
    before = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision("high")
        assert dot_precision(torch.float32) == "tf32"
        got = run(_triton, leaves, kwargs)
    finally:
        torch.set_float32_matmul_precision(before)
    assert_all_close(got, run(attention_reference, leaves, kwargs), 5e-3, 5e-3)
