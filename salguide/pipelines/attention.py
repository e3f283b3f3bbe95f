"""``task=attention``: train a (routed) ViT classifier with an attention loss and / or a token policy.

The training is :func:`salguide.pipelines.classify.train_classifier` with AttentionLossCallback,
TokenPruningCallback and AttentionMapCallback added; results add the CLS attention mass on the object
(datasets with masks) to classify's row. Groups: ``attention_loss``, ``token_policy`` (see
``experiment=attn_scenes_*`` / ``prune_digits_*``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from salguide._lightning import pl
from salguide.attention import build_attention_loss, build_policy
from salguide.attention.metrics import attention_object_mass
from salguide.callbacks.attention_loss import AttentionLossCallback
from salguide.callbacks.attention_maps import AttentionMapCallback
from salguide.callbacks.token_pruning import TokenPruningCallback
from salguide.io import atomic_write_json, atomic_write_text

from .classify import DEFAULT_RECIPE, _markdown, test_split, train_classifier
from .stages import close_loggers, stage_callbacks, stage_loggers, trainer_kwargs


def _group(cfg: DictConfig, key: str) -> dict[str, Any]:
    return OmegaConf.to_container(cfg.get(key) or {"name": "none"}, resolve=True)  # type: ignore[return-value]


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


def run_attention(cfg: DictConfig) -> float:
    out = Path(cfg.paths.output_dir)
    seed = int(cfg.seed)
    cbs, names = attention_callbacks(cfg, out)
    recipe = OmegaConf.to_container(cfg.get("classify") or {}, resolve=True)
    unknown = set(recipe) - set(DEFAULT_RECIPE)
    if unknown:
        raise ValueError(f"unknown classify keys {sorted(unknown)}; valid: {sorted(DEFAULT_RECIPE)}")
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    pl.seed_everything(seed, verbose=False)
    model = instantiate(cfg.model)
    loggers = stage_loggers(cfg, "attention", f"{cfg.name}-{out.name}")
    try:
        module, row = train_classifier(datamodule, model, recipe=recipe, seed=seed, trainer_kwargs=trainer_kwargs(cfg),
                                       loggers=loggers, callbacks=[*stage_callbacks(cfg), *cbs], out_dir=out)
        x, _, *rest = test_split(datamodule)
        if rest:
            module.eval()
            row["test_attn_object_mass"] = next(iter(attention_object_mass(module, x, rest[0]).values()))
        row = {"name": cfg.name, **names, "seed": seed, **row}
        for logger in loggers:
            logger.log_metrics({f"final/{k}": v for k, v in row.items() if isinstance(v, (int, float))})
    finally:
        close_loggers(loggers)
    atomic_write_json(out / "results.json", row)
    atomic_write_text(out / "results.md", _markdown(row))
    if cfg.get("print_table", True):
        print(f"\n{_markdown(row)}\nresults: {out / 'results.md'}")
    return row["test_acc"]
