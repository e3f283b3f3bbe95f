"""RandomLabelCallback: fixed random labels, SalUn's mixing proportion, in-place rewrite, resume."""

from __future__ import annotations

import lightning.pytorch as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from salguide.callbacks import RandomLabelCallback
from salguide.unlearning.random_labels import draw_random_labels, forget_count

N_FORGET, N_RETAIN, C = 20, 100, 5


class Recorder(L.LightningModule):
    """A user module that only records what its training_step receives."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.seen: list[tuple[torch.Tensor, torch.Tensor]] = []

    def training_step(self, batch, batch_idx):
        x, y = batch
        self.seen.append((x.detach().clone(), y.detach().clone()))
        return (self.w * x.sum()).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


class DM(L.LightningDataModule):
    """Forget samples have x = -1 - index (unique, negative); retain samples have x >= 0."""

    num_classes = C

    def __init__(self) -> None:
        super().__init__()
        self.forget_dataset = TensorDataset(-1.0 - torch.arange(N_FORGET).float(), torch.arange(N_FORGET) % C)
        self.retain_dataset = TensorDataset(torch.arange(N_RETAIN).float(), torch.arange(N_RETAIN) % C)

    def train_dataloader(self):
        return DataLoader(self.retain_dataset, batch_size=10, shuffle=True)


def _fit(callback, epochs=3, ckpt_path=None, **kw):
    module, dm = Recorder(), DM()
    trainer = L.Trainer(
        max_epochs=epochs,
        callbacks=[callback],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        **kw,
    )
    trainer.fit(module, datamodule=dm, ckpt_path=ckpt_path)
    return module, trainer


def _forget_pairs(module):
    pairs = {}
    for x, y in module.seen:
        for xi, yi in zip(x.tolist(), y.tolist()):
            if xi < 0:
                pairs.setdefault(int(-xi - 1), set()).add(yi)
    return pairs


def test_labels_are_fixed_per_sample_and_mixed_in_proportion():
    module, _ = _fit(RandomLabelCallback(seed=3), epochs=4)
    pairs = _forget_pairs(module)
    assert all(len(labels) == 1 for labels in pairs.values()), "a forget sample got two different labels"
    n_mixed = sum(int((x < 0).sum()) for x, _ in module.seen)
    n_retain = sum(int((x >= 0).sum()) for x, _ in module.seen)
    assert n_retain == 4 * N_RETAIN  # the user's retain data passes through untouched
    # E[n_mixed] = n_retain * |F| / |R| = 80, with stochastic rounding per batch (std < 3)
    assert abs(n_mixed - 4 * N_FORGET) <= 10
    assert len(pairs) == N_FORGET  # the shuffled cycle reaches every forget sample


def test_labels_cover_classes_and_exclude_true():
    gen = torch.Generator().manual_seed(0)
    y = torch.arange(5000) % C
    drawn = draw_random_labels(y, C, gen)
    assert set(drawn.tolist()) == set(range(C))
    assert 0.15 < (drawn == y).float().mean() < 0.25  # uniform over all C classes: 1/C agree
    excl = draw_random_labels(y, C, gen, exclude_true=True)
    assert not (excl == y).any() and set(excl.tolist()) == set(range(C))
    with pytest.raises(ValueError, match="at least 2 classes"):
        draw_random_labels(y, 1, gen)


def test_forget_count_is_unbiased():
    gen = torch.Generator().manual_seed(0)
    counts = [forget_count(10, 7, 100, gen) for _ in range(4000)]
    assert set(counts) == {0, 1}
    assert abs(sum(counts) / len(counts) - 0.7) < 0.03
    with pytest.raises(ValueError, match="retain set is empty"):
        forget_count(10, 7, 0, gen)


def test_missing_forget_data_and_bad_batches_are_clear_errors():
    class NoForget(DM):
        forget_dataset = None

        def __init__(self):
            L.LightningDataModule.__init__(self)
            self.retain_dataset = TensorDataset(torch.arange(10).float(), torch.arange(10) % C)

    trainer = L.Trainer(
        max_epochs=1,
        callbacks=[RandomLabelCallback()],
        logger=False,
        enable_progress_bar=False,
        enable_checkpointing=False,
    )
    with pytest.raises(ValueError, match="needs forget data"):
        trainer.fit(Recorder(), datamodule=NoForget())

    empty = TensorDataset(torch.zeros(0), torch.zeros(0, dtype=torch.long))
    with pytest.raises(ValueError, match="forget set is empty"):
        _fit(RandomLabelCallback(forget_dataset=empty), epochs=1)

    cb = RandomLabelCallback(seed=0)
    _fit(cb, epochs=1)
    with pytest.raises(TypeError, match=r"list \[x, y\]"):
        cb.on_train_batch_start(None, None, (torch.zeros(2), torch.zeros(2)), 0)


def test_resume_restores_labels(tmp_path):
    cb = RandomLabelCallback(seed=11)
    module, trainer = _fit(cb, epochs=2, default_root_dir=tmp_path)
    ckpt = tmp_path / "rl.ckpt"
    trainer.save_checkpoint(ckpt)
    before = cb.state_dict()["labels"].clone()

    resumed_cb = RandomLabelCallback(seed=999)  # a different seed: labels must come from the checkpoint
    module2, _ = _fit(resumed_cb, epochs=3, ckpt_path=str(ckpt), default_root_dir=tmp_path)
    assert torch.equal(resumed_cb.state_dict()["labels"], before)
    for idx, labels in _forget_pairs(module2).items():
        assert labels == {int(before[idx])}


def test_num_classes_smaller_than_the_forget_labels_is_an_error():
    forget = TensorDataset(-1.0 - torch.arange(10).float(), torch.arange(10))  # labels 0..9
    with pytest.raises(ValueError, match=r"forget labels range 0\.\.9, outside the 3 classes of num_classes=3"):
        _fit(RandomLabelCallback(forget_dataset=forget, num_classes=3), epochs=1)
    with pytest.raises(ValueError, match="outside the 5 classes"):
        draw_random_labels(torch.tensor([0, -1]), 5, torch.Generator())
