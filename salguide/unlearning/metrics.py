"""Unlearning metrics of the SalUn evaluation protocol (Fan et al., ICLR 2024; MIA after Song & Mittal 2021).

UA = 100 - acc(forget), RA = acc(retain), TA = acc(test set, forgotten class removed in class-wise mode),
MIA-efficacy = share of forget samples that an SVC on true-class confidence calls non-members,
Avg.Gap = mean |metric - metric of the Retrain model|. All values are percentages.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import torch
from sklearn.svm import SVC
from torch import nn

from salguide.metrics.accuracy import accuracy, percent, predict

__all__ = [
    "METRIC_KEYS",
    "accuracy",
    "avg_gap",
    "mia_efficacy",
    "mia_efficacy_from_confidences",
    "predict",
    "unlearning_metrics",
]
METRIC_KEYS = ("UA", "RA", "TA", "MIA")


def mia_efficacy_from_confidences(
    retain_conf: torch.Tensor, forget_conf: torch.Tensor, test_conf: torch.Tensor, *, seed: int = 0
) -> float:
    """MIA-efficacy from true-class confidences (1-D tensors).

    An ``SVC(C=3, kernel="rbf", gamma="auto")`` is fit on shadow-in = a seeded random subset of ``retain_conf``
    of size ``len(test_conf)`` (all of it if smaller), label 1, and shadow-out = ``test_conf``, label 0.
    Returns the percentage of ``forget_conf`` it predicts as non-member (0).
    """
    for name, conf in (("retain", retain_conf), ("forget", forget_conf), ("test", test_conf)):
        if conf.ndim != 1 or conf.numel() == 0:
            raise ValueError(f"{name} confidences must be a non-empty 1-D tensor, got shape {tuple(conf.shape)}")
        if not bool(torch.isfinite(conf).all()):
            raise ValueError(f"{name} confidences contain NaN or inf")
    n_in = min(retain_conf.numel(), test_conf.numel())
    pick = np.random.default_rng(seed).choice(retain_conf.numel(), size=n_in, replace=False)
    shadow_in = retain_conf.numpy()[pick]
    features = np.concatenate([shadow_in, test_conf.numpy()]).reshape(-1, 1)
    labels = np.concatenate([np.ones(n_in), np.zeros(test_conf.numel())])
    svc = SVC(C=3, kernel="rbf", gamma="auto").fit(features, labels)
    predicted = svc.predict(forget_conf.numpy().reshape(-1, 1))
    return 100.0 * float(np.mean(predicted == 0))


def mia_efficacy(model: nn.Module, retain: Iterable, forget: Iterable, test: Iterable, *, seed: int = 0) -> float:
    """MIA-efficacy (percent) of ``model`` from retain, forget and test loaders (``mia_efficacy_from_confidences``)."""
    loaders = {"retain": retain, "forget": forget, "test": test}
    conf = {name: predict(model, loader, name=f"{name} loader")[0] for name, loader in loaders.items()}
    return mia_efficacy_from_confidences(conf["retain"], conf["forget"], conf["test"], seed=seed)


def unlearning_metrics(model: nn.Module, datamodule: Any, *, seed: int = 0) -> dict[str, float]:
    """UA, RA, TA and MIA (percent) of ``model`` on a set-up ``ForgetDataModule`` (each split predicted once)."""
    datamodule.setup()
    loaders = {
        "forget": datamodule.forget_dataloader(shuffle=False),
        "retain": datamodule.retain_dataloader(shuffle=False),
        "test": datamodule.test_dataloader(),
    }
    out = {name: predict(model, loader, name=f"{name} set") for name, loader in loaders.items()}
    return {
        "UA": 100.0 - percent(out["forget"][1]),
        "RA": percent(out["retain"][1]),
        "TA": percent(out["test"][1]),
        "MIA": mia_efficacy_from_confidences(out["retain"][0], out["forget"][0], out["test"][0], seed=seed),
    }


def avg_gap(
    metrics: Mapping[str, float], retrain_metrics: Mapping[str, float], keys: Iterable[str] = METRIC_KEYS
) -> float:
    """Mean absolute difference to the Retrain model over ``keys`` (SalUn's Avg.Gap)."""
    keys = tuple(keys)
    if not keys:
        raise ValueError("avg_gap needs at least one metric key")
    gaps = []
    for k in keys:
        for label, row in (("metrics", metrics), ("retrain_metrics", retrain_metrics)):
            if k not in row:
                raise KeyError(f"{label} has no {k!r} (has {sorted(row)})")
            if not np.isfinite(float(row[k])):
                raise ValueError(f"{label}[{k!r}] is not finite: {row[k]}")
        gaps.append(abs(float(metrics[k]) - float(retrain_metrics[k])))
    return float(np.mean(gaps))
