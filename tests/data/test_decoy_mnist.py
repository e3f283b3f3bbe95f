"""Decoy (Fashion-)MNIST against RRR's decoy_mnist.py rule: a 4x4 patch in a random corner, shade
255 - 25 y in training and of a random class at test; the patch is the annotation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from idx_helpers import make_idx_dir

from salguide.data import DecoyFashionMNISTDataModule, DecoyMNISTDataModule

CORNERS = {(0, 0): 0, (0, 24): 1, (24, 0): 2, (24, 24): 3}  # top-left pixel of the 4x4 patch -> corner


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    path = tmp_path_factory.mktemp("decoy")
    make_idx_dir(path, per_class=(40, 30), gz=True)
    return path


def _patches(ds):
    """Per sample: the corner whose 4x4 block the mask marks, and the uint8 shade found there."""
    corners, shades = [], []
    for i in range(len(ds)):
        x, _, m = ds[i]
        (r, c) = [int(v) for v in m[0].nonzero()[0]]
        assert float(m.sum()) == 16 and bool(m[0, r : r + 4, c : c + 4].all())
        corners.append(CORNERS[(r, c)])
        block = (x[0, r : r + 4, c : c + 4] * 255).round()
        shades.append(int(block[0, 0]) if bool((block == block[0, 0]).all()) else -1)
    return np.array(corners), np.array(shades)


def test_training_patch_encodes_the_label_and_test_patch_is_random(root):
    dm = DecoyFashionMNISTDataModule(root, seed=0, val_fraction=0.1)
    dm.setup()
    assert dm.mask_semantics == "irrelevant" and dm.input_shape == (1, 28, 28)
    ytr = dm.train_dataset.y.numpy()
    corners, shades = _patches(dm.train_dataset)
    assert np.array_equal(shades, 255 - 25 * ytr)  # RRR: img[i][j] = 255 - mult * digit, mult = 25
    assert set(corners) == {0, 1, 2, 3} and np.bincount(corners).min() > len(corners) / 8
    yte = dm.test_dataset.y.numpy()
    _, test_shades = _patches(dm.test_dataset)
    test_class = (255 - test_shades) / 25
    assert set(test_shades) <= {255 - 25 * k for k in range(10)}
    assert 0.0 < np.mean(test_class == yte) < 0.3  # random class: ~10 % agreement, not 100 %
    x, y, m = dm.train_dataset[0]
    assert x.dtype == torch.float32 and 0 <= float(x.min()) and float(x.max()) <= 1 and y.dtype == torch.long


def test_pixels_off_the_patch_are_the_files_pixels(root):
    src = DecoyFashionMNISTDataModule.source.read_files(root)["train"][0].float() / 255
    for regime in ("train", "clean"):
        dm = DecoyFashionMNISTDataModule(root, seed=3, train_regime=regime)
        dm.setup()
        for i in (0, 7):
            x, _, m = dm.train_dataset[i]
            off = ~m.bool()
            same = [bool(torch.equal(src[j][off], x[off])) for j in range(len(src))]
            assert sum(same) >= 1
            if regime == "clean":  # untouched image; the mask still marks one corner
                assert any(torch.equal(src[j], x) for j in range(len(src))) and float(m.sum()) == 16


def test_splits_regimes_and_seeding(root):
    a = DecoyMNISTDataModule(root, seed=5, val_fraction=0.25, train_regime="test", val_regime="train")
    b = DecoyMNISTDataModule(root, seed=5, val_fraction=0.25, train_regime="test", val_regime="train")
    a.setup(), b.setup()
    assert len(a.train_dataset) == 300 and len(a.val_dataset) == 100 and len(a.test_dataset) == 300
    assert torch.bincount(a.val_dataset.y).tolist() == [10] * 10
    assert torch.equal(a.train_dataset.x, b.train_dataset.x) and torch.equal(a.test_dataset.x, b.test_dataset.x)
    _, val_shades = _patches(a.val_dataset)
    assert np.array_equal(val_shades, 255 - 25 * a.val_dataset.y.numpy())  # val_regime=train
    _, tr_shades = _patches(a.train_dataset)
    assert np.mean(tr_shades == 255 - 25 * a.train_dataset.y.numpy()) < 0.3  # train_regime=test: random
    batch = next(iter(a.train_dataloader()))
    assert len(batch) == 3 and batch[2].shape == (64, 1, 28, 28)


def test_subsets_and_bad_arguments(root):
    dm = DecoyFashionMNISTDataModule(root, train_size=100, test_size=50, val_fraction=0.2)
    dm.setup()
    assert len(dm.train_dataset) == 80 and len(dm.val_dataset) == 20 and len(dm.test_dataset) == 50
    for kw, match in (
        (dict(train_regime="decoy"), "train_regime"),
        (dict(val_regime="clean"), "val_regime"),
        (dict(patch_size=15), "patch_size"),
        (dict(val_fraction=1.0), "val_fraction"),
        (dict(train_size=0), "train_size"),
    ):
        with pytest.raises(ValueError, match=match):
            DecoyFashionMNISTDataModule(root, **kw)
    with pytest.raises(ValueError, match="MNIST: data_dir is required"):
        DecoyMNISTDataModule()
