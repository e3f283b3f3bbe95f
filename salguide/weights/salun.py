"""SalUn's weight mask as one call: gradient saliency on the forget set, then the top ``ratio`` of the weights."""

from __future__ import annotations

from collections.abc import Iterable

from torch import nn

from .mask import WeightMask
from .scores import saliency_scores
from .select import check_ratio, check_scope


def salun_mask(
    model: nn.Module, dataloader: Iterable, ratio: float = 0.5, *, scope: str = "global", progress: bool = True
) -> WeightMask:
    """SalUn (Fan et al., ICLR 2024): the ``ratio`` share of weights with the largest ``saliency_scores`` on the
    forget set's ``dataloader``, over all parameters (``scope="global"``, SalUn) or per tensor (``"layer"``)."""
    check_ratio(ratio)
    check_scope(scope)
    return WeightMask.from_scores(saliency_scores(model, dataloader, progress=progress), ratio=ratio, scope=scope)


salun_mask.label = "SalUn"  # type: ignore[attr-defined]  # the method's name with this mask in tables and figures

__all__ = ["salun_mask"]
