"""CIFAR-10 from local python batches written in the real format, and the restricted unpickler."""

import codecs
import os
import pickle

import numpy as np
import pytest
import torch

from salguide.data import CIFAR10DataModule
from salguide.data._safe_unpickle import safe_load
from salguide.data.cifar10 import MEAN, STD, CropFlipNormalize, Normalize

PER_BATCH = 12


def _batch(seed: int, n: int, label: str) -> dict:
    rng = np.random.default_rng(seed)
    return {
        b"batch_label": label.encode(),
        b"labels": [int(v) for v in (np.arange(n) + seed) % 10],
        b"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
        b"filenames": [f"img_{seed}_{i}.png".encode() for i in range(n)],
    }


def _write(folder, name, obj) -> None:
    with open(folder / name, "wb") as f:
        pickle.dump(obj, f, protocol=2)


@pytest.fixture()
def cifar_dir(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for i in range(1, 6):
        _write(folder, f"data_batch_{i}", _batch(i, PER_BATCH, f"training batch {i} of 5"))
    _write(folder, "test_batch", _batch(0, 10, "testing batch 1 of 1"))
    return tmp_path


@pytest.mark.parametrize("sub", ["", "cifar-10-batches-py"])
def test_reads_batches_in_order_and_normalises(cifar_dir, sub):
    dm = CIFAR10DataModule(cifar_dir / sub, batch_size=8, forget="class", forget_class=0)
    dm.setup()
    first = _batch(1, PER_BATCH, "")
    assert len(dm.train_dataset) == 5 * PER_BATCH and len(dm.full_test_dataset) == 10
    assert dm.train_y[:PER_BATCH].tolist() == first[b"labels"]
    x, y = dm.train_dataset[0]
    assert x.dtype == torch.float32 and y.dtype == torch.long and x.shape == (3, 32, 32)
    raw = first[b"data"][0].reshape(3, 32, 32)  # CIFAR rows are channel-major: 1024 R, 1024 G, 1024 B
    for c in range(3):
        expected = (raw[c, 5, 7] / 255.0 - MEAN[c]) / STD[c]
        assert float(x[c, 5, 7]) == pytest.approx(expected, abs=1e-5)
    assert 0 not in dm.test_dataset.targets.tolist() and len(dm.test_dataset) == 9
    assert set(dm.forget_dataset.targets.tolist()) == {0}
    assert dm.num_classes == 10 and dm.input_shape == (3, 32, 32)


def test_augmented_training_loader_yields_crops_of_the_padded_image():
    torch.manual_seed(0)
    image = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)
    aug = CropFlipNormalize(padding=4)
    padded = torch.nn.functional.pad(Normalize()(image), (4, 4, 4, 4))
    candidates = [padded[:, i : i + 32, j : j + 32] for i in range(9) for j in range(9)]
    candidates += [c.flip(-1) for c in candidates]
    outs = [aug(image) for _ in range(6)]
    for out in outs:
        assert any(torch.equal(out, c) for c in candidates)
    assert any(not torch.equal(outs[0], o) for o in outs[1:])


@pytest.mark.parametrize("augment", [False, True])
def test_augment_only_touches_the_training_loader(cifar_dir, augment):
    dm = CIFAR10DataModule(cifar_dir, batch_size=60, forget=None, augment=augment)
    dm.setup()
    torch.manual_seed(1)
    ((x, _),) = list(dm.train_dataloader())
    eval_x = torch.stack([dm.train_dataset[i][0] for i in range(60)])
    unchanged = sum(any(torch.equal(xi, e) for e in eval_x) for xi in x)
    assert unchanged == 60 if not augment else unchanged < 10
    assert torch.equal(dm.train_dataset[0][0], dm.train_dataset[0][0])  # evaluation views stay deterministic


def test_missing_directory_and_missing_batch_are_named(tmp_path, cifar_dir):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        CIFAR10DataModule(tmp_path / "nowhere").setup()
    os.remove(cifar_dir / "cifar-10-batches-py" / "data_batch_3")
    with pytest.raises(FileNotFoundError, match="data_batch_3"):
        CIFAR10DataModule(cifar_dir).setup()


def test_wrong_array_shape_is_refused(cifar_dir):
    bad = _batch(1, 4, "x")
    bad[b"data"] = bad[b"data"][:, :100]
    _write(cifar_dir / "cifar-10-batches-py", "data_batch_1", bad)
    with pytest.raises(ValueError, match=r"data_batch_1.*uint8 array \[N, 3072\]"):
        CIFAR10DataModule(cifar_dir).setup()


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_batch_is_refused_without_running_it(cifar_dir, tmp_path):
    marker = tmp_path / "pwned"
    payload = _batch(1, PER_BATCH, "x")
    payload[b"labels"] = _Exploit(marker)
    _write(cifar_dir / "cifar-10-batches-py", "data_batch_1", payload)
    with pytest.raises(pickle.UnpicklingError, match="system"):
        CIFAR10DataModule(cifar_dir).setup()
    assert not marker.exists()


class _Reduce:
    def __init__(self, fn, args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return (self.fn, self.args)


@pytest.mark.parametrize(
    "fn, args, match", [(eval, ("1 + 1",), "global .*eval"), (codecs.encode, ("abc", "rot13"), "rot13")]
)
def test_restricted_unpickler_refuses_other_callables(fn, args, match):
    with pytest.raises(pickle.UnpicklingError, match=match):
        safe_load(pickle.dumps(_Reduce(fn, args), protocol=2))


def test_restricted_unpickler_round_trips_a_real_style_batch():
    batch = _batch(3, 5, "training batch 3 of 5")
    loaded = safe_load(pickle.dumps(batch, protocol=2))
    assert loaded.keys() == batch.keys() and loaded[b"filenames"] == batch[b"filenames"]
    assert loaded[b"data"].dtype == np.uint8 and np.array_equal(loaded[b"data"], batch[b"data"])


def _memo_bomb(n: int, width: int = 100, depth: int = 3) -> list:
    """n labels that are one shared list, nested ``depth`` times with ``width`` references each: a few KB
    of pickle (memo references) that np.asarray expands to n * width**depth integers."""
    shared: list = [0] * width
    for _ in range(depth - 1):
        shared = [shared] * width
    return [shared] * n


@pytest.mark.parametrize("protocol", [2, 4])
def test_memo_reference_bomb_is_refused_before_any_conversion(cifar_dir, protocol):
    import tracemalloc

    from salguide.data.cifar10 import read_batch

    honest = _batch(4, 1000, "training batch 4 of 5")  # a real-format batch stays within the bound
    with open(cifar_dir / "honest", "wb") as f:
        pickle.dump(honest, f, protocol=protocol)
    x, y = read_batch(cifar_dir / "honest")
    assert x.shape == (1000, 3, 32, 32) and y.tolist() == honest[b"labels"]

    bomb = _batch(1, 10, "x")
    bomb[b"labels"] = _memo_bomb(10)  # 10**7 int64 = 80 MB once converted
    path = cifar_dir / "bomb"
    with open(path, "wb") as f:
        pickle.dump(bomb, f, protocol=protocol)
    assert path.stat().st_size < 60_000
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=r"bomb: its content expands to more items than the file has bytes"):
            read_batch(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 5 << 20, peak  # nothing near the 80 MB expansion was allocated


@pytest.mark.parametrize(
    "content", [b"", "truncated", b"\x93\x17random bytes \x00\xff" * 50], ids=["empty", "truncated", "random"]
)
def test_unreadable_batches_name_the_file(cifar_dir, content):
    folder = cifar_dir / "cifar-10-batches-py"
    if content == "truncated":
        content = (folder / "data_batch_2").read_bytes()[:5000]
    (folder / "data_batch_2").write_bytes(content)
    with pytest.raises(
        (ValueError, pickle.UnpicklingError), match=r"data_batch_2: not a readable CIFAR-10 python batch"
    ):
        CIFAR10DataModule(cifar_dir).setup()


@pytest.mark.parametrize(
    "labels, match", [([[1], [2]] * 6, "must be 12 integers, got list"), ([3] * 11 + [12], "0..9, got 12")]
)
def test_labels_are_checked_before_conversion_and_name_the_file(cifar_dir, labels, match):
    bad = _batch(1, PER_BATCH, "x")
    bad[b"labels"] = labels
    _write(cifar_dir / "cifar-10-batches-py", "data_batch_1", bad)
    with pytest.raises(ValueError, match=rf"data_batch_1: .*{match}"):
        CIFAR10DataModule(cifar_dir).setup()
