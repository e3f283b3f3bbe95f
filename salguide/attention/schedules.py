"""Keep-rate and mask-ratio schedules: a value that moves from ``start`` to ``end`` over ``steps``."""

from __future__ import annotations

import math

from salguide._checks import as_int


def check_keep(keep: float, name: str = "keep rate") -> float:
    """``keep`` as a float in (0, 1], else a clear ValueError."""
    if isinstance(keep, bool) or not isinstance(keep, (int, float)) or not 0.0 < float(keep) <= 1.0:
        raise ValueError(f"{name} must lie in (0, 1], got {keep!r}")
    return float(keep)


class Schedule:
    """``kind`` = "constant" (always ``end``), "linear" or "cosine" from ``start`` to ``end`` over ``steps``
    (then ``end``). EViT warms its keep rate from 1 down to the target with a cosine schedule."""

    def __init__(self, end: float, start: float | None = None, steps: int = 0, kind: str = "cosine") -> None:
        if kind not in ("constant", "linear", "cosine"):
            raise ValueError(f"schedule kind must be 'constant', 'linear' or 'cosine', got {kind!r}")
        self.end, self.start = float(end), float(end if start is None else start)
        if not (math.isfinite(self.end) and math.isfinite(self.start)):
            raise ValueError(f"schedule values must be finite, got start={start!r}, end={end!r}")
        self.steps, self.kind = as_int(steps, "schedule steps", 0), kind

    def __call__(self, step: int) -> float:
        if self.kind == "constant" or self.steps == 0 or step >= self.steps:
            return self.end
        t = max(step, 0) / self.steps
        w = t if self.kind == "linear" else 0.5 * (1 - math.cos(math.pi * t))
        return self.start + (self.end - self.start) * w


def keep_schedule(keep: float, warmup_steps: int = 0, kind: str = "cosine") -> Schedule:
    """Keep rate from 1.0 down to ``keep`` (in (0, 1]) over ``warmup_steps``."""
    return Schedule(check_keep(keep), 1.0, warmup_steps, kind)
