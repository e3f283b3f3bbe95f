"""Deletion / insertion AUC, pointing game and energy in mask against naive loops and hand values."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from salguide.metrics import DeletionAUC, EnergyInMask, InsertionAUC, PointingGame, curve_auc, deletion_curve


def naive_curve(model, x, sal, target, mode, steps, baseline):
    b, c, h, w = x.shape
    out = torch.zeros(b, steps + 1)
    for i in range(b):
        order = sorted(range(h * w), key=lambda p: (-float(sal[i].reshape(-1)[p]), p))
        for k in range(steps + 1):
            n = round(k * h * w / steps)
            img = x[i].clone() if mode == "deletion" else baseline[i].clone()
            for p in order[:n]:
                r, col = divmod(p, w)
                img[:, r, col] = baseline[i][:, r, col] if mode == "deletion" else x[i][:, r, col]
            out[i, k] = model(img[None]).softmax(-1)[0, target[i]]
    return out


@pytest.mark.parametrize("mode", ["deletion", "insertion"])
def test_curves_match_a_naive_pixel_loop(mode):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(2 * 5 * 5, 4))
    x, sal = torch.rand(3, 2, 5, 5), torch.rand(3, 5, 5)
    target = torch.tensor([0, 3, 1])
    base = torch.full_like(x, 0.25)
    got = deletion_curve(model, x, sal, target, mode=mode, steps=6, baseline=0.25, batch_size=5)
    torch.testing.assert_close(got, naive_curve(model, x, sal, target, mode, 6, base))
    metric = (DeletionAUC if mode == "deletion" else InsertionAUC)(steps=6, baseline=0.25)
    metric.update(model, x[:2], sal[:2], target[:2])
    metric.update(model, x[2:], sal[2:], target[2:])
    torch.testing.assert_close(metric.compute(), curve_auc(got).mean())


def test_auc_hand_computed_and_a_perfect_map_beats_a_reversed_one():
    torch.testing.assert_close(curve_auc(torch.tensor([[1.0, 0.5, 0.0]])), torch.tensor([0.5]))
    torch.testing.assert_close(curve_auc(torch.tensor([[0.0, 1.0]])), torch.tensor([0.5]))
    # model: logit of class 0 = 10 * pixel 0 only; the map that ranks pixel 0 first deletes the evidence first
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2, bias=False))
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[10.0, 0, 0, 0], [0, 0, 0, 0]]))
    x = torch.ones(1, 1, 2, 2)
    good, bad = torch.tensor([[[1.0, 0.5], [0.2, 0.1]]]), torch.tensor([[[0.0, 0.5], [0.2, 0.9]]])
    t = torch.tensor([0])
    d_good = curve_auc(deletion_curve(model, x, good, t, steps=4))
    d_bad = curve_auc(deletion_curve(model, x, bad, t, steps=4))
    p1 = torch.sigmoid(torch.tensor(10.0))
    torch.testing.assert_close(d_good, (p1 / 2 + 0.5 * 3 + 0.25) / 4 * torch.ones(1))  # p: p1, .5, .5, .5, .5
    assert d_good < d_bad
    with pytest.raises(ValueError, match="pixel saliency map"):
        deletion_curve(model, x, torch.rand(1, 1, 2, 2), t)


def test_pointing_game_and_energy_hand_computed():
    sal = torch.zeros(3, 4, 4)
    sal[0, 1, 1] = 5  # inside
    sal[1, 3, 3] = 5  # outside, 2 px away from the region
    sal[2, 0, 0] = 1  # region empty: skipped
    region = torch.zeros(3, 4, 4)
    region[:2, 1:2, 1:2] = 1
    pg = PointingGame()
    pg.update(sal, region)
    assert float(pg.compute()) == pytest.approx(0.5)
    tol = PointingGame(tolerance=2)
    tol.update(sal, region)
    assert float(tol.compute()) == pytest.approx(1.0)
    energy = EnergyInMask()
    s = torch.tensor([[[1.0, 3.0], [0.0, 4.0]], [[2.0, 2.0], [2.0, 2.0]]])
    m = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [0.0, 0.0]]])
    energy.update(s, m[:, None])
    torch.testing.assert_close(energy.compute(), torch.tensor((5 / 8 + 1 / 4) / 2))
    with pytest.raises(ValueError, match="does not match"):
        energy.update(s, torch.ones(2, 3, 3))
