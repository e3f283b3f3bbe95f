"""MNIST / Fashion-MNIST datamodules on small IDX files in the exact format, and on the real files of
Debian's dataset-fashion-mnist package when they are installed."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from idx_helpers import NAMES, make_idx_dir

from salguide.data import FashionMNISTDataModule, MNISTDataModule
from salguide.data.mnist import FASHION_MNIST_DIR
from salguide.data.splits import forget_split
from salguide.models import SmallCNN, VisionTransformer, resnet18


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("fmnist")
    return root, make_idx_dir(root, per_class=(12, 4), gz=True)


def test_reads_the_files_and_normalises_with_train_statistics(files):
    root, raw = files
    dm = FashionMNISTDataModule(root, batch_size=16, forget="class", forget_class=3)
    dm.setup()
    (x_tr, y_tr), (_, y_te) = raw["train"], raw["test"]
    assert torch.equal(dm.train_x[:, 0], torch.from_numpy(x_tr)) and dm.train_x.dtype == torch.uint8
    assert dm.train_y.tolist() == y_tr.tolist() and dm.test_y.tolist() == y_te.tolist()
    mean, std = x_tr.astype(np.float64).mean() / 255, x_tr.astype(np.float64).std(ddof=1) / 255
    x, y = dm.train_dataset[5]
    assert x.shape == (1, 28, 28) and x.dtype == torch.float32 and int(y) == int(y_tr[5])
    np.testing.assert_allclose(x[0].numpy(), (x_tr[5] / 255.0 - mean) / std, rtol=1e-5, atol=1e-5)
    assert dm.input_shape == (1, 28, 28) and dm.num_classes == 10
    assert dm.class_names[0] == "T-shirt/top" and dm.class_names[9] == "Ankle boot"


@pytest.mark.parametrize("forget, kw", [("class", {"forget_class": 3}), ("random", {"forget_ratio": 0.1})])
def test_forget_splits_have_the_semantics_and_seeding_of_digits(files, forget, kw):
    root, raw = files
    dm = FashionMNISTDataModule(root, forget=forget, seed=7, **kw)
    dm.setup()
    f, r = forget_split(torch.as_tensor(raw["train"][1], dtype=torch.long), forget, seed=7, **kw)
    assert torch.equal(dm.forget_indices, f) and torch.equal(dm.retain_indices, r)
    if forget == "class":
        assert set(dm.forget_dataset.targets.tolist()) == {3} and 3 not in dm.test_dataset.targets.tolist()
        assert len(dm.test_dataset) == 36 and len(dm.full_test_dataset) == 40
    else:
        assert len(dm.forget_dataset) == 12 and len(dm.test_dataset) == 40
    dm.train_on = "retain"
    assert sum(len(b[1]) for b in dm.train_dataloader()) == len(r)


def test_subsets_are_stratified_seeded_and_sorted(files):
    root, raw = files
    a = FashionMNISTDataModule(root, forget=None, train_size=50, test_size=20, seed=1)
    b = FashionMNISTDataModule(root, forget=None, train_size=50, test_size=20, seed=1)
    c = FashionMNISTDataModule(root, forget=None, train_size=50, test_size=20, seed=2)
    for dm in (a, b, c):
        dm.setup()
    assert len(a.train_dataset) == 50 and len(a.full_test_dataset) == 20
    assert torch.bincount(a.train_y).tolist() == [5] * 10 and torch.bincount(a.test_y).tolist() == [2] * 10
    assert torch.equal(a.train_x, b.train_x) and not torch.equal(a.train_x, c.train_x)
    # every subset image is one of the file's images of the same label, in file order
    rows = {bytes(img.tobytes()): i for i, img in enumerate(raw["train"][0])}
    idx = [rows[bytes(img[0].numpy().tobytes())] for img in a.train_x]
    assert idx == sorted(idx) and raw["train"][1][idx].tolist() == a.train_y.tolist()
    with pytest.raises(ValueError, match=r"train_size must lie in \[1, 120\]"):
        FashionMNISTDataModule(root, train_size=121).setup()


@pytest.mark.parametrize("layout", ["raw files", "raw/ subfolder", "FashionMNIST/raw", "dotted names"])
def test_other_layouts_of_a_copy(tmp_path, layout):
    sub = {"raw files": "", "raw/ subfolder": "raw", "FashionMNIST/raw": "FashionMNIST/raw", "dotted names": ""}[layout]
    make_idx_dir(tmp_path / sub, per_class=(3, 2), gz=False)
    if layout == "dotted names":  # train-images.idx3-ubyte, as some mirrors spell it
        for p in (tmp_path / sub).iterdir():
            p.rename(p.with_name(p.name.replace("-idx", ".idx")))
    dm = FashionMNISTDataModule(tmp_path, forget=None)
    dm.setup()
    assert len(dm.train_dataset) == 30 and len(dm.full_test_dataset) == 20


def test_missing_files_say_how_to_get_the_data(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        FashionMNISTDataModule(tmp_path).setup()
    msg = str(err.value)
    assert "train-images-idx3-ubyte" in msg and str(tmp_path) in msg
    assert "apt-get install dataset-fashion-mnist" in msg and "data_dir=" in msg
    with pytest.raises(ValueError, match="MNIST: data_dir is required; nothing is downloaded"):
        MNISTDataModule()
    with pytest.raises(FileNotFoundError, match=r"MNIST: no t10k-images-idx3-ubyte\[.gz\].*data_dir="):
        make_idx_dir(tmp_path / "m", (2, 2))
        (tmp_path / "m" / "t10k-images-idx3-ubyte.gz").unlink()
        MNISTDataModule(tmp_path / "m").setup()


def test_inconsistent_files_are_refused_naming_them(tmp_path):
    make_idx_dir(tmp_path, per_class=(2, 2), gz=False)
    labels = tmp_path / NAMES["train"][1]
    y = np.frombuffer(labels.read_bytes()[8:], dtype=np.uint8).copy()
    y[3] = 10
    labels.write_bytes(b"\x00\x00\x08\x01" + struct.pack(">I", len(y)) + y.tobytes())
    with pytest.raises(ValueError, match=f"{labels}: labels must lie in 0..9, found 10; .*data_dir="):
        MNISTDataModule(tmp_path).setup()
    labels.write_bytes(b"\x00\x00\x08\x01" + struct.pack(">I", 5) + bytes(5))
    with pytest.raises(ValueError, match="holds 20 images but .* holds 5 labels"):
        MNISTDataModule(tmp_path).setup()
    labels.write_bytes(b"\x00\x00\x08\x01" + struct.pack(">I", 20) + bytes(19))  # truncated
    with pytest.raises(ValueError, match=f"Fashion-MNIST: {labels}: .*apt-get install dataset-fashion-mnist"):
        FashionMNISTDataModule(tmp_path).setup()


def test_28px_inputs_fit_the_cnn_resnet_and_both_vit_patchings(files):
    root, _ = files
    dm = FashionMNISTDataModule(root, forget=None)
    dm.setup()
    x = next(iter(dm.train_dataloader()))[0][:4]
    assert SmallCNN(in_channels=1)(x).shape == (4, 10)
    assert resnet18(in_channels=1)(x).shape == (4, 10)
    for patch, tokens in ((2, 196), (4, 49)):
        vit = VisionTransformer(img_size=28, patch_size=patch, in_chans=1, embed_dim=16, depth=1, num_heads=2)
        assert vit.patch_embed(x).shape == (4, tokens, 16) and vit(x).shape == (4, 10)


def _naive_read(path: Path) -> np.ndarray:
    """The parser of RRR's decoy_mnist.py, restated: gzip, '>II[II]' header, the rest as bytes."""
    with gzip.open(path, "rb") as f:
        magic, n = struct.unpack(">II", f.read(8))
        shape = (n, *struct.unpack(">II", f.read(8))) if magic == 2051 else (n,)
        return np.frombuffer(f.read(), dtype=np.uint8).reshape(shape)


@pytest.mark.skipif(
    not Path(FASHION_MNIST_DIR, "train-images-idx3-ubyte.gz").exists(),
    reason="Debian's dataset-fashion-mnist is not installed (apt-get install dataset-fashion-mnist)",
)
def test_real_fashion_mnist_from_the_debian_package():
    dm = FashionMNISTDataModule(forget="class", forget_class=0)
    dm.setup()
    assert dm.train_x.shape == (60000, 1, 28, 28) and dm.test_x.shape == (10000, 1, 28, 28)
    assert torch.bincount(dm.train_y).tolist() == [6000] * 10 and torch.bincount(dm.test_y).tolist() == [1000] * 10
    assert dm.mean == pytest.approx(0.2860, abs=1e-4) and dm.std == pytest.approx(0.3530, abs=1e-4)
    for split, (images, labels) in NAMES.items():
        x, y = (dm.train_x, dm.train_y) if split == "train" else (dm.test_x, dm.test_y)
        assert np.array_equal(_naive_read(Path(FASHION_MNIST_DIR, labels + ".gz")), y.numpy())
        naive = _naive_read(Path(FASHION_MNIST_DIR, images + ".gz"))
        assert np.array_equal(naive[::997], x[::997, 0].numpy())
    assert len(dm.forget_dataset) == 6000 and len(dm.test_dataset) == 9000


@pytest.mark.parametrize("shape", ["constant", "empty"])
def test_images_without_data_are_refused(tmp_path, shape):
    """Constant images gave std 0 and NaN inputs (a model trained on them, then failed); 0 x 0 images a conv error."""
    from idx_helpers import write_idx

    make_idx_dir(tmp_path, gz=False)
    for split, n in (("train", 120), ("test", 40)):
        images = np.full((n, 28, 28), 7, np.uint8) if shape == "constant" else np.zeros((n, 0, 0), np.uint8)
        write_idx(tmp_path / NAMES[split][0], images, gz=False)
    with pytest.raises(ValueError, match="no image data" if shape == "constant" else r"\(0, 0\), empty"):
        FashionMNISTDataModule(data_dir=tmp_path).setup("fit")
