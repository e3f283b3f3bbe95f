"""A model's weights to and from files a user may receive from others, loaded without unpickling.

``save_weights`` writes a safetensors copy of ``model.state_dict()``; ``load_weights`` reads safetensors,
a plain ``torch.save``'d state dict or a Lightning checkpoint (``torch.load(weights_only=True)``), and
matches its names to the model, also when they carry a wrapper's prefix (``model.``, ``net.``: a
LightningModule's checkpoint of the network)."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from salguide.io import atomic_path


def save_weights(model: nn.Module, path: str | os.PathLike) -> Path:
    """Write ``model``'s state dict to ``path`` as safetensors (whole or not at all). Tied tensors (one
    storage under several names, e.g. shared embeddings) are written once per name, so every name loads."""
    state: dict[str, Tensor] = {}
    storages: set[int] = set()
    for name, v in model.state_dict().items():
        t = v.detach().contiguous().cpu()
        if t.untyped_storage().data_ptr() in storages:
            t = t.clone()
        storages.add(t.untyped_storage().data_ptr())
        state[name] = t
    with atomic_path(path) as tmp:
        save_file(state, str(tmp))
    return Path(path)


def read_state(path: str | os.PathLike) -> dict[str, Tensor]:
    """The tensors of a safetensors file, a state dict or a Lightning checkpoint (its ``state_dict``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} does not exist")
    try:
        if path.suffix == ".safetensors":
            return load_file(str(path))
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # several types for damaged or pickled-object files
        raise ValueError(
            f"cannot read weights from {path} ({type(err).__name__}: {err}); expected a safetensors "
            "file, a state dict or a Lightning checkpoint"
        ) from err
    state = obj.get("state_dict", obj) if isinstance(obj, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ValueError(f"{path} holds no state dict of tensors")
    return state


def match_names(state: dict[str, Tensor], expected: set[str], source: str) -> dict[str, Tensor]:
    """``state`` renamed to ``expected``: as is, or with one leading wrapper prefix removed."""
    if set(state) == expected:
        return state
    for prefix in sorted({k.split(".", 1)[0] + "." for k in state if "." in k}):
        inner = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        if set(inner) == expected:
            return inner
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    raise ValueError(
        f"{source} does not hold this model's weights: missing {missing[:5]}"
        f"{' ...' if len(missing) > 5 else ''}, unexpected {unexpected[:5]}"
        f"{' ...' if len(unexpected) > 5 else ''} ({len(missing)} missing, {len(unexpected)} unexpected)"
    )


def load_weights(model: nn.Module, path: str | os.PathLike) -> nn.Module:
    """Load the weights in ``path`` into ``model`` (names and shapes must match; see the module doc)."""
    state = match_names(read_state(path), set(model.state_dict()), str(path))
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise ValueError(f"{path} does not fit this model: {err}") from err
    return model
