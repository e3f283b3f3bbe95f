"""``task=attention``: train a (routed) ViT with an attention loss, a token policy or attention-guided masking.

Classification (``attention_loss`` / ``token_policy`` groups, ``experiment=attn_scenes_*`` / ``prune_digits_*``):
``ClassifierModule`` with AttentionLossCallback, TokenPruningCallback and AttentionMapCallback; reports
test accuracy and, on datasets with object masks, the CLS attention mass on the object. Masked image
modelling (``attention_masking`` group, ``experiment=mim_digits``): MaskedReconstructionModule with
AttentionMaskingCallback; reports the CLS head's clean test accuracy and the test reconstruction error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from salguide._lightning import pl
from salguide.attention import build_attention_loss, build_policy
from salguide.attention.masking import attention_guided_mask, cls_attention_scores
from salguide.callbacks import (
    AttentionLossCallback,
    AttentionMapCallback,
    AttentionMaskingCallback,
    TestMetricsCallback,
    TokenPruningCallback,
)
from salguide.callbacks.attention_masking import load_teacher
from salguide.evaluation import ObjectMass
from salguide.models import ClassifierModule
from salguide.models.mim import MaskedReconstructionModule, evaluate_masked

from .classify import _MODULE_KEYS, _markdown, classify_recipe, tested_row
from .runner import StageRunner
from .stages import check_ckpt_path, check_init_from, init_model


def _group(cfg: DictConfig, key: str) -> dict[str, Any]:
    node = cfg.get(key)
    return {"name": "none"} if node is None else OmegaConf.to_container(node, resolve=True)  # type: ignore[return-value]


def attention_callbacks(cfg: DictConfig, out: Path | None) -> tuple[list[Any], dict[str, str]]:
    """Callbacks for the ``attention_loss`` and ``token_policy`` groups (built before training, so a bad
    config fails early) and the names of what was chosen."""
    lcfg, pcfg = _group(cfg, "attention_loss"), _group(cfg, "token_policy")
    lname, pname = lcfg.pop("name", "none"), pcfg.pop("name", "none")
    warmup = int(pcfg.pop("warmup_steps", 0))
    loss, policy = build_attention_loss(lname, **lcfg), build_policy(pname, **pcfg)
    cbs: list[Any] = []
    if loss is not None:
        cbs.append(AttentionLossCallback(loss))
    if policy is not None:
        cbs.append(TokenPruningCallback(policy, warmup_steps=warmup))
    every = int((cfg.get("attention_maps") or {}).get("every_n_epochs", 0))
    if out is not None and every:
        cbs.append(AttentionMapCallback(every_n_epochs=every, out_dir=str(out / "attention")))
    return cbs, {"attention_loss": str(lname), "token_policy": str(pname)}


def run_masking(cfg: DictConfig, mcfg: dict[str, Any]) -> float:
    """Masked image modelling with attention-guided masking: one ``mim`` stage, then the CLS head's clean
    test accuracy and the reconstruction error under the final mask, batch by batch over the test loader."""
    runner = StageRunner(cfg)
    out, seed = runner.out, runner.seed
    mode = mcfg.pop("name")
    recon_weight = float(mcfg.pop("recon_weight", 1.0))
    rc = classify_recipe(cfg)
    teacher_path = out / "teacher.safetensors"  # written by rank 0, also when the fit ran in spawned processes
    callback = AttentionMaskingCallback(mode, seed=seed, save_teacher_to=teacher_path, **mcfg)
    init_from, ckpt_path = check_init_from(cfg), check_ckpt_path(cfg)
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    pl.seed_everything(seed, verbose=False)
    module = MaskedReconstructionModule(
        init_model(instantiate(cfg.model), init_from), lr=float(rc["lr"]), recon_weight=recon_weight
    )
    with runner.stage("mim") as stage:
        fitted = stage.fit(
            module, datamodule, int(rc["epochs"]), [callback], ckpt_path=ckpt_path, seed=None, plugins_first=False
        )
        runner.keep(module, "mim")
        if not runner.writer:  # rank 0 may still be writing the teacher
            return float("nan")
        teacher = load_teacher(teacher_path, module)
        generator = torch.Generator().manual_seed(seed)
        hits, count, err_sum, hidden = 0, 0, 0.0, 0
        module.eval()
        datamodule.setup("test")
        with torch.no_grad():
            for x, y, *_ in datamodule.test_dataloader():
                hits += int((module(x).argmax(-1) == y).sum())
                count += len(y)
                scores = cls_attention_scores(teacher, x, callback.layer)
                ratio = callback.schedule(10**9)
                mask = attention_guided_mask(scores, ratio, mode, generator=generator, **callback.kwargs)
                part = evaluate_masked(module, x, y, mask, batch_size=len(x))
                n_hidden = int(mask.sum())
                err_sum += part["recon_mse"] * n_hidden if n_hidden else 0.0
                hidden += n_hidden
        row = {
            "name": cfg.name,
            "masking": mode,
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
    mcfg = _group(cfg, "attention_masking")
    if mcfg.get("name", "none") != "none":
        return run_masking(cfg, mcfg)
    runner = StageRunner(cfg)
    cbs, names = attention_callbacks(cfg, runner.out)
    rc = classify_recipe(cfg)
    init_from, ckpt_path = check_init_from(cfg), check_ckpt_path(cfg)
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    pl.seed_everything(runner.seed, verbose=False)
    module = ClassifierModule(init_model(instantiate(cfg.model), init_from), **{k: rc[k] for k in _MODULE_KEYS})
    with runner.stage("attention") as stage:
        plugins = [*cbs, TestMetricsCallback({"object_mass": ObjectMass()})]
        fitted = stage.fit(
            module,
            datamodule,
            int(rc["epochs"]),
            plugins,
            ckpt_path=ckpt_path,
            test=True,
            seed=None,
            plugins_first=False,
        )
        runner.keep(module, "attention")
        row = {"name": cfg.name, **names, "seed": runner.seed, **tested_row(fitted.tested), "seconds": fitted.seconds}
        if not runner.writer:  # strategy=ddp runs the pipeline on every rank; rank 0 alone reports
            return row["test_acc"]
        stage.log_results([row])
    runner.write_results([row], _markdown(row), single=True)
    return row["test_acc"]
