"""One place that knows about the two Lightning distributions.

Users import either ``lightning.pytorch`` or ``pytorch_lightning``; a Trainer of one rejects callbacks and
datamodules that subclass the other's classes. salguide's callbacks and datamodules subclass the class of
every installed distribution, so one object works with both Trainers.
"""

from __future__ import annotations

import importlib

_DISTRIBUTIONS = ("lightning.pytorch", "pytorch_lightning")


def installed(*names: str, module: str = "") -> tuple[type, ...]:
    """``names`` from ``<distribution>.<module>`` of every installed Lightning distribution."""
    found = []
    for dist in _DISTRIBUTIONS:
        try:
            mod = importlib.import_module(f"{dist}.{module}" if module else dist)
        except ImportError:  # pragma: no cover - depends on what is installed
            continue
        found += [getattr(mod, n) for n in names]
    if not found:  # pragma: no cover
        raise ImportError("salguide needs `lightning` or `pytorch_lightning` installed")
    return tuple(found)


CALLBACK_BASES: tuple[type, ...] = installed("Callback")
DATAMODULE_BASES: tuple[type, ...] = installed("LightningDataModule")


class Callback(*CALLBACK_BASES):  # type: ignore[misc]
    """Base for salguide callbacks: an instance of every installed Lightning ``Callback`` class."""


class LightningDataModule(*DATAMODULE_BASES):  # type: ignore[misc]
    """Base for salguide datamodules: an instance of every installed ``LightningDataModule`` class."""


import lightning.pytorch as pl  # noqa: E402  (the framework salguide's own modules and Trainers use)

__all__ = ["Callback", "LightningDataModule", "installed", "CALLBACK_BASES", "DATAMODULE_BASES", "pl"]
