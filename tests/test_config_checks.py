"""Every numeric setting is validated when the config is composed, naming its key, before anything trains."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf
from test_cli import OPTIONS

from salguide.configs import check_config, check_name
from salguide.configs.checks import leaves, rule_for


def _compose(*overrides: str):
    with initialize_config_module(config_module="salguide.configs", version_base="1.3"):
        return compose(config_name="train", overrides=list(overrides))


@pytest.mark.parametrize(
    "override,message",
    [
        ("original.epochs=0", "original.epochs must be an integer >= 1, got 0"),
        ("original.epochs=-1", "original.epochs must be an integer >= 1, got -1"),
        ("original.epochs=2.5", "original.epochs must be an integer >= 1, got 2.5"),
        ("unlearning.optimizer.lr=abc", "unlearning.optimizer.lr must be a number > 0, got 'abc'"),
        ("unlearning.optimizer.lr=nan", "unlearning.optimizer.lr must be a number > 0, got nan"),
        ("saliency.ratio=2", "saliency.ratio must be a number in (0, 1], got 2"),
        ("saliency.ratio=0", "saliency.ratio must be a number in (0, 1], got 0"),
        ("retrain.epochs=0", "retrain.epochs must be an integer >= 1, got 0"),
        ("data.batch_size=0", "data.batch_size must be an integer >= 1, got 0"),
        ("data.forget_ratio=1.5", "data.forget_ratio must be a number in (0, 1), got 1.5"),
        ("seed=-3", "seed must be an integer in [0, 4294967295], got -3"),
        ("model.optimizer.momentum=1.5", "model.optimizer.momentum must be a number in [0, 1), got 1.5"),
        ("compare_to_retrain=maybe", "compare_to_retrain must be one of True, False, got 'maybe'"),
        ("+trainer.accumulate_grad_batches=0", "trainer.accumulate_grad_batches must be an integer >= 1, got 0"),
        ("model.net.width=abc", "model.net.width must be an integer >= 1, got 'abc'"),
    ],
)
def test_bad_value_names_key_rule_and_value(override, message):
    with pytest.raises(ValueError) as err:
        check_config(_compose(override))
    assert message in str(err.value)


@pytest.mark.parametrize(
    "overrides,message",
    [
        (
            ["experiment=mim_digits", "callbacks.attention_masking.ratio=1.0"],
            "callbacks.attention_masking.ratio must be a number in [0, 1)",
        ),
        (
            ["experiment=mim_digits", "trainer.max_epochs=0"],
            "trainer.max_epochs must be an integer >= 1 or null, got 0",
        ),
        (
            ["experiment=prune_digits_evit", "callbacks.token_policy.policy.keep=0"],
            "callbacks.token_policy.policy.keep must be a number in (0, 1], got 0",
        ),
        (
            ["experiment=decoy_rrr", "callbacks.input_loss.input_loss.weight=-1"],
            "callbacks.input_loss.input_loss.weight must be a number >= 0, got -1",
        ),
        (["experiment=decoy_vanilla", "model.net.in_features=0"], "model.net.in_features must be an integer"),
    ],
)
def test_other_pipelines_settings_are_checked_too(overrides, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        check_config(_compose(*overrides))


def test_every_error_is_reported_at_once_and_good_values_pass():
    with pytest.raises(ValueError) as err:
        check_config(_compose("original.epochs=0", "unlearning.optimizer.lr=abc"))
    assert "original.epochs" in str(err.value) and "unlearning.optimizer.lr" in str(err.value)
    check_config(
        _compose("unlearning.optimizer.lr=1", "original.epochs=3", "saliency.ratio=1.0", "data.forget_ratio=0.3")
    )


@pytest.mark.parametrize("group,option", OPTIONS)
def test_every_numeric_or_boolean_setting_has_a_rule_and_the_shipped_values_pass(group, option):
    cfg = _compose(f"{group}={option}")
    check_config(cfg)
    tree = OmegaConf.to_container(cfg, resolve=False)
    tree.pop("paths")
    unruled = [p for p, v in leaves(tree) if isinstance(v, (bool, int, float)) and rule_for(p) is None]
    assert not unruled, f"settings without a validation rule: {unruled}"


@pytest.mark.parametrize("name", ["../../x", "/abs", "a/../../b", "..", "", "a\\..\\b"])
def test_names_that_leave_the_output_root_are_refused(name):
    with pytest.raises(ValueError, match="relative folder name"):
        check_name(name)
    assert check_name("study/a") == "study/a"


def test_the_data_modules_train_on_takes_full():
    """data.train_on is the data module's split (full by default), unlike a method's train_on (retain / forget)."""
    from hydra import compose, initialize_config_module

    with initialize_config_module(config_module="salguide.configs", version_base="1.3"):
        check_config(compose(config_name="train", overrides=["+data.train_on=full"]))
        with pytest.raises(ValueError, match="data.train_on must be one of 'full', 'retain', 'forget'"):
            check_config(compose(config_name="train", overrides=["+data.train_on=all"]))
        with pytest.raises(ValueError, match="unlearning.train_on must be one of 'retain', 'forget'"):
            check_config(compose(config_name="train", overrides=["unlearning.train_on=full"]))
