"""DecoyDigits and synthetic scenes: the shortcut is exact in training, broken at test, masks are right."""

from __future__ import annotations

import pytest
import torch

from salguide.data.decoy_digits import DecoyDigitsDataModule, decoy_shade
from salguide.data.scenes import _COLOURS, SyntheticScenesDataModule


def test_decoy_patch_encodes_the_label_in_training_only():
    dm = DecoyDigitsDataModule(seed=0)
    dm.setup()
    x, y, mask = dm.train_dataset.tensors
    assert x.shape[1:] == (1, 20, 20) and mask.shape == x.shape
    assert torch.all(mask.sum((1, 2, 3)) == 16)  # one 4x4 patch per image
    for i in range(0, len(y), 37):
        m = mask[i, 0].bool()
        rows, cols = m.any(1).nonzero().flatten(), m.any(0).nonzero().flatten()
        assert rows.tolist() in ([0, 1, 2, 3], [16, 17, 18, 19]) and cols.tolist() in ([0, 1, 2, 3], [16, 17, 18, 19])
        assert torch.allclose(x[i, 0][m], decoy_shade(y[i : i + 1]).expand(16))  # the shade is the label
    xt, yt, mt = dm.test_dataset.tensors
    shades = torch.stack([xt[i, 0][mt[i, 0].bool()][0] for i in range(len(yt))])
    agree = torch.isclose(shades, decoy_shade(yt)).float().mean()
    assert 0.03 < agree < 0.25  # random class shades: about 1 in 10 agree by chance


def test_decoy_regimes_seeds_and_errors():
    a, b = DecoyDigitsDataModule(seed=3), DecoyDigitsDataModule(seed=3)
    a.setup(), b.setup()
    assert torch.equal(a.train_dataset.tensors[0], b.train_dataset.tensors[0])
    c = DecoyDigitsDataModule(seed=3, train_regime="clean")
    c.setup()
    x, _, m = c.train_dataset.tensors
    xd = a.train_dataset.tensors[0]
    assert torch.equal(x * (1 - m), xd * (1 - m))  # same digits and positions as the decoy images
    assert (x * m).sum() < 0.05 * m.sum() < (xd * m).sum()  # but no patch painted (corners nearly blank)
    assert next(iter(a.train_dataloader()))[0].shape == (64, 1, 20, 20)
    with pytest.raises(ValueError, match="train_regime"):
        DecoyDigitsDataModule(train_regime="noisy")
    with pytest.raises(ValueError, match="patch_size"):
        DecoyDigitsDataModule(patch_size=11)


def test_scenes_background_follows_the_label_in_training_and_not_at_test():
    dm = SyntheticScenesDataModule(seed=0)
    dm.setup()

    def background_class(x, mask):
        bg = 1 - mask
        mean = (x * bg).sum((2, 3)) / bg.sum((2, 3))  # [N, 3] mean background colour
        dirs = _COLOURS / _COLOURS.norm(dim=1, keepdim=True)
        return (mean / mean.norm(dim=1, keepdim=True) @ dirs.T).argmax(1)

    x, y, m = dm.train_dataset.tensors
    assert x.shape[1:] == (3, 24, 24) and m.shape[1:] == (1, 24, 24)
    assert (background_class(x, m) == y).float().mean() > 0.95
    xt, yt, mt = dm.test_dataset.tensors
    assert (background_class(xt, mt) == yt).float().mean() < 0.3
    # the object mask is where the white digit is: those pixels are bright in all channels
    assert x.permute(0, 2, 3, 1)[m[:, 0].bool()].min() > 0.25  # alpha > 0.25 there
    assert 0.05 < m.mean() < 0.3
    with pytest.raises(ValueError, match="correlation"):
        SyntheticScenesDataModule(correlation=1.5)
