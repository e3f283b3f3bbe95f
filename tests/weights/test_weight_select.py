"""topk_mask against a naive stable torch.sort reference (exact masks, ties included)."""

import math

import pytest
import torch

import salguide.weights.select as select_module
from salguide.weights import topk_mask


@pytest.fixture(params=["radix", "radix-chunks", "sort"])
def path(request, monkeypatch):
    """Run a test through the radix select (forced for tiny inputs; with tensors grouped into many
    small chunks, or all in one) and through the small-input sort.

    One thread: on a busy 2-core machine every tiny parallel bincount otherwise waits for a descheduled
    OpenMP worker (milliseconds each); results do not depend on the thread count.
    """
    monkeypatch.setattr(select_module, "SORT_BELOW", 1 << 30 if request.param == "sort" else 0)
    monkeypatch.setattr(select_module, "CHUNK", 20 if request.param == "radix-chunks" else 1 << 21)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield request.param
    torch.set_num_threads(threads)


def sort_reference(scores, ratio, scope, largest):
    """SalUn's generate_mask.py rule with stable ties: rank the float32 scores (largest first, stable in
    (dict order, flat index) order) and keep ranks < int(len * ratio), at least one."""

    def pick(tensors):
        flat = torch.cat([t.reshape(-1).float() for t in tensors])
        threshold_index = max(1, int(len(flat) * ratio))
        order = torch.sort(flat, descending=largest, stable=True).indices
        ranks = torch.argsort(order)
        keep = ranks < threshold_index
        return [m.view(t.shape) for m, t in zip(keep.split([t.numel() for t in tensors]), tensors)]

    if scope == "layer":
        return {n: pick([t])[0] for n, t in scores.items()}
    return dict(zip(scores, pick(list(scores.values()))))


def random_scores(gen, n_tensors, kind):
    out = {}
    for i in range(n_tensors):
        ndim = int(torch.randint(1, 4, (1,), generator=gen))
        shape = tuple(torch.randint(1, 9, (ndim,), generator=gen).tolist())
        if kind == "ties":  # few distinct values, both zeros, negatives: many ties at the threshold
            t = torch.randint(-3, 4, shape, generator=gen).float() * 0.5
            t[t == 0] = -0.0 if i % 2 else 0.0
        elif kind == "close":  # same high 16 bits, only the low bits differ
            t = 1.0 + torch.randint(0, 40, shape, generator=gen).float() * torch.finfo(torch.float32).eps
        else:  # signed values over many orders of magnitude
            t = torch.randn(shape, generator=gen) * 10.0 ** torch.randint(-30, 30, shape, generator=gen)
        out[f"layer{i}.weight"] = t
    return out


@pytest.mark.parametrize("kind", ["ties", "close", "wide"])
@pytest.mark.parametrize("scope", ["global", "layer"])
@pytest.mark.parametrize("largest", [True, False])
def test_matches_sort_reference(kind, scope, largest, path):
    gen = torch.Generator().manual_seed(len(kind) * 4 + 2 * (scope == "layer") + largest)
    for trial in range(6):
        scores = random_scores(gen, int(torch.randint(1, 6, (1,), generator=gen)), kind)
        for ratio in (1e-9, 0.1, 0.37, 0.5, 0.9, 1.0):
            got = topk_mask(scores, ratio, scope=scope, largest=largest)
            want = sort_reference(scores, ratio, scope, largest)
            assert list(got) == list(scores)
            for name in scores:
                assert got[name].dtype == torch.bool and got[name].shape == scores[name].shape
                assert torch.equal(got[name], want[name]), (kind, scope, largest, trial, ratio, name)


def test_exact_count_and_earliest_ties_win(path):
    scores = {"a": torch.ones(4), "b": torch.ones(3), "c": torch.tensor([2.0, 1.0])}
    got = topk_mask(scores, 4 / 9)  # k = 4: the 2.0, then the first three tied ones
    assert got["c"].tolist() == [True, False]
    assert got["a"].tolist() == [True, True, True, False]
    assert not got["b"].any()
    smallest = topk_mask({"a": torch.tensor([-1.0, -5.0, 3.0, -5.0])}, 0.25, largest=False)
    assert smallest["a"].tolist() == [False, True, False, False]


def test_keep_count_is_salun_floor_with_at_least_one():
    """SalUn: threshold_index = int(len(all_elements) * ratio); round() would keep one more here."""
    assert [select_module.keep_count(r, n) for r, n in ((0.37, 10), (0.57, 100), (0.5, 3), (0.05, 10), (1.0, 7))] == [
        3,
        56,
        1,
        1,
        7,
    ]
    scores = {"a": torch.arange(10.0), "b": torch.arange(3.0)}
    got = topk_mask(scores, 0.37)  # int(4.81) = 4, round = 5
    assert got["a"].tolist() == [False] * 6 + [True] * 4 and not got["b"].any()
    per_tensor = topk_mask(scores, 0.5, scope="layer")  # int(1.5) = 1 (round: 2), int(5.0) = 5
    assert per_tensor["b"].tolist() == [False, False, True] and int(per_tensor["a"].sum()) == 5
    tiny = topk_mask(scores, 0.05, scope="layer")  # int(0.5) = int(0.15) = 0: at least one each
    assert tiny["a"].tolist() == [False] * 9 + [True] and tiny["b"].tolist() == [False, False, True]


def test_layer_scope_keeps_per_tensor_share():
    scores = {"a": torch.arange(10.0), "b": torch.arange(4.0), "e": torch.empty(0, 3)}
    got = topk_mask(scores, 0.5, scope="layer")
    assert got["a"].tolist() == [False] * 5 + [True] * 5
    assert got["b"].tolist() == [False, False, True, True]
    assert got["e"].shape == (0, 3)


def test_large_input_takes_the_radix_path_with_ties():
    gen = torch.Generator().manual_seed(3)
    scores = {"a": torch.randint(0, 50, (300, 300), generator=gen).float(), "b": torch.randn(70_000, generator=gen)}
    for ratio, scope in ((0.3, "global"), (0.61, "layer")):
        got, want = topk_mask(scores, ratio, scope=scope), sort_reference(scores, ratio, scope, True)
        assert all(torch.equal(got[n], want[n]) for n in scores)


def test_other_float_dtypes_compare_as_float32():
    s64 = {"w": torch.randn(50, dtype=torch.float64)}
    assert torch.equal(topk_mask(s64, 0.3)["w"], sort_reference(s64, 0.3, "global", True)["w"])
    s16 = {"w": torch.randn(50).to(torch.bfloat16)}
    assert torch.equal(topk_mask(s16, 0.3)["w"], sort_reference(s16, 0.3, "global", True)["w"])


@pytest.mark.parametrize("ratio", [0, 0.0, 1.5, -0.1, math.nan, math.inf, True, "0.5", None])
def test_bad_ratio(ratio):
    with pytest.raises(ValueError, match="ratio"):
        topk_mask({"w": torch.ones(3)}, ratio)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_score_names_tensor(bad):
    scores = {"ok": torch.ones(3), "fc.bias": torch.tensor([1.0, bad])}
    with pytest.raises(ValueError, match="fc.bias"):
        topk_mask(scores, 0.5)


def test_huge_finite_scores_are_accepted():
    got = topk_mask({"w": torch.tensor([3e38, 3e38, 1.0, -3e38])}, 0.5)  # their sum overflows to inf
    assert got["w"].tolist() == [True, True, False, False]


def test_bad_scores_and_scope():
    with pytest.raises(ValueError, match="non-empty"):
        topk_mask({}, 0.5)
    with pytest.raises(ValueError, match="floating-point"):
        topk_mask({"w": torch.ones(3, dtype=torch.int64)}, 0.5)
    with pytest.raises(ValueError, match="scope"):
        topk_mask({"w": torch.ones(3)}, 0.5, scope="tensor")


def test_all_zero_scores_warn_that_the_mask_is_arbitrary(recwarn):
    import torch.nn.functional as F
    from torch import nn

    from salguide.weights import WeightMask, saliency_scores

    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    x, y = torch.randn(6, 4), torch.full((6,), -100)  # every label ignored: the loss is 0, so is every gradient
    scores = saliency_scores(
        net, [(x, y)], lambda logits, t: F.cross_entropy(logits, t, reduction="sum"), progress=False
    )
    with pytest.warns(UserWarning, match=r"all scores are equal \(0\).*mask is arbitrary"):
        WeightMask.from_scores(scores, 0.5)
    with pytest.warns(UserWarning, match=r"the scores of 1\.weight, 1\.bias are equal.*arbitrary"):
        topk_mask(scores, 0.5, scope="layer")
    recwarn.clear()
    topk_mask({"a": torch.arange(4.0), "b": torch.zeros(3)}, 0.5)  # informative globally: no warning
    topk_mask({"a": torch.zeros(3)}, 1.0)  # keeps everything: nothing is chosen by the tie
    assert not [w for w in recwarn if "arbitrary" in str(w.message)]
