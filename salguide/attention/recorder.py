"""Capture attention statistics of chosen layers during a forward of a routed model.

>>> with AttentionRecorder(model, layers=[-1], target=token_weights, cls=True) as rec:
...     logits = model(x)
>>> rec[-1].mass, rec[-1].cls   # [B, H, N] each, differentiable

Statistics come from the kernel (mass, colsum, lse) or from its lse (CLS row, entropy; see
:mod:`salguide.attention.stats`); nothing materialises the N x N attention matrix.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from torch import Tensor

from .routing.router import Router, router_of
from .stats import AttentionStats

STATS = ("mass", "colsum", "cls", "lse", "entropy", "qk")


class AttentionRecorder:
    """Record ``stats`` of ``layers`` of a routed model for every forward inside the ``with`` block.

    Args:
        model: a routed model (``salguide.models.VisionTransformer`` or ``salguide.attention.route(model)``).
        layers: layer indices (negative counts from the end).
        target: per-token weights in [0, 1], [B, N] over the model's original tokens (CLS first), for ``mass``.
            Can be set later with :meth:`set_target` (before the forward).
        mass, colsum, cls, lse, entropy, qk: which statistics to keep.
    """

    def __init__(
        self,
        model: Any,
        layers: Iterable[int] | int = -1,
        *,
        target: Tensor | None = None,
        mass: bool = False,
        colsum: bool = False,
        cls: bool = False,
        lse: bool = False,
        entropy: bool = False,
        qk: bool = False,
    ) -> None:
        self.router: Router = router_of(model)
        self.layers = self.router.layers(layers)
        self.want = {name for name, on in zip(STATS, (mass, colsum, cls, lse, entropy, qk)) if on}
        if target is not None:
            self.want.add("mass")
        if not self.want:
            raise ValueError(f"AttentionRecorder: ask for at least one of {STATS}")
        self.target = target
        self.records: dict[int, AttentionStats] = {}

    def set_target(self, target: Tensor | None) -> None:
        self.target = target

    def wants(self, index: int, what: str) -> bool:
        return index in self.layers and what in self.want

    def __getitem__(self, index: int) -> AttentionStats:
        i = self.router.layer(index)
        if i not in self.records:
            raise KeyError(f"layer {i} was not recorded; recorded layers: {sorted(self.records)} (run a forward first)")
        return self.records[i]

    def clear(self) -> None:
        self.records = {}

    def __enter__(self) -> AttentionRecorder:
        if self.router.recorder is not None and self.router.recorder is not self:
            raise RuntimeError("another AttentionRecorder is already active on this model")
        self.router.recorder = self
        self.clear()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.router.recorder = None
