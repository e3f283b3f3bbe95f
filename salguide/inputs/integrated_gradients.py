"""Integrated Gradients with the trapezoid rule, batched and differentiable.

Sundararajan, Taly & Yan, "Axiomatic Attribution for Deep Networks", ICML 2017:
IG_i(x) = (x_i - b_i) * int_0^1 dF(b + a (x - b))/dx_i da, here approximated on ``steps`` equal
intervals with the trapezoid rule (``steps + 1`` points, end points weighted 1/2). Completeness,
sum_i IG_i = F(x) - F(b), holds up to the quadrature error (exactly for F quadratic in x).
"""

from __future__ import annotations

import torch
from torch import Tensor

from salguide._checks import as_int

from ._common import Model, Target, check_logits, class_scores, grad_input, grad_of, preserve_buffers


def trapezoid_weights(
    steps: int, dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu"
) -> tuple[Tensor, Tensor]:
    """``(alphas, weights)`` of the trapezoid rule on [0, 1] with ``steps`` intervals (steps + 1 nodes)."""
    steps = as_int(steps, "integrated_gradients: steps", 1)  # any integral type (np.int64, ...)
    alphas = torch.linspace(0.0, 1.0, steps + 1, dtype=dtype, device=device)
    weights = torch.full((steps + 1,), 1.0 / steps, dtype=dtype, device=device)
    weights[0] = weights[-1] = 0.5 / steps
    return alphas, weights


def _baseline(baseline: Tensor | float | None, x: Tensor) -> Tensor:
    if baseline is None:
        return torch.zeros_like(x)
    if isinstance(baseline, (int, float)):
        return torch.full_like(x, float(baseline))
    try:
        return torch.broadcast_to(baseline.to(x), x.shape)
    except RuntimeError as err:
        raise ValueError(
            f"integrated_gradients: baseline of shape {tuple(baseline.shape)} does not broadcast to the "
            f"input shape {tuple(x.shape)}"
        ) from err


def integrated_gradients(
    model: Model,
    x: Tensor,
    target: Target = None,
    *,
    baseline: Tensor | float | None = None,
    steps: int = 32,
    score: str = "logit",
    create_graph: bool = True,
) -> Tensor:
    """IG attributions shaped like ``x``; the ``steps + 1`` path points of the batch run as one forward.

    ``baseline`` is ``None`` (zeros), a number, or a tensor broadcastable to ``x``. ``target=None``
    explains the class predicted at ``x`` (the path's end point). Memory grows as ``(steps + 1) * B``.
    BatchNorm running statistics are left untouched and the model's mode is not changed.
    """
    where = "integrated_gradients"
    steps = as_int(steps, "integrated_gradients: steps", 1)
    alphas, weights = trapezoid_weights(steps, x.dtype if x.is_floating_point() else torch.float32, x.device)
    xg = grad_input(x, where)
    base = _baseline(baseline, xg)
    shape = (steps + 1, *[1] * xg.ndim)
    path = base.unsqueeze(0) + alphas.view(shape) * (xg - base).unsqueeze(0)  # [S+1, B, ...]
    flat = path.reshape(-1, *xg.shape[1:])
    if not flat.requires_grad:  # pragma: no cover - xg requires grad
        flat.requires_grad_(True)
    batch = xg.shape[0]
    with preserve_buffers(model):
        logits = model(flat)
    check_logits(logits, (steps + 1) * batch, where)
    if target is None:
        target = logits.detach()[-batch:].argmax(-1)
    elif isinstance(target, int):
        target = torch.full((batch,), target, dtype=torch.long, device=logits.device)
    if not isinstance(target, Tensor) or target.shape != (batch,):
        raise ValueError(f"{where}: target must be None, an int or an integer tensor of shape [{batch}]")
    grads = grad_of(class_scores(logits, target.repeat(steps + 1), score, where), flat, create_graph, where)
    avg = (grads.view(path.shape) * weights.view(shape)).sum(0)
    return (xg - base) * avg
