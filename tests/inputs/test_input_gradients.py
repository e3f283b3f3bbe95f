"""Vanilla gradient / gradient x input: finite differences, double backward, side effects, bad input."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from salguide.inputs import gradient_x_input, input_gradient


def smooth_mlp(d: int = 6, k: int = 4) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(d, 5), nn.Tanh(), nn.Linear(5, k)).double()


def finite_difference_grad(f, x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    g = torch.zeros_like(x)
    for idx in range(x.numel()):
        e = torch.zeros_like(x).view(-1)
        e[idx] = eps
        e = e.view_as(x)
        g.view(-1)[idx] = (f(x + e) - f(x - e)) / (2 * eps)
    return g


@pytest.mark.parametrize("score", ["logit", "log_prob", "prob"])
def test_input_gradient_matches_finite_differences(score):
    model = smooth_mlp()
    x = torch.randn(3, 6, dtype=torch.float64)
    y = torch.tensor([0, 3, 1])

    def total(z):
        out = model(z)
        if score == "log_prob":
            out = out.log_softmax(-1)
        elif score == "prob":
            out = out.softmax(-1)
        return out.gather(1, y[:, None]).sum()

    with torch.no_grad():
        ref = finite_difference_grad(total, x)
    got = input_gradient(model, x, y, score=score)
    torch.testing.assert_close(got, ref, atol=1e-7, rtol=1e-6)
    torch.testing.assert_close(gradient_x_input(model, x, y, score=score), x * ref, atol=1e-7, rtol=1e-6)


def test_target_none_explains_the_predicted_class():
    model = smooth_mlp()
    x = torch.randn(5, 6, dtype=torch.float64)
    pred = model(x).argmax(-1)
    torch.testing.assert_close(input_gradient(model, x), input_gradient(model, x, pred))


def test_map_is_differentiable_in_the_parameters():
    """Double backward: d ||grad_x||^2 / d W checked by finite differences on W."""
    model = smooth_mlp()
    x = torch.randn(2, 6, dtype=torch.float64)
    y = torch.tensor([1, 2])
    w = model[0].weight

    def loss() -> torch.Tensor:
        return input_gradient(model, x, y).square().sum()

    (analytic,) = torch.autograd.grad(loss(), w)
    numeric = torch.zeros_like(w)
    with torch.no_grad():
        for i in range(w.numel()):
            old = w.view(-1)[i].item()
            w.view(-1)[i] = old + 1e-6
            with torch.enable_grad():
                up = loss().item()
            w.view(-1)[i] = old - 1e-6
            with torch.enable_grad():
                down = loss().item()
            w.view(-1)[i] = old
            numeric.view(-1)[i] = (up - down) / 2e-6
    torch.testing.assert_close(analytic, numeric, atol=1e-6, rtol=1e-5)


def test_no_side_effects_on_mode_or_parameter_grads():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 36, 3))
    model.train()
    model[1].eval()  # a mixed-mode model stays mixed
    x = torch.randn(2, 1, 8, 8)
    g = input_gradient(model, x, 0)
    assert g.shape == x.shape and g.requires_grad  # graph kept for a loss
    assert model.training and not model[1].training
    assert all(p.grad is None for p in model.parameters())
    assert not x.requires_grad  # the caller's tensor is not modified


def test_gradient_flows_to_an_upstream_input_that_requires_grad():
    model = smooth_mlp()
    z = torch.randn(2, 6, dtype=torch.float64, requires_grad=True)
    x = 2 * z
    input_gradient(model, x, 0).sum().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0


def test_errors_for_modes_that_break_gradients():
    model = smooth_mlp()
    x = torch.randn(2, 6, dtype=torch.float64)
    with torch.no_grad(), pytest.raises(RuntimeError, match="no_grad"):
        input_gradient(model, x)
    with torch.inference_mode(), pytest.raises(RuntimeError, match="inference_mode"):
        input_gradient(model, x)
    with torch.inference_mode():
        xi = x.clone()
    with pytest.raises(RuntimeError, match="inference tensor"):
        input_gradient(model, xi)

    class Detaching(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(6, 3).double()

        def forward(self, x):
            return self.lin(x.detach())

    with pytest.raises(RuntimeError, match="does not depend on the input"):
        input_gradient(Detaching(), x)
    frozen = smooth_mlp().requires_grad_(False)

    class NoGradInside(nn.Module):
        def forward(self, x):
            with torch.no_grad():
                return frozen(x)

    with pytest.raises(RuntimeError, match="does not require grad"):
        input_gradient(NoGradInside(), x)


def test_bad_targets_and_inputs():
    model = smooth_mlp()
    x = torch.randn(2, 6, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"target classes must lie in \[0, 4\)"):
        input_gradient(model, x, torch.tensor([0, 7]))
    with pytest.raises(ValueError, match="shape"):
        input_gradient(model, x, torch.tensor([0, 1, 2]))
    with pytest.raises(TypeError, match="floating-point"):
        input_gradient(model, torch.ones(2, 6, dtype=torch.long))
    with pytest.raises(ValueError, match="unknown score"):
        input_gradient(model, x, score="softmax")
