"""Attention statistics and losses against a naive reference that materialises softmax(q k^T)."""

from __future__ import annotations

import math

import pytest
import torch

from salguide.attention.loss_modules import (
    AttentionDiversityLoss,
    AttentionEntropyLoss,
    BackgroundSuppressionLoss,
    ConcentrationLoss,
)
from salguide.attention.losses import (
    background_mass_loss,
    concentration_loss,
    concentration_loss_all,
    diversity_loss,
    entropy_loss,
)
from salguide.attention.recorder import AttentionRecorder
from salguide.attention.stats import attention_rows, attention_with_entropy, cls_attention
from salguide.attention.targets import (
    gaussian_from_boxes,
    gaussian_from_points,
    mask_boxes,
    token_grid,
    token_target,
)
from salguide.kernels import attention, attention_stats
from salguide.models.vit import vit_digits


def naive_probs(q, k, scale, bias=None, mask=None, always_self=False):
    s = scale * q.double() @ k.double().transpose(-1, -2)
    if bias is not None:
        s = s + bias.double()[:, None, None, :]
    if mask is not None:
        allowed = mask[:, None, None, :].expand_as(s).clone()
        if always_self:
            allowed |= torch.eye(q.shape[2], dtype=torch.bool)
        s = s.masked_fill(~allowed, float("-inf"))
    return s.softmax(-1)


def _qkv(B=2, H=3, N=9, D=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(B, H, N, D, generator=g, requires_grad=True) for _ in range(3)]


@pytest.mark.parametrize("masked", [False, True])
def test_rows_and_cls_from_lse_match_naive(masked: bool) -> None:
    q, k, v = _qkv()
    bias = torch.rand(2, 9)
    mask = torch.rand(2, 9) > 0.4 if masked else None
    res = attention_stats(q, k, v, key_bias=bias, key_mask=mask, always_self=masked, return_lse=True)
    p = naive_probs(q, k, 8**-0.5, bias, mask, masked)
    rows = torch.tensor([0, 4, 8])
    got = attention_rows(q, k, res.lse, rows, scale=8**-0.5, key_bias=bias, key_mask=mask, always_self=masked)
    torch.testing.assert_close(got.double(), p[:, :, rows], atol=1e-6, rtol=1e-5)
    cls = cls_attention(q, k, res.lse, scale=8**-0.5, key_bias=bias, key_mask=mask, always_self=masked)
    torch.testing.assert_close(cls.double(), p[:, :, 0], atol=1e-6, rtol=1e-5)


def test_cls_row_and_entropy_stay_float64_for_float64_inputs() -> None:
    q, k, v = (t.detach().double() for t in _qkv(N=11, seed=3))
    bias = torch.rand(2, 11, dtype=torch.float64)
    mask = torch.rand(2, 11) > 0.3
    p = naive_probs(q, k, 0.3, bias, mask, True)  # float64 reference
    res, ent = attention_with_entropy(q, k, v, scale=0.3, key_bias=bias, key_mask=mask, always_self=True)
    cls = cls_attention(q, k, res.lse, scale=0.3, key_bias=bias, key_mask=mask, always_self=True)
    assert cls.dtype == ent.dtype == torch.float64
    torch.testing.assert_close(cls, p[:, :, 0], atol=1e-12, rtol=1e-10)
    ref_ent = -(p * p.clamp_min(1e-300).log()).sum(-1)
    torch.testing.assert_close(ent, ref_ent, atol=1e-12, rtol=1e-10)  # float32 would be off by ~1e-7
    # the all-rows concentration loss and the weighted background mass stay float64 too
    target = torch.rand(2, 11, dtype=torch.float64)
    got = concentration_loss_all(q, k, res.lse, target, scale=0.3, key_bias=bias, key_mask=mask)
    t = target * mask
    t = t / t.sum(1, keepdim=True)
    ce = -(t[:, None, None, :] * torch.log(p.clamp_min(1e-300))).sum(-1)  # [B, H, N]; masked keys have t = 0
    w = mask[:, None, :].double().expand_as(ce)
    naive = ((ce * w).sum((1, 2)) / w.sum((1, 2))).mean()
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, naive, atol=1e-12, rtol=1e-10)
    weighted = background_mass_loss(p[:, :, :, 0], "weighted", torch.ones(2, 11))
    assert weighted.dtype == torch.float64
    torch.testing.assert_close(weighted, p[:, :, :, 0].mean((1, 2)).mean(), atol=1e-14, rtol=1e-12)


def test_entropy_in_one_kernel_call_matches_naive_value_and_gradient() -> None:
    q, k, v = _qkv(N=11, seed=1)
    bias = torch.rand(2, 11)
    mask = torch.rand(2, 11) > 0.3
    res, ent = attention_with_entropy(q, k, v, scale=0.3, key_bias=bias, key_mask=mask, always_self=True)
    p = naive_probs(q, k, 0.3, bias, mask, True)
    naive = -(p * torch.log(p.clamp_min(1e-300))).sum(-1)
    torch.testing.assert_close(ent.double(), naive, atol=1e-5, rtol=1e-5)
    plain = attention(q, k, v, scale=0.3, key_bias=bias, key_mask=mask, always_self=True)
    torch.testing.assert_close(res.out, plain)
    (g_kernel,) = torch.autograd.grad(ent.sum(), q)
    (g_naive,) = torch.autograd.grad(naive.sum(), q)
    torch.testing.assert_close(g_kernel.double(), g_naive.double(), atol=1e-4, rtol=1e-4)


def test_concentration_loss_hand_computed() -> None:
    cls = torch.tensor([[[0.1, 0.6, 0.3]]])  # B=1, H=1, N=3
    target = torch.tensor([[0.0, 1.0, 1.0]])
    expected = -(0.5 * math.log(0.6 + 1e-6) + 0.5 * math.log(0.3 + 1e-6))
    assert concentration_loss(cls, target).item() == pytest.approx(expected, rel=1e-6)
    # an all-zero target does not count
    two = concentration_loss(cls.expand(2, 1, 3), torch.cat([target, torch.zeros(1, 3)]))
    assert two.item() == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match=r"target must have shape \[B, N\]"):
        concentration_loss(cls, torch.ones(1, 4))


@pytest.mark.parametrize("masked", [False, True])
def test_all_queries_concentration_matches_naive_dense_softmax(masked: bool) -> None:
    q, k, v = _qkv(N=9, seed=3)
    bias = torch.rand(2, 9)
    mask = torch.rand(2, 9, generator=torch.Generator().manual_seed(4)) > 0.3 if masked else None
    if masked:
        mask[:, :2] = True  # keep some target keys alive
    target = torch.rand(2, 9, generator=torch.Generator().manual_seed(5))
    target[:, 0] = 0.0
    res = attention_stats(q, k, v, key_bias=bias, key_mask=mask, always_self=masked, return_lse=True)
    got = concentration_loss_all(q, k, res.lse, target, scale=8**-0.5, key_bias=bias, key_mask=mask)
    # naive: materialise every row, t on alive keys only, mean over heads and alive queries
    qd, kd = q.detach().clone().requires_grad_(), k.detach().clone().requires_grad_()
    p = naive_probs(qd, kd, 8**-0.5, bias, mask, masked)
    alive = torch.ones(2, 9, dtype=torch.bool) if mask is None else mask
    t = target.double() * alive
    t = t / t.sum(1, keepdim=True)
    logp = torch.log(p.clamp_min(1e-300))
    ce = -(t[:, None, None, :] * torch.where(t[:, None, None, :] > 0, logp, 0.0)).sum(-1)  # [B, H, N]
    w = alive[:, None, :].double().expand_as(ce)
    naive = ((ce * w).sum((1, 2)) / w.sum((1, 2))).mean()
    assert got.item() == pytest.approx(naive.item(), rel=1e-5)
    got.backward()
    naive.backward()
    torch.testing.assert_close(q.grad.double(), qd.grad.double(), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(k.grad.double(), kd.grad.double(), atol=1e-5, rtol=1e-4)
    # an empty target does not count
    zero = concentration_loss_all(q, k, res.lse, torch.zeros(2, 9), scale=8**-0.5, key_bias=bias, key_mask=mask)
    assert zero.item() == 0.0
    with pytest.raises(ValueError, match=r"target must have shape \[B, N\]"):
        concentration_loss_all(q, k, res.lse, torch.ones(2, 4), scale=1.0)


def test_background_and_entropy_losses_hand_computed() -> None:
    mass = torch.tensor([[[0.2, 0.5], [0.4, 0.1]]])  # [1, 2, 2]
    assert background_mass_loss(mass, "cls").item() == pytest.approx(0.3)
    assert background_mass_loss(mass, "all").item() == pytest.approx(0.3)
    ent = torch.full((1, 1, 4), math.log(4))
    assert entropy_loss(ent, "all").item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="queries"):
        background_mass_loss(mass, "rows")
    # weighted rows (head means): (0.2 + 0.4) / 2 = 0.3 for row 0, (0.9 + 0.1) / 2 = 0.5 for row 1; weights 3 : 1
    mass2 = torch.tensor([[[0.2, 0.9], [0.4, 0.1]]])
    got = background_mass_loss(mass2, "weighted", torch.tensor([[3.0, 1.0]]))
    assert got.item() == pytest.approx((3 * 0.3 + 1 * 0.5) / 4)
    with pytest.raises(ValueError, match="row_weights"):
        background_mass_loss(mass2, "weighted")
    with pytest.raises(ValueError, match="row_weights must be >= 0"):
        background_mass_loss(mass2, "weighted", torch.tensor([[-1.0, 1.0]]))


def test_diversity_loss_matches_naive_rows() -> None:
    q, k, v = _qkv(N=7, seed=2)
    res = attention_stats(q, k, v, return_lse=True)
    p = naive_probs(q, k, 8**-0.5).mean(1)  # [B, N, N], all rows (N <= num_queries)
    pn = torch.nn.functional.normalize(p, dim=-1)
    gram = pn @ pn.transpose(1, 2)
    expected = ((gram.sum((1, 2)) - gram.diagonal(dim1=1, dim2=2).sum(1)) / (7 * 6)).mean()
    got = diversity_loss(q, k, res.lse, scale=8**-0.5, num_queries=16)
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)
    got.backward()
    assert q.grad is not None and q.grad.abs().sum() > 0


def test_targets_hand_computed() -> None:
    mask = torch.zeros(1, 1, 4, 4)
    mask[0, 0, :2, :2] = 1.0
    mask[0, 0, 2, 2] = 1.0
    t = token_target(mask, (2, 2))
    torch.testing.assert_close(t, torch.tensor([[0.0, 1.0, 0.0, 0.0, 0.25]]))
    with pytest.raises(ValueError, match="does not tile"):
        token_target(torch.zeros(1, 5, 5), (2, 2))
    with pytest.raises(ValueError, match=r"\[B, H, W\]"):
        token_target(torch.zeros(5, 5), (2, 2))
    g = gaussian_from_points(torch.tensor([[0.125, 0.625]]), (4, 4), 0.25)
    assert g.argmax().item() == 0 * 4 + 2 and g.max().item() == pytest.approx(1.0)
    assert g[0, 3].item() == pytest.approx(math.exp(-0.5 * (0.25 / 0.25) ** 2))
    torch.testing.assert_close(mask_boxes(mask), torch.tensor([[0.0, 0.0, 0.75, 0.75]]))
    gb = gaussian_from_boxes(torch.tensor([[0.0, 0.0, 0.5, 0.5]]), (2, 2))
    assert gb.argmax().item() == 0
    with pytest.raises(ValueError, match="y1 > y0"):
        gaussian_from_boxes(torch.tensor([[0.5, 0.0, 0.5, 1.0]]), (2, 2))
    assert token_grid(vit_digits()) == (8, 8)


def _scene(B=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, 1, 32, 32, generator=g)
    y = torch.randint(0, 10, (B,), generator=g)
    mask = torch.zeros(B, 1, 32, 32)
    mask[:, :, 8:20, 4:16] = 1.0
    return x, y, mask


def test_bas_module_equals_naive_background_mass_and_shares_the_forward() -> None:
    torch.manual_seed(0)
    vit = vit_digits(depth=2).eval()
    x, y, mask = _scene()
    loss = BackgroundSuppressionLoss(2.0, layers=[0, 1], queries="all")
    with AttentionRecorder(vit, [0, 1], qk=True) as rec:
        vit(x)
    bg = 1 - token_target(mask, (8, 8))
    bg[:, 0] = 0
    naive = [
        (naive_probs(rec[i].q, rec[i].k, rec[i].scale) * bg[:, None, None].double()).sum(-1).mean() for i in (0, 1)
    ]
    own = loss.penalty(vit, x, y, mask)  # runs its own forward
    assert own.item() == pytest.approx(2.0 * sum(naive).item() / 2, rel=1e-5)
    out = loss(vit, x, y, mask)  # one forward, shared
    assert out.penalty.item() == pytest.approx(own.item(), rel=1e-6)
    bg[:, 0] = 1  # cls_is_background: attention on the class token counts too
    strict = BackgroundSuppressionLoss(1.0, layers=[1], queries="cls", cls_is_background=True).penalty(vit, x, y, mask)
    p1 = naive_probs(rec[1].q, rec[1].k, rec[1].scale)[:, :, 0]
    assert strict.item() == pytest.approx((p1 * bg[:, None].double()).sum(-1).mean().item(), rel=1e-5)
    rows = token_target(mask, (8, 8)).double()
    rows[:, 0] = 1.0
    obj = BackgroundSuppressionLoss(1.0, layers=[1], queries="object", cls_is_background=True).penalty(vit, x, y, mask)
    pb = (naive_probs(rec[1].q, rec[1].k, rec[1].scale) * bg[:, None, None].double()).sum(-1).mean(1)  # [B, N]
    assert obj.item() == pytest.approx(((pb * rows).sum(1) / rows.sum(1)).mean().item(), rel=1e-5)
    out.loss.backward()
    assert vit.blocks[0].attn.qkv.weight.grad.abs().sum() > 0


def test_concentration_entropy_diversity_modules_match_functional_on_naive_stats() -> None:
    torch.manual_seed(1)
    vit = vit_digits(depth=1).eval()
    x, y, mask = _scene(seed=1)
    with AttentionRecorder(vit, [0], qk=True) as rec:
        vit(x)
    p = naive_probs(rec[0].q, rec[0].k, rec[0].scale).float()
    conc = ConcentrationLoss(1.0, [0], target="mask").penalty(vit, x, y, mask)
    assert conc.item() == pytest.approx(concentration_loss(p[:, :, 0], token_target(mask, (8, 8))).item(), rel=1e-5)
    t = token_target(mask, (8, 8)).double()
    t = t / t.sum(1, keepdim=True)
    naive_all = -(t[:, None, None] * p.double().log()).sum(-1).mean()  # every query row, mean over heads and rows
    conc_all = ConcentrationLoss(2.0, [0], target="mask", queries="all").penalty(vit, x, y, mask)
    assert conc_all.item() == pytest.approx(2.0 * naive_all.item(), rel=1e-4)
    # "object": rows of the class token (weight 1) and of object patches (weight = coverage) only
    rows = token_target(mask, (8, 8)).double()
    rows[:, 0] = 1.0
    ce = -(t[:, None, None] * p.double().log()).sum(-1).mean(1)  # [B, N] per query row
    naive_obj = ((ce * rows).sum(1) / rows.sum(1)).mean()
    conc_obj = ConcentrationLoss(1.0, [0], target="mask", queries="object").penalty(vit, x, y, mask)
    assert conc_obj.item() == pytest.approx(naive_obj.item(), rel=1e-4)
    assert abs(conc_obj.item() - naive_all.item()) > 1e-3  # a different set of rows
    ent = AttentionEntropyLoss(1.0, [0], queries="all").penalty(vit, x, y)
    naive_ent = -(p * p.clamp_min(1e-30).log()).sum(-1).mean() / math.log(65)
    assert ent.item() == pytest.approx(naive_ent.item(), rel=1e-4)
    inv = AttentionEntropyLoss(1.0, [0], queries="all", maximize=True).penalty(vit, x, y)
    assert inv.item() == pytest.approx(1 - naive_ent.item(), rel=1e-4)
    div = AttentionDiversityLoss(1.0, [0], num_queries=65).penalty(vit, x, y)
    pn = torch.nn.functional.normalize(p.mean(1), dim=-1)
    gram = pn @ pn.transpose(1, 2)
    assert div.item() == pytest.approx(
        ((gram.sum((1, 2)) - gram.diagonal(dim1=1, dim2=2).sum(1)) / (65 * 64)).mean().item(), rel=1e-4
    )


def test_loss_module_errors() -> None:
    vit = vit_digits(depth=1)
    x, y, _ = _scene()
    with pytest.raises(ValueError, match="needs a mask"):
        ConcentrationLoss().penalty(vit, x, y)
    with pytest.raises(ValueError, match="target must be"):
        ConcentrationLoss(target="blob")
    with pytest.raises(ValueError, match=r"queries must be one of \(.*'object'\), got 'rows'"):
        ConcentrationLoss(queries="rows")
    with pytest.raises(ValueError, match="weight"):
        BackgroundSuppressionLoss(-1.0)
    with pytest.raises(IndexError, match="out of range"):
        BackgroundSuppressionLoss(1.0, layers=[3]).penalty(vit, x, y, torch.ones(2, 1, 32, 32))
