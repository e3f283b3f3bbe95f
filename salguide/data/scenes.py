"""Synthetic scenes: a digit on a class-correlated textured, coloured background, with object masks.

A scene is a white digit (scikit-learn's digits, upsampled) at a random position on a background whose
colour and stripe texture belong to one class. In training the background's class is the label with
probability ``correlation`` (1.0: a perfect shortcut); at validation/test it is a random class, so a
model that reads the background fails. Each sample is ``(x [3, S, S] in [0, 1], y, mask [1, S, S])``
with ``mask`` the ground-truth object (digit) region (``mask_semantics = "relevant"``). In the spirit
of the background-shortcut benchmarks of Xiao et al., "Noise or Signal: The Role of Image Backgrounds
in Object Recognition", ICLR 2021. Offline and seeded.
"""

from __future__ import annotations

import math

import torch
from torch.utils.data import TensorDataset

from salguide._checks import as_int
from salguide.data.annotated import NUM_CLASSES, AnnotatedDigitsDataModule

# one colour and one stripe pattern (frequency, angle) per class
_COLOURS = torch.tensor(
    [
        [0.9, 0.2, 0.2],
        [0.2, 0.8, 0.2],
        [0.2, 0.3, 0.9],
        [0.9, 0.8, 0.1],
        [0.8, 0.2, 0.8],
        [0.1, 0.8, 0.8],
        [0.9, 0.5, 0.1],
        [0.5, 0.3, 0.1],
        [0.5, 0.5, 0.5],
        [0.3, 0.1, 0.5],
    ]
)
_FREQS = torch.tensor([1.0, 2.0, 3.0, 4.0, 1.5, 2.5, 3.5, 1.0, 2.0, 3.0])
_ANGLES = torch.tensor([0.0, 0.0, 0.0, 0.0, 0.5, 0.5, 0.5, 1.0, 1.0, 1.0]) * (math.pi / 2)


def backgrounds(classes: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """[N, 3, size, size] backgrounds: class colour times a stripe texture with a random phase."""
    n = len(classes)
    coords = torch.arange(size, dtype=torch.float32) / size
    v, u = torch.meshgrid(coords, coords, indexing="ij")
    ang, freq = _ANGLES[classes].view(n, 1, 1), _FREQS[classes].view(n, 1, 1)
    phase = torch.rand((n, 1, 1), generator=generator) * 2 * math.pi
    stripes = 0.5 + 0.5 * torch.sin(2 * math.pi * freq * (u * torch.cos(ang) + v * torch.sin(ang)) + phase)
    return _COLOURS[classes].view(n, 3, 1, 1) * (0.45 + 0.35 * stripes[:, None])


TILE_VALUE = 0.0  # the neutral (black) ground of an object tile


def _check_tile(tile: int | None, size: int, d: int) -> None:
    if tile is None:
        return
    try:
        as_int(tile, "tile", 1)
    except ValueError:
        raise ValueError(f"tile must be None or a positive int (the patch size to align to), got {tile!r}") from None
    if d % tile or size % tile:
        raise ValueError(
            f"tile={tile} must divide both digit_size ({d}) and image_size ({size}) so that the object tile "
            "covers whole patches"
        )


def compose_scenes(
    digits: torch.Tensor,
    bg_classes: torch.Tensor,
    size: int,
    generator: torch.Generator,
    threshold: float = 0.25,
    tile: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Paste [N, 1, d, d] digits (white, alpha = intensity) at random positions on class backgrounds;
    returns the scenes and the object masks. ``tile=None``: alpha-composited on the background, mask =
    alpha > ``threshold``; ``tile=p``: on a dark d x d tile at a position that is a multiple of ``p``,
    mask = the tile."""
    n, d = digits.shape[0], digits.shape[-1]
    if size < d:
        raise ValueError(f"image_size ({size}) must be >= digit_size ({d})")
    _check_tile(tile, size, d)
    scene = backgrounds(bg_classes, size, generator)
    alpha = torch.zeros((n, 1, size, size))
    if tile is None:
        pos = torch.randint(0, size - d + 1, (n, 2), generator=generator)
    else:
        pos = torch.randint(0, (size - d) // tile + 1, (n, 2), generator=generator) * tile
    region = torch.zeros((n, 1, size, size))
    for i, (r, c) in enumerate(pos.tolist()):
        alpha[i, :, r : r + d, c : c + d] = digits[i]
        region[i, :, r : r + d, c : c + d] = 1.0
    if tile is None:
        return scene * (1 - alpha) + alpha, (alpha > threshold).float()
    ground = scene * (1 - region) + TILE_VALUE * region  # the tile hides the background completely
    return ground * (1 - alpha) + alpha, region


class SyntheticScenesDataModule(AnnotatedDigitsDataModule):
    """Scenes train/val/test splits of (x, y, object mask); background class = label with probability
    ``correlation`` in training and ``eval_correlation`` at validation and test (0: random), otherwise a
    uniformly random class. ``tile``: None (digit composited on the background) or the patch size the
    digit's own dark tile is aligned to (see the module docstring). ``erase_background``: every split's
    images multiplied by their object mask (the background removed: an oracle, an upper bound for what the
    digits alone allow a model to reach)."""

    mask_semantics = "relevant"

    def __init__(
        self,
        batch_size: int = 64,
        image_size: int = 24,
        digit_size: int = 12,
        correlation: float = 1.0,
        seed: int = 0,
        test_fraction: float = 0.2,
        val_fraction: float = 0.1,
        num_workers: int = 0,
        tile: int | None = None,
        eval_correlation: float = 0.0,
        erase_background: bool = False,
    ) -> None:
        super().__init__(batch_size, image_size, digit_size, seed, test_fraction, val_fraction, num_workers)
        for name, v in (("correlation", correlation), ("eval_correlation", eval_correlation)):
            if not 0.0 <= float(v) <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {v}")
        _check_tile(tile, self.image_size, self.digit_size)
        if not isinstance(erase_background, bool):
            raise TypeError(f"erase_background must be a bool, got {erase_background!r}")
        self.correlation, self.eval_correlation, self.tile = float(correlation), float(eval_correlation), tile
        self.erase_background = erase_background

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (3, self.image_size, self.image_size)

    def _scenes(self, digits: torch.Tensor, labels: torch.Tensor, corr: float, gen: torch.Generator) -> TensorDataset:
        random_bg = torch.randint(0, NUM_CLASSES, (len(labels),), generator=gen)
        keep = torch.rand(len(labels), generator=gen) < corr
        x, mask = compose_scenes(digits, torch.where(keep, labels, random_bg), self.image_size, gen, tile=self.tile)
        return TensorDataset(x * mask if self.erase_background else x, labels, mask)

    def _build(self, digits, labels, splits, gen):  # type: ignore[override]
        tr, va, te = splits
        return (
            self._scenes(digits[tr], labels[tr], self.correlation, gen),
            self._scenes(digits[va], labels[va], self.eval_correlation, gen),
            self._scenes(digits[te], labels[te], self.eval_correlation, gen),
        )
