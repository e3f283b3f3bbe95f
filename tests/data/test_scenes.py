"""Synthetic scenes' object-tile layout and evaluation correlation (salguide.data.scenes)."""

from __future__ import annotations

import pytest
import torch

from salguide.data.scenes import _COLOURS, TILE_VALUE, SyntheticScenesDataModule, compose_scenes


def _background_class(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    bg = 1 - mask
    mean = (x * bg).sum((2, 3)) / bg.sum((2, 3))
    dirs = _COLOURS / _COLOURS.norm(dim=1, keepdim=True)
    return (mean / mean.norm(dim=1, keepdim=True) @ dirs.T).argmax(1)


def test_tile_mask_is_an_aligned_square_that_holds_no_background():
    g = torch.Generator().manual_seed(0)
    digits = torch.rand(32, 1, 8, 8, generator=g)
    x, mask = compose_scenes(digits, torch.arange(32) % 10, 16, g, tile=4)
    for i in range(32):
        m = mask[i, 0].bool()
        rows, cols = m.any(1).nonzero().flatten(), m.any(0).nonzero().flatten()
        assert len(rows) == len(cols) == 8 and int(m.sum()) == 64  # the whole 8x8 tile, nothing else
        assert rows[0] % 4 == 0 and cols[0] % 4 == 0  # aligned to the 4 px patch grid
        r, c = int(rows[0]), int(cols[0])
        # inside the tile: exactly the grey digit on the dark ground, in all three channels (no colour)
        expected = TILE_VALUE * (1 - digits[i, 0]) + digits[i, 0]
        torch.testing.assert_close(x[i, :, r : r + 8, c : c + 8], expected.expand(3, 8, 8))
        # outside: the class background only, class colour x stripe level in [0.45, 0.8]
        ratio = x[i].permute(1, 2, 0)[~m] / _COLOURS[i % 10]
        assert (ratio.max(1).values - ratio.min(1).values).max() < 1e-5
        assert 0.45 - 1e-6 <= ratio.min() and ratio.max() <= 0.8 + 1e-6
    # every aligned position occurs: (16 - 8) / 4 + 1 = 3 per axis
    corners = {tuple(mask[i, 0].nonzero()[0].tolist()) for i in range(32)}
    assert corners <= {(r, c) for r in (0, 4, 8) for c in (0, 4, 8)} and len(corners) >= 6


def test_default_layout_is_unchanged_by_the_new_options():
    a = SyntheticScenesDataModule(seed=1)
    b = SyntheticScenesDataModule(seed=1, tile=None, eval_correlation=0.0)
    a.setup(), b.setup()
    for da, db in ((a.train_dataset, b.train_dataset), (a.test_dataset, b.test_dataset)):
        for ta, tb in zip(da.tensors, db.tensors):
            assert torch.equal(ta, tb)


@pytest.mark.parametrize("corr", [0.0, 0.6, 0.9])
def test_correlation_and_eval_correlation_are_respected(corr: float):
    dm = SyntheticScenesDataModule(seed=0, tile=4, correlation=corr, eval_correlation=corr)
    dm.setup()
    x, y, m = dm.train_dataset.tensors
    assert x.shape[1:] == (3, 24, 24) and bool((m.sum((1, 2, 3)) == 144).all())  # a 12x12 tile each
    agree = (_background_class(x, m) == y).float().mean().item()
    expected = corr + (1 - corr) * 0.1  # a random background is the label's 1 time in 10
    assert abs(agree - expected) < 0.05
    xt, yt, mt = dm.test_dataset.tensors
    assert abs((_background_class(xt, mt) == yt).float().mean().item() - expected) < 0.08
    # same seed, default eval_correlation: the same training set and test images, other test backgrounds
    shuffled = SyntheticScenesDataModule(seed=0, tile=4, correlation=corr)
    shuffled.setup()
    assert torch.equal(shuffled.train_dataset.tensors[0], x)
    xs, ys, ms = shuffled.test_dataset.tensors
    assert torch.equal(ms, mt) and torch.equal(xs * ms, xt * mt) and torch.equal(ys, yt)
    assert (_background_class(xs, ms) == ys).float().mean() < 0.2


def test_bad_options_name_the_value():
    with pytest.raises(ValueError, match="eval_correlation must lie in \\[0, 1\\], got -0.1"):
        SyntheticScenesDataModule(eval_correlation=-0.1)
    with pytest.raises(ValueError, match="tile=5 must divide both digit_size \\(12\\) and image_size \\(24\\)"):
        SyntheticScenesDataModule(tile=5)
    with pytest.raises(ValueError, match="tile must be None or a positive int.*got 0"):
        SyntheticScenesDataModule(tile=0)
    with pytest.raises(ValueError, match="got True"):
        SyntheticScenesDataModule(tile=True)
