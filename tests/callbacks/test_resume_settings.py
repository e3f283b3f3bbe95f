"""Resuming with other settings than the checkpoint's is refused, where it used to mix them silently: a
TokenPruningCallback of another keep rate or policy (training followed the new schedule, evaluation the
checkpoint's rate), a WeightSaliencyCallback whose mask would be computed with another ratio or scope (the
checkpoint's mask was kept, the new ratio ignored)."""

from __future__ import annotations

import pytest
from cpu_trainer import cpu_trainer
from matrix_cases import TinyData, mlp, vit_module

from salguide.attention import EViTPolicy, ToMePolicy
from salguide.callbacks import TokenPruningCallback, WeightSaliencyCallback


def _checkpoint(tmp_path, module, callback, data):
    trainer = cpu_trainer(max_steps=2, num_sanity_val_steps=0, limit_val_batches=0, callbacks=[callback])
    trainer.fit(module, datamodule=data)
    trainer.save_checkpoint(tmp_path / "run.ckpt")
    return tmp_path / "run.ckpt"


def _resume(path, module, callback, data):
    trainer = cpu_trainer(max_steps=4, num_sanity_val_steps=0, limit_val_batches=0, callbacks=[callback])
    trainer.fit(module, datamodule=data, ckpt_path=path)
    return trainer


def test_token_pruning_resume_needs_the_checkpoints_policy_and_keep(tmp_path):
    data = TinyData(side=8)
    path = _checkpoint(tmp_path, vit_module(), TokenPruningCallback(EViTPolicy([0], 0.5)), data)
    for other in (EViTPolicy([0], 0.9), ToMePolicy([0], 0.5)):
        with pytest.raises(ValueError, match=r"trained with evit keeping 0.5"):
            _resume(path, vit_module(), TokenPruningCallback(other), data)
    same = TokenPruningCallback(EViTPolicy([0], 0.5))
    assert _resume(path, vit_module(), same, data).global_step == 4 and same.policy.keep == 0.5


def test_weight_saliency_resume_needs_the_checkpoints_ratio_and_scope(tmp_path):
    data = TinyData(with_mask=False)
    path = _checkpoint(tmp_path, mlp(), WeightSaliencyCallback(ratio=0.5, log_figure=False), data)
    for kwargs in ({"ratio": 0.1}, {"scope": "layer"}):
        with pytest.raises(ValueError, match=r"computed with ratio=0.5, scope='global'"):
            _resume(path, mlp(), WeightSaliencyCallback(**{"ratio": 0.5, **kwargs}, log_figure=False), data)
    same = WeightSaliencyCallback(ratio=0.5, log_figure=False)
    assert _resume(path, mlp(), same, data).global_step == 4
