"""Small IDX files in the exact MNIST layout, written with struct alone (independent of salguide's reader)."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

TYPE_CODES = {
    np.dtype(np.uint8): 0x08,
    np.dtype(np.int8): 0x09,
    np.dtype(np.int16): 0x0B,
    np.dtype(np.int32): 0x0C,
    np.dtype(np.float32): 0x0D,
    np.dtype(np.float64): 0x0E,
}
NAMES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def idx_bytes(array: np.ndarray) -> bytes:
    """Magic 0x0000 TT DD, one big-endian uint32 per dimension, then big-endian data."""
    a = np.asarray(array)
    header = bytes([0, 0, TYPE_CODES[a.dtype], a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape)
    return header + a.astype(a.dtype.newbyteorder(">")).tobytes()


def write_idx(path: Path, array: np.ndarray, gz: bool) -> Path:
    data = idx_bytes(array)
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def fake_images(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """uint8 [N, 28, 28]: low noise plus a bright bar at rows 2c..2c+1 for class c (a learnable signal)."""
    x = rng.integers(0, 60, size=(len(labels), 28, 28), dtype=np.uint8)
    for i, c in enumerate(labels):
        x[i, 4 + 2 * c : 6 + 2 * c, 6:22] = 230
    return x


def make_idx_dir(root: Path, per_class: tuple[int, int] = (12, 4), gz: bool = True, seed: int = 0) -> dict:
    """The four files of an MNIST-layout dataset in ``root``; returns {split: (images, labels)}."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    out = {}
    for split, n in zip(("train", "test"), per_class):
        y = rng.permutation(np.repeat(np.arange(10, dtype=np.uint8), n))
        x = fake_images(y, rng)
        images, labels = NAMES[split]
        write_idx(root / (images + (".gz" if gz else "")), x, gz)
        write_idx(root / (labels + (".gz" if gz else "")), y, gz)
        out[split] = (x, y)
    return out
