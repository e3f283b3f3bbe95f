"""Integer arguments accept any integral type (numpy and torch integer scalars), give the same result as a
Python int, and still refuse bools and floats with an error naming the argument."""

import numpy as np
import pytest
import torch
from torch import nn

from salguide.attention import BackgroundSuppressionLoss, EViTPolicy
from salguide.attention.routing import Router
from salguide.inputs import integrated_gradients, smoothgrad
from salguide.metrics import DeletionAUC

INTEGRALS = [np.int64(8), np.int32(8), np.uint8(8), torch.tensor(8)]


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 5), nn.Tanh(), nn.Linear(5, 3)).double()


@pytest.mark.parametrize("steps", INTEGRALS, ids=lambda v: type(v).__name__)
def test_saliency_counts_accept_integral_types(steps):
    model, x = mlp(), torch.randn(2, 1, 3, 4, dtype=torch.float64)
    torch.testing.assert_close(integrated_gradients(model, x, steps=steps), integrated_gradients(model, x, steps=8))
    noise = torch.randn(8, *x.shape, dtype=torch.float64)
    torch.testing.assert_close(
        smoothgrad(model, x, 1, n_samples=steps, noise=noise), smoothgrad(model, x, 1, n_samples=8, noise=noise)
    )
    assert DeletionAUC(steps=steps).steps == 8 and type(DeletionAUC(steps=steps).steps) is int


@pytest.mark.parametrize("index", [np.int64(-1), np.int32(1), torch.tensor(1)], ids=lambda v: type(v).__name__)
def test_layer_indices_accept_integral_types(index):
    router = Router(2)
    assert router.layer(index) == 1 and router.layers(index) == (1,) and router.layers(np.array([0, 1])) == (0, 1)
    assert BackgroundSuppressionLoss(1.0, index).layers == [int(index)]
    policy = EViTPolicy(index, 0.5)
    policy.bind(router)
    assert policy.layers == (1,)


def test_ant_and_scenes_accept_integral_types():
    from salguide.data import SyntheticScenesDataModule
    from salguide.weights.ant import _check_run_args

    _check_run_args(np.arange(3), np.int64(2), 1e-3)
    SyntheticScenesDataModule(tile=np.int64(4))


@pytest.mark.parametrize("bad", [True, 2.5, "8"], ids=["bool", "float", "str"])
def test_bools_and_floats_are_still_refused_by_name(bad):
    model, x = mlp(), torch.randn(2, 1, 3, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match="integrated_gradients: steps must be an integer >= 1"):
        integrated_gradients(model, x, steps=bad)
    with pytest.raises(ValueError, match="steps must be an integer >= 1"):
        DeletionAUC(steps=bad)
    with pytest.raises(TypeError, match="a layer index must be an integer"):
        Router(2).layer(bad)
