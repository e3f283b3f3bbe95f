"""Predictions over a data loader: true-class confidences, correctness and top-1 accuracy (the one
accuracy helper that pipelines, studies and metrics share)."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from salguide._checks import check_labels


@torch.no_grad()
def predict(
    model: nn.Module, loader: Iterable, device: torch.device | str | None = None, name: str = "loader"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(true_class_confidence, correct)`` over ``loader`` in eval mode (mode restored afterwards).

    Confidence is the softmax probability of each sample's label; ``correct`` is a bool per sample.
    """
    if device is None:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
    was_training = model.training
    model.eval()
    confs, correct = [], []
    try:
        for batch in loader:
            x, y = batch[0].to(device), batch[1].to(device)
            logits = model(x)
            if logits.ndim != 2 or logits.shape[0] != y.shape[0]:
                raise ValueError(f"model must return logits [B, classes] for {name}, got {tuple(logits.shape)}")
            check_labels(y, logits, name)
            if not bool(torch.isfinite(logits).all()):
                raise ValueError(f"model returned NaN or inf logits on {name}")
            probs = logits.float().softmax(-1)
            confs.append(probs.gather(1, y.long().view(-1, 1)).squeeze(1).cpu())
            correct.append((logits.argmax(-1) == y).cpu())
    finally:
        model.train(was_training)
    if not confs:
        raise ValueError(f"{name} is empty: cannot evaluate a model on no samples")
    return torch.cat(confs), torch.cat(correct)


def accuracy(model: nn.Module, loader: Iterable, device: torch.device | str | None = None) -> float:
    """Top-1 accuracy of ``model`` on ``loader`` in percent."""
    return percent(predict(model, loader, device)[1])


def percent(flags: torch.Tensor) -> float:
    """Share of true entries of a bool tensor, in percent."""
    return 100.0 * float(flags.float().mean())
