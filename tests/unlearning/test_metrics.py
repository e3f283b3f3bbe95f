"""Unlearning metrics (SalUn protocol) on hand-computed and constructed cases."""

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from salguide.data import DigitsDataModule
from salguide.unlearning.metrics import (
    accuracy,
    avg_gap,
    mia_efficacy,
    mia_efficacy_from_confidences,
    unlearning_metrics,
)


def _loader(x, y, batch_size=2):
    return DataLoader(TensorDataset(torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y)), batch_size=batch_size)


def _identity_linear() -> nn.Linear:
    lin = nn.Linear(2, 2)
    with torch.no_grad():
        lin.weight.copy_(torch.eye(2))
        lin.bias.zero_()
    return lin


def test_accuracy_matches_hand_count_in_eval_mode_and_restores_mode():
    x = [[1, 0], [0, 1], [2, 1], [0, 3], [1, 2]]  # argmax: 0, 1, 0, 1, 1
    y = [0, 1, 1, 1, 0]  # correct: yes, yes, no, yes, no -> 3 of 5
    model = nn.Sequential(nn.Dropout(p=0.9), _identity_linear()).train()
    assert accuracy(model, _loader(x, y)) == pytest.approx(60.0)
    assert model.training
    model.eval()
    assert accuracy(model, _loader(x, y)) == pytest.approx(60.0) and not model.training


def test_accuracy_refuses_empty_loader_and_nan_logits():
    with pytest.raises(ValueError, match="empty"):
        accuracy(_identity_linear(), _loader(torch.zeros(0, 2), torch.zeros(0, dtype=torch.long)))
    with pytest.raises(ValueError, match="NaN or inf"):
        accuracy(_identity_linear(), _loader([[float("nan"), 0.0]], [0]))


class _ConfidenceModel(nn.Module):
    """Input x is the probability it should give class 0 (every label is 0), so confidence = x."""

    def forward(self, x):
        p = x.view(-1, 1).clamp(1e-6, 1 - 1e-6)
        return torch.cat([p.log(), (1 - p).log()], dim=1)


def _conf_loader(values):
    values = torch.as_tensor(values, dtype=torch.float32)
    return _loader(values, torch.zeros(len(values), dtype=torch.long), batch_size=64)


@pytest.mark.parametrize("forget_level, low, high", [(0.97, 0.0, 5.0), (0.3, 95.0, 100.0)])
def test_mia_efficacy_on_constructed_members_and_non_members(forget_level, low, high):
    g = torch.Generator().manual_seed(0)
    retain = 0.9 + 0.1 * torch.rand(400, generator=g)  # members: confident
    test = 0.1 + 0.5 * torch.rand(150, generator=g)  # non-members: unsure
    forget = forget_level + 0.02 * torch.rand(60, generator=g)
    eff = mia_efficacy(_ConfidenceModel(), _conf_loader(retain), _conf_loader(forget), _conf_loader(test), seed=0)
    assert low <= eff <= high


def test_mia_uses_a_retain_subset_of_test_size():
    # Members spread over [0, 1], non-members in [0, 0.3]. Balanced shadow sets (|shadow-in| = |test| = 50) make
    # low confidence look like a non-member; all 3,000 retain samples would outnumber the test set 60:1 and
    # make the SVC call everything a member (efficacy 0).
    g = torch.Generator().manual_seed(1)
    retain, test = torch.rand(3000, generator=g), 0.3 * torch.rand(50, generator=g)
    forget = 0.05 + 0.2 * torch.rand(40, generator=g)
    assert [mia_efficacy_from_confidences(retain, forget, test, seed=s) for s in range(3)] == [100.0] * 3


def test_mia_refuses_empty_or_non_finite_confidences():
    ok = torch.rand(5)
    with pytest.raises(ValueError, match="forget confidences"):
        mia_efficacy_from_confidences(ok, torch.zeros(0), ok)
    with pytest.raises(ValueError, match="test confidences contain NaN"):
        mia_efficacy_from_confidences(ok, ok, torch.tensor([0.1, float("nan")]))


class _AlwaysOne(nn.Module):
    def forward(self, x):
        logits = torch.zeros(x.shape[0], 10)
        logits[:, 1] = 5.0
        return logits


def test_unlearning_metrics_on_a_constant_classifier():
    dm = DigitsDataModule(batch_size=128, forget="class", forget_class=0)
    dm.setup()
    model = _AlwaysOne()
    m = unlearning_metrics(model, dm)
    assert set(m) == {"UA", "RA", "TA", "MIA"}
    assert m["UA"] == pytest.approx(100.0)  # it never predicts the forgotten class 0
    assert m["RA"] == pytest.approx(100.0 * float((dm.retain_dataset.targets == 1).float().mean()))
    assert m["TA"] == pytest.approx(100.0 * float((dm.test_dataset.targets == 1).float().mean()))
    retain = dm.retain_dataloader(shuffle=False)
    expected_mia = mia_efficacy(model, retain, dm.forget_dataloader(), dm.test_dataloader())
    assert m["MIA"] == pytest.approx(expected_mia)


def test_unlearning_metrics_needs_a_forget_split():
    dm = DigitsDataModule(forget=None)
    with pytest.raises(ValueError, match="forget=None"):
        unlearning_metrics(_AlwaysOne(), dm)


def test_avg_gap_hand_value_and_errors():
    ours = {"UA": 10.0, "RA": 90.0, "TA": 80.0, "MIA": 20.0, "RTE": 3.0}
    retrain = {"UA": 12.0, "RA": 95.0, "TA": 80.0, "MIA": 30.0, "RTE": 60.0}
    assert avg_gap(ours, retrain) == pytest.approx((2 + 5 + 0 + 10) / 4)
    assert avg_gap(ours, retrain, keys=("UA",)) == pytest.approx(2.0)
    with pytest.raises(KeyError, match="'MIA'"):
        avg_gap({"UA": 1, "RA": 1, "TA": 1}, retrain)
    with pytest.raises(ValueError, match="not finite"):
        avg_gap({**ours, "TA": float("inf")}, retrain)
