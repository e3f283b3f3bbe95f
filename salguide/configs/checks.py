"""Validation of a composed ``salguide-train`` config: every number, flag and choice, named by its key.

``check_config(cfg)`` runs before any data is read or model trained, so ``original.epochs=0``,
``unlearning.optimizer.lr=abc`` or ``saliency.ratio=2`` fail at once with the key, the rule and the value, instead
of caching an untrained model, training forever, or failing after two models have trained. A leaf is
checked by the rule for its dotted path (``PATH_RULES``, ``*`` matches one key) or else for its key name
(``NAME_RULES``); list items take the rule of their list. Every numeric or boolean setting in the shipped
configs has a rule (tested), so a new one must come with its rule.
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

from omegaconf import DictConfig, OmegaConf

_CHECKED_ELSEWHERE = object()  # settings whose consumer validates them before any training


@dataclass(frozen=True)
class Num:
    """An int (``integer=True``) or real number within ``[lo, hi]``; ``open_lo``/``open_hi`` exclude an end."""

    integer: bool = False
    lo: float | None = None
    hi: float | None = None
    open_lo: bool = False
    open_hi: bool = False
    nullable: bool = False

    def describe(self) -> str:
        what = "an integer" if self.integer else "a number"
        lo, hi = (None if b is None else f"{b:g}" if b % 1 else str(int(b)) for b in (self.lo, self.hi))
        if lo is not None and hi is not None:
            what += f" in {'(' if self.open_lo else '['}{lo}, {hi}{')' if self.open_hi else ']'}"
        elif lo is not None:
            what += f" {'>' if self.open_lo else '>='} {lo}"
        return what + (" or null" if self.nullable else "")

    def accepts(self, v: Any) -> bool:
        if v is None:
            return self.nullable
        if isinstance(v, bool) or not isinstance(v, int if self.integer else (int, float)):
            return False
        if not math.isfinite(v):
            return False
        lo_ok = self.lo is None or (v > self.lo if self.open_lo else v >= self.lo)
        hi_ok = self.hi is None or (v < self.hi if self.open_hi else v <= self.hi)
        return lo_ok and hi_ok


@dataclass(frozen=True)
class OneOf:
    choices: tuple[Any, ...]

    def describe(self) -> str:
        return "one of " + ", ".join("null" if c is None else repr(c) for c in self.choices)

    def accepts(self, v: Any) -> bool:
        return any(
            v is c if c is None or isinstance(c, bool) else (v == c and not isinstance(v, bool)) for c in self.choices
        )


@dataclass(frozen=True)
class Either:
    """A value that one of ``rules`` accepts."""

    rules: tuple[Any, ...]

    def describe(self) -> str:
        return " or ".join(r.describe() for r in self.rules)

    def accepts(self, v: Any) -> bool:
        return any(r.accepts(v) for r in self.rules)


FLAG = OneOf((True, False))
POS_INT, NONNEG_INT, ANY_INT = Num(True, 1), Num(True, 0), Num(True)
POS, NONNEG = Num(lo=0, open_lo=True), Num(lo=0)
SHARE = Num(lo=0, hi=1, open_lo=True, open_hi=True)  # (0, 1)
UNIT = Num(lo=0, hi=1)  # [0, 1]
MASK_RATIO = Num(lo=0, hi=1, open_hi=True)  # [0, 1)
KEEP = Num(lo=0, hi=1, open_lo=True)  # (0, 1]

NAME_RULES: dict[str, Any] = {
    # optimisers (model.optimizer, unlearning.optimizer, ...), stage budgets (original, unlearning) and the top level
    "seed": Num(True, 0, 2**32 - 1),
    "seeds": Num(True, 0, 2**32 - 1),
    "epochs": POS_INT,
    "lr": POS,
    "momentum": MASK_RATIO,
    "weight_decay": NONNEG,
    "l1_alpha": NONNEG,
    "train_on": OneOf(("retain", "forget")),  # unlearning methods (MethodSpec): the split they train on
    "random_labels": FLAG,
    "weight_mask": FLAG,
    "loss_sign": OneOf((1, -1)),
    "compare_to_retrain": FLAG,
    "print_table": FLAG,
    # data
    "batch_size": POS_INT,
    "num_workers": NONNEG_INT,
    "image_size": POS_INT,
    "digit_size": POS_INT,
    "patch_size": POS_INT,
    "max_shift": NONNEG_INT,
    "test_fraction": SHARE,
    "val_fraction": SHARE,
    "forget_class": NONNEG_INT,
    "forget_ratio": SHARE,
    "correlation": UNIT,
    "eval_correlation": UNIT,
    "tile": Num(True, 1, nullable=True),
    "augment": FLAG,
    "erase_background": FLAG,
    "train_size": Num(True, 1, nullable=True),
    "test_size": Num(True, 1, nullable=True),
    # models
    "num_classes": Num(True, 2),
    "in_channels": POS_INT,
    "in_chans": POS_INT,
    "width": POS,
    "img_size": POS_INT,
    "embed_dim": POS_INT,
    "depth": POS_INT,
    "num_heads": POS_INT,
    "in_features": POS_INT,
    "out_features": POS_INT,
    "small_input": FLAG,
    "hidden": POS_INT,
    # weight saliency
    "ratio": KEEP,
    "scope": OneOf(("global", "layer")),
    "trajectory_steps": NONNEG_INT,
    # input and attention plugins
    "weight": NONNEG,
    "fraction": SHARE,
    "layers": ANY_INT,
    "layer": ANY_INT,
    "sigma": POS,
    "num_queries": POS_INT,
    "cls_is_background": FLAG,
    "maximize": FLAG,
    "keep": KEEP,
    "warmup_steps": NONNEG_INT,
    "fuse": FLAG,
    "drop_in_eval": FLAG,
    "ratio_start": Num(lo=0, hi=1, open_hi=True, nullable=True),
    "ratio_steps": NONNEG_INT,
    "ema": UNIT,
    "recon_weight": NONNEG,
    "top_k": Num(True, 1, nullable=True),
    "drop_prob": KEEP,
    "hint_ratio": MASK_RATIO,
    # figures and metrics during training
    "every_n_epochs": NONNEG_INT,
    "refresh_rate": NONNEG_INT,
    # diffusion models, generative unlearning and generation (task=unlearn_diffusion)
    "sample_size": POS_INT,
    "block_out_channels": POS_INT,
    "layers_per_block": POS_INT,
    "norm_num_groups": POS_INT,
    "attention": FLAG,
    "num_train_timesteps": Num(True, 2),
    "cond_drop_prob": MASK_RATIO,
    "beta": NONNEG,
    "eta": POS,
    "alpha1": NONNEG,
    "alpha2": NONNEG,
    "early_fraction": SHARE,
    "t_split": Num(True, 1, nullable=True),
    "from_scratch": FLAG,
    "pseudo": OneOf(("next", "random")),
    "guidance_scale": POS,
    "steps": POS_INT,
    "sampler": OneOf(("ddim", "ddpm")),
    "grid_per_class": POS_INT,
    "std": POS,
    # loggers
    "offline": FLAG,
    "log_model": OneOf((True, False, "all")),
}

PATH_RULES: dict[str, Any] = {
    "model.net.width": POS_INT,
    "data.train_on": OneOf(("full", "retain", "forget")),  # the data module's split (the methods' train_on: below)
    "callbacks.data_samples.per_class": POS_INT,
    "callbacks.*.every_n_epochs": POS_INT,  # the observers (explanation metrics, overlays, attention maps)
    "callbacks.*.num_samples": POS_INT,
    "callbacks.*.num_images": POS_INT,
    "generation.per_class": POS_INT,
    "*._partial_": FLAG,  # Hydra: instantiate as functools.partial (the mask factories)
    "callbacks.attention_masking.ratio": MASK_RATIO,
    "callbacks.input_loss.input_loss.layer": _CHECKED_ELSEWHERE,  # a layer name for Grad-CAM, or null
    # Lightning's Trainer checks its own arguments when the first stage builds it, before any training;
    # these are checked here too because they change what is trained
    "trainer.devices": _CHECKED_ELSEWHERE,
    "trainer.accumulate_grad_batches": POS_INT,
    "trainer.log_every_n_steps": NONNEG_INT,
    "trainer.num_sanity_val_steps": Num(True, -1),
    # -1 = no limit. 0 steps / 0 training batches evaluate a given model (init_from=) in the classify and
    # attention tasks; the unlearning pipelines refuse them (they would cache untrained models: stages.py)
    "trainer.max_steps": Num(True, -1),
    "trainer.limit_train_batches": Either((NONNEG_INT, Num(lo=0, hi=1), OneOf((None,)))),
    "trainer.limit_val_batches": Either((NONNEG_INT, Num(lo=0, hi=1), OneOf((None,)))),
    "trainer.limit_test_batches": Either((POS_INT, Num(lo=0, hi=1, open_lo=True), OneOf((None,)))),
    "trainer.max_epochs": Num(True, 1, nullable=True),
    "trainer.gradient_clip_val": Num(lo=0, nullable=True),
    "trainer.deterministic": OneOf((True, False, "warn", None)),
    "trainer.enable_model_summary": FLAG,
    "trainer.fast_dev_run": Either((FLAG, NONNEG_INT)),  # true / N: N batches of each loop
    "trainer.enable_progress_bar": FLAG,
    "trainer.sync_batchnorm": FLAG,
}


def rule_for(path: str) -> Any:
    """The rule of the dotted ``path`` (list indices are path components), or ``None`` if it has none."""
    for pattern, rule in PATH_RULES.items():
        if fnmatch.fnmatchcase(path, pattern):
            return rule
    names = [p for p in path.split(".") if not p.isdigit()]
    return NAME_RULES.get(names[-1]) if names else None


def leaves(node: Any, path: str = "") -> list[tuple[str, Any]]:
    """``(dotted path, value)`` of every scalar under ``node`` (a plain container), ``_target_`` keys excluded."""
    if isinstance(node, dict):
        return [
            leaf for k, v in node.items() if k != "_target_" for leaf in leaves(v, f"{path}.{k}" if path else str(k))
        ]
    if isinstance(node, list):
        return [leaf for i, v in enumerate(node) for leaf in leaves(v, f"{path}.{i}")]
    return [(path, node)]


def check_name(name: Any) -> str:
    """``name`` becomes a folder under the output root: a relative path without ``..`` (it never escapes)."""
    text = str(name)
    parts = PurePath(text).parts
    if not text.strip() or PurePath(text).is_absolute() or "\\" in text or ".." in parts:
        raise ValueError(
            f"name={text!r} must be a relative folder name without '..' (it names the run's folder under paths.log_dir)"
        )
    return text


def check_config(cfg: DictConfig) -> None:
    """Raise ``ValueError`` naming every setting of ``cfg`` (``hydra`` and ``paths`` aside) that breaks its rule."""
    tree = OmegaConf.to_container(cfg, resolve=False)
    assert isinstance(tree, dict)  # a DictConfig's container
    errors = []
    for path, value in leaves({k: v for k, v in tree.items() if k not in ("hydra", "paths")}):
        rule = rule_for(path)
        if rule is None or rule is _CHECKED_ELSEWHERE:
            continue
        if isinstance(value, str) and "${" in value:  # an interpolation such as ${seed}
            value = OmegaConf.select(cfg, path)
        if not rule.accepts(value):
            errors.append(f"{path} must be {rule.describe()}, got {value!r}")
    if "name" in tree:
        try:
            check_name(cfg.name)
        except ValueError as e:
            errors.append(str(e))
    if errors:
        raise ValueError("invalid config:\n  " + "\n  ".join(errors))
