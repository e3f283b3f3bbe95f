"""The torch reference against independent definitions: SDPA, a hand-computed example, float64
gradcheck, and its two key-subset code paths (gather vs dense mask) against each other."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from attention_cases import assert_all_close, make_case, run

from salguide.kernels import AttentionResult, attention_reference
from salguide.kernels.op import attention_op


def via_op(q, k, v, *, key_mask=None, key_index=None, key_bias=None, always_self=False, target=None, **_):
    """The custom op (what torch.compile runs) on its reference backend, with the closed-form backward."""
    out, mass, lse, colsum = attention_op(q, k, v, key_mask, key_index, key_bias, target, always_self, True,
                                          q.shape[-1] ** -0.5, "reference", True)  # fmt: skip
    return AttentionResult(out, mass if target is not None else None, colsum, lse)


def test_matches_sdpa_with_bool_key_mask_and_mass_is_weighted_probability_sum():
    leaves, kwargs = make_case(2, 3, 11, 8, keys="mask", target="per_head", seed=3)
    q, k, v, w = (leaves[n].detach() for n in ("q", "k", "v", "target"))
    mask = kwargs["key_mask"]
    r = attention_reference(q, k, v, key_mask=mask, target=w, return_colsum=True)
    torch.testing.assert_close(r.out, F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None, None, :]))
    p = torch.softmax((q @ k.transpose(-1, -2) / math.sqrt(8)).masked_fill(~mask[:, None, None, :], -math.inf), -1)
    torch.testing.assert_close(r.mass, torch.einsum("bhij,bhj->bhi", p, w))
    torch.testing.assert_close(r.colsum, p.sum(-2))


def test_hand_computed_two_keys_with_bias_and_always_self():
    """One query at position 0, keys at 0 and 1: s = (0 + 0, 2 + ln 3) so p = (1, 3e^2) / (1 + 3e^2)."""
    q = torch.tensor([1.0, 0.0]).view(1, 1, 1, 2).expand(1, 1, 2, 2).contiguous()
    k = torch.tensor([[0.0, 5.0], [2.0, 0.0]]).view(1, 1, 2, 2)
    v = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).view(1, 1, 2, 2)
    bias = torch.tensor([[0.0, math.log(3.0)]])
    w = torch.tensor([[0.25, 1.0]])
    r = attention_reference(q, k, v, key_bias=bias, target=w, scale=1.0, return_lse=True)
    p1 = 3 * math.e**2 / (1 + 3 * math.e**2)
    assert r.out[0, 0, 0].tolist() == pytest.approx([1 - p1, p1])
    assert r.mass[0, 0, 0].item() == pytest.approx(0.25 * (1 - p1) + p1)
    assert r.lse[0, 0, 0].item() == pytest.approx(math.log(1 + 3 * math.e**2))
    # key 0 masked out: query 0 still sees itself with always_self, query 1 only key 1
    r = attention_reference(q, k, v, key_mask=torch.tensor([[False, True]]), always_self=True, key_bias=bias,
                            scale=1.0, return_colsum=True)  # fmt: skip
    assert r.out[0, 0, 0].tolist() == pytest.approx([1 - p1, p1])
    assert r.out[0, 0, 1].tolist() == pytest.approx([0.0, 1.0])
    assert r.colsum[0, 0].tolist() == pytest.approx([1 - p1, p1 + 1])


@pytest.mark.parametrize("always_self", [False, True])
def test_gather_path_equals_dense_mask_path(always_self):
    leaves, kwargs = make_case(2, 2, 9, 4, keys="index", always_self=always_self, bias=True, target="shared", seed=7)
    mask = torch.zeros(2, 9, dtype=torch.bool).scatter(1, kwargs["key_index"], True)
    by_mask = run(attention_reference, leaves, {"always_self": always_self, "key_mask": mask})
    assert_all_close(run(attention_reference, leaves, kwargs), by_mask, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "keys,always_self,target",
    [("none", False, "shared"), ("mask", True, "per_head"), ("index", True, "shared"), ("index", False, "per_head")],
)
def test_reference_gradcheck_float64(keys, always_self, target):
    leaves, kwargs = make_case(1, 2, 5, 3, keys=keys, always_self=always_self, bias=True, target=target,
                               dtype=torch.float64, seed=11)  # fmt: skip
    names = list(leaves)

    def fn(*tensors):
        args = dict(zip(names, tensors))
        r = attention_reference(args["q"], args["k"], args["v"], key_bias=args["key_bias"], target=args["target"],
                                return_lse=True, **kwargs)  # fmt: skip
        return r.out, r.mass, r.lse

    assert torch.autograd.gradcheck(fn, tuple(leaves.values()))


def test_fully_masked_rows_reference():
    leaves, kwargs = make_case(2, 1, 6, 4, keys="mask", target="shared", bias=True, empty_sample=True, seed=2)
    got = run(attention_reference, leaves, kwargs)
    for name in ("out", "mass", "colsum", "dq", "dk", "dv", "dkey_bias", "dtarget"):
        assert torch.equal(got[name][0], torch.zeros_like(got[name][0])), name
    assert torch.isinf(got["lse"][0]).all()
    assert all(torch.isfinite(t).all() for n, t in got.items() if n != "lse")


@pytest.mark.parametrize(
    "keys,always_self,target", [("mask", True, "per_head"), ("index", True, "shared"), ("none", False, None)]
)
def test_reference_backend_backward_formula_matches_autograd(keys, always_self, target):
    """The custom op's reference backend runs the closed-form backward; it must equal autograd of the reference."""
    leaves, kwargs = make_case(2, 2, 7, 4, keys=keys, always_self=always_self, bias=True, target=target,
                               dtype=torch.float64, seed=5, empty_sample=keys == "mask")  # fmt: skip
    assert_all_close(run(via_op, leaves, kwargs), run(attention_reference, leaves, kwargs), atol=1e-10, rtol=1e-9)


@pytest.mark.parametrize("always_self", [True, False])
def test_reference_backend_gathers_equal_count_masks_exactly(always_self):
    """A mask allowing the same number of keys per sample runs as a key list on the torch backend
    (DynamicViT-style masks); outputs and gradients must equal the dense masked oracle."""
    from salguide.kernels.reference import equal_count_index

    leaves, kwargs = make_case(3, 2, 9, 4, always_self=always_self, bias=True, target="per_head",
                               dtype=torch.float64, seed=11)  # fmt: skip
    g = torch.Generator().manual_seed(3)
    mask = torch.zeros(3, 9, dtype=torch.bool)
    for b in range(3):
        mask[b, torch.randperm(9, generator=g)[:4]] = True
    kwargs["key_mask"] = mask
    index = equal_count_index(mask)
    assert index is not None and torch.equal(index, torch.stack([m.nonzero()[:, 0] for m in mask]))
    assert_all_close(run(via_op, leaves, kwargs), run(attention_reference, leaves, kwargs), atol=1e-10, rtol=1e-9)


def test_equal_count_index_only_for_equal_nonempty_partial_masks():
    from salguide.kernels.reference import equal_count_index

    assert equal_count_index(None) is None
    assert equal_count_index(torch.tensor([[True, False, True], [False, True, False]])) is None  # 2 vs 1
    assert equal_count_index(torch.ones(2, 3, dtype=torch.bool)) is None  # nothing masked: dense is cheaper
    assert equal_count_index(torch.zeros(2, 3, dtype=torch.bool)) is None  # empty rows: dense handles them
    assert equal_count_index(torch.tensor([[False, True, True], [True, False, True]])).tolist() == [[1, 2], [0, 2]]
