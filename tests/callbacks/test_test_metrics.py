"""TestMetricsCallback + salguide.evaluation extras: batch-by-batch values inside trainer.test equal the
whole-split reference computations (evaluate_explanations, attention_object_mass)."""

from __future__ import annotations

import pytest
import torch
from matrix_cases import TinyData, mlp, vit_module
from torch.utils.data import DataLoader

from salguide._lightning import pl
from salguide.attention.metrics import attention_object_mass
from salguide.callbacks import TestMetricsCallback
from salguide.evaluation import ExplanationScores, ObjectMass, relevant_region
from salguide.metrics import evaluate_explanations


class TestData(TinyData):
    """TinyData with its 16 training samples as the test split, in batches of 3 (the last one short)."""

    __test__ = False

    def __init__(self, side: int = 4, semantics: str = "relevant") -> None:
        super().__init__(side=side)
        self.mask_semantics = semantics

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.train_dataset, batch_size=3)


def _test(module, data, metrics):
    trainer = pl.Trainer(
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[TestMetricsCallback(metrics)],
    )
    return trainer.test(module, datamodule=data, verbose=False)[0]


@pytest.mark.parametrize("semantics", ["relevant", "irrelevant"])
def test_explanation_scores_match_the_whole_split_reference(semantics):
    module, data = mlp(), TestData(semantics=semantics)
    x, y, mask = data.train_dataset.tensors
    got = _test(module, data, {"expl": ExplanationScores(steps=4)})
    want = evaluate_explanations(module.eval(), x, y, relevant_region(mask, semantics), steps=4)
    assert set(want) == {"deletion_auc", "insertion_auc", "pointing_game", "energy_in_mask"}
    for k, v in want.items():
        assert got[f"test/{k}"] == pytest.approx(v, abs=1e-5), k
    assert got["test/acc"] == pytest.approx(float((module(x).argmax(-1) == y).float().mean()), abs=1e-6)


def test_object_mass_matches_the_whole_split_reference():
    module, data = vit_module(), TestData(side=8)
    x, _, mask = data.train_dataset.tensors
    got = _test(module, data, {"mass": ObjectMass()})
    (want,) = attention_object_mass(module.eval(), x, mask).values()
    assert 0 < want < 1
    assert got["test/attn_object_mass"] == pytest.approx(want, abs=1e-6)


def test_each_test_run_starts_afresh():
    module, data = mlp(), TestData()
    first = _test(module, data, {"expl": ExplanationScores(steps=2)})
    second = _test(module, data, {"expl": ExplanationScores(steps=2)})
    assert first == pytest.approx(second)


def test_an_object_that_is_not_an_extra_is_refused_by_name():
    with pytest.raises(TypeError, match=r"evaluation\.bad: .*update"):
        TestMetricsCallback({"bad": torch.nn.Linear(1, 1)})
