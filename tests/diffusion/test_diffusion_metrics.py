"""UA / Acc_r / Fréchet distance against hand-computed values and scipy's matrix square root."""

import numpy as np
import pytest
import torch
from diff_helpers import tiny
from scipy import linalg

from salguide.diffusion.metrics import frechet_distance, generate_per_class, generation_metrics, judge_features
from salguide.models import SmallCNN


def test_frechet_distance_matches_scipy_sqrtm():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(200, 5, generator=g)
    b = torch.randn(150, 5, generator=g) @ torch.randn(5, 5, generator=g) + 0.5
    mu = (a.mean(0) - b.mean(0)).double().numpy()
    sa, sb = np.cov(a.double().numpy().T), np.cov(b.double().numpy().T)
    want = mu @ mu + np.trace(sa + sb - 2 * np.real(linalg.sqrtm(sa @ sb)))
    assert frechet_distance(a, b) == pytest.approx(float(want), rel=1e-6)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)
    with pytest.raises(ValueError, match="feature sets"):
        frechet_distance(a, b[:, :3])


class FixedJudge(torch.nn.Module):
    """Predicts the class stored in the top-left pixel; features are the flattened image."""

    def __init__(self):
        super().__init__()
        self.features, self.pool = torch.nn.Identity(), torch.nn.Flatten()

    def forward(self, x):
        return torch.nn.functional.one_hot(x[:, 0, 0, 0].long(), 3).float()


def test_ua_and_retained_accuracy_by_hand():
    labels = torch.tensor([0, 0, 0, 0, 1, 1, 2, 2])
    predicted = torch.tensor([0, 1, 2, 0, 1, 0, 2, 2])  # forget class 0: 2 of 4 elsewhere; retained: 3 of 4 right
    images = torch.rand(8, 1, 2, 2)
    images[:, 0, 0, 0] = predicted.float()
    real_x = torch.rand(6, 1, 2, 2)
    real_y = torch.tensor([0, 1, 1, 2, 2, 2])
    got = generation_metrics(images, labels, FixedJudge(), 0, real_x, real_y, feature_fn=lambda j, x: x.flatten(1))
    assert got["UA"] == 50.0 and got["Acc_r"] == 75.0
    assert got["FD"] == pytest.approx(frechet_distance(images[4:].flatten(1), real_x[1:].flatten(1)))
    with pytest.raises(ValueError, match="forget class 5 is outside"):
        generation_metrics(images, labels, FixedJudge(), 5, real_x, real_y)


def test_generations_per_class_are_seeded():
    m = tiny()
    x, y = generate_per_class(m, 4, 2, steps=2, seed=3)
    assert x.shape == (8, 1, 8, 8) and y.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert torch.equal(x, generate_per_class(m, 4, 2, steps=2, seed=3)[0])
    assert judge_features(SmallCNN(4, width=4), x).shape == (8, 8)
