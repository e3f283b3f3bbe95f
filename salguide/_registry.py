"""Build a plugin by name from a registry, with ``None`` / ``"none"`` meaning "no plugin"."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def build_optional(registry: Mapping[str, Any], what: str, name: str | None, **kwargs: Any) -> Any:
    """``registry[name](**kwargs)``, or None for None / "none"; an unknown name is a ValueError listing the
    valid ones (``what`` names the kind, e.g. "input loss")."""
    if name in (None, "none"):
        return None
    if name not in registry:
        raise ValueError(f"unknown {what} {name!r}; choose one of {['none', *sorted(registry)]}")
    return registry[name](**kwargs)
