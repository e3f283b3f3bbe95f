"""Gradient-based weight saliency scores (SalUn).

Fan et al., "SalUn: Empowering Machine Unlearning via Gradient-based Weight Saliency", ICLR 2024:
the saliency of a weight is |∇θ L_forget(θ₀)|, the absolute gradient at the original weights of the
batch-mean cross-entropy on the forget set's true labels, summed over batches, with the model in eval
mode. ``.grad`` of the parameters is never touched (``torch.autograd.grad``), and the model's modes and
``requires_grad`` flags are restored afterwards, also when an error is raised.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from salguide._checks import check_labels

from .select import all_finite

LossFn = Callable[[Tensor, Tensor], Tensor]
BatchLoss = Callable[[nn.Module, Tensor, Tensor], Tensor]  # (model, x, y) -> scalar, e.g. a diffusion loss
Transform = Callable[[Tensor], Tensor]


def split_batch(batch: object) -> tuple[Tensor, Tensor]:
    """``(x, y)`` from an ``(x, y, *rest)`` tuple/list or a dict with "x"/"y" or "input"/"target"."""
    if isinstance(batch, (tuple, list)) and len(batch) >= 2:
        return batch[0], batch[1]
    if isinstance(batch, Mapping):
        for x_key, y_key in (("x", "y"), ("input", "target")):
            if x_key in batch and y_key in batch:
                return batch[x_key], batch[y_key]
    described = sorted(batch) if isinstance(batch, Mapping) else type(batch).__name__
    raise ValueError(
        f"cannot read a batch of {described}: expected (x, y, ...) or a dict with 'x'/'y' or 'input'/'target'"
    )


@contextmanager
def scoring_mode(model: nn.Module) -> Iterator[list[nn.Parameter]]:
    """Eval mode and ``requires_grad=True`` on every parameter; both restored on exit."""
    modes = [(m, m.training) for m in model.modules()]
    params = [p for _, p in model.named_parameters()]
    flags = [p.requires_grad for p in params]
    try:
        model.eval()
        for p in params:
            p.requires_grad_(True)
        with torch.enable_grad():
            yield params
    finally:
        for p, flag in zip(params, flags):
            p.requires_grad_(flag)
        for m, training in modes:
            m.training = training


def loss_gradients(
    model: nn.Module,
    dataloader: Iterable,
    loss_fn: LossFn | None = None,
    *,
    device: torch.device | str | None = None,
    transform: Transform | None = None,
    progress: bool = True,
    batch_loss: BatchLoss | None = None,
) -> tuple[dict[str, Tensor], int]:
    """Signed float32 gradients of the per-batch loss summed over batches, and the number of batches.

    The model runs in eval mode; ``transform`` (if given) maps each input batch first. ``batch_loss(model,
    x, y)`` replaces ``loss_fn(model(x), y)`` for models that are not called on ``x`` alone (diffusion). Batches are
    moved to ``device`` (default: the device of the model's first parameter); the model is not moved.
    """
    names = [n for n, _ in model.named_parameters()]
    if not names:
        raise ValueError(f"{type(model).__name__} has no parameters to score")
    if batch_loss is not None and loss_fn is not None:
        raise ValueError("pass either loss_fn or batch_loss, not both")
    default_loss = loss_fn is None and batch_loss is None  # cross-entropy: the labels must be class indices
    loss_fn = loss_fn or F.cross_entropy
    with scoring_mode(model) as params:
        device = torch.device(device) if device is not None else params[0].device
        totals = [torch.zeros(p.shape, dtype=torch.float32, device=p.device) for p in params]
        n_batches = 0
        for batch in tqdm(dataloader, desc="weight saliency", disable=not progress, leave=False):
            x, y = split_batch(batch)
            x, y = x.to(device), y.to(device)
            if transform is not None:
                x = transform(x)
            if batch_loss is not None:
                loss = batch_loss(model, x, y)
            else:
                logits = model(x)
                if default_loss:
                    check_labels(y, logits, "saliency scores (cross-entropy on the forget batches)")
                loss = loss_fn(logits, y)
            if not isinstance(loss, Tensor) or loss.numel() != 1:
                raise ValueError(f"loss_fn must return a scalar tensor, got {getattr(loss, 'shape', loss)!r}")
            grads = torch.autograd.grad(loss.reshape(()), params, allow_unused=True)
            for total, g in zip(totals, grads):
                if g is not None:
                    total += g.to(torch.float32)
            n_batches += 1
    if n_batches == 0:
        raise ValueError("the forget set is empty: the dataloader yielded no batches")
    return dict(zip(names, totals)), n_batches


def check_finite(scores: Mapping[str, Tensor]) -> None:
    """Raise ValueError naming the first parameter whose score has a NaN or inf."""
    for name, s in scores.items():
        if not all_finite(s):
            raise ValueError(f"saliency score of parameter {name!r} contains NaN or inf")


def saliency_scores(
    model: nn.Module,
    dataloader: Iterable,
    loss_fn: LossFn | None = None,
    *,
    device: torch.device | str | None = None,
    progress: bool = True,
    batch_loss: BatchLoss | None = None,
) -> dict[str, Tensor]:
    """SalUn weight saliency: ``|Σ_batches ∇θ loss_fn(model(x), y)|`` for every named parameter.

    ``loss_fn`` defaults to batch-mean cross-entropy on the true labels; ``batch_loss(model, x, y)``
    replaces it (SalUn's generation rule: the diffusion loss, ``salguide.diffusion.DiffusionForgetLoss``). Scores are float32 and keyed
    exactly like ``model.named_parameters()`` (frozen parameters included). Raises ValueError for an
    empty dataloader and for NaN/inf scores (naming the parameter).
    """
    grads, _ = loss_gradients(model, dataloader, loss_fn, device=device, progress=progress, batch_loss=batch_loss)
    scores = {name: g.abs_() for name, g in grads.items()}
    check_finite(scores)
    return scores


__all__ = ["saliency_scores", "loss_gradients", "split_batch", "scoring_mode", "check_finite"]
