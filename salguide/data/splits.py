"""Seeded index splits for machine unlearning (pure functions on label tensors).

Class-wise forgetting removes every training sample of one class; random forgetting removes a random
share of the training set (the two settings of SalUn, Fan et al., ICLR 2024).
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.model_selection import train_test_split

FORGET_MODES = ("class", "random", None)


def check_forget_args(forget: str | None, forget_class: int, forget_ratio: float) -> None:
    """Reject an unknown forget mode or a ratio outside (0, 1) before any data is read."""
    if forget not in FORGET_MODES:
        raise ValueError(f"unknown forget mode {forget!r}; choose one of {FORGET_MODES}")
    if forget == "random" and not 0.0 < float(forget_ratio) < 1.0:
        raise ValueError(f"forget_ratio must lie in the open interval (0, 1), got {forget_ratio}")
    if forget == "class" and int(forget_class) < 0:
        raise ValueError(f"forget_class must be a non-negative class index, got {forget_class}")


def forget_split(
    labels: torch.Tensor,
    forget: str | None,
    *,
    forget_class: int = 0,
    forget_ratio: float = 0.1,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Split train indices into sorted ``(forget_idx, retain_idx)`` (int64).

    ``forget="class"``: all samples labelled ``forget_class``; ``"random"``: ``round(ratio * n)`` samples
    drawn with a generator seeded by ``seed``; ``None``: nothing is forgotten.
    """
    check_forget_args(forget, forget_class, forget_ratio)
    n = labels.numel()
    if n == 0:
        raise ValueError("cannot split an empty training set")
    if forget is None:
        return torch.empty(0, dtype=torch.long), torch.arange(n)
    if forget == "class":
        is_forget = labels == int(forget_class)
        if not bool(is_forget.any()):
            present = sorted(int(c) for c in labels.unique())
            raise ValueError(
                f"forget split is empty: class {forget_class} is not in the training set (classes {present})"
            )
    else:
        k = round(float(forget_ratio) * n)
        if k == 0:
            raise ValueError(f"forget split is empty: forget_ratio={forget_ratio} of {n} samples rounds to 0")
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed)))
        is_forget = torch.zeros(n, dtype=torch.bool)
        is_forget[perm[:k]] = True
    if bool(is_forget.all()):
        raise ValueError("forget split is the whole training set: the retain set would be empty")
    return is_forget.nonzero().flatten(), (~is_forget).nonzero().flatten()


def ta_indices(labels: torch.Tensor, forget: str | None, forget_class: int = 0) -> torch.Tensor:
    """Indices of the TA test set: the test set without ``forget_class`` in class-wise mode, else all of it."""
    if forget != "class":
        return torch.arange(labels.numel())
    keep = (labels != int(forget_class)).nonzero().flatten()
    if keep.numel() == 0:
        raise ValueError(f"the test set holds only class {forget_class}: nothing is left to measure test accuracy")
    return keep


def split_indices(
    labels: torch.Tensor, seed: int, test_fraction: float, val_fraction: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stratified, seeded ``(train, val, test)`` index arrays; val is a share of what is not test."""
    for name, v in (("test_fraction", test_fraction), ("val_fraction", val_fraction)):
        if not 0.0 < float(v) < 1.0:
            raise ValueError(f"{name} must lie in the open interval (0, 1), got {v}")
    idx, y = np.arange(len(labels)), labels.numpy()
    rest, test = train_test_split(idx, test_size=test_fraction, random_state=seed, stratify=y)
    train, val = train_test_split(rest, test_size=val_fraction, random_state=seed, stratify=y[rest])
    return train, val, test
