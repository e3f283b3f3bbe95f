"""Attention metrics for evaluation: the share of CLS attention that lands on the object."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from .recorder import AttentionRecorder
from .routing import find_routed
from .targets import token_grid, token_target


@torch.no_grad()
def attention_object_mass(
    model: Any, x: Tensor, mask: Tensor, layers: Sequence[int] = (-1,), batch_size: int = 256
) -> dict[int, float]:
    """Mean over images and heads of the CLS attention mass on object patches (patch coverage by the
    pixel ``mask``, [B, 1, H, W]) at each of ``layers``: {layer: mass in [0, 1]}. Model mode unchanged."""
    routed = find_routed(model)
    totals: dict[int, float] = {}
    for start in range(0, len(x), batch_size):
        xb, mb = x[start : start + batch_size], mask[start : start + batch_size]
        with AttentionRecorder(routed, layers, target=token_target(mb, token_grid(routed, xb)).to(xb.device)) as rec:
            model(xb)
        for i in rec.layers:
            mass = rec[i].mass
            assert mass is not None  # the recorder has a target
            totals[i] = totals.get(i, 0.0) + float(mass[:, :, 0].mean(1).sum())
    return {i: v / len(x) for i, v in totals.items()}
