"""CIFAR-10 from a local copy of the standard python batches (Krizhevsky, 2009); nothing is downloaded.

Batches are pickles, read with a restricted unpickler and bounded: at most MAX_BATCH_BYTES are read,
content whose shared pickle references would expand beyond the file's own size (a memo bomb: 71 KB
that ``np.asarray`` would turn into 7.45 GiB) is refused before anything is converted, labels are checked
one by one, and every error (empty, truncated, random bytes, wrong content) names the file."""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from salguide.data._safe_unpickle import expanded_size, safe_load
from salguide.data.forget import ForgetDataModule

TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"
SUBFOLDER = "cifar-10-batches-py"
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)
_PIXELS = 3 * 32 * 32
MAX_BATCH_BYTES = 512 << 20  # a real batch is 31 MB; nothing larger is read into memory


def find_batches_dir(data_dir: str | os.PathLike) -> Path:
    """Return ``data_dir`` or its ``cifar-10-batches-py`` subfolder, whichever holds ``test_batch``."""
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"CIFAR-10 directory {root} does not exist (expected the python batches there)")
    for candidate in (root, root / SUBFOLDER):
        if (candidate / TEST_FILE).is_file():
            return candidate
    return root


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read one python batch safely; return uint8 images [N, 3, 32, 32] and int64 labels [N]."""
    if not path.is_file():
        raise FileNotFoundError(
            f"missing CIFAR-10 batch file {path}; expected {', '.join(TRAIN_FILES)} and {TEST_FILE} "
            f"(the python version, in the directory or its {SUBFOLDER} subfolder)"
        )
    batch = _unpickle(path)
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise ValueError(f"{path} is not a CIFAR-10 batch: expected a dict with b'data' and b'labels'")
    data = batch[b"data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != _PIXELS:
        shape = getattr(data, "shape", None)
        raise ValueError(f"{path}: b'data' must be a uint8 array [N, {_PIXELS}], got {type(data).__name__} {shape}")
    return data.reshape(-1, 3, 32, 32), _labels(batch[b"labels"], data.shape[0], path)


def _unpickle(path: Path) -> Any:
    """The restricted unpickling of ``path``, bounded: at most MAX_BATCH_BYTES are read, and content whose
    shared references would expand beyond the file's size is refused before anything is converted. Every
    failure names the file."""
    size = path.stat().st_size
    if size > MAX_BATCH_BYTES:
        raise ValueError(f"{path}: {size} bytes is larger than any CIFAR-10 batch (limit {MAX_BATCH_BYTES})")
    raw = path.read_bytes()
    try:
        batch = safe_load(raw)
    except pickle.UnpicklingError as e:
        raise pickle.UnpicklingError(f"{path}: not a readable CIFAR-10 python batch: {e}") from e
    except Exception as e:  # empty, truncated or random bytes fail in many ways (EOFError, ValueError, ...)
        raise ValueError(
            f"{path}: not a readable CIFAR-10 python batch (empty, truncated or not a pickle): {type(e).__name__}: {e}"
        ) from e
    if expanded_size(batch, len(raw) + 1024) > len(raw) + 1024:
        raise ValueError(
            f"{path}: its content expands to more items than the file has bytes ({len(raw)}): shared pickle "
            "references (a memo bomb), not a CIFAR-10 batch"
        )
    return batch


def _labels(raw: Any, n: int, path: Path) -> np.ndarray:
    """``raw`` as int64 labels [n] in 0..9, checked element by element before any array is made."""
    if isinstance(raw, np.ndarray):
        ok = raw.shape == (n,) and raw.dtype.kind in "iu"
        values = raw.tolist() if ok else []
    else:
        ok = isinstance(raw, (list, tuple)) and len(raw) == n and all(type(v) is int for v in raw)
        values = list(raw) if ok else []
    if not ok:
        got = f"{type(raw).__name__} of length {len(raw) if hasattr(raw, '__len__') else '?'}"
        raise ValueError(f"{path}: b'labels' must be {n} integers, got {got}")
    bad = [v for v in values if not 0 <= v <= 9]
    if bad:
        raise ValueError(f"{path}: labels must lie in 0..9, got {bad[0]}")
    return np.asarray(values, dtype=np.int64)


class Normalize:
    """uint8 [3, 32, 32] -> float32 scaled to [0, 1] and normalised with the CIFAR-10 channel statistics."""

    def __init__(self) -> None:
        self.mean = torch.tensor(MEAN).view(3, 1, 1)
        self.std = torch.tensor(STD).view(3, 1, 1)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return (x.float() / 255.0 - self.mean) / self.std


class CropFlipNormalize(Normalize):
    """Standard CIFAR augmentation: random crop after zero padding by ``padding``, random h-flip, normalise."""

    def __init__(self, padding: int = 4) -> None:
        super().__init__()
        self.padding = padding

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        p = self.padding
        padded = torch.nn.functional.pad(super().__call__(x), (p, p, p, p))
        i, j = (int(v) for v in torch.randint(0, 2 * p + 1, (2,)))
        out = padded[:, i : i + h, j : j + w]
        return out.flip(-1) if bool(torch.rand(()) < 0.5) else out


class CIFAR10DataModule(ForgetDataModule):
    """CIFAR-10 read with a restricted unpickler; images stay uint8 in memory and are normalised per sample.

    ``augment=True`` adds random crop (padding 4) and horizontal flip to the training loader only.
    """

    known_num_classes = 10

    def __init__(
        self,
        data_dir: str | os.PathLike,
        batch_size: int = 128,
        seed: int = 0,
        forget: str | None = "class",
        forget_class: int = 0,
        forget_ratio: float = 0.1,
        num_workers: int = 0,
        train_on: str = "full",
        augment: bool = False,
    ) -> None:
        super().__init__(batch_size, seed, forget, forget_class, forget_ratio, num_workers, train_on)
        self.data_dir, self.augment = Path(data_dir), bool(augment)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (3, 32, 32)

    def _load(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        folder = find_batches_dir(self.data_dir)
        train = [read_batch(folder / name) for name in TRAIN_FILES]
        test_x, test_y = read_batch(folder / TEST_FILE)
        train_x = np.concatenate([x for x, _ in train])
        train_y = np.concatenate([y for _, y in train])
        as_t = torch.from_numpy
        return as_t(train_x), as_t(train_y), as_t(test_x), as_t(test_y)

    def eval_transform(self) -> Normalize:
        return Normalize()

    def train_transform(self) -> Normalize:
        return CropFlipNormalize() if self.augment else Normalize()
