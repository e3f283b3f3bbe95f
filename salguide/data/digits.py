"""scikit-learn's bundled handwritten digits (1,797 8x8 images, UCI optdigits) as a ForgetDataModule."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from salguide._checks import as_int
from salguide.data.forget import ForgetDataModule

_MAX_PIXEL = 16.0  # load_digits pixels are counts in 0..16


def digit_images(size: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """All 1,797 digits as [N, 1, size, size] in [0, 1] (bilinear upsampling of the 8x8 originals), labels."""
    if int(size) < 8:
        raise ValueError(f"digit size must be >= 8 (the digits are 8x8), got {size}")
    images, labels = load_digits(return_X_y=True)
    x = torch.as_tensor(images, dtype=torch.float32).reshape(-1, 1, 8, 8) / _MAX_PIXEL
    if size > 8:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).clamp(0, 1)
    return x, torch.as_tensor(labels, dtype=torch.long)


class DigitsDataModule(ForgetDataModule):
    """Digits with a stratified, seeded train/test split; no download.

    Pixels are scaled to [0, 1], bilinearly upsampled to ``image_size`` when larger than 8 (for ViTs), then
    normalised with the train set's mean and std. Inputs are [1, image_size, image_size].
    """

    known_num_classes = 10

    def __init__(
        self,
        batch_size: int = 64,
        image_size: int = 8,
        test_fraction: float = 0.2,
        seed: int = 0,
        forget: str | None = "class",
        forget_class: int = 0,
        forget_ratio: float = 0.1,
        num_workers: int = 0,
        train_on: str = "full",
    ) -> None:
        super().__init__(batch_size, seed, forget, forget_class, forget_ratio, num_workers, train_on)
        image_size = as_int(image_size, "image_size")
        if image_size < 8:
            raise ValueError(f"image_size must be >= 8 (the digits are 8x8), got {image_size}")
        if not 0.0 < float(test_fraction) < 1.0:
            raise ValueError(f"test_fraction must lie in the open interval (0, 1), got {test_fraction}")
        self.image_size, self.test_fraction = int(image_size), float(test_fraction)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (1, self.image_size, self.image_size)

    def _load(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        x, y = digit_images(self.image_size)
        classes, n_test = int(y.unique().numel()), int(np.ceil(self.test_fraction * len(y)))
        if min(n_test, len(y) - n_test) < classes:
            raise ValueError(
                f"test_fraction={self.test_fraction} leaves {len(y) - n_test} training and {n_test} test images of "
                f"{len(y)}: a stratified split needs at least one image of each of the {classes} classes on each side"
            )
        tr, te = train_test_split(
            np.arange(len(y)), test_size=self.test_fraction, random_state=self.seed, stratify=y.numpy()
        )
        tr, te = torch.as_tensor(tr), torch.as_tensor(te)
        mean, std = x[tr].mean(), x[tr].std()
        x = (x - mean) / std
        return x[tr].contiguous(), y[tr], x[te].contiguous(), y[te]
