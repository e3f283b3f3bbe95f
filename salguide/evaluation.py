"""Test-time evaluation extras: metrics accumulated batch by batch over the test loader (no whole-split
tensors), run inside Lightning's test loop by :class:`salguide.callbacks.TestMetricsCallback`, so every
plugin callback is active exactly as it is at test time.

Each extra is a small object with ``update(module, batch, datamodule)`` and ``compute() -> {name: value}``;
configs name them as ``_target_`` nodes under ``evaluation:``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import torch
from torch import Tensor

from salguide._checks import as_int
from salguide.data.protocols import mask_semantics_of
from salguide.inputs import invert
from salguide.metrics import DeletionAUC, EnergyInMask, InsertionAUC, PointingGame, explain


class TestMetric(Protocol):
    """An evaluation extra: fed every test batch, then asked for its values once."""

    def update(self, module: Any, batch: Sequence[Tensor], datamodule: Any) -> None: ...

    def compute(self) -> dict[str, float]: ...


def relevant_region(mask: Tensor, semantics: str) -> Tensor:
    """The relevant region from a batch mask that marks ``semantics`` ("relevant"/"irrelevant")."""
    if semantics not in ("relevant", "irrelevant"):
        raise ValueError(f"mask semantics must be 'relevant' or 'irrelevant', got {semantics!r}")
    return mask if semantics == "relevant" else invert(mask)


class ExplanationScores:
    """Deletion / insertion AUC of ``method``'s maps for the true classes, and, on data with object masks,
    pointing game and energy in the relevant region (the datamodule's ``mask_semantics`` says whether its
    mask marks relevant or irrelevant pixels). Means over the whole test split."""

    def __init__(self, method: str = "gradient", steps: int = 16, method_kwargs: dict[str, Any] | None = None) -> None:
        self.method, self.steps, self.method_kwargs = method, as_int(steps, "steps", 1), dict(method_kwargs or {})
        self.curves = {"deletion_auc": DeletionAUC(self.steps), "insertion_auc": InsertionAUC(self.steps)}
        self.maps = {"pointing_game": PointingGame(), "energy_in_mask": EnergyInMask()}
        self.with_region = False

    def update(self, module: Any, batch: Sequence[Tensor], datamodule: Any) -> None:
        x, y, *rest = batch
        smap = explain(module, x, y, self.method, **self.method_kwargs)
        with torch.inference_mode(False), torch.no_grad():
            xc, yc = x.clone(), y.clone()
            for curve in self.curves.values():
                curve.to(xc.device).update(module, xc, smap, yc)
            if rest:
                sem = mask_semantics_of(datamodule, by=type(self).__name__) or "relevant"
                region = relevant_region(rest[0].clone(), sem)
                for metric in self.maps.values():
                    metric.to(xc.device).update(smap, region)
                self.with_region = True

    def compute(self) -> dict[str, float]:
        metrics = {**self.curves, **(self.maps if self.with_region else {})}
        return {k: float(m.compute()) for k, m in metrics.items()}


class ObjectMass:
    """Mean over images and heads of the CLS attention mass on object patches at ``layer`` (data with
    object masks only; nothing is reported without them)."""

    def __init__(self, layer: int = -1) -> None:
        self.layer = as_int(layer, "layer")
        self.total, self.count = 0.0, 0

    def update(self, module: Any, batch: Sequence[Tensor], datamodule: Any) -> None:
        from salguide.attention.metrics import attention_object_mass

        if len(batch) < 3:
            return
        x, mask = batch[0], batch[2]
        with torch.inference_mode(False):
            mass = attention_object_mass(module, x.clone(), mask.clone(), layers=(self.layer,), batch_size=len(x))
        self.total += next(iter(mass.values())) * len(x)
        self.count += len(x)

    def compute(self) -> dict[str, float]:
        return {"attn_object_mass": self.total / self.count} if self.count else {}


def check_metrics(metrics: dict[str, Any]) -> dict[str, TestMetric]:
    """``metrics`` if each has ``update`` and ``compute`` (a clear error naming the one that has not)."""
    for name, m in metrics.items():
        if not (callable(getattr(m, "update", None)) and callable(getattr(m, "compute", None))):
            raise TypeError(f"evaluation.{name}: {type(m).__name__} has no update(module, batch, datamodule)/compute()")
    return metrics
