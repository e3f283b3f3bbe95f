"""DecoyDigits: scikit-learn's digits with a label-encoding corner patch (after RRR's DecoyMNIST).

Ross, Hughes & Doshi-Velez (IJCAI 2017) built DecoyMNIST: a small gray swatch in a random corner whose
shade is 255 - 25 y in training and random at test. Here the 8x8 digits are upsampled to
``digit_size`` and centred on an ``image_size`` canvas; the ``patch_size`` square patch in a random
corner has shade ``1 - 0.1 y`` in training (it encodes the label exactly) and the shade of a random
class at test. Each sample is ``(x [1, S, S] in [0, 1], y, mask [1, S, S])`` where ``mask`` is 1 on the
patch: the annotation of inputs that must **not** matter (``mask_semantics = "irrelevant"``).
Nothing is downloaded; every split and patch is seeded.
"""

from __future__ import annotations

import torch
from torch.utils.data import TensorDataset

from salguide.data.annotated import NUM_CLASSES, AnnotatedDigitsDataModule

REGIMES = ("train", "test", "clean")  # shade encodes y / shade of a random class / no patch


def check_regimes(train_regime: str, val_regime: str) -> None:
    """Refuse a training regime outside ``REGIMES`` or a validation regime other than train / test."""
    if train_regime not in REGIMES:
        raise ValueError(f"train_regime must be one of {REGIMES}, got {train_regime!r}")
    if val_regime not in ("train", "test"):
        raise ValueError(f"val_regime must be 'train' or 'test', got {val_regime!r}")


def decoy_shade(y: torch.Tensor) -> torch.Tensor:
    """The training-time shade of class ``y``: ``1 - 0.1 y`` (DecoyMNIST's 255 - 25 y, scaled)."""
    return 1.0 - 0.1 * y.float()


def add_decoy(
    x: torch.Tensor, shade: torch.Tensor, corner: torch.Tensor, patch_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Paint a ``patch_size`` square of ``shade[i]`` in corner ``corner[i]`` (0 TL, 1 TR, 2 BL, 3 BR) of
    image i; returns the images and the patch masks (1 on the patch)."""
    n, _, h, w = x.shape
    if not 1 <= patch_size <= min(h, w) // 2:
        raise ValueError(f"patch_size must lie in [1, {min(h, w) // 2}] for {h}x{w} images, got {patch_size}")
    mask = torch.zeros((n, 1, h, w))
    rows = torch.where(corner >= 2, h - patch_size, 0)
    cols = torch.where(corner % 2 == 1, w - patch_size, 0)
    for i in range(n):
        mask[i, :, rows[i] : rows[i] + patch_size, cols[i] : cols[i] + patch_size] = 1.0
    out = x * (1 - mask) + shade.view(n, 1, 1, 1) * mask
    return out, mask


def decoy_set(
    images: torch.Tensor, labels: torch.Tensor, regime: str, patch_size: int, generator: torch.Generator
) -> TensorDataset:
    """``(x, y, patch mask)`` for ``regime``: ``train`` (shade encodes y), ``test`` (shade of a random
    class), ``clean`` (no patch; the mask still marks where a patch would be, a random corner)."""
    if regime not in REGIMES:
        raise ValueError(f"unknown decoy regime {regime!r}; choose one of {REGIMES}")
    n = len(labels)
    corner = torch.randint(0, 4, (n,), generator=generator)
    random_class = torch.randint(0, NUM_CLASSES, (n,), generator=generator)
    shade = decoy_shade(labels if regime == "train" else random_class)
    x, mask = add_decoy(images, shade, corner, patch_size)
    if regime == "clean":
        x = images.clone()
    return TensorDataset(x, labels, mask)


def place_on_canvas(
    digits: torch.Tensor, image_size: int, max_shift: int = 0, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Put [N, 1, d, d] digits on a black ``image_size`` canvas: centred, then moved by a random shift of
    up to ``max_shift`` pixels per axis (clipped to the canvas)."""
    n, d = digits.shape[0], digits.shape[-1]
    if image_size < d:
        raise ValueError(f"image_size ({image_size}) must be >= digit_size ({d})")
    if max_shift < 0:
        raise ValueError(f"max_shift must be >= 0, got {max_shift}")
    pad = image_size - d
    shift = (
        torch.randint(-max_shift, max_shift + 1, (n, 2), generator=generator)
        if max_shift
        else torch.zeros(n, 2, dtype=torch.long)
    )
    offset = (shift + pad // 2).clamp(0, pad)
    out = torch.zeros((n, digits.shape[1], image_size, image_size), dtype=digits.dtype)
    for i, (r, c) in enumerate(offset.tolist()):
        out[i, :, r : r + d, c : c + d] = digits[i]
    return out


class DecoyDigitsDataModule(AnnotatedDigitsDataModule):
    """DecoyDigits train/val/test splits of (x, y, patch mask).

    ``train_regime``: ``"train"`` (the decoy: shade encodes y), ``"test"`` (random shades: the same
    inputs without the shortcut, the "clean" reference) or ``"clean"`` (no patch). ``val_regime`` is
    ``"test"`` (shows shortcut reliance during training) or ``"train"``. The test set always has
    random-shade patches. ``max_shift`` moves each digit by up to that many pixels (seeded), which
    makes the digit harder than the patch for a dense network, as MNIST's variety does in DecoyMNIST.
    """

    mask_semantics = "irrelevant"

    def __init__(
        self,
        batch_size: int = 64,
        image_size: int = 20,
        digit_size: int = 16,
        patch_size: int = 4,
        max_shift: int = 1,
        seed: int = 0,
        test_fraction: float = 0.2,
        val_fraction: float = 0.1,
        train_regime: str = "train",
        val_regime: str = "test",
        num_workers: int = 0,
    ) -> None:
        super().__init__(batch_size, image_size, digit_size, seed, test_fraction, val_fraction, num_workers)
        check_regimes(train_regime, val_regime)
        if int(max_shift) < 0:
            raise ValueError(f"max_shift must be >= 0, got {max_shift}")
        if not 1 <= int(patch_size) <= self.image_size // 2:
            raise ValueError(f"patch_size must lie in [1, {self.image_size // 2}], got {patch_size}")
        self.train_regime, self.val_regime = train_regime, val_regime
        self.patch_size, self.max_shift = int(patch_size), int(max_shift)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (1, self.image_size, self.image_size)

    def _build(self, digits, labels, splits, gen):  # type: ignore[override]
        images = place_on_canvas(digits, self.image_size, self.max_shift, gen)
        tr, va, te = splits
        return (
            decoy_set(images[tr], labels[tr], self.train_regime, self.patch_size, gen),
            decoy_set(images[va], labels[va], self.val_regime, self.patch_size, gen),
            decoy_set(images[te], labels[te], "test", self.patch_size, gen),
        )
