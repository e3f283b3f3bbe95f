"""SmallCNN, ResNet-18 (published parameter counts) and the model registry."""

import pytest
import torch
import torch.nn.functional as F

from salguide.models import SmallCNN, resnet18


def _n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_resnet18_parameter_counts_match_published_figures():
    assert _n_params(resnet18(num_classes=10)) == 11_173_962  # CIFAR variant (3x3 stem, no max-pool)
    assert _n_params(resnet18(num_classes=1000, small_input=False)) == 11_689_512  # torchvision's ImageNet ResNet-18


@pytest.mark.parametrize(
    "model, shape, classes",
    [
        (SmallCNN(num_classes=10), (4, 1, 8, 8), 10),
        (SmallCNN(num_classes=3, in_channels=3, width=8), (2, 3, 32, 32), 3),
    ],
)
def test_output_shapes(model, shape, classes):
    assert model.eval()(torch.randn(shape)).shape == (shape[0], classes)


@pytest.mark.parametrize("small_input, size, grid", [(True, 32, 4), (False, 64, 2)])
def test_resnet_output_and_downsampling(small_input, size, grid):
    """The CIFAR stem keeps resolution (total stride 8); the ImageNet stem adds 4x (total stride 32)."""
    model = resnet18(num_classes=7, in_channels=1, small_input=small_input).eval()
    features = {}
    model.layer4.register_forward_hook(lambda m, i, o: features.update(shape=o.shape))
    assert model(torch.randn(1, 1, size, size)).shape == (1, 7)
    assert features["shape"] == (1, 512, grid, grid)


def test_wrong_input_channels_and_sizes_are_named():
    with pytest.raises(ValueError, match=r"\[B, 1, H, W\]"):
        SmallCNN()(torch.randn(2, 3, 8, 8))
    with pytest.raises(ValueError, match="width"):
        SmallCNN(width=0)
    with pytest.raises(ValueError, match="num_classes"):
        resnet18(num_classes=0)


@pytest.mark.parametrize(
    "make, shape, lr, steps",
    [(lambda: SmallCNN(width=16), (32, 1, 8, 8), 1e-2, 5), (resnet18, (4, 3, 8, 8), 1e-3, 3)],
)
def test_a_few_training_steps_decrease_the_loss(make, shape, lr, steps):
    torch.manual_seed(0)
    model = make()
    x, y = torch.randn(shape), torch.randint(0, 10, (shape[0],))
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]
