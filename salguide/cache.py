"""A small content-addressed cache of trained weights (safetensors), so experiments reuse the model
they unlearn from instead of retraining it every run."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from safetensors.torch import load_file
from torch import nn

from salguide.io import clean_stale_temporaries
from salguide.weights_io import save_weights


def config_key(*parts: Any) -> str:
    """A short stable hash of JSON-able configuration parts."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def cached_seconds(path: str | Path) -> float | None:
    """The run time stored next to cached weights (``{"seconds": s}``), None when the file is absent;
    ValueError naming the file when it is corrupt."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        seconds = json.loads(path.read_text())["seconds"]
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
            raise TypeError(f"'seconds' is {seconds!r}, not a number")
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as err:
        raise ValueError(f"cache file {path} is corrupt ({type(err).__name__}: {err}); delete it to recompute") from err
    return float(seconds)


def cached_weights(
    path: str | Path, model: nn.Module, train: Callable[[nn.Module], nn.Module], *, write: bool = True
) -> tuple[nn.Module, bool]:
    """Load ``model``'s weights from ``path`` if present, else ``train(model)`` and save them (if ``write``:
    False on DDP ranks other than 0, which train the same weights).

    Returns ``(model, hit)``. A file that does not match the model (names or shapes) is an error, not a
    silent retrain: delete it to retrain. Temporaries that killed writers left in the folder are removed.
    """
    path = Path(path)
    if path.parent.is_dir():
        clean_stale_temporaries(path.parent)
    if path.exists():
        try:
            state = load_file(str(path))
        except Exception as err:  # safetensors raises several types for a damaged file
            raise ValueError(f"cached weights {path} are unreadable ({err}); delete the file to retrain") from err
        try:
            model.load_state_dict(state)
        except RuntimeError as err:
            raise ValueError(f"cached weights {path} do not fit this model; delete the file to retrain\n{err}") from err
        return model.eval(), True
    model = train(model)
    if not write:
        return model, False
    save_weights(model, path)
    return model, False
