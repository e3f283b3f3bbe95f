"""Unlearning methods from the packaged `unlearning` config group: the SalUn baselines and their validation."""

import pytest

from salguide.models import cosine
from salguide.unlearning import method_names, method_spec


def test_registry_matches_salun_baselines():
    assert set(method_names()) == {"retrain", "ft", "ga", "rl", "l1_sparse", "salun"}
    salun, rl = method_spec("salun"), method_spec("rl")
    assert salun.random_labels and salun.weight_mask and salun.train_on == "retain"
    assert rl.random_labels and not rl.weight_mask  # SalUn = RL + mask
    assert method_spec("ga").train_on == "forget" and method_spec("ga").loss_sign == -1
    assert method_spec("retrain").from_scratch
    assert method_spec("l1-sparse").l1_alpha > 0 and method_spec("ft").l1_alpha == 0


def test_overrides_and_errors():
    assert method_spec("ft", lr=0.3, epochs=2).optimizer.keywords["lr"] == 0.3
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


def _compose(*overrides: str):
    from hydra import compose, initialize_config_module

    with initialize_config_module(config_module="salguide.configs", version_base="1.3"):
        return compose(config_name="train", overrides=list(overrides))


def test_python_and_cli_read_the_same_yaml():
    from hydra.utils import instantiate

    for name in method_names():
        assert method_spec(name) == instantiate(_compose(f"unlearning={name}").unlearning), name
    cfg = _compose()
    retrain = method_spec("retrain")  # the CLI's reference: the original recipe on the retain set
    assert retrain == instantiate(cfg.retrain)
    assert retrain.epochs == cfg.original.epochs and retrain.optimizer.keywords["lr"] == cfg.model.optimizer.lr
    assert retrain.scheduler.func is cosine
    assert instantiate(_compose("retrain.epochs=20").retrain).epochs == 20
    assert instantiate(_compose("original.epochs=3").retrain).epochs == 3


def test_unlearning_retrain_runs_the_retrain_node(caplog):
    from salguide.pipelines.unlearn import method_from, retrain_spec

    cfg = _compose("unlearning=retrain", "retrain.epochs=7")
    assert method_from(cfg) == retrain_spec(cfg) and retrain_spec(cfg).epochs == 7
    with caplog.at_level("WARNING"):
        assert method_from(_compose("unlearning=retrain", "unlearning.epochs=3")).epochs == 10
    assert "set retrain.* to change it" in caplog.text


def test_optimiser_settings_apply_to_the_final_optimiser():
    from functools import partial

    import torch

    adam = method_spec("salun", optimizer=partial(torch.optim.Adam, lr=1e-3), lr=0.5).optimizer
    assert adam.func is torch.optim.Adam and adam.keywords == {"lr": 0.5}  # lr= applies to the Adam given
    assert (
        method_spec("ft", nesterov=True).optimizer.keywords["nesterov"] is True
    )  # any SGD setting, not only the yaml's
    with pytest.raises(ValueError, match=r"unknown hyper-parameter\(s\) \['amsgrad'\]"):
        method_spec("ft", amsgrad=True)  # an Adam setting for SGD


@pytest.mark.parametrize(
    "overrides, message",
    [
        (
            ["retrain.optimizer={_target_:torch.optim.SGD,_partial_:true,lr:0.1,momentun:0.9}"],
            "retrain: .*does not build.*momentun",
        ),
        (
            ["unlearning.scheduler={_target_:torch.optim.lr_scheduler.StepLR,_partial_:true,step_sze:2}"],
            "unlearning: .*scheduler factory .* does not build.*step_sze",
        ),
        (["model.optimizer=null"], "model.optimizer is null"),
        (["model.scheduler._target_=torch.optim.lr_scheduler.StepLR"], "model.scheduler: .*does not build"),
        (
            ["model._target_=salguide.models.mim.MaskedReconstructionModule"],
            "builds every stage as salguide.models.ClassifierModule",
        ),
        (["+model.l1_alpha=0.1"], "model.l1_alpha: the unlearning methods set it"),
    ],
)
def test_bad_stage_recipes_fail_before_anything_trains(tmp_path, overrides, message):
    from salguide.pipelines.unlearn import run_unlearning

    cfg = _compose(
        *overrides, f"paths.output_dir={tmp_path / 'out'}", f"paths.cache_dir={tmp_path / 'cache'}", "logger=none"
    )
    with pytest.raises(ValueError, match=message):
        run_unlearning(cfg)
    assert not (tmp_path / "cache").exists() and not (tmp_path / "out" / "models").exists()
