"""``task=attention``: train a (routed) ViT with an attention loss, a token policy or attention-guided masking.

Classification (``attention_loss`` / ``token_policy`` groups: ``callbacks.attention_loss`` /
``callbacks.token_policy``, ``experiment=attn_scenes_*`` / ``prune_digits_*``): ``ClassifierModule`` with
AttentionLossCallback, TokenPruningCallback and AttentionMapCallback; reports test accuracy and, on datasets
with object masks, the CLS attention mass on the object. Masked image modelling (``attention_masking`` group:
``callbacks.attention_masking``, ``experiment=mim_digits``): MaskedReconstructionModule with
AttentionMaskingCallback; reports the CLS head's clean test accuracy and the test reconstruction error.
"""

from __future__ import annotations

from typing import Any

import torch
from omegaconf import DictConfig

from salguide.attention.masking import attention_guided_mask, cls_attention_scores
from salguide.callbacks import (
    AttentionLossCallback,
    AttentionMaskingCallback,
    TokenPruningCallback,
)
from salguide.callbacks.attention_masking import load_teacher
from salguide.models.mim import MaskedReconstructionModule, masked_error_sums

from .classify import _markdown, build_classifier, tested_row
from .runner import StageRunner
from .stages import check_ckpt_path, check_init_from, run_epochs, stage_callbacks


def attention_names(callbacks: list[Any]) -> dict[str, str]:
    """The results' ``attention_loss`` / ``token_policy`` columns, from the stage's plugin objects."""
    loss = next((cb.loss for cb in callbacks if isinstance(cb, AttentionLossCallback)), None)
    policy = next((cb.policy for cb in callbacks if isinstance(cb, TokenPruningCallback)), None)
    return {
        "attention_loss": loss.name.removeprefix("attn_") if loss is not None else "none",  # attn_bas -> bas
        "token_policy": policy.name if policy is not None else "none",
    }


def attention_callbacks(cfg: DictConfig) -> tuple[list[Any], dict[str, str]]:
    """The ``callbacks:`` of ``cfg`` (the ``attention_loss``, ``token_policy``, ``attention_masking`` groups
    and the presets' attention maps among them) and the names of the loss and the policy: what the
    ``attention`` stage adds to a Trainer (checks a config without training)."""
    cbs = stage_callbacks(cfg)
    return cbs, attention_names(cbs)


def masks_tokens(cfg: DictConfig) -> bool:
    """Whether the ``attention_masking`` group chose a masking callback (the MIM stage)."""
    node = (cfg.get("callbacks") or {}).get("attention_masking")
    return node is not None and "_target_" in node


def run_masking(cfg: DictConfig) -> float:
    """Masked image modelling with the ``attention_masking`` group's callback: one ``mim`` stage, then the CLS
    head's clean test accuracy and the reconstruction error under the final mask (from the teacher file
    the callback saves, ``save_teacher_to``), batch by batch over the test loader."""
    runner = StageRunner(cfg)
    seed = runner.seed
    epochs = run_epochs(cfg)
    init_from, ckpt_path = check_init_from(cfg), check_ckpt_path(cfg, "mim")
    with runner.stage("mim") as stage:  # the callbacks are built first: a bad plugin fails before training
        callback = next(cb for cb in stage.callbacks if isinstance(cb, AttentionMaskingCallback))
        if callback.save_teacher_to is None:
            raise ValueError(
                "callbacks.attention_masking.save_teacher_to: task=attention reads the teacher from this file"
            )
        datamodule, module = build_classifier(cfg, init_from)
        if not isinstance(module, MaskedReconstructionModule):
            raise ValueError(
                "attention_masking trains a masked-reconstruction model: set model=mim_vit_digits (model._target_: "
                f"salguide.models.mim.MaskedReconstructionModule), got {type(module).__name__}"
            )
        fitted = stage.fit(module, datamodule, epochs, ckpt_path=ckpt_path, reseed=False)
        runner.keep(module, "mim")
        if not runner.writer:  # rank 0 may still be writing the teacher
            return float("nan")
        teacher = load_teacher(callback.save_teacher_to, module)
        generator = torch.Generator().manual_seed(seed)
        ratio = callback.schedule(10**9)  # the final masking ratio
        hits, count, err_sum, hidden = 0, 0, 0.0, 0
        module.eval()
        datamodule.setup("test")
        with torch.no_grad():
            for x, y, *_ in datamodule.test_dataloader():
                hits += int((module(x).argmax(-1) == y).sum())  # clean images
                count += len(y)
                scores = cls_attention_scores(teacher, x, callback.layer)
                mask = attention_guided_mask(scores, ratio, callback.mode, generator=generator, **callback.kwargs)
                err, n_hidden, _ = masked_error_sums(module, x, y, mask)
                err_sum, hidden = err_sum + err, hidden + n_hidden
        row = {
            "name": cfg.name,
            "masking": callback.mode,
            "seed": seed,
            "test_acc": 100.0 * hits / max(count, 1),
            "test_recon_mse": err_sum / hidden if hidden else float("nan"),
            "seconds": fitted.seconds,
        }
        stage.log_results([row])
    runner.write_results([row], _markdown(row), single=True)
    return row["test_acc"]


def run_attention(cfg: DictConfig) -> float:
    """The Hydra pipeline behind ``task=attention``: one stage that trains and tests with the attention
    plugins active (token policies prune at test time too); on data with object masks the test loop also
    measures the CLS attention mass on the object."""
    if masks_tokens(cfg):
        return run_masking(cfg)
    runner = StageRunner(cfg)
    epochs = run_epochs(cfg)
    init_from, ckpt_path = check_init_from(cfg), check_ckpt_path(cfg, "attention")
    with runner.stage("attention") as stage:  # the callbacks are built first: a bad plugin fails before training
        names = attention_names(stage.callbacks)
        datamodule, module = build_classifier(cfg, init_from)
        fitted = stage.fit(module, datamodule, epochs, ckpt_path=ckpt_path, test=True, reseed=False)
        runner.keep(module, "attention")
        row = {"name": cfg.name, **names, "seed": runner.seed, **tested_row(fitted.tested), "seconds": fitted.seconds}
        if not runner.writer:  # strategy=ddp runs the pipeline on every rank; rank 0 alone reports
            return row["test_acc"]
        stage.log_results([row])
    runner.write_results([row], _markdown(row), single=True)
    return row["test_acc"]
