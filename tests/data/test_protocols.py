"""The data-module interface the callbacks read (salguide.data.protocols): every shipped datamodule
implements what it should, and a user's datamodule that lacks a member gets an error naming it."""

from __future__ import annotations

import lightning.pytorch as L
import pytest
import torch
from cpu_trainer import PlainModule
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from salguide.callbacks import (
    DataSamplesCallback,
    ExplanationMetricsCallback,
    InputSaliencyCallback,
    RandomLabelCallback,
    WeightSaliencyCallback,
)
from salguide.data import DecoyDigitsDataModule, DigitsDataModule, SyntheticScenesDataModule
from salguide.data.protocols import (
    AnnotatedData,
    ForgetLoaderData,
    ForgetSetData,
    SplitData,
    mask_semantics_of,
    protocol_members,
    require,
)
from salguide.inputs import RRRLoss


def test_members_are_read_from_the_protocols():
    assert protocol_members(ForgetLoaderData) == ("forget_dataloader",)
    assert protocol_members(ForgetSetData) == ("forget_dataset", "num_classes")
    assert protocol_members(AnnotatedData) == ("mask_semantics",)
    assert protocol_members(SplitData) == ("train_dataset",)


def test_shipped_datamodules_implement_their_protocols():
    digits = DigitsDataModule(batch_size=32)
    digits.setup()
    for proto in (ForgetLoaderData, ForgetSetData, SplitData):
        assert require(digits, proto, by="test") is digits
        assert isinstance(digits, proto)  # runtime_checkable agrees once set up
    for annotated in (DecoyDigitsDataModule(batch_size=32), SyntheticScenesDataModule(batch_size=32)):
        annotated.setup()
        assert require(annotated, AnnotatedData, by="test") is annotated
        assert require(annotated, SplitData, by="test") is annotated
        assert mask_semantics_of(annotated, by="test") in ("irrelevant", "relevant")
    # before setup(): num_classes is a property that may need data; the check must not run it
    assert require(DigitsDataModule(), ForgetLoaderData, by="test")


def _data(n: int = 8) -> TensorDataset:
    g = torch.Generator().manual_seed(0)
    return TensorDataset(torch.randn(n, 4, generator=g), torch.arange(n) % 3)


class OnlyTrain(L.LightningDataModule):
    """A user's datamodule: a training loader and nothing else."""

    def train_dataloader(self):
        return DataLoader(_data(), batch_size=4)


def _fit(callback, datamodule) -> None:
    trainer = L.Trainer(max_epochs=1, callbacks=[callback], logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    trainer.fit(PlainModule(nn.Linear(4, 3)), datamodule=datamodule)


def test_weight_saliency_names_the_missing_forget_dataloader():
    with pytest.raises(ValueError, match=r"needs forget data: forget_dataloader\(\) on the datamodule, which "
                                         r"OnlyTrain lacks \(salguide.data.protocols.ForgetLoaderData"):  # fmt: skip
        _fit(WeightSaliencyCallback(log_figure=False), OnlyTrain())


def test_random_labels_name_each_missing_attribute():
    with pytest.raises(ValueError, match=r"RandomLabelCallback needs forget data: 'forget_dataset', 'num_classes' "
                                         r"on the datamodule, which OnlyTrain lacks .*ForgetSetData"):  # fmt: skip
        _fit(RandomLabelCallback(), OnlyTrain())

    class NoClasses(OnlyTrain):
        forget_dataset = _data(4)

    with pytest.raises(ValueError, match=r"needs forget data: 'num_classes' on the datamodule, which NoClasses lacks"):
        _fit(RandomLabelCallback(), NoClasses())
    with pytest.raises(ValueError, match=r"needs num_classes: 'num_classes' on the datamodule"):
        _fit(RandomLabelCallback(forget_dataset=_data(4)), NoClasses())
    _fit(RandomLabelCallback(forget_dataset=_data(4), num_classes=3), OnlyTrain())  # arguments replace the datamodule


def test_a_bad_mask_semantics_is_named():
    class Odd(OnlyTrain):
        mask_semantics = "foreground"

    with pytest.raises(ValueError, match=r"InputSaliencyCallback: Odd.mask_semantics must be one of "
                                         r"\('irrelevant', 'relevant'\), got 'foreground'"):  # fmt: skip
        _fit(InputSaliencyCallback(RRRLoss(1.0)), Odd())
    assert mask_semantics_of(OnlyTrain(), by="x") is None
    assert mask_semantics_of(None, by="x") is None
    with pytest.raises(ValueError, match="ExplanationMetricsCallback: Odd.mask_semantics"):
        mask_semantics_of(Odd(), by=type(ExplanationMetricsCallback()).__name__)


def test_no_datamodule_is_named():
    with pytest.raises(ValueError, match=r"X needs a datamodule implementing .*SplitData, got none; or pass y"):
        require(None, SplitData, by="X", instead="pass y")


def test_data_samples_without_train_dataset_logs_nothing(tmp_path, caplog):
    _fit(DataSamplesCallback(out_dir=str(tmp_path)), OnlyTrain())
    assert "has no train_dataset" in caplog.text
    assert not list(tmp_path.iterdir())
