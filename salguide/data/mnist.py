"""MNIST and Fashion-MNIST from local IDX files (gzipped or raw) as ForgetDataModules; nothing is downloaded.

Fashion-MNIST (Xiao, Rasul & Vollgraf, 2017; MIT licence, Zalando): 60,000 training and 10,000 test
28x28 grey images of 10 clothing classes; the default directory is the one of Debian's
``dataset-fashion-mnist`` package. MNIST (LeCun et al., 1998): the same layout and file names, from
the user's own copy. Images stay uint8 in memory and are normalised per sample with the training
set's mean and std; ``train_size`` / ``test_size`` take stratified, seeded subsets.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from sklearn.model_selection import train_test_split

from salguide.data.forget import ForgetDataModule
from salguide.data.idx import read_idx

SPLITS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
NUM_CLASSES = 10


def _candidates(root: Path, stem: str, subfolders: tuple[str, ...]) -> list[Path]:
    # LeCun's names, the "train-images.idx3-ubyte" spelling of some mirrors, each raw or gzipped
    names = [stem, stem.replace("-idx", ".idx")]
    return [root / sub / (n + gz) for sub in ("", *subfolders) for n in names for gz in (".gz", "")]


def find_idx(root: Path, stem: str, dataset: str, how_to_get: str, subfolders: tuple[str, ...] = ()) -> Path:
    """The first of ``stem[.gz]`` (or ``stem`` with ``.idx`` spelt with a dot) in ``root`` or its
    ``subfolders``; ``FileNotFoundError`` naming the file and ``how_to_get`` otherwise."""
    for path in _candidates(root, stem, subfolders):
        if path.is_file():
            return path
    where = f"{root}" + (f" (or its {', '.join(subfolders)} subfolders)" if subfolders else "")
    raise FileNotFoundError(f"{dataset}: no {stem}[.gz] in {where}; {how_to_get}")


def read_split(images: Path, labels: Path, num_classes: int = NUM_CLASSES) -> tuple[torch.Tensor, torch.Tensor]:
    """One split: uint8 images [N, 1, H, W] and int64 labels [N], checked against each other."""
    x = read_idx(images, ndim=3, type_code=0x08)
    y = read_idx(labels, ndim=1, type_code=0x08)
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"{images} holds {x.shape[0]} images but {labels} holds {y.shape[0]} labels")
    if y.size and int(y.max()) >= num_classes:
        raise ValueError(f"{labels}: labels must lie in 0..{num_classes - 1}, found {int(y.max())}")
    return torch.from_numpy(x.copy()).unsqueeze(1), torch.from_numpy(y.astype(np.int64))


def check_sizes(train_size: int | None, test_size: int | None) -> None:
    for name, v in (("train_size", train_size), ("test_size", test_size)):
        if v is not None and int(v) < 1:
            raise ValueError(f"{name} must be None or >= 1, got {v}")


def stratified_pick(y: torch.Tensor, k: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sorted indices ``(picked, rest)`` of a seeded pick of ``k`` samples, stratified by label whenever
    every class present has >= 2 samples and both parts can hold one of each (else uniformly random)."""
    counts = np.bincount(y.numpy())
    classes = int((counts > 0).sum())
    can_stratify = counts[counts > 0].min() >= 2 and min(k, len(y) - k) >= classes
    picked, rest = train_test_split(
        np.arange(len(y)), train_size=k, random_state=seed, stratify=y.numpy() if can_stratify else None
    )
    return torch.as_tensor(np.sort(picked)), torch.as_tensor(np.sort(rest))


def subset(y: torch.Tensor, size: int | None, seed: int, name: str) -> torch.Tensor | None:
    """Sorted indices of a stratified, seeded subset of ``size`` samples (None: everything)."""
    if size is None or int(size) == len(y):
        return None
    if not 1 <= int(size) <= len(y):
        raise ValueError(f"{name} must lie in [1, {len(y)}] (the size of the file's split), got {size}")
    return stratified_pick(y, int(size), seed)[0]


def pixel_stats(x: torch.Tensor) -> tuple[float, float]:
    """Mean and (unbiased) std of uint8 pixels scaled to [0, 1], exactly, from their 256-bin histogram."""
    counts = torch.bincount(x.flatten(), minlength=256).double()
    values = torch.arange(256, dtype=torch.float64) / 255.0
    n = counts.sum()
    mean = (counts * values).sum() / n
    var = (counts * (values - mean) ** 2).sum() / (n - 1)
    return float(mean), float(var.sqrt())


class Normalize:
    """uint8 image -> float32 ``(x / 255 - mean) / std``."""

    def __init__(self, mean: float, std: float) -> None:
        self.mean, self.std = float(mean), float(std)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return (x.float() / 255.0 - self.mean) / self.std


class IDXDataModule(ForgetDataModule):
    """A ForgetDataModule over the four IDX files of an MNIST-layout dataset in ``data_dir``.

    Subclasses set ``dataset`` (its name in messages), ``default_dir``, ``how_to_get`` and ``class_names``.
    Forget splits, seeding and ``train_on`` are those of every ForgetDataModule (as for digits).
    """

    known_num_classes = NUM_CLASSES
    dataset = "IDX dataset"
    default_dir: str | None = None
    how_to_get = "pass data_dir= pointing at a directory with the four IDX files"
    class_names: tuple[str, ...] = tuple(str(i) for i in range(NUM_CLASSES))
    subfolders: tuple[str, ...] = ("raw",)

    def __init__(
        self,
        data_dir: str | os.PathLike | None = None,
        batch_size: int = 128,
        seed: int = 0,
        forget: str | None = "class",
        forget_class: int = 0,
        forget_ratio: float = 0.1,
        num_workers: int = 0,
        train_on: str = "full",
        train_size: int | None = None,
        test_size: int | None = None,
    ) -> None:
        super().__init__(batch_size, seed, forget, forget_class, forget_ratio, num_workers, train_on)
        check_sizes(train_size, test_size)
        self.data_dir = self.resolve_dir(data_dir)
        self.train_size, self.test_size = train_size, test_size
        self.mean, self.std = 0.0, 1.0

    @classmethod
    def resolve_dir(cls, data_dir: str | os.PathLike | None) -> Path:
        """``data_dir``, or ``default_dir`` when it is None (an error naming how to get the data if neither)."""
        if data_dir is None and cls.default_dir is None:
            raise ValueError(f"{cls.dataset}: data_dir is required; {cls.how_to_get}")
        path = data_dir if data_dir is not None else cls.default_dir
        assert path is not None  # checked above
        return Path(path).expanduser()

    @classmethod
    def read_files(
        cls, data_dir: str | os.PathLike | None, seed: int = 0, train_size: int | None = None,
        test_size: int | None = None,
    ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:  # fmt: skip
        """``{"train": (x, y), "test": (x, y)}`` from ``data_dir`` (None: ``default_dir``), subsets applied;
        uint8 images [N, 1, H, W] and int64 labels."""
        root = cls.resolve_dir(data_dir)
        out = {}
        for split, stems in SPLITS.items():
            paths = [find_idx(root, s, cls.dataset, cls.how_to_get, cls.subfolders) for s in stems]
            try:
                x, y = read_split(paths[0], paths[1])
            except ValueError as err:
                raise ValueError(f"{cls.dataset}: {err}; to get intact files: {cls.how_to_get}") from err
            keep = subset(y, train_size if split == "train" else test_size, seed, f"{split}_size")
            out[split] = (x, y) if keep is None else (x[keep].contiguous(), y[keep])
        (tx, _), (sx, _) = out["train"], out["test"]
        if tx.shape[1:] != sx.shape[1:]:
            raise ValueError(
                f"{cls.dataset} in {root}: train images {tuple(tx.shape[2:])} and test images "
                f"{tuple(sx.shape[2:])} differ in size"
            )
        if tx.shape[-1] == 0 or tx.shape[-2] == 0:
            raise ValueError(f"{cls.dataset} in {root}: the images are {tuple(tx.shape[2:])}, empty")
        return out

    def _load(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        data = self.read_files(self.data_dir, self.seed, self.train_size, self.test_size)
        (train_x, train_y), (test_x, test_y) = data["train"], data["test"]
        self.mean, self.std = pixel_stats(train_x)
        if not self.std > 0:  # normalising by it would turn every input into NaN or inf
            raise ValueError(
                f"{self.dataset} in {self.data_dir}: every training pixel is {self.mean:.4g}, no image data"
            )
        return train_x, train_y, test_x, test_y

    def eval_transform(self) -> Normalize:
        return Normalize(self.mean, self.std)


class FashionMNISTDataModule(IDXDataModule):
    """Fashion-MNIST (Xiao et al., 2017) from Debian's ``dataset-fashion-mnist`` files or ``data_dir``."""

    dataset = "Fashion-MNIST"
    default_dir = FASHION_MNIST_DIR
    how_to_get = (
        f"install Debian's package (apt-get install dataset-fashion-mnist: files in {FASHION_MNIST_DIR}) "
        "or pass data_dir= pointing at a copy of the four IDX files"
    )
    class_names = FASHION_CLASSES
    subfolders = ("raw", "FashionMNIST/raw")


class MNISTDataModule(IDXDataModule):
    """MNIST (LeCun et al., 1998) from the user's local IDX files in ``data_dir``; nothing is downloaded."""

    dataset = "MNIST"
    default_dir = None
    how_to_get = (
        "nothing is downloaded: put train-images-idx3-ubyte, train-labels-idx1-ubyte, "
        "t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte (raw or .gz) in a directory and pass "
        "data_dir= (or set MNIST_DIR for the Hydra config)"
    )
    subfolders = ("raw", "MNIST/raw")
