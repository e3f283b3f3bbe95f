"""The `saliency` config group's recipes, as the unlearning pipeline builds them."""

import pytest
import torch
from omegaconf import OmegaConf

from salguide.data import DigitsDataModule
from salguide.models import SmallCNN
from salguide.pipelines.unlearn import mask_builder
from salguide.weights import WeightMask, saliency_scores


@pytest.fixture(scope="module")
def dm():
    d = DigitsDataModule(batch_size=128, seed=0)
    d.setup("fit")
    return d


def test_salun_recipe_is_global_topk_of_forget_saliency(dm):
    torch.manual_seed(0)
    net = SmallCNN(width=8)
    cfg = OmegaConf.create(
        {"_target_": "salguide.weights.salun_mask", "_partial_": True, "ratio": 0.3, "scope": "global"}
    )
    mask = mask_builder(cfg, dm)(net)
    expected = WeightMask.from_scores(saliency_scores(net, dm.forget_dataloader(), progress=False), ratio=0.3)
    assert mask == expected
    assert mask.num_selected == int(0.3 * mask.numel)  # SalUn's int(len * ratio)


def test_ant_recipe_intersects_runs_per_layer(dm):
    torch.manual_seed(0)
    net = SmallCNN(width=8)
    cfg = OmegaConf.create(
        {
            "_target_": "salguide.weights.ant_mask",
            "_partial_": True,
            "ratio": 0.5,
            "scope": "layer",
            "seeds": [0, 1],
            "augmentations": {"_target_": "salguide.weights.gaussian_noise", "std": 0.5},
            "trajectory_steps": 0,
            "lr": 1e-3,
        }
    )
    mask = mask_builder(cfg, dm)(net)
    single = WeightMask.from_scores(
        saliency_scores(net, dm.forget_dataloader(), progress=False), ratio=0.5, scope="layer"
    )
    # an intersection of per-layer top-50 % masks keeps at most half of every tensor, and noise makes runs differ
    for m in mask.values():
        assert int(m.sum()) <= max(1, int(0.5 * m.numel()))
    assert mask.num_selected < single.num_selected


def test_unknown_recipe_is_an_error(dm):
    with pytest.raises(ValueError, match="saliency: .*salguide.weights.magic_mask"):
        mask_builder(OmegaConf.create({"_target_": "salguide.weights.magic_mask", "_partial_": True}), dm)
    with pytest.raises(ValueError, match="saliency must be a mask factory"):
        mask_builder(OmegaConf.create({"ratio": 0.5}), dm)  # no _target_


@pytest.mark.parametrize("key,value,message", [("ratio", 2, "ratio must be in"), ("scope", "net", "scope must be")])
def test_bad_ratio_or_scope_fails_before_any_mask_is_built(key, value, message):
    cfg = OmegaConf.create({"_target_": "salguide.weights.salun_mask", "_partial_": True, key: value})
    with pytest.raises(ValueError, match=message):
        mask_builder(cfg, datamodule=None)
