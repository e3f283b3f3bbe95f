"""Attention losses as loss modules (:class:`~salguide.auxiliary.AuxiliaryLoss` subclasses, like the
input-saliency losses, so ``AttentionLossCallback`` adds them to an unmodified LightningModule through the
same callback).

Each module names the layers it reads and the statistics it needs; its ``arm`` is a recorder of them, so
they are recorded during the model's own forward when a callback armed it, otherwise the penalty runs one
forward.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import reduce
from operator import add
from typing import Any

from torch import Tensor, nn

from salguide._checks import as_finite, as_int, as_ints
from salguide.auxiliary import AuxiliaryLoss, as_logits
from salguide.inputs.masks import check_annotation

from .losses import background_mass_loss, concentration_loss, concentration_loss_all, diversity_loss, entropy_loss
from .recorder import AttentionRecorder
from .routing import find_routed, layer_target, router_of
from .stats import AttentionStats
from .targets import gaussian_from_boxes, gaussian_from_points, mask_boxes, token_grid, token_target, with_cls

QUERIES = ("cls", "all", "object")


def object_rows(model: nn.Module, mask: Tensor, positions: Tensor | None, B: int, N: int) -> Tensor:
    """Query-row weights [B, N] at the layer's tokens: 1 for the class token, the mask coverage for patches."""
    return layer_target(
        token_target(mask, token_grid(model), cls_weight=1.0), positions, B, N
    )  # grid of the last input


class AttentionLoss(AuxiliaryLoss):
    """Base: ``weight`` x mean over ``layers`` of the per-layer penalty."""

    requests: dict[str, bool] = {}  # what the recorder computes (a subclass or an instance may replace it)

    def __init__(self, weight: float = 1.0, layers: Sequence[int] | int = (-1,)) -> None:
        super().__init__(weight)
        self.layers = as_ints(layers, f"{type(self).__name__} layers")
        if not self.layers:
            raise ValueError(f"{type(self).__name__}: choose at least one layer")

    def mass_target(self, model: nn.Module, mask: Tensor | None, x: Tensor | None = None) -> Tensor | None:
        """Per-token weights for the kernel's mass on the patch grid of input ``x`` (None: no mass needed)."""
        return None

    def layer_penalty(self, s: AttentionStats, model: nn.Module, mask: Tensor | None) -> Tensor:
        raise NotImplementedError

    def arm(self, model: Any, x: Any, mask: Tensor | None) -> AttentionRecorder:
        """A recorder of what this loss needs, for a forward on input ``x`` (its size sets the patch grid); entered
        around the step's forward, so that :meth:`penalty` reads the statistics of that forward."""
        self.check_mask(mask)
        if mask is not None:
            check_annotation(mask, type(self).__name__)
            if isinstance(x, Tensor) and x.dim() == 4 and (mask.dim() < 2 or mask.shape[-2:] != x.shape[-2:]):
                raise ValueError(
                    f"{type(self).__name__}: the mask {tuple(mask.shape)} must cover the images {tuple(x.shape)} "
                    "pixel for pixel ([B, H, W] or [B, 1, H, W]); it is pooled to the patch grid here"
                )
        routed = find_routed(model)
        rec = AttentionRecorder(routed, self.layers, target=self.mass_target(routed, mask, x), **self.requests)
        rec.owner = self  # type: ignore[attr-defined]  # marks the recorder as armed by this loss
        return rec

    def penalty(
        self, model: Any, x: Tensor, y: Tensor, mask: Tensor | None = None, logits: Tensor | None = None
    ) -> Tensor:
        routed = find_routed(model)
        rec = router_of(routed).recorder
        armed = rec is not None and getattr(rec, "owner", None) is self
        if armed and (logits is None or not all(i in rec.records for i in rec.layers)):
            rec.clear()  # armed by the callback, but the step's forward was not on this batch: run our own
            logits = model(x)
        elif not armed:
            with self.arm(model, x, mask) as rec:
                logits = model(x)
        pens = [self.layer_penalty(rec.records[i], routed, mask) for i in rec.layers]
        total = reduce(add, pens) / len(pens)
        if self.weight:
            return self.weight * total
        out = as_logits(logits)
        assert isinstance(out, Tensor)  # a weight of 0 keeps the graph connected with a zero penalty
        return out.sum() * 0.0


class ConcentrationLoss(AttentionLoss):
    """Attention concentrated on a target map built from the object mask: ``target`` = "box"
    (Gaussian on the mask's bounding box, sigma = ``width`` x half side), "point" (Gaussian of std
    ``sigma`` at the box centre) or "mask" (patch coverage). ``queries="cls"``: the CLS row only;
    ``"all"``: every query row (so patch tokens cannot pull background into the object's tokens either);
    ``"object"``: the rows of the class token and of the object's tokens (weighted by mask coverage), the
    rows through which background can reach the class token. The row forms are exact closed forms from
    q, k and the log-sum-exp (:func:`~salguide.attention.losses.concentration_loss_all`), no N x N."""

    mask_semantics = "relevant"
    name = "attn_concentration"
    requests = {"cls": True}

    def __init__(
        self,
        weight: float = 1.0,
        layers: Sequence[int] | int = (-1,),
        target: str = "box",
        width: float = 0.5,
        sigma: float = 0.1,
        queries: str = "cls",
    ) -> None:
        super().__init__(weight, layers)
        if target not in ("box", "point", "mask"):
            raise ValueError(f"ConcentrationLoss: target must be 'box', 'point' or 'mask', got {target!r}")
        if queries not in QUERIES:
            raise ValueError(f"ConcentrationLoss: queries must be one of {QUERIES}, got {queries!r}")
        for name, value in (("width", width), ("sigma", sigma)):
            as_finite(value, f"ConcentrationLoss: {name}", positive=True)
        self.target, self.width, self.sigma, self.queries = target, width, sigma, queries
        if queries != "cls":
            self.requests = {"qk": True, "lse": True}

    def token_weights(self, model: nn.Module, mask: Tensor) -> Tensor:
        grid = token_grid(model)
        if self.target == "mask":
            return token_target(mask, grid)
        boxes = mask_boxes(mask)
        if self.target == "box":
            return with_cls(gaussian_from_boxes(boxes, grid, self.width))
        return with_cls(gaussian_from_points((boxes[:, :2] + boxes[:, 2:]) / 2, grid, self.sigma))

    def layer_penalty(self, s: AttentionStats, model: nn.Module, mask: Tensor | None) -> Tensor:
        assert mask is not None
        if self.queries != "cls":
            assert s.q is not None and s.k is not None and s.lse is not None
            B, N = s.q.shape[0], s.q.shape[2]
            t = layer_target(self.token_weights(model, mask), s.positions, B, N).to(s.q.device)
            rows = None if self.queries == "all" else object_rows(model, mask, s.positions, B, N).to(s.q.device)
            return concentration_loss_all(
                s.q, s.k, s.lse, t, scale=s.scale, key_bias=s.key_bias, key_mask=s.key_mask, row_weights=rows
            )
        assert s.cls is not None
        t = layer_target(self.token_weights(model, mask), s.positions, s.cls.shape[0], s.cls.shape[2])
        return concentration_loss(s.cls, t)


class BackgroundSuppressionLoss(AttentionLoss):
    """BAS on attention: the attention mass that lands on background patches (kernel mass, differentiable,
    no N x N), for the CLS row (``queries="cls"``), every query (``"all"``) or the rows of the class token
    and the object's tokens (``"object"``, weighted by mask coverage)."""

    mask_semantics = "relevant"
    name = "attn_bas"
    requests = {"mass": True}

    def __init__(
        self,
        weight: float = 1.0,
        layers: Sequence[int] | int = (-1,),
        queries: str = "cls",
        cls_is_background: bool = False,
    ) -> None:
        super().__init__(weight, layers)
        if queries not in QUERIES:
            raise ValueError(f"BackgroundSuppressionLoss: queries must be one of {QUERIES}, got {queries!r}")
        self.queries, self.cls_is_background = queries, bool(cls_is_background)

    def mass_target(self, model: nn.Module, mask: Tensor | None, x: Tensor | None = None) -> Tensor | None:
        assert mask is not None
        t = 1.0 - token_target(mask, token_grid(model, x))
        # the class token's key: neutral (0), or counted as background (1) so that attention cannot
        # escape the penalty by collapsing onto the class token
        t[:, 0] = float(self.cls_is_background)
        return t

    def layer_penalty(self, s: AttentionStats, model: nn.Module, mask: Tensor | None) -> Tensor:
        assert s.mass is not None
        if self.queries == "object":
            assert mask is not None
            B, _, N = s.mass.shape
            return background_mass_loss(s.mass, "weighted", object_rows(model, mask, s.positions, B, N))
        return background_mass_loss(s.mass, self.queries)


class AttentionEntropyLoss(AttentionLoss):
    """Normalised row entropy (``maximize=False``: penalise spread-out attention; True: penalise 1 - it)."""

    name = "attn_entropy"
    requests = {"entropy": True}

    def __init__(
        self, weight: float = 1.0, layers: Sequence[int] | int = (-1,), queries: str = "cls", maximize: bool = False
    ) -> None:
        super().__init__(weight, layers)
        if queries not in ("cls", "all"):
            raise ValueError(f"AttentionEntropyLoss: queries must be 'cls' or 'all', got {queries!r}")
        self.queries, self.maximize = queries, bool(maximize)

    def layer_penalty(self, s: AttentionStats, model: nn.Module, mask: Tensor | None) -> Tensor:
        assert s.entropy is not None
        e = entropy_loss(s.entropy, self.queries)
        return 1.0 - e if self.maximize else e


class AttentionDiversityLoss(AttentionLoss):
    """Mean cosine similarity of head-averaged attention rows of ``num_queries`` random tokens
    (cost O(B H R N D), R = num_queries; see :func:`salguide.attention.losses.diversity_loss`)."""

    name = "attn_diversity"
    requests = {"qk": True, "lse": True}

    def __init__(self, weight: float = 1.0, layers: Sequence[int] | int = (-1,), num_queries: int = 16) -> None:
        super().__init__(weight, layers)
        self.num_queries = as_int(num_queries, "AttentionDiversityLoss: num_queries", 2)

    def layer_penalty(self, s: AttentionStats, model: nn.Module, mask: Tensor | None) -> Tensor:
        assert s.q is not None and s.k is not None and s.lse is not None
        return diversity_loss(
            s.q, s.k, s.lse, scale=s.scale, num_queries=self.num_queries, key_bias=s.key_bias, key_mask=s.key_mask
        )
