"""``WeightMask``: parameter name -> bool tensor (True = the weight may change), like a state_dict.

SalUn (Fan et al., ICLR 2024) updates only the salient weights: θ_u = m ⊙ (θ₀ + Δθ) + (1 − m) ⊙ θ₀.
This class holds m, builds it from scores, combines masks (ANT intersects them), checks it against a
model, and saves/loads it as safetensors (safe to load from untrusted sources).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterator, Mapping
from numbers import Real
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor, nn

from ..io import atomic_path
from .select import check_scores, topk_mask

FORMAT_KEY = "salguide_mask_format"
VERSION_KEY = "salguide_version"
ORDER_KEY = "salguide_mask_order"  # safetensors sorts names; parameter order matters (ties, equality)
FORMAT_VERSION = "1"
_SHOWN = 5  # names listed per category in mismatch errors


class WeightMask(Mapping[str, Tensor]):
    """Read-only mapping of parameter name -> bool tensor on CPU; True marks a weight that may change."""

    def __init__(self, masks: Mapping[str, Tensor], *, metadata: Mapping[str, str] | None = None) -> None:
        if not isinstance(masks, Mapping) or not masks:
            raise ValueError("WeightMask needs a non-empty mapping of parameter name -> bool tensor")
        self._masks: dict[str, Tensor] = {}
        for name, m in masks.items():
            if not isinstance(name, str):
                raise TypeError(f"mask names must be str, got {type(name).__name__} {name!r}")
            if not isinstance(m, Tensor) or m.dtype != torch.bool:
                kind = m.dtype if isinstance(m, Tensor) else type(m).__name__
                raise ValueError(f"mask {name!r} must be a torch.bool tensor, got {kind}")
            self._masks[name] = m.detach().cpu().clone(memory_format=torch.contiguous_format)
        self.metadata: dict[str, str] = dict(metadata or {})

    # ---- Mapping ---------------------------------------------------------------------------
    def __getitem__(self, name: str) -> Tensor:
        return self._masks[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._masks)

    def __len__(self) -> int:
        return len(self._masks)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, WeightMask):
            return NotImplemented
        return list(self) == list(other) and all(torch.equal(m, other[n]) for n, m in self.items())

    __hash__ = None  # type: ignore[assignment]  # mutable tensors inside

    # ---- construction ----------------------------------------------------------------------
    @classmethod
    def from_scores(
        cls, scores: Mapping[str, Tensor], ratio: float = 0.5, scope: str = "global", largest: bool = True
    ) -> WeightMask:
        """Keep the ``ratio`` share of weights with the largest scores (see ``topk_mask``)."""
        return cls(topk_mask(scores, ratio, scope=scope, largest=largest))

    @classmethod
    def from_threshold(cls, scores: Mapping[str, Tensor], threshold: float) -> WeightMask:
        """Keep every weight whose score is ``>= threshold``."""
        if isinstance(threshold, bool) or not isinstance(threshold, Real) or not math.isfinite(threshold):
            raise ValueError(f"threshold must be a finite number, got {threshold!r}")
        check_scores(scores)
        return cls({name: s >= threshold for name, s in scores.items()})

    def to_state_dict(self) -> dict[str, Tensor]:
        """Plain ``{name: bool tensor}`` dict (e.g. for a Lightning checkpoint)."""
        return dict(self._masks)

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Tensor]) -> WeightMask:
        return cls(state)

    # ---- algebra ---------------------------------------------------------------------------
    def _combine(self, other: object, op_name: str, op: Callable[[Tensor, Tensor], Tensor]) -> WeightMask:
        if not isinstance(other, WeightMask):
            return NotImplemented
        problems = name_shape_mismatches(
            dict(self._shapes()), dict(other._shapes()), strict=True, labels=("only in right", "only in left")
        )
        if problems:
            raise ValueError(f"cannot {op_name} masks over different parameters: {problems}")
        return WeightMask({n: op(m, other[n]) for n, m in self.items()})

    def __and__(self, other: object) -> WeightMask:
        return self._combine(other, "intersect", torch.logical_and)

    def __or__(self, other: object) -> WeightMask:
        return self._combine(other, "unite", torch.logical_or)

    def __invert__(self) -> WeightMask:
        return WeightMask({n: ~m for n, m in self.items()})

    # ---- statistics ------------------------------------------------------------------------
    @property
    def numel(self) -> int:
        return sum(m.numel() for m in self._masks.values())

    @property
    def num_selected(self) -> int:
        """Number of True entries (weights that may change)."""
        return sum(int(m.sum()) for m in self._masks.values())

    @property
    def density(self) -> float:
        """Share of entries that may change."""
        return self.num_selected / self.numel if self.numel else 0.0

    @property
    def sparsity(self) -> float:
        """Share of entries that are frozen (False)."""
        return 1.0 - self.density if self.numel else 0.0

    def layer_sparsity(self) -> dict[str, float]:
        """Frozen share per tensor (0.0 for an empty tensor)."""
        return {n: 1.0 - float(m.sum()) / m.numel() if m.numel() else 0.0 for n, m in self.items()}

    def __repr__(self) -> str:
        return f"WeightMask(tensors={len(self)}, numel={self.numel:,}, sparsity={self.sparsity:.4f})"

    # ---- checks against a model ------------------------------------------------------------
    def _shapes(self) -> Iterator[tuple[str, tuple[int, ...]]]:
        return ((n, tuple(m.shape)) for n, m in self.items())

    def validate(self, model: nn.Module, strict: bool = True) -> None:
        """Raise ValueError unless the mask matches ``model.named_parameters()`` by name and shape.

        ``strict=False`` allows the mask to cover only a subset of the parameters.
        """
        params = {n: tuple(p.shape) for n, p in model.named_parameters()}
        problems = name_shape_mismatches(dict(self._shapes()), params, strict=strict)
        if problems:
            raise ValueError(f"mask does not fit {type(model).__name__}: {problems}")

    # ---- files -----------------------------------------------------------------------------
    def save(self, path: str | os.PathLike, metadata: Mapping[str, str] | None = None) -> Path:
        """Write the mask atomically as safetensors, recording format and salguide versions."""
        from .. import __version__

        extra = dict(metadata or {})
        for key, value in extra.items():
            if not isinstance(key, str) or not isinstance(value, str):
                raise ValueError(f"metadata must map str -> str, got {key!r}: {value!r}")
            if key in (FORMAT_KEY, VERSION_KEY, ORDER_KEY):
                raise ValueError(f"metadata key {key!r} is reserved")
        extra.update({FORMAT_KEY: FORMAT_VERSION, VERSION_KEY: __version__, ORDER_KEY: json.dumps(list(self))})
        with atomic_path(path) as tmp:
            save_file(self._masks, str(tmp), metadata=extra)
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike, model: nn.Module | None = None, strict: bool = True) -> WeightMask:
        """Read a mask written by ``save`` (safetensors only); with ``model``, ``validate`` it."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"weight mask file not found (or not a file): {path}")
        try:
            with safe_open(str(path), framework="pt") as f:
                metadata = f.metadata() or {}
                masks = {name: f.get_tensor(name) for name in f.keys()}
        except (SafetensorError, OSError, ValueError, RuntimeError) as e:
            raise ValueError(f"{path} is not a readable safetensors weight mask: {e}") from e
        if metadata.get(FORMAT_KEY) != FORMAT_VERSION:
            raise ValueError(
                f"{path} is not a salguide weight mask of format {FORMAT_VERSION} "
                f"(metadata {FORMAT_KEY}={metadata.get(FORMAT_KEY)!r})"
            )
        try:
            order = json.loads(metadata.pop(ORDER_KEY, "null"))
            if not isinstance(order, list) or sorted(order) != sorted(masks):
                raise ValueError(f"its {ORDER_KEY} metadata does not list the stored tensors")
            mask = cls({name: masks[name] for name in order}, metadata=metadata)
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from e
        if model is not None:
            mask.validate(model, strict=strict)
        return mask


def name_shape_mismatches(
    mask: Mapping[str, tuple[int, ...]],
    target: Mapping[str, tuple[int, ...]],
    *,
    strict: bool,
    labels: tuple[str, str] = ("missing", "unexpected"),
) -> str:
    """Human-readable list of missing / unexpected names and shape mismatches ('' when none)."""
    missing = [n for n in target if n not in mask] if strict else []
    unexpected = [n for n in mask if n not in target]
    shapes = [f"{n} {mask[n]} vs {target[n]}" for n in mask if n in target and mask[n] != target[n]]
    parts = []
    for label, items in ((labels[0], missing), (labels[1], unexpected), ("shape mismatches", shapes)):
        if items:
            more = f", ... (+{len(items) - _SHOWN} more)" if len(items) > _SHOWN else ""
            parts.append(f"{len(items)} {label} [{', '.join(items[:_SHOWN])}{more}]")
    return "; ".join(parts)


__all__ = ["WeightMask"]
