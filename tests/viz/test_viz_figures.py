"""Figures are written as valid PNGs; bad input is refused before anything is written."""

import matplotlib.image as mpimg
import pytest
import torch

from salguide.viz import plot_mask_sparsity, plot_metrics_vs_retrain
from salguide.weights.mask import WeightMask

ROWS = [
    {"method": "Retrain", "UA": 5.0, "RA": 100.0, "TA": 94.5, "MIA": 12.0},
    {"method": "FT", "UA": 2.5, "RA": 99.3, "TA": 93.5, "MIA": 10.0},
    {"method": "SalUn", "UA": 4.0, "RA": 99.0, "TA": 93.9, "MIA": 14.0},
]


def _assert_png(path):
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = mpimg.imread(path)
    assert image.shape[0] > 100 and image.shape[1] > 100
    assert image[..., :3].std() > 0.01  # something was drawn


class _Mask:
    sparsity = 0.5

    def layer_sparsity(self):
        return {"conv.weight": 0.25, "fc.weight": 0.75}


class _MaskWithMethod(_Mask):
    def sparsity(self):
        return 0.5


@pytest.mark.parametrize("mask", [{"conv.weight": 0.2, "fc.weight": 0.9, "fc.bias": 0.0}, _Mask(), _MaskWithMethod()])
def test_mask_sparsity_figure(tmp_path, mask):
    path = plot_mask_sparsity(mask, tmp_path / "figs" / "mask.png", title="SalUn mask")
    assert path == tmp_path / "figs" / "mask.png"
    _assert_png(path)


def test_mask_sparsity_figure_of_a_weight_mask(tmp_path):
    mask = WeightMask({"conv.weight": torch.rand(8, 3, 3, 3) > 0.5, "fc.bias": torch.zeros(10, dtype=torch.bool)})
    _assert_png(plot_mask_sparsity(mask, tmp_path / "weight_mask.png"))


@pytest.mark.parametrize(
    "mask, error, match",
    [({}, ValueError, "empty"), ({"a": 1.5}, ValueError, r"\[0, 1\]"), ([0.5], TypeError, "layer_sparsity")],
)
def test_mask_sparsity_bad_input(tmp_path, mask, error, match):
    with pytest.raises(error, match=match):
        plot_mask_sparsity(mask, tmp_path / "mask.png")
    assert not (tmp_path / "mask.png").exists()


def test_metrics_vs_retrain_figure(tmp_path):
    _assert_png(plot_metrics_vs_retrain(ROWS, tmp_path / "metrics.png"))


@pytest.mark.parametrize(
    "rows, match", [([], "no result rows"), (ROWS[1:], "no row named 'Retrain'"), (ROWS[:1], "only the Retrain row")]
)
def test_metrics_vs_retrain_bad_input(tmp_path, rows, match):
    with pytest.raises(ValueError, match=match):
        plot_metrics_vs_retrain(rows, tmp_path / "metrics.png")
    assert list(tmp_path.iterdir()) == []
