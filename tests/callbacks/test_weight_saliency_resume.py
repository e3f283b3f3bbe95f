"""Checkpoint + resume: the mask and θ₀ come back from the callback state, not from recomputation
or from the resumed weights, and training continues with the guarantee intact."""

import pytest
import torch
from wsc_helpers import LitNet, check_guarantee, fit, loader, params_copy, random_mask

from salguide.callbacks import WeightSaliencyCallback
from salguide.weights import WeightMask

ADAMW = {"lr": 0.05, "weight_decay": 0.5}


@pytest.fixture
def checkpoint(tmp_path):
    """A fit of 3 AdamW steps with a random mask, saved; returns (path, θ₀, mask, state_key)."""
    module = LitNet("adamw", **ADAMW)
    theta0, mask = params_copy(module), random_mask(module)
    callback = WeightSaliencyCallback(mask, log_figure=False)
    trainer = fit(module, callback, max_steps=3)
    path = tmp_path / "run.ckpt"
    trainer.save_checkpoint(path)
    return path, theta0, mask, callback.state_key


def test_checkpoint_holds_mask_and_theta0(checkpoint):
    path, theta0, mask, key = checkpoint
    state = torch.load(path, weights_only=True)["callbacks"][key]
    for name, keep in mask.items():
        assert torch.equal(state["mask"][name], keep)
        assert torch.equal(state["frozen_values"][name], theta0[name][~keep])


def test_resume_restores_mask_and_theta0_and_continues(checkpoint):
    path, theta0, mask, _ = checkpoint
    ckpt = torch.load(path, weights_only=True)
    at_ckpt = {n: t.clone() for n, t in ckpt["state_dict"].items()}
    # Tamper with one frozen weight in the checkpoint: the callback's stored θ₀ must win over it.
    frozen_idx = int((~mask["net.0.weight"]).flatten().nonzero()[0])
    ckpt["state_dict"]["net.0.weight"].view(-1)[frozen_idx] += 1.0
    torch.save(ckpt, path)
    # mask=None with forget data would compute a different mask if the checkpoint's were ignored.
    callback = WeightSaliencyCallback(forget_dataloader=loader(n=16, seed=5), log_figure=False)
    module = LitNet("adamw", **ADAMW)
    trainer = fit(module, callback, ckpt_path=path, max_steps=6)
    assert trainer.global_step == 6
    assert callback.mask == WeightMask(mask)
    check_guarantee(module, theta0, mask, trainer.optimizers)
    for name, p in module.named_parameters():  # training went on after the resume
        assert not torch.equal(p.detach()[mask[name]], at_ckpt[name][mask[name]])


def test_resume_with_a_different_mask_is_refused(checkpoint):
    path, _, mask, _ = checkpoint
    other = {n: ~m for n, m in mask.items()}
    with pytest.raises(ValueError, match="different weight mask"):
        fit(LitNet("adamw", **ADAMW), WeightSaliencyCallback(other, log_figure=False), ckpt_path=path, max_steps=6)
