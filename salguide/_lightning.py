"""One place that knows about the two Lightning distributions.

Users import either ``lightning.pytorch`` or ``pytorch_lightning``; a Trainer of one rejects callbacks
that subclass the other's ``Callback``. salguide's callbacks subclass every ``Callback`` base that is
installed, so one class works with both Trainers.
"""

from __future__ import annotations

import importlib

_BASES = []
for _name in ("lightning.pytorch", "pytorch_lightning"):
    try:
        _BASES.append(importlib.import_module(_name).Callback)
    except ImportError:  # pragma: no cover - depends on what is installed
        pass
if not _BASES:  # pragma: no cover
    raise ImportError("salguide needs `lightning` or `pytorch_lightning` installed")

CALLBACK_BASES: tuple[type, ...] = tuple(_BASES)


class Callback(*CALLBACK_BASES):  # type: ignore[misc]
    """Base for salguide callbacks: an instance of every installed Lightning ``Callback`` class."""


import lightning.pytorch as pl  # noqa: E402  (the framework salguide's own modules and Trainers use)

__all__ = ["Callback", "CALLBACK_BASES", "pl"]
