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
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

_SPLITS = ("retain", "forget")
_OPTIMIZERS = ("sgd", "adam", "adamw")


@dataclass(frozen=True)
class MethodSpec:
    """One unlearning run: the split to iterate, the objective, the plugins, and its optimiser."""

    name: str
    train_on: str = "retain"
    from_scratch: bool = False
    random_labels: bool = False
    weight_mask: bool = False
    loss_sign: float = 1.0
    l1_alpha: float = 0.0
    epochs: int = 5
    lr: float = 0.01
    optimizer: str = "sgd"
    momentum: float = 0.9
    weight_decay: float = 5e-4
    scheduler: str | None = None

    def __post_init__(self) -> None:
        if self.train_on not in _SPLITS:
            raise ValueError(f"{self.name}: train_on must be one of {_SPLITS}, got {self.train_on!r}")
        if self.epochs < 1:
            raise ValueError(f"{self.name}: epochs must be >= 1, got {self.epochs}")
        if not self.lr > 0:
            raise ValueError(f"{self.name}: lr must be positive, got {self.lr}")
        if self.optimizer not in _OPTIMIZERS:
            raise ValueError(f"{self.name}: optimizer must be one of {_OPTIMIZERS}, got {self.optimizer!r}")
        if self.l1_alpha < 0:
            raise ValueError(f"{self.name}: l1_alpha must be >= 0, got {self.l1_alpha}")
        if self.loss_sign not in (1.0, -1.0):
            raise ValueError(f"{self.name}: loss_sign must be +1 or -1, got {self.loss_sign}")
        if self.random_labels and self.train_on != "retain":
            raise ValueError(f"{self.name}: random labels are mixed into retain batches; set train_on='retain'")


METHODS: dict[str, MethodSpec] = {
    "retrain": MethodSpec("Retrain", from_scratch=True, epochs=15, lr=0.05, scheduler="cosine"),
    # learning rates: the class-wise choices of experiments/unlearning_digits (SmallCNN on digits)
    "ft": MethodSpec("FT", epochs=5, lr=0.4),
    "ga": MethodSpec("GA", train_on="forget", loss_sign=-1.0, epochs=3, lr=3e-3),
    "rl": MethodSpec("RL", random_labels=True, epochs=5, lr=0.02),
    "l1_sparse": MethodSpec("l1-sparse", l1_alpha=5e-5, epochs=5, lr=0.2),
    "salun": MethodSpec("SalUn", random_labels=True, weight_mask=True, epochs=5, lr=0.02),
}


def method_spec(method: str, **overrides: Any) -> MethodSpec:
    """The registered method ``method`` with hyper-parameters overridden (unknown names are errors)."""
    key = method.lower().replace("-", "_")
    if key not in METHODS:
        raise ValueError(f"unknown unlearning method {method!r}; choose one of {sorted(METHODS)}")
    valid = {f.name for f in fields(MethodSpec)} - {"name"}
    bad = sorted(set(overrides) - valid)
    if bad:
        raise ValueError(f"unknown hyper-parameter(s) {bad} for method {method!r}; valid: {sorted(valid)}")
    return replace(METHODS[key], **overrides)
