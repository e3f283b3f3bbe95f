"""SmoothGrad: the gradient averaged over Gaussian-noised copies of the input, differentiable.

Smilkov et al., "SmoothGrad: removing noise by adding noise", ICML-W 2017. The noise std is
``noise_level * (max(x_i) - min(x_i))`` per sample (the paper's "noise level" of 10-20 %).
"""

from __future__ import annotations

import torch
from torch import Tensor

from salguide._checks import as_int

from ._common import Model, Target, check_logits, class_scores, grad_input, grad_of, preserve_buffers


def smoothgrad(
    model: Model,
    x: Tensor,
    target: Target = None,
    *,
    n_samples: int = 16,
    noise_level: float = 0.15,
    squared: bool = False,
    score: str = "logit",
    create_graph: bool = True,
    generator: torch.Generator | None = None,
    noise: Tensor | None = None,
) -> Tensor:
    """Mean over ``n_samples`` noisy copies of the (squared, if ``squared``) input gradient.

    All copies go through the model in one batch of ``n_samples * B``. ``target=None`` explains the class
    with the largest mean logit over the noisy copies. ``noise`` ([n_samples, *x.shape]) replaces the random draw (tests,
    common random numbers). BatchNorm running statistics are left as they were (see
    ``preserve_buffers``); the model's mode is not changed.
    """
    where = "smoothgrad"
    n_samples = as_int(n_samples, f"{where}: n_samples", 1)
    if noise_level < 0:
        raise ValueError(f"{where}: noise_level must be >= 0, got {noise_level}")
    xg = grad_input(x, where)
    n, batch = n_samples, xg.shape[0]
    if noise is None:
        span = (xg.detach().flatten(1).amax(1) - xg.detach().flatten(1).amin(1)).view(1, batch, *[1] * (xg.ndim - 1))
        gen_device = generator.device if generator is not None else xg.device
        draw = torch.randn((n, *xg.shape), generator=generator, dtype=xg.dtype, device=gen_device)
        noise = draw.to(xg.device) * (noise_level * span)
    elif noise.shape != (n, *xg.shape):
        raise ValueError(f"{where}: noise must have shape {(n, *xg.shape)}, got {tuple(noise.shape)}")
    noisy = (xg.unsqueeze(0) + noise.to(xg)).reshape(n * batch, *xg.shape[1:])
    if not noisy.requires_grad:  # pragma: no cover - xg always requires grad
        noisy.requires_grad_(True)
    with preserve_buffers(model):
        logits = model(noisy)
    check_logits(logits, n * batch, where)
    if target is None:  # the class with the largest mean logit over the noisy copies
        target = logits.detach().view(n, batch, -1).mean(0).argmax(-1)
    elif isinstance(target, int):
        target = torch.full((batch,), target, dtype=torch.long, device=logits.device)
    if not isinstance(target, Tensor) or target.shape != (batch,):
        raise ValueError(f"{where}: target must be None, an int or an integer tensor of shape [{batch}]")
    grads = grad_of(class_scores(logits, target.repeat(n), score, where), noisy, create_graph, where)
    grads = grads.view(n, *xg.shape)
    return (grads.square() if squared else grads).mean(0)
