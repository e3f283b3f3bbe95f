"""Argument checks shared by the plugin families."""

from __future__ import annotations

import math
import operator
from numbers import Real
from typing import Any

import numpy as np
import torch


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


def as_finite(value: Any, name: str, *, positive: bool = False) -> float:
    """``value`` as a float: a real number (not a bool), finite and >= 0 (> 0 with ``positive``); ValueError
    naming ``name`` otherwise."""
    bound = "> 0" if positive else ">= 0"
    ok = isinstance(value, Real) and not isinstance(value, (bool, np.bool_)) and math.isfinite(value)
    if not ok or (value <= 0 if positive else value < 0):
        raise ValueError(f"{name} must be a finite number {bound}, got {value!r}")
    return float(value)


def is_integer_tensor(t: Any) -> bool:
    """A tensor of an integer dtype (not bool, floating or complex): class labels, condition ids."""
    return isinstance(t, torch.Tensor) and not (t.dtype == torch.bool or t.is_floating_point() or t.is_complex())


def check_labels(y: Any, logits: Any, where: str) -> None:
    """Class labels ``y`` for ``logits`` [B, C]: an integer tensor [B] with values in [0, C). A clear
    ValueError naming ``where`` otherwise (cross-entropy would raise an IndexError, or a device assert on a
    GPU). One host read of the labels' range."""
    if not is_integer_tensor(y):
        what = f"{y.dtype} tensor" if isinstance(y, torch.Tensor) else type(y).__name__
        raise ValueError(f"{where}: class labels must be an integer tensor, got a {what}")
    batch, classes = logits.shape[0], logits.shape[-1]
    if y.shape != (batch,):
        raise ValueError(f"{where}: class labels must have shape [B={batch}], got {tuple(y.shape)}")
    if batch:
        low, high = (int(v) for v in torch.aminmax(y))
        if low < 0 or high >= classes:
            raise ValueError(
                f"{where}: class labels must lie in [0, {classes}) for {classes} logits, got {low}..{high}"
            )


def check_finite_loss(loss: Any, where: str) -> Any:
    """``loss`` unchanged, or a ValueError naming ``where`` when it is NaN or inf: the optimiser step it feeds would
    make every weight it reaches NaN (NaN or inf inputs, or a diverging learning rate). One host read."""
    if isinstance(loss, torch.Tensor) and not bool(torch.isfinite(loss.detach()).all()):
        raise ValueError(
            f"{where}: the training loss is {loss.detach().float().sum().item()}; the next step would make the "
            "weights NaN (check the batch for NaN or inf inputs, or lower the learning rate)"
        )
    return loss
