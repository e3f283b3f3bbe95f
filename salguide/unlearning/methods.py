"""Machine-unlearning methods as data: what each one trains on, with which loss, from where.

The six classification baselines compared by SalUn (Fan et al., "SalUn: Empowering Machine Unlearning
via Gradient-based Weight Saliency", ICLR 2024):

- **Retrain**: train from scratch on the retain set (the gold standard every gap is measured against).
- **FT** (fine-tune): continue training the original model on the retain set (Warnecke et al. 2023).
- **GA** (gradient ascent): maximise cross-entropy on the forget set (Thudi et al. 2022).
- **RL** (random labels): cross-entropy on the forget set with random labels, mixed with the retain set
  (Golatkar et al. 2020; the variant SalUn builds on).
- **l1-sparse**: FT plus an L1 penalty whose weight decays linearly to 0 (Jia et al., NeurIPS 2023).
- **SalUn**: RL restricted to the weights of highest forget-set gradient saliency (weight mask).

Each method's settings live in one place, the packaged config group ``salguide/configs/unlearning/<name>.yaml``
(a ``_target_: salguide.unlearning.MethodSpec`` node, its optimiser a ``_partial_`` node); Retrain is the
``retrain:`` node of the unlearning presets (``experiment/unlearn_digits.yaml``), whose recipe is the original
model's (``model.optimizer``, ``model.scheduler``, ``original.epochs``). ``method_spec(name, **overrides)`` reads
those files.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from functools import partial
from importlib.resources import files
from typing import Any

from omegaconf import DictConfig, OmegaConf

from salguide.models.optim import check_optimizer, check_scheduler

_SPLITS = ("retain", "forget")


@dataclass(frozen=True, eq=False)
class MethodSpec:
    """One unlearning run: the split to iterate, the objective, the plugins, and its optimiser. Every field is
    required: the methods' values are the ``unlearning`` config group's files (see ``method_spec``)."""

    name: str  # the method's name in tables and figures; lower-cased ("-" -> "_") it names the run's stage
    train_on: str  # "retain" or "forget"
    from_scratch: bool  # train a fresh network (Retrain) instead of a copy of the original
    random_labels: bool  # mix forget samples with random labels into retain batches (RL, SalUn)
    weight_mask: bool  # update only the weights of a saliency mask (SalUn)
    loss_sign: float  # +1 descends the cross-entropy, -1 ascends it (GA)
    l1_alpha: float  # initial weight of the linearly decaying L1 penalty (l1-sparse); 0 = none
    epochs: int
    optimizer: Callable[..., Any]  # optimizer(params) -> torch.optim.Optimizer (a ``_partial_`` node)
    scheduler: Callable[..., Any] | None  # scheduler(optimizer[, max_epochs]) or None: a constant learning rate

    def __post_init__(self) -> None:
        if self.train_on not in _SPLITS:
            raise ValueError(f"{self.name}: train_on must be one of {_SPLITS}, got {self.train_on!r}")
        if self.epochs < 1:
            raise ValueError(f"{self.name}: epochs must be >= 1, got {self.epochs}")
        if not callable(self.optimizer):
            raise ValueError(
                f"{self.name}: optimizer must be a factory optimizer(params), e.g. a _partial_ node of "
                f"torch.optim.SGD, got {self.optimizer!r}"
            )
        check_optimizer(self.optimizer, self.name)
        check_scheduler(self.scheduler, self.name)
        if self.scheduler is not None and not callable(self.scheduler):
            raise ValueError(
                f"{self.name}: scheduler must be a factory scheduler(optimizer) or null, got {self.scheduler!r}"
            )
        if self.l1_alpha < 0:
            raise ValueError(f"{self.name}: l1_alpha must be >= 0, got {self.l1_alpha}")
        if self.loss_sign not in (1.0, -1.0):
            raise ValueError(f"{self.name}: loss_sign must be +1 or -1, got {self.loss_sign}")
        if self.random_labels and self.train_on != "retain":
            raise ValueError(f"{self.name}: random labels are mixed into retain batches; set train_on='retain'")

    def __eq__(self, other: object) -> bool:
        """Equal fields; the optimiser and schedule factories compare by target and arguments."""
        if not isinstance(other, MethodSpec):
            return NotImplemented
        return all(_comparable(getattr(self, f.name)) == _comparable(getattr(other, f.name)) for f in fields(self))

    def __hash__(self) -> int:
        return hash((self.name, self.train_on, self.epochs))

    @property
    def key(self) -> str:
        """The method's stage and file name: ``name`` lower-cased, ``-`` -> ``_`` ("l1-sparse" -> "l1_sparse")."""
        return self.name.lower().replace("-", "_")


def _comparable(value: Any) -> Any:
    """A ``functools.partial`` as (target, args, keywords); anything else as it is."""
    if isinstance(value, partial):
        return (value.func, value.args, sorted(value.keywords.items()))
    return value


def run_method_key(unlearning: Mapping[str, Any]) -> str:
    """The method's key ("salun", "l1_sparse") in a saved run config's ``unlearning`` node: its ``name`` as in
    ``MethodSpec.key`` (runs made before the ``_target_`` configs name the key under ``method``)."""
    if "method" in unlearning:
        return str(unlearning["method"])
    return str(unlearning["name"]).lower().replace("-", "_")


def _configs() -> Any:
    return files("salguide.configs")


def method_names() -> list[str]:
    """The options of the packaged ``unlearning`` config group."""
    return sorted(p.name[: -len(".yaml")] for p in (_configs() / "unlearning").iterdir() if p.name.endswith(".yaml"))


def _yaml(*parts: str) -> DictConfig:
    node = OmegaConf.create((_configs().joinpath(*parts)).read_text())
    assert isinstance(node, DictConfig)
    return node


def method_spec(method: str, **overrides: Any) -> MethodSpec:
    """The packaged ``unlearning/<method>.yaml`` instantiated, with hyper-parameters overridden: MethodSpec fields
    (``epochs=2``, ``optimizer=partial(torch.optim.Adam, lr=1e-3)``) or the optimiser's own settings (``lr=0.1``,
    ``momentum=0``); unknown names are errors. ``"retrain"`` is the presets' ``retrain:`` node: the default
    model's recipe (``model/small_cnn.yaml``) for ``original.epochs``, as on the CLI."""
    from hydra.utils import instantiate  # Hydra's import is slow; only this function needs it

    key = method.lower().replace("-", "_")
    if key not in method_names():
        raise ValueError(f"unknown unlearning method {method!r}; choose one of {method_names()}")
    preset = _yaml("experiment", "unlearn_digits.yaml")
    # the recipes the group files interpolate (``retrain``, ``original``, ``model``), without Hydra's keys
    tree = OmegaConf.create(
        {"seed": 0, "model": _yaml("model", "small_cnn.yaml"), "original": preset.original, "retrain": preset.retrain}
    )
    tree.unlearning = _yaml("unlearning", f"{key}.yaml")
    try:
        spec = instantiate(tree.unlearning)
    except Exception as e:  # Hydra wraps MethodSpec's own error: raise that one
        raise (e.__cause__ if isinstance(e.__cause__, ValueError) else e) from None
    assert isinstance(spec, MethodSpec), f"unlearning/{key}.yaml does not build a MethodSpec"
    names = {f.name for f in fields(MethodSpec)} - {"name"}
    spec = replace(spec, **{k: v for k, v in overrides.items() if k in names})
    settings = {k: v for k, v in overrides.items() if k not in names}
    if not settings:
        return spec
    # the rest are the (final) optimiser's own settings, checked against its signature
    opt = spec.optimizer
    func = opt.func if isinstance(opt, partial) else opt
    try:
        accepted = set(inspect.signature(func).parameters) - {"params"}
    except (TypeError, ValueError):
        accepted = set()
    bad = sorted(set(settings) - accepted)
    if bad:
        raise ValueError(
            f"unknown hyper-parameter(s) {bad} for method {method!r}; valid: MethodSpec fields {sorted(names)} "
            f"and the optimiser's settings {sorted(accepted)}"
        )
    args, keywords = (opt.args, opt.keywords) if isinstance(opt, partial) else ((), {})
    return replace(spec, optimizer=partial(func, *args, **{**keywords, **settings}))
