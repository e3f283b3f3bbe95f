"""Grad-CAM: CAM identity for GAP + linear heads, naive loops for conv maps and ViT tokens, errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from salguide.inputs import grad_cam, layer_names


class GapNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Tanh(), nn.Conv2d(4, 5, 3, stride=2, padding=1))
        self.fc = nn.Linear(5, 3)

    def forward(self, x):
        return self.fc(self.features(x).mean((2, 3)))


class TinyViT(nn.Module):
    """Patch embedding + class token + one mixing layer; head on the class token."""

    def __init__(self, dim: int = 6) -> None:
        super().__init__()
        self.embed = nn.Conv2d(1, dim, 2, stride=2)
        self.cls = nn.Parameter(torch.randn(1, 1, dim))
        self.block = nn.Linear(dim, dim)
        self.head = nn.Linear(dim, 3)

    def forward(self, x):
        t = self.embed(x).flatten(2).transpose(1, 2)
        t = torch.cat([self.cls.expand(len(x), -1, -1), t], 1)
        t = torch.tanh(self.block(t))
        mixed = t[:, 0] + t[:, 1:].mean(1) * t[:, 1:].amax(1)
        return self.head(mixed)


def test_gradcam_of_a_gap_linear_head_is_cam():
    """Selvaraju et al.: for GAP + linear, Grad-CAM = ReLU(sum_k w_ck A_k) / (h w) (CAM of Zhou et al.)."""
    torch.manual_seed(0)
    net = GapNet().double()
    x = torch.randn(3, 1, 8, 8, dtype=torch.float64)
    y = torch.tensor([0, 2, 1])
    acts = net.features(x)
    h, w = acts.shape[-2:]
    cam = F.relu(torch.einsum("bk,bkij->bij", net.fc.weight[y], acts)) / (h * w)
    torch.testing.assert_close(grad_cam(net, x, y, layer="features", upsample=False), cam)
    up = grad_cam(net, x, y, layer="features")
    assert up.shape == (3, 8, 8)


def naive_gradcam(acts_fn, head_fn, x, y):
    out = []
    for b in range(len(x)):
        a = acts_fn(x[b : b + 1]).detach().requires_grad_(True)
        (g,) = torch.autograd.grad(head_fn(a)[0, int(y[b])], a)
        m = torch.zeros(a.shape[-2:], dtype=x.dtype)
        for k in range(a.shape[1]):
            m += g[0, k].mean() * a[0, k].detach()
        out.append(m.clamp_min(0))
    return torch.stack(out)


def test_gradcam_matches_a_naive_loop_on_a_nonlinear_head():
    torch.manual_seed(1)
    body = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.Tanh())
    head = nn.Sequential(nn.Conv2d(3, 2, 3), nn.Tanh(), nn.Flatten(), nn.Linear(2 * 16, 4))
    net = nn.Sequential(body, head).double()
    x = torch.randn(2, 1, 6, 6, dtype=torch.float64)
    y = torch.tensor([3, 1])
    ref = naive_gradcam(body, head, x, y)
    torch.testing.assert_close(grad_cam(net, x, y, layer="0", upsample=False), ref)


def test_gradcam_on_vit_tokens_reshapes_to_a_grid():
    torch.manual_seed(2)
    vit = TinyViT().double()
    x = torch.randn(2, 1, 8, 8, dtype=torch.float64)
    y = torch.tensor([1, 2])

    def tokens(z):
        t = vit.embed(z).flatten(2).transpose(1, 2)
        return vit.block(torch.cat([vit.cls.expand(len(z), -1, -1), t], 1))  # the hooked layer's output

    def head(t):
        t = torch.tanh(t)
        return vit.head(t[:, 0] + t[:, 1:].mean(1) * t[:, 1:].amax(1))

    def grid(t):  # [1, 17, D] -> [1, D, 4, 4] without the class token
        return t[:, 1:].transpose(1, 2).reshape(1, -1, 4, 4)

    ref = []
    for b in range(2):
        t = tokens(x[b : b + 1]).detach().requires_grad_(True)
        (g,) = torch.autograd.grad(head(t)[0, int(y[b])], t)
        ga, aa = grid(g), grid(t.detach())
        ref.append((ga.mean((2, 3), keepdim=True) * aa).sum(1)[0].clamp_min(0))
    got = grad_cam(vit, x, y, layer="block", upsample=False)
    torch.testing.assert_close(got, torch.stack(ref))
    assert grad_cam(vit, x, y, layer="block").shape == (2, 8, 8)


def test_gradcam_is_differentiable_and_side_effect_free():
    torch.manual_seed(0)
    net = GapNet().train()
    x = torch.randn(2, 1, 8, 8)
    cam = grad_cam(net, x, 0, layer="features.0")
    cam.sum().backward()
    assert net.features[0].weight.grad is not None and net.training


def test_gradcam_errors_name_the_valid_layers():
    net = GapNet()
    x = torch.randn(1, 1, 8, 8)
    with pytest.raises(ValueError, match=r"no layer 'conv9'.*valid layer names: \['features', 'features.0'"):
        grad_cam(net, x, layer="conv9")
    assert layer_names(net) == ["features", "features.0", "features.1", "features.2", "fc"]

    class InPlace(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.act, self.fc = nn.Conv2d(1, 2, 3), nn.ReLU(inplace=True), nn.Linear(2, 3)

        def forward(self, x):
            return self.fc(self.act(self.conv(x)).mean((2, 3)))

    with pytest.raises(RuntimeError, match="modified in place"):
        grad_cam(InPlace(), x, layer="conv")

    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.fc = nn.Conv2d(1, 1, 3, padding=1), nn.Linear(1, 3)

        def forward(self, x):
            return self.fc(self.conv(self.conv(x)).mean((2, 3)))

    with pytest.raises(RuntimeError, match="ran 2 times"):
        grad_cam(Twice(), x, layer="conv")
    with pytest.raises(ValueError, match=r"\[B, C, h, w\] or \[B, N, D\]"):
        grad_cam(net, x, layer="fc")
