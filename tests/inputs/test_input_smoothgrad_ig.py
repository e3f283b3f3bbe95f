"""SmoothGrad and Integrated Gradients against naive loops, completeness, steps / baseline errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from salguide.inputs import integrated_gradients, smoothgrad, trapezoid_weights


def mlp() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 6), nn.Tanh(), nn.Linear(6, 3)).double()


def per_sample_grad(model, xi: torch.Tensor, cls: int) -> torch.Tensor:
    """Gradient of one sample's logit, with its own forward (batch of 1)."""
    z = xi[None].clone().requires_grad_(True)
    (g,) = torch.autograd.grad(model(z)[0, cls], z)
    return g[0]


def test_smoothgrad_equals_a_naive_loop_with_the_same_noise():
    model = mlp()
    x = torch.randn(3, 1, 3, 4, dtype=torch.float64)
    y = torch.tensor([0, 2, 1])
    noise = 0.3 * torch.randn(5, *x.shape, dtype=torch.float64)
    for squared in (False, True):
        got = smoothgrad(model, x, y, n_samples=5, noise=noise, squared=squared)
        ref = torch.stack(
            [
                torch.stack(
                    [per_sample_grad(model, x[b] + noise[s, b], int(y[b])) ** (2 if squared else 1) for s in range(5)]
                ).mean(0)
                for b in range(3)
            ]
        )
        torch.testing.assert_close(got, ref)


def test_smoothgrad_noise_scales_with_the_input_range_and_zero_noise_is_the_gradient():
    model = mlp()
    x = torch.randn(2, 1, 3, 4, dtype=torch.float64)
    zero = smoothgrad(model, x, 1, n_samples=3, noise_level=0.0)
    ref = torch.stack([per_sample_grad(model, x[b], 1) for b in range(2)])
    torch.testing.assert_close(zero, ref)
    g = torch.Generator().manual_seed(0)
    a = smoothgrad(model, x, 1, n_samples=4, generator=g)
    b = smoothgrad(model, x, 1, n_samples=4, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, zero)
    with pytest.raises(ValueError, match="n_samples must be an integer >= 1"):
        smoothgrad(model, x, n_samples=0)
    with pytest.raises(ValueError, match="noise must have shape"):
        smoothgrad(model, x, n_samples=2, noise=torch.zeros(3, *x.shape))


def test_trapezoid_weights():
    a, w = trapezoid_weights(4, torch.float64)
    torch.testing.assert_close(a, torch.tensor([0, 0.25, 0.5, 0.75, 1.0], dtype=torch.float64))
    torch.testing.assert_close(w, torch.tensor([0.125, 0.25, 0.25, 0.25, 0.125], dtype=torch.float64))


def test_integrated_gradients_equals_a_naive_loop():
    model = mlp()
    x = torch.randn(2, 1, 3, 4, dtype=torch.float64)
    base = torch.randn(1, 1, 3, 4, dtype=torch.float64)
    y = torch.tensor([2, 0])
    steps = 5
    got = integrated_gradients(model, x, y, baseline=base, steps=steps)
    ref = []
    for b in range(2):
        grads = [per_sample_grad(model, base[0] + (k / steps) * (x[b] - base[0]), int(y[b])) for k in range(steps + 1)]
        integral = sum(grads[1:-1]) / steps + (grads[0] + grads[-1]) / (2 * steps)
        ref.append((x[b] - base[0]) * integral)
    torch.testing.assert_close(got, torch.stack(ref))


def test_completeness_is_exact_for_a_quadratic_model():
    """F(x) = x^T A x + c^T x: the gradient is linear along the path, so the trapezoid rule is exact."""
    torch.manual_seed(0)
    a, c = torch.randn(6, 6, dtype=torch.float64), torch.randn(6, dtype=torch.float64)

    def quad(z):
        f = torch.einsum("bi,ij,bj->b", z, a, z) + z @ c
        return torch.stack([f, -f], 1)

    x = torch.randn(4, 6, dtype=torch.float64)
    ig = integrated_gradients(quad, x, 0, baseline=0.5, steps=1)
    base = torch.full_like(x, 0.5)
    torch.testing.assert_close(ig.sum(1), quad(x)[:, 0] - quad(base)[:, 0])


def test_integrated_gradients_errors():
    model = mlp()
    x = torch.randn(2, 1, 3, 4, dtype=torch.float64)
    for steps in (0, -3, 2.5):
        with pytest.raises(ValueError, match="steps must be an integer >= 1"):
            integrated_gradients(model, x, steps=steps)
    with pytest.raises(ValueError, match="does not broadcast"):
        integrated_gradients(model, x, baseline=torch.zeros(5, 5, dtype=torch.float64))


def test_extra_forwards_leave_batchnorm_statistics_and_mode_alone():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 16, 4)).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(4, 1, 6, 6)
    sg = smoothgrad(model, x, 1, n_samples=3)
    ig = integrated_gradients(model, x, 1, steps=3)
    (sg.square().sum() + ig.square().sum()).backward()  # the double backward still works
    assert model.training
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, before[k], msg=k)
    model(x)  # whereas a plain train-mode forward moves them
    assert not torch.equal(model[1].running_mean, before["1.running_mean"])
