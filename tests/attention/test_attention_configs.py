"""Hydra groups attention_loss / token_policy, the attn_* / prune_* presets and task=attention."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import InstantiationException
from hydra.utils import instantiate

import salguide
from salguide.callbacks.attention_loss import AttentionLossCallback
from salguide.callbacks.token_pruning import TokenPruningCallback
from salguide.pipelines import attention as attention_pipeline

CONFIGS = Path(salguide.__file__).parent / "configs"
PRESETS = sorted(
    p.stem for p in (CONFIGS / "experiment").glob("*.yaml") if p.stem.startswith(("attn_", "prune_", "mim_"))
)
MASK_OPTIONS = sorted(p.stem for p in (CONFIGS / "attention_masking").glob("*.yaml"))
ATTENTION_LOSSES = ["bas", "concentration", "diversity", "entropy"]
POLICIES = ["dynamicvit", "evit", "tome"]


def _compose(*overrides: str):
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return compose(config_name="train", overrides=["paths.output_dir=unused", *overrides])  # no Hydra run here


def test_every_option_has_a_yaml_and_presets_exist() -> None:
    assert {p.stem for p in (CONFIGS / "attention_loss").glob("*.yaml")} == {"none", *ATTENTION_LOSSES}
    assert {p.stem for p in (CONFIGS / "token_policy").glob("*.yaml")} == {"none", *POLICIES}
    assert (
        len(PRESETS) == 11
    )  # attn_scenes_{vanilla,concentration,bas,oracle}, mim_digits, prune_{digits,fashion_mnist}_*
    assert MASK_OPTIONS == ["acmil", "attmask_high", "attmask_hint", "attmask_low", "none", "random"]


@pytest.mark.parametrize("loss", ["none", *sorted(ATTENTION_LOSSES)])
@pytest.mark.parametrize("policy", ["none", *sorted(POLICIES)])
def test_groups_compose_and_build(loss: str, policy: str) -> None:
    cfg = _compose("experiment=attn_scenes_vanilla", f"attention_loss={loss}", f"token_policy={policy}")
    cbs, names = attention_pipeline.attention_callbacks(cfg)
    assert names == {"attention_loss": loss, "token_policy": policy}
    assert sum(isinstance(c, AttentionLossCallback) for c in cbs) == (loss != "none")
    assert sum(isinstance(c, TokenPruningCallback) for c in cbs) == (policy != "none")


@pytest.mark.parametrize("preset", PRESETS)
def test_presets(preset: str) -> None:
    cfg = _compose(f"experiment={preset}")
    assert cfg.task._target_ == "salguide.pipelines.attention.run_attention" and cfg.name == preset
    assert cfg.model.net._target_.startswith(("salguide.models.vit", "salguide.models.VisionTransformer"))
    if preset.startswith("prune_"):
        assert instantiate(cfg.callbacks.token_policy).policy.name == preset.split("_")[-1] and cfg.data.forget is None
    masking = cfg.callbacks.get("attention_masking")
    assert (instantiate(masking).mode if masking else "none") == ("high" if preset == "mim_digits" else "none")
    if preset.startswith("attn_scenes_"):  # the oracle alone sees no background
        assert cfg.data.get("erase_background", False) is (preset == "attn_scenes_oracle")


@pytest.mark.parametrize("option", MASK_OPTIONS)
def test_masking_options_build_the_callback(option: str) -> None:
    from salguide.callbacks.attention_masking import AttentionMaskingCallback

    cfg = _compose("experiment=mim_digits", f"attention_masking={option}")
    cbs, _ = attention_pipeline.attention_callbacks(cfg)
    built = [cb for cb in cbs if isinstance(cb, AttentionMaskingCallback)]
    assert [cb.mode for cb in built] == ([] if option == "none" else [option.removeprefix("attmask_")])


def test_bad_group_values_fail_before_training(tmp_path) -> None:
    cfg = _compose("experiment=prune_digits_evit", "callbacks.token_policy.policy.keep=1.5")
    with pytest.raises(InstantiationException, match=r"keep rate must lie in \(0, 1\]"):
        attention_pipeline.attention_callbacks(cfg)
    cfg = _compose(
        "experiment=attn_scenes_bas", "callbacks.attention_loss.attention_loss._target_=salguide.attention.Focus"
    )
    with pytest.raises(InstantiationException, match="Error locating target 'salguide.attention.Focus'"):
        attention_pipeline.attention_callbacks(cfg)


@pytest.mark.slow
def test_attention_pipeline_writes_results_and_attention_maps(tmp_path) -> None:
    cfg = _compose(
        "experiment=attn_scenes_bas",
        f"paths.output_dir={tmp_path}",
        "trainer.max_epochs=1",
        "logger=none",
        "callbacks=none",
        "callbacks.attention_maps.every_n_epochs=1",
        "token_policy=tome",
        "+trainer.limit_train_batches=3",
    )
    attention_pipeline.run_attention(cfg)
    row = json.loads((tmp_path / "results.json").read_text())
    assert row["attention_loss"] == "bas" and row["token_policy"] == "tome"
    assert 0.0 <= row["test_attn_object_mass"] <= 1.0 and 0.0 <= row["test_acc"] <= 100.0
    assert (tmp_path / "attention" / "attention_epoch000.png").exists()


@pytest.mark.slow
def test_mim_pipeline_on_digits_writes_results(tmp_path) -> None:
    cfg = _compose(
        "experiment=mim_digits",
        f"paths.output_dir={tmp_path}",
        "trainer.max_epochs=1",
        "logger=none",
        "callbacks=none",
        "attention_masking=acmil",
        "+trainer.limit_train_batches=3",
    )
    attention_pipeline.run_attention(cfg)
    row = json.loads((tmp_path / "results.json").read_text())
    assert row["masking"] == "acmil" and row["test_recon_mse"] > 0 and 0 <= row["test_acc"] <= 100
