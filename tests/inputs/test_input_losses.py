"""RRR, SGT and energy losses against hand-derived formulas and naive loops; mask-shape errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from salguide.inputs import EnergyLoss, RRRLoss, SGTLoss, energy_in_mask, mask_lowest, rrr_penalty, sgt_kl


def test_rrr_penalty_of_a_linear_model_matches_the_closed_form():
    """logits = W x + b: d/dx sum_k log p_k = sum_k w_k - K * sum_j p_j w_j."""
    torch.manual_seed(0)
    lin = nn.Linear(5, 3).double()
    x = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    mask = (torch.rand(4, 5) > 0.5).double()
    p = F.softmax(lin(x), -1).detach()
    w = lin.weight.detach()
    grad = w.sum(0) - 3 * p @ w
    ref = ((mask * grad) ** 2).sum(1).mean()
    torch.testing.assert_close(rrr_penalty(lin(x), x, mask), ref)
    # true-label variant: d/dx log p_y = w_y - sum_j p_j w_j
    y = torch.tensor([0, 1, 2, 1])
    ref_y = ((mask * (w[y] - p @ w)) ** 2).sum(1).mean()
    torch.testing.assert_close(rrr_penalty(lin(x), x, mask, y), ref_y)


def test_rrr_loss_matches_a_naive_per_sample_loop_and_is_trainable():
    torch.manual_seed(1)
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.Tanh(), nn.Linear(8, 4)).double()
    x = torch.rand(3, 1, 4, 4, dtype=torch.float64)
    y = torch.tensor([0, 3, 2])
    mask = torch.zeros(3, 4, 4, dtype=torch.float64)
    mask[:, :2, :2] = 1
    out = RRRLoss(weight=7.0)(net, x, y, mask)
    pens = []
    for b in range(3):
        z = x[b : b + 1].clone().requires_grad_(True)
        (g,) = torch.autograd.grad(F.log_softmax(net(z), -1).sum(), z)
        pens.append(((mask[b] * g[0, 0]) ** 2).sum())
    torch.testing.assert_close(out.penalty, 7.0 * torch.stack(pens).mean())
    torch.testing.assert_close(out.task_loss, F.cross_entropy(net(x), y))
    torch.testing.assert_close(out.loss, out.task_loss + out.penalty)
    out.loss.backward()  # double backward reaches the weights
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())


def test_rrr_penalty_gradient_matches_finite_differences():
    torch.manual_seed(2)
    net = nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 3)).double()
    x = torch.randn(2, 4, dtype=torch.float64)
    mask = torch.tensor([[1.0, 0, 1, 0], [0, 1, 1, 0]], dtype=torch.float64)

    def penalty(weight: torch.Tensor) -> torch.Tensor:
        xg = x.clone().requires_grad_(True)
        h = torch.tanh(F.linear(xg, weight, net[0].bias))
        return rrr_penalty(net[2](h), xg, mask)

    w0 = net[0].weight.detach().clone().requires_grad_(True)
    assert torch.autograd.gradcheck(penalty, (w0,))


@pytest.mark.parametrize("shape", [(2, 1, 5, 5), (2, 5, 5), (2, 3, 5, 5)])
def test_accepted_mask_shapes(shape):
    net = nn.Sequential(nn.Flatten(), nn.Linear(75, 3))
    x = torch.rand(2, 3, 5, 5)
    out = RRRLoss()(net, x, torch.tensor([0, 1]), torch.ones(shape))
    assert out.penalty > 0


@pytest.mark.parametrize("shape", [(2, 1, 4, 4), (3, 5, 5), (2, 2, 5, 5), (5, 5)])
def test_mask_shape_mismatch_is_a_clear_error(shape):
    net = nn.Sequential(nn.Flatten(), nn.Linear(75, 3))
    x = torch.rand(2, 3, 5, 5)
    with pytest.raises(
        ValueError, match=r"annotation mask of shape .* does not match the input of shape \(2, 3, 5, 5\)"
    ):
        RRRLoss()(net, x, torch.tensor([0, 1]), torch.ones(shape))
    with pytest.raises(ValueError, match="needs a mask"):
        RRRLoss()(net, x, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="weight must be a finite number >= 0"):
        RRRLoss(weight=-1.0)


def test_mask_lowest_replaces_exactly_the_lowest_features():
    x = torch.arange(8.0).view(2, 1, 2, 2) + 10
    sal = torch.tensor([[4.0, 1.0, 3.0, 2.0], [0.5, 0.1, 0.9, 0.7]]).view(2, 1, 2, 2)
    out = mask_lowest(x, sal, 0.5, generator=torch.Generator().manual_seed(0))
    changed = (out != x).view(2, 4)
    assert changed.tolist() == [[False, True, False, True], [True, True, False, False]]
    flat, xf = out.view(2, 4), x.view(2, 4)
    for b in range(2):  # random values lie in the sample's range
        assert ((flat[b] >= xf[b].min()) & (flat[b] <= xf[b].max())).all()
    assert torch.equal(mask_lowest(x, sal, 0.1), x)  # floor(0.1 * 4) = 0 features


def test_sgt_kl_and_loss():
    a, b = torch.randn(3, 4), torch.randn(3, 4)
    p, q = a.softmax(-1), b.softmax(-1)
    torch.testing.assert_close(sgt_kl(a, b), (p * (p.log() - q.log())).sum(-1).mean())
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 4))
    x, y = torch.rand(5, 1, 4, 4), torch.randint(0, 4, (5,))
    o1 = SGTLoss(2.0, fraction=0.5, seed=3)(net, x, y)
    # the same penalty by hand: |d logit_y / dx| -> mask -> KL
    xg = x.clone().requires_grad_(True)
    logits = net(xg)
    (g,) = torch.autograd.grad(logits.gather(1, y[:, None]).sum(), xg)
    masked = mask_lowest(x, g.abs(), 0.5, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(o1.penalty, 2.0 * sgt_kl(logits, net(masked)))
    with pytest.raises(ValueError, match="fraction"):
        SGTLoss(fraction=1.0)


def test_energy_in_mask_hand_computed_and_loss():
    s = torch.tensor([[[1.0, -3.0], [0.0, 4.0]]])
    m = torch.tensor([[[1.0, 1.0], [0.0, 0.0]]])
    torch.testing.assert_close(energy_in_mask(s, m), torch.tensor([0.5]))  # (1 + 3) / 8
    torch.testing.assert_close(energy_in_mask(torch.zeros(1, 2, 2), m), torch.tensor([0.0]))
    torch.manual_seed(0)
    lin = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    x = torch.rand(1, 1, 2, 2)
    out = EnergyLoss(weight=1.0)(lin, x, torch.tensor([1]), m[:, None])
    w = lin[1].weight[1].detach().abs().view(2, 2)
    torch.testing.assert_close(out.penalty, 1 - (w * m[0]).sum() / w.sum())
    out.loss.backward()
    assert lin[1].weight.grad is not None
    with pytest.raises(ValueError, match="needs layer"):
        EnergyLoss(saliency="gradcam")
    with pytest.raises(ValueError, match="unknown saliency"):
        EnergyLoss(saliency="lime")


def test_energy_loss_with_gradcam_trains_the_conv():
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1), nn.Tanh(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 2)
    )
    x, y = torch.rand(2, 1, 6, 6), torch.tensor([0, 1])
    region = torch.zeros(2, 6, 6)
    region[:, 2:4, 2:4] = 1
    out = EnergyLoss(saliency="gradcam", layer="1")(net, x, y, region)
    assert 0 <= float(out.penalty.detach()) <= 1
    out.penalty.backward()
    assert net[0].weight.grad.abs().sum() > 0
