"""Unlearning method registry: the SalUn baselines and their validation."""

import pytest

from salguide.unlearning import METHODS, method_spec


def test_registry_matches_salun_baselines():
    assert set(METHODS) == {"retrain", "ft", "ga", "rl", "l1_sparse", "salun"}
    salun, rl = method_spec("salun"), method_spec("rl")
    assert salun.random_labels and salun.weight_mask and salun.train_on == "retain"
    assert rl.random_labels and not rl.weight_mask  # SalUn = RL + mask
    assert method_spec("ga").train_on == "forget" and method_spec("ga").loss_sign == -1
    assert method_spec("retrain").from_scratch
    assert method_spec("l1-sparse").l1_alpha > 0 and method_spec("ft").l1_alpha == 0


def test_overrides_and_errors():
    assert method_spec("ft", lr=0.3, epochs=2).lr == 0.3
    with pytest.raises(ValueError, match="unknown unlearning method 'foo'.*salun"):
        method_spec("foo")
    with pytest.raises(ValueError, match=r"unknown hyper-parameter\(s\) \['lrr'\]"):
        method_spec("ft", lrr=0.1)
    with pytest.raises(ValueError, match="lr must be positive"):
        method_spec("ft", lr=0)
    with pytest.raises(ValueError, match="epochs must be >= 1"):
        method_spec("ft", epochs=0)
    with pytest.raises(ValueError, match="optimizer"):
        method_spec("ft", optimizer="lion")
