"""Argument checks shared by the plugin families."""

from __future__ import annotations

import operator
from typing import Any

import numpy as np


def as_int(value: Any, name: str, minimum: int | None = None) -> int:
    """``value`` as a Python int: any integral type (``int``, numpy and torch integer scalars), not a bool
    or a float; ValueError naming ``name`` otherwise, or when it is below ``minimum``."""
    what = f"{name} must be an integer" + ("" if minimum is None else f" >= {minimum}")
    if isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{what}, got {value!r}")
    try:
        out = operator.index(value)
    except TypeError:
        raise ValueError(f"{what}, got {value!r} ({type(value).__name__})") from None
    if minimum is not None and out < minimum:
        raise ValueError(f"{what}, got {out}")
    return out


def as_ints(values: Any, name: str) -> list[int]:
    """One integer or a sequence of them (e.g. layer indices) as a list of Python ints."""
    if isinstance(values, (str, bytes)):
        raise ValueError(f"{name} must be an integer or a sequence of integers, got {values!r}")
    try:
        return [as_int(values, name)]
    except ValueError:
        pass
    try:
        items = list(values)
    except TypeError:
        raise ValueError(f"{name} must be an integer or a sequence of integers, got {values!r}") from None
    return [as_int(v, name) for v in items]
