"""DigitsDataModule and the ForgetDataModule contract, against scikit-learn's raw digits."""

import math
from collections import Counter

import lightning.pytorch
import numpy as np
import pytest
import pytorch_lightning
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits

from salguide.data import DigitsDataModule, ForgetDataModule
from salguide.models import SmallCNN


@pytest.fixture(scope="module")
def dm():
    module = DigitsDataModule(batch_size=32, forget="class", forget_class=3, seed=0)
    module.setup()
    return module


def _rows(x: torch.Tensor) -> Counter:
    return Counter(tuple(r) for r in np.rint(x.reshape(len(x), -1).numpy()).astype(int).tolist())


def test_images_are_the_bundled_digits_normalised(dm):
    raw = load_digits()
    x = torch.cat([dm.train_x, dm.test_x])
    assert x.dtype == torch.float32 and dm.train_y.dtype == torch.long
    # Undo the affine normalisation using the train statistics: pixels must be the integers 0..16 again.
    lo = dm.train_x.min()
    step = dm.train_x.unique()[1] - lo
    pixels = (x - lo) / step
    assert torch.allclose(pixels, pixels.round(), atol=1e-3)
    assert _rows(pixels) == _rows(torch.as_tensor(raw.data, dtype=torch.float32))
    assert abs(float(dm.train_x.mean())) < 1e-4 and abs(float(dm.train_x.std()) - 1) < 1e-3


def test_split_sizes_stratification_and_forget_sets(dm):
    assert len(dm.train_dataset) + len(dm.full_test_dataset) == 1797
    assert len(dm.full_test_dataset) == math.ceil(0.2 * 1797)  # scikit-learn rounds the test share up
    train_counts, test_counts = np.bincount(dm.train_y), np.bincount(dm.test_y)
    assert np.all(np.abs(test_counts / train_counts - 0.25) < 0.03)
    assert set(dm.forget_dataset.targets.tolist()) == {3}
    assert len(dm.forget_dataset) == int((dm.train_y == 3).sum())
    assert 3 not in dm.retain_dataset.targets.tolist()
    assert len(dm.retain_dataset) + len(dm.forget_dataset) == len(dm.train_dataset)
    assert 3 not in dm.test_dataset.targets.tolist()
    assert len(dm.test_dataset) == int((dm.test_y != 3).sum())
    assert torch.equal(dm.forget_indices, (dm.train_y == 3).nonzero().flatten())
    x, y = dm.forget_dataset[0]
    assert x.shape == (1, 8, 8) and y.dtype == torch.long and int(y) == 3
    assert dm.num_classes == 10 and dm.input_shape == (1, 8, 8)


def test_train_on_selects_the_served_split(dm):
    assert sum(len(b[1]) for b in dm.train_dataloader()) == len(dm.train_dataset)
    dm.train_on = "retain"
    try:
        ys = torch.cat([b[1] for b in dm.train_dataloader()])
        assert len(ys) == len(dm.retain_dataset) and 3 not in ys.tolist()
        dm.train_on = "forget"
        assert set(torch.cat([b[1] for b in dm.train_dataloader()]).tolist()) == {3}
    finally:
        dm.train_on = "full"
    with pytest.raises(ValueError, match="train_on"):
        dm.train_on = "everything"
    forget_ys = torch.cat([b[1] for b in dm.forget_dataloader()])
    assert torch.equal(forget_ys, dm.forget_dataset.targets)  # shuffle=False keeps order
    assert len(dm.val_dataloader().dataset) == len(dm.test_dataset)


def test_random_mode_upsampling_and_seed():
    a = DigitsDataModule(image_size=32, forget="random", forget_ratio=0.1, seed=4)
    b = DigitsDataModule(image_size=32, forget="random", forget_ratio=0.1, seed=4)
    a.setup(), b.setup()
    assert a.input_shape == (1, 32, 32) == tuple(a.train_dataset[0][0].shape)
    assert len(a.forget_dataset) == round(0.1 * len(a.train_dataset))
    assert torch.equal(a.forget_indices, b.forget_indices)
    assert len(a.test_dataset) == len(a.full_test_dataset)


def test_forget_none_refuses_forget_and_retain_loaders():
    module = DigitsDataModule(forget=None)
    module.setup()
    assert module.forget_dataset is None and len(module.test_dataset) == len(module.full_test_dataset)
    for call in (module.forget_dataloader, module.retain_dataloader):
        with pytest.raises(ValueError, match="forget=None"):
            call()
    module.train_on = "retain"
    with pytest.raises(ValueError, match="forget=None"):
        module.train_dataloader()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(batch_size=0), "batch_size"),
        (dict(forget="random", forget_ratio=1.5), "forget_ratio"),
        (dict(forget="sample"), "unknown forget mode"),
        (dict(image_size=4), "image_size"),
        (dict(test_fraction=1.0), "test_fraction"),
        (dict(train_on="test"), "train_on"),
    ],
)
def test_bad_arguments_fail_at_construction(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DigitsDataModule(**kwargs)


def test_absent_forget_class_fails_at_setup():
    with pytest.raises(ValueError, match="class 12 is not in the training set"):
        DigitsDataModule(forget_class=12).setup()


def test_loaders_before_setup_are_refused():
    with pytest.raises(RuntimeError, match="setup"):
        DigitsDataModule().test_dataloader()


class _Counting(ForgetDataModule):
    def __init__(self, x, y, **kw):
        super().__init__(**kw)
        self.x, self.y, self.loads = x, y, 0

    def _load(self):
        self.loads += 1
        return self.x, self.y, self.x, self.y


def test_setup_is_idempotent():
    x, y = torch.randn(10, 1, 2, 2), torch.arange(10) % 2
    module = _Counting(x, y, forget="class", forget_class=1)
    module.setup("fit")
    first = module.train_dataset
    module.setup("test")
    assert module.loads == 1 and module.train_dataset is first
    assert module.num_classes == 2 and module.input_shape == (1, 2, 2)


@pytest.mark.parametrize(
    "x, y, match",
    [
        (torch.full((4, 1, 2, 2), float("nan")), torch.tensor([0, 1, 0, 1]), "NaN or inf"),
        (torch.randn(4, 2, 2), torch.tensor([0, 1, 0, 1]), r"\[N, C, H, W\]"),
        (torch.randn(4, 1, 2, 2), torch.tensor([0, 1, 0]), "labels must have shape"),
        (torch.randn(0, 1, 2, 2), torch.zeros(0, dtype=torch.long), "empty"),
        (torch.randn(4, 1, 2, 2), torch.tensor([0.0, 1.0, 0.0, 1.0]), "int64"),
    ],
)
def test_bad_loaded_data_is_named(x, y, match):
    with pytest.raises(ValueError, match=match):
        _Counting(x, y, forget=None).setup()


def _module(framework):
    class Tiny(framework.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = SmallCNN(width=4)

        def training_step(self, batch, batch_idx):
            return F.cross_entropy(self.net(batch[0]), batch[1])

        def test_step(self, batch, batch_idx):
            self.log("test_loss", F.cross_entropy(self.net(batch[0]), batch[1]))

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    return Tiny()


@pytest.mark.parametrize("framework", [lightning.pytorch, pytorch_lightning], ids=lambda m: m.__name__)
def test_both_lightning_trainers_accept_the_datamodule(dm, framework):
    assert isinstance(dm, framework.LightningDataModule)
    trainer = framework.Trainer(fast_dev_run=True, accelerator="cpu", logger=False, enable_progress_bar=False)
    trainer.fit(_module(framework), datamodule=dm)
    (result,) = trainer.test(_module(framework), datamodule=dm, verbose=False)
    assert trainer.state.finished and result["test_loss"] > 0
