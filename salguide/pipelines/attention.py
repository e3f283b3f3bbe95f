"""``task=attention``: train a (routed) ViT with an attention loss, a token policy or attention-guided masking.

Classification (``attention_loss`` / ``token_policy`` groups: ``callbacks.attention_loss`` /
``callbacks.token_policy``, ``experiment=attn_scenes_*`` / ``prune_digits_*``): ``ClassifierModule`` with
AttentionLossCallback, TokenPruningCallback and AttentionMapCallback; reports test accuracy and, on datasets
with object masks, the CLS attention mass on the object. Masked image modelling (``attention_masking`` group:
``callbacks.attention_masking``, ``experiment=mim_digits``): MaskedReconstructionModule with
AttentionMaskingCallback; reports the CLS head's clean test accuracy and the test reconstruction error.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from salguide._lightning import pl
from salguide.attention.masking import attention_guided_mask, cls_attention_scores
from salguide.attention.metrics import attention_object_mass
from salguide.callbacks.attention_loss import AttentionLossCallback
from salguide.callbacks.attention_maps import AttentionMapCallback
from salguide.callbacks.attention_masking import AttentionMaskingCallback, load_teacher
from salguide.callbacks.token_pruning import TokenPruningCallback
from salguide.io import atomic_write_csv, atomic_write_json, atomic_write_text
from salguide.metrics import accuracy
from salguide.models import ClassifierModule
from salguide.models.mim import MaskedReconstructionModule, evaluate_masked
from salguide.weights_io import save_weights

from .classify import _MODULE_KEYS, _markdown, classify_recipe, test_split
from .stages import (
    check_ckpt_path,
    check_init_from,
    close_loggers,
    init_model,
    is_rank_zero,
    log_table,
    stage_callbacks,
    stage_loggers,
    trainer_kwargs,
)


def attention_callbacks(cfg: DictConfig, out: Path | None) -> tuple[list[Any], dict[str, str]]:
    """The ``callbacks:`` of ``cfg`` (the ``attention_loss``, ``token_policy`` and ``attention_masking`` groups
    among them; built before training, so a bad config fails early), the attention-map callback, and the names
    of the loss and the policy."""
    cbs = stage_callbacks(cfg)
    if out is not None:  # again, for the stage: the progress bar's name and the checkpoint's file
        stage = "mim" if any(isinstance(cb, AttentionMaskingCallback) for cb in cbs) else "attention"
        cbs = stage_callbacks(cfg, stage, out / "checkpoints")
    loss = next((cb.loss for cb in cbs if isinstance(cb, AttentionLossCallback)), None)
    policy = next((cb.policy for cb in cbs if isinstance(cb, TokenPruningCallback)), None)
    every = int((cfg.get("attention_maps") or {}).get("every_n_epochs", 0))
    if out is not None and every:
        cbs.append(AttentionMapCallback(every_n_epochs=every, out_dir=str(out / "attention")))
    names = {
        "attention_loss": loss.name.removeprefix("attn_") if loss is not None else "none",  # attn_bas -> bas
        "token_policy": policy.name if policy is not None else "none",
    }
    return cbs, names


def _fit(
    cfg: DictConfig, out: Path, module: Any, callbacks: list[Any], epochs: int, stage: str, datamodule: Any
) -> tuple[list[Any], float]:
    ckpt_path = check_ckpt_path(cfg)
    loggers = stage_loggers(cfg, stage, f"{cfg.name}-{out.name}")
    tkw = {
        "enable_model_summary": False,
        "num_sanity_val_steps": 0,
        "default_root_dir": str(out),
        **trainer_kwargs(cfg),
        "enable_checkpointing": True,
    }
    trainer = pl.Trainer(
        max_epochs=epochs,
        callbacks=callbacks,
        logger=list(loggers) if loggers else False,
        **tkw,
    )
    start = time.perf_counter()
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    seconds = time.perf_counter() - start
    if is_rank_zero():
        save_weights(module, out / "models" / f"{stage}.safetensors")
    return loggers, seconds


def _finish(cfg: DictConfig, out: Path, loggers: list[Any], row: dict[str, Any]) -> None:
    if not is_rank_zero():  # strategy=ddp runs the pipeline on every rank; rank 0 alone reports
        close_loggers(loggers)
        return
    for logger in loggers:
        logger.log_metrics({f"final/{k}": v for k, v in row.items() if isinstance(v, (int, float))})
    log_table(loggers, "results", [row])
    close_loggers(loggers)
    atomic_write_json(out / "results.json", row)
    atomic_write_text(out / "results.md", _markdown(row))
    atomic_write_csv(out / "results.csv", [row])
    if cfg.get("print_table", True):
        print(f"\n{_markdown(row)}\nresults: {out / 'results.md'}")


def run_masking(cfg: DictConfig, out: Path, cbs: list[Any], callback: AttentionMaskingCallback) -> float:
    """Masked image modelling with ``callback`` (one of ``cbs``, the stage's callbacks); its teacher file
    (``save_teacher_to``, written by rank 0 also when the fit ran in spawned processes) gives the test mask."""
    seed = int(cfg.seed)
    recon_weight = float((cfg.get("mim") or {}).get("recon_weight", 1.0))
    rc = classify_recipe(cfg)
    if callback.save_teacher_to is None:
        raise ValueError("callbacks.attention_masking.save_teacher_to: task=attention reads the teacher from this file")
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    pl.seed_everything(seed, verbose=False)
    module = MaskedReconstructionModule(
        init_model(instantiate(cfg.model), check_init_from(cfg)), lr=float(rc["lr"]), recon_weight=recon_weight
    )
    loggers, seconds = _fit(cfg, out, module, cbs, int(rc["epochs"]), "mim", datamodule)
    if not is_rank_zero():  # rank 0 may still be writing the teacher
        close_loggers(loggers)
        return float("nan")
    x, y, *_ = test_split(datamodule)
    module.eval()
    with torch.no_grad():
        acc = 100.0 * float((module(x).argmax(-1) == y).float().mean())
        scores = cls_attention_scores(load_teacher(callback.save_teacher_to, module), x, callback.layer)
        mask = attention_guided_mask(
            scores,
            callback.schedule(10**9),
            callback.mode,
            generator=torch.Generator().manual_seed(seed),
            **callback.kwargs,
        )
        recon = evaluate_masked(module, x, y, mask)["recon_mse"]
    row = {
        "name": cfg.name,
        "masking": callback.mode,
        "seed": seed,
        "test_acc": acc,
        "test_recon_mse": recon,
        "seconds": seconds,
    }
    _finish(cfg, out, loggers, row)
    return acc


def run_attention(cfg: DictConfig) -> float:
    out = Path(cfg.paths.output_dir)
    seed = int(cfg.seed)
    cbs, names = attention_callbacks(cfg, out)
    masking = next((cb for cb in cbs if isinstance(cb, AttentionMaskingCallback)), None)
    if masking is not None:
        return run_masking(cfg, out, [cb for cb in cbs if not isinstance(cb, AttentionMapCallback)], masking)
    rc = classify_recipe(cfg)
    init_from = check_init_from(cfg)
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    pl.seed_everything(seed, verbose=False)
    module = ClassifierModule(init_model(instantiate(cfg.model), init_from), **{k: rc[k] for k in _MODULE_KEYS})
    loggers, seconds = _fit(cfg, out, module, cbs, int(rc["epochs"]), "attention", datamodule)
    for cb in cbs:  # token policies stay active at test time
        if isinstance(cb, TokenPruningCallback):
            cb.setup(None, module, "test")
    x, y, *rest = test_split(datamodule)
    module.eval()
    acc = accuracy(module, datamodule.test_dataloader())  # in batches: 10,000 x 197 tokens do not fit at once
    row = {"name": cfg.name, **names, "seed": seed, "test_acc": acc, "seconds": seconds}
    if rest:
        row["test_attn_object_mass"] = next(iter(attention_object_mass(module, x, rest[0]).values()))
    for cb in cbs:
        if isinstance(cb, TokenPruningCallback):
            cb.teardown(None, module, "test")
    _finish(cfg, out, loggers, row)
    return acc
