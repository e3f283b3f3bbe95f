"""EViT, DynamicViT-style masking and ToMe against naive per-sample implementations."""

from __future__ import annotations

import math

import pytest
import torch

from salguide.attention.dynamic_mask import drop_masked, topk_key_mask
from salguide.attention.evit import evit_reorganize
from salguide.attention.policies import DynamicMaskPolicy, EViTPolicy, ToMePolicy, token_counts, use_policy
from salguide.attention.recorder import AttentionRecorder
from salguide.attention.routing import Router, routed_attention
from salguide.attention.schedules import Schedule, check_keep, keep_schedule
from salguide.attention.tome import bipartite_merge
from salguide.models.vit import vit_digits


@pytest.mark.parametrize("fuse", ["sum", "mean", True])
def test_evit_matches_naive_loop(fuse) -> None:
    """Upstream (youweiliang/evit Block.forward): extra_token = sum(non_topk * non_topk_attn) - a weighted
    sum by default; "mean" divides by the weights' sum."""
    g = torch.Generator().manual_seed(0)
    x, a = torch.randn(3, 11, 5, generator=g), torch.rand(3, 2, 11, generator=g)
    out, pos = evit_reorganize(x, a, 0.5, fuse=fuse)
    assert torch.equal(evit_reorganize(x, a, 0.5)[0], evit_reorganize(x, a, 0.5, fuse="sum")[0])  # the default
    k = math.ceil(0.5 * 10)
    assert out.shape == (3, 1 + k + 1, 5)
    for b in range(3):
        score = a[b].mean(0)[1:].tolist()
        kept = sorted(sorted(range(1, 11), key=lambda j: -score[j - 1])[:k])
        rest = [j for j in range(1, 11) if j not in kept]
        w = torch.tensor([score[j - 1] for j in rest])
        fused = sum(w[i] * x[b, j] for i, j in enumerate(rest))
        if fuse == "mean":
            fused = fused / w.sum()
        torch.testing.assert_close(out[b, 0], x[b, 0])
        torch.testing.assert_close(out[b, 1 : k + 1], x[b, kept])
        torch.testing.assert_close(out[b, -1], fused)
        assert pos[b].tolist() == [0, *kept, -1]
    same, _ = evit_reorganize(x, a, 1.0)
    assert same is x
    dropped, _ = evit_reorganize(x, a, 0.5, fuse="drop")
    assert dropped.shape == (3, 1 + k, 5) and torch.equal(dropped, evit_reorganize(x, a, 0.5, fuse=False)[0])
    with pytest.raises(ValueError, match=r"fuse must be one of \('sum', 'mean', 'drop'\).*'avg'"):
        EViTPolicy([0], 0.5, fuse="avg")


def naive_tome(x, metric, r, size, return_positions=False):
    B, N, C = x.shape
    outs, positions = [], []
    for b in range(B):
        A, Bs = list(range(0, N, 2)), list(range(1, N, 2))
        m = torch.nn.functional.normalize(metric[b], dim=-1)
        best = {}
        for i in A[1:]:
            sims = [float(m[i] @ m[j]) for j in Bs]
            jbest = max(range(len(Bs)), key=lambda t: sims[t])
            best[i] = (sims[jbest], Bs[jbest])
        merged = sorted(best, key=lambda i: -best[i][0])[:r]
        tokens = [(x[b, i], size[b, i]) for i in A if i not in merged]
        for j in Bs:
            src = [i for i in merged if best[i][1] == j]
            s = size[b, j] + sum(size[b, i] for i in src)
            v = (size[b, j] * x[b, j] + sum(size[b, i] * x[b, i] for i in src)) / s
            tokens.append((v, s))
        outs.append((torch.stack([t for t, _ in tokens]), torch.stack([s for _, s in tokens])))
        positions.append([i for i in A if i not in merged] + Bs)
    out = torch.stack([o for o, _ in outs]), torch.stack([s for _, s in outs])
    return (*out, torch.tensor(positions)) if return_positions else out


@pytest.mark.parametrize("N", [9, 10])
def test_tome_matches_naive_loop(N: int) -> None:
    g = torch.Generator().manual_seed(N)
    x, metric = torch.randn(2, N, 4, generator=g), torch.randn(2, N, 3, generator=g)
    size = torch.randint(1, 4, (2, N), generator=g).float()
    out, s, pos = bipartite_merge(x, metric, 3, size)
    ref, ref_s, ref_pos = naive_tome(x, metric, 3, size, return_positions=True)
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(s, ref_s)
    assert pos.tolist() == ref_pos.tolist()  # a merged token keeps its B token's position
    # size-weighted merging conserves the total "mass" sum_i size_i x_i
    torch.testing.assert_close((s[..., None] * out).sum(1), (size[..., None] * x).sum(1))
    assert (pos[:, 0] == 0).all() and s.sum(1).tolist() == size.sum(1).tolist()
    with pytest.raises(ValueError, match="ToMe can merge"):
        bipartite_merge(x, metric, (N + 1) // 2, size)


def test_proportional_attention_equals_attention_over_duplicated_tokens() -> None:
    """ToMe's log-size bias: a token of size s acts like s identical copies of it."""
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(1, 2, 5, 4, generator=g) for _ in range(3))
    router = Router(1)
    router.state.size = torch.tensor([[1.0, 2.0, 1.0, 3.0, 1.0]])
    out = routed_attention(router, 0, q, k, v, 0.5)
    reps = torch.tensor([1, 2, 1, 3, 1])
    kd, vd = k.repeat_interleave(reps, 2), v.repeat_interleave(reps, 2)
    ref = ((q @ kd.transpose(-1, -2)) * 0.5).softmax(-1) @ vd
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=1e-5)


def test_dynamic_masking_pruned_tokens_attend_to_kept_tokens_and_themselves() -> None:
    """Upstream DynamicViT softmax_with_policy (eps = 0): row i may use key j iff policy_j or i == j."""
    g = torch.Generator().manual_seed(5)
    q, k, v = (torch.randn(2, 2, 6, 4, generator=g) for _ in range(3))
    router = Router(1)
    router.state.key_mask = torch.tensor(
        [[True, False, True, False, True, False], [True, True, False, False, False, True]]
    )
    out = routed_attention(router, 0, q, k, v, 0.5)
    policy = router.state.key_mask.float()[:, None, None, :]  # [B, 1, 1, N]
    attn_policy = policy + (1.0 - policy) * torch.eye(6)
    s = (q @ k.transpose(-1, -2)) * 0.5
    p = (s - s.amax(-1, keepdim=True)).exp() * attn_policy
    ref = (p / p.sum(-1, keepdim=True)) @ v
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=1e-5)
    pruned_row = ref[0, :, 1]  # token 1 is pruned in sample 0: kept tokens 0, 2, 4 and itself
    assert not torch.allclose(pruned_row, v[0, :, 1])


def test_topk_key_mask_and_drop() -> None:
    a = torch.tensor([[[0.5, 0.1, 0.3, 0.07, 0.03]]]).expand(2, 3, 5)
    m = topk_key_mask(a, 0.5)
    assert m[0].tolist() == [True, True, True, False, False]  # ceil(0.5 * 4) = 2: tokens 2 and 1
    alive = torch.tensor([[True, False, True, True, True]] * 2)
    m2 = topk_key_mask(a, 0.5, alive)
    assert m2[0].tolist() == [True, False, True, True, False]  # among alive 2, 3, 4: the best two
    x = torch.arange(10.0).view(2, 5, 1)
    kept, pos = drop_masked(x, m2)
    assert pos[0].tolist() == [0, 2, 3] and kept[1, :, 0].tolist() == [5.0, 7.0, 8.0]


def _model(seed=0, depth=4):
    torch.manual_seed(seed)
    return vit_digits(depth=depth)


def test_keep_one_is_the_unpruned_model_and_pruning_changes_it() -> None:
    model, x = _model().eval(), torch.randn(3, 1, 32, 32)
    ref = model(x)
    for policy in (EViTPolicy([1, 2], 1.0), DynamicMaskPolicy([1, 2], 1.0), ToMePolicy([0, 1, 2], 1.0)):
        use_policy(model, policy)
        torch.testing.assert_close(model(x), ref)
        policy.set_keep(0.5)
        assert not torch.allclose(model(x), ref, atol=1e-4)
    use_policy(model, None)
    torch.testing.assert_close(model(x), ref)


@pytest.mark.parametrize(
    ("policy", "training", "cases"),
    [
        (EViTPolicy, True, {"plain": 4}),  # drops tokens; the CLS row is a one-query softmax, no statistics
        (EViTPolicy, False, {"plain": 4}),
        (ToMePolicy, True, {"plain": 2, "bias": 2}),  # log token size after the first merge (block 1)
        (DynamicMaskPolicy, True, {"plain": 2, "mask": 2}),  # masks keys in training after block 1
        (DynamicMaskPolicy, False, {"plain": 4}),  # drops them at inference
    ],
)
def test_policies_ask_the_kernel_only_for_the_case_they_need(monkeypatch, policy, training, cases) -> None:
    """The dispatch case decides the path on CUDA (statistics go to Triton, plain calls to SDPA), so a
    policy that asked for more than it reads would move a pruned model onto a slower path."""
    import salguide.kernels.api as api

    seen: dict[str, int] = {}
    case_of = api.case_of

    def spy(*args):
        case = case_of(*args)
        seen[case] = seen.get(case, 0) + 1
        return case

    monkeypatch.setattr(api, "case_of", spy)
    model = vit_digits()
    use_policy(model, policy([1, 2], 0.5))
    model.train(training)(torch.randn(2, 1, 32, 32))
    assert seen == cases


def test_dynamic_masking_in_training_equals_dropping_at_inference() -> None:
    model, x = _model(1), torch.randn(3, 1, 32, 32)
    use_policy(model, DynamicMaskPolicy([1, 2], 0.5))
    with AttentionRecorder(model, [3], cls=True) as rec:
        masked = model.train()(x)
        assert rec[3].key_mask is not None and int(rec[3].key_mask[0].sum()) == 1 + 16
        dropped = model.eval()(x)
        assert rec[3].cls.shape[-1] == 1 + 16 and rec[3].key_mask is None
    torch.testing.assert_close(masked, dropped, atol=1e-5, rtol=1e-5)


def test_evit_and_tome_token_counts_and_gradients() -> None:
    model, x = _model(2), torch.randn(2, 1, 32, 32)
    use_policy(model, EViTPolicy([1], 0.5))
    with AttentionRecorder(model, [2], cls=True) as rec:
        model(x).sum().backward()
    assert rec[2].cls.shape[-1] == 1 + 32 + 1 and (rec[2].positions[:, -1] == -1).all()
    assert model.blocks[0].attn.qkv.weight.grad.abs().sum() > 0
    use_policy(model, ToMePolicy([0, 1, 2], 0.7))
    with AttentionRecorder(model, [3], cls=True) as rec:
        model(x)
    n = 64
    for _ in range(3):
        n = math.ceil(0.7 * n)
    assert rec[3].cls.shape[-1] == 1 + n and rec[3].key_bias is not None


def test_bad_inputs() -> None:
    for bad in (0.0, 1.5, -0.1, True):
        with pytest.raises(ValueError, match=r"keep rate must lie in \(0, 1\]"):
            EViTPolicy([0], bad)
    model = _model(depth=2)
    with pytest.raises(IndexError, match="block index 5 is out of range"):
        use_policy(model, ToMePolicy([5]))
    model.num_prefix_tokens = 2
    with pytest.raises(ValueError, match="2 prefix tokens"):
        use_policy(model, EViTPolicy([0]))
    model.num_prefix_tokens = 1
    model.global_pool = "avg"
    with pytest.raises(ValueError, match="class-token pooling"):
        use_policy(model, EViTPolicy([0]))
    with pytest.raises(TypeError, match="TokenPolicy"):
        use_policy(_model(depth=1), "evit")
    with pytest.raises(ValueError, match="cover the 5 tokens"):
        evit_reorganize(torch.randn(1, 5, 2), torch.rand(1, 4), 0.5)


def test_schedules() -> None:
    s = keep_schedule(0.5, warmup_steps=10)
    assert s(0) == 1.0 and s(10) == 0.5 and s(100) == 0.5 and s(5) == pytest.approx(0.75)
    assert Schedule(0.2, 0.6, 4, "linear")(1) == pytest.approx(0.5)
    assert check_keep(1) == 1.0
    with pytest.raises(ValueError, match="schedule kind"):
        Schedule(0.5, kind="step")


def test_topk_key_mask_matches_naive_ranking_with_alive_and_ties() -> None:
    g = torch.Generator().manual_seed(3)
    B, H, N = 4, 2, 13
    a = torch.rand(B, H, N, generator=g).round(decimals=1)  # coarse values: many ties
    alive = torch.ones(B, N, dtype=torch.bool)
    for b in range(B):  # 8 alive patches per sample, different ones
        dead = torch.randperm(N - 1, generator=g)[:4] + 1
        alive[b, dead] = False
    for keep in (0.3, 0.5, 0.7, 1.0):
        m = topk_key_mask(a, keep, alive)
        k = math.ceil(keep * 8)
        for b in range(B):
            score = a[b].mean(0).tolist()
            live = [j for j in range(1, N) if alive[b, j]]
            kept = sorted(live, key=lambda j: (-score[j], j))[:k]  # ties: lower index first
            assert m[b].nonzero().flatten().tolist() == [0, *sorted(kept)]
    assert topk_key_mask(a, 1.0).all()
    with pytest.raises(ValueError, match="same number of alive tokens"):
        topk_key_mask(a, 0.5, alive.index_fill(1, torch.tensor([0]), True).index_fill(0, torch.tensor([0]), True))
    with pytest.raises(ValueError, match="alive must be a bool"):
        topk_key_mask(a, 0.5, alive.float())


@pytest.mark.parametrize("training", [True, False])
def test_token_counts_match_the_forward_and_policies_share_the_budget(training: bool) -> None:
    """token_counts against the queries / keys each block really sees (recorded CLS rows, key masks)."""
    model, x = _model(4), torch.randn(2, 1, 32, 32)
    model.train(training)
    counts = {}
    for name, policy in (
        ("none", None),
        ("evit", EViTPolicy([1, 2], 0.7)),
        ("dyn", DynamicMaskPolicy([1, 2], 0.7)),
        ("tome", ToMePolicy([1, 2], 0.7)),
        ("tome5", ToMePolicy([1, 2], 0.5)),
    ):
        use_policy(model, policy)
        with AttentionRecorder(model, [0, 1, 2, 3], cls=True) as rec, torch.no_grad():
            model(x)
        seen = []
        for i in range(4):
            q = rec[i].cls.shape[-1]
            k = q if rec[i].key_mask is None else int(rec[i].key_mask[0].sum())
            seen.append((q, k))
        expect = token_counts(policy, 64, 4, training)
        assert [(q, k) for q, k, _ in expect] == seen
        assert [m for _, _, m in expect[:-1]] == [q for q, _ in seen[1:]]
        counts[name] = expect
    # same blocks, same keep: ToMe and DynamicViT keep 1 + 45 then 1 + 32 tokens, EViT one fused token more
    assert [m for _, _, m in counts["tome"]] == [65, 46, 33, 33]
    assert [m for _, _, m in counts["evit"]] == [65, 47, 35, 35]  # ceil(0.7 * 46) = 33 kept + CLS + fused
    assert [m for _, _, m in counts["tome5"]] == [65, 33, 17, 17]
    dyn = [(q, k) for q, k, _ in counts["dyn"]]
    assert dyn == ([(65, 65), (65, 65), (65, 46), (65, 33)] if training else [(65, 65), (65, 65), (46, 46), (33, 33)])
    use_policy(model, None)
    with pytest.raises(ValueError, match="num_patches and depth"):
        token_counts(None, 0, 4, True)


def test_benchmark_flops_match_a_hand_count() -> None:
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "token_pruning.py"
    spec = importlib.util.spec_from_file_location("salguide_bench_token_pruning", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)  # type: ignore[union-attr]
    model = _model(depth=4)

    def block(q, k, m, C=64):  # qkv, q.k + p.v, proj, MLP (hidden 4C)
        return 2 * q * C * 3 * C + 4 * q * k * C + 2 * q * C * C + 4 * m * C * 4 * C

    fixed = 2 * 64 * 16 * 64 + 2 * 64 * 10  # patch embedding (4 x 4 x 1 -> 64) and head
    assert bench.flops(model, None, True) == fixed + 4 * block(65, 65, 65) == 30_017_792
    dyn_train = fixed + 2 * block(65, 65, 65) + block(65, 46, 65) + block(65, 33, 65)
    assert bench.flops(model, DynamicMaskPolicy([1, 2], 0.7), True) == dyn_train
    dyn_eval = fixed + block(65, 65, 65) + block(65, 65, 46) + block(46, 46, 33) + block(33, 33, 33)
    assert bench.flops(model, DynamicMaskPolicy([1, 2], 0.7), False) == dyn_eval
    assert bench.flops(model, ToMePolicy([1, 2], 0.7), True) == dyn_eval
