"""Vanilla gradient and gradient x input saliency, differentiable (graph kept for a loss).

Vanilla gradient: Simonyan, Vedaldi & Zisserman, "Deep Inside Convolutional Networks", ICLR-W 2014.
Gradient x input: Shrikumar et al., "Not Just a Black Box", 2016 (also Ancona et al., ICLR 2018).
"""

from __future__ import annotations

from torch import Tensor

from ._common import Model, Target, check_logits, class_scores, grad_input, grad_of


def gradient_from_logits(
    logits: Tensor, x: Tensor, target: Target = None, *, score: str = "logit", create_graph: bool = True
) -> Tensor:
    """d score(logits)[target] / d x for logits already computed from ``x`` (which must require grad).

    Use it to share one forward between the task loss and a saliency penalty: make ``x`` require grad,
    run ``logits = model(x)``, then call this. Returns a tensor shaped like ``x``.
    """
    where = "gradient_from_logits"
    check_logits(logits, x.shape[0], where)
    if not x.requires_grad:
        raise RuntimeError(f"{where}: x must require grad and be the input the logits were computed from")
    return grad_of(class_scores(logits, target, score, where), x, create_graph, where)


def input_gradient(
    model: Model, x: Tensor, target: Target = None, *, score: str = "logit", create_graph: bool = True
) -> Tensor:
    """Vanilla gradient d score_target / d x, batched; ``target=None`` explains the predicted class.

    ``score`` is ``"logit"``, ``"log_prob"`` or ``"prob"``. With ``create_graph=True`` the map is a
    differentiable function of the parameters (double backward), so it can enter a training loss.
    """
    xg = grad_input(x, "input_gradient")
    logits = model(xg)
    return gradient_from_logits(logits, xg, target, score=score, create_graph=create_graph)


def gradient_x_input(
    model: Model, x: Tensor, target: Target = None, *, score: str = "logit", create_graph: bool = True
) -> Tensor:
    """Gradient x input: ``x * d score_target / d x`` (elementwise), batched and differentiable."""
    xg = grad_input(x, "gradient_x_input")
    return xg * gradient_from_logits(model(xg), xg, target, score=score, create_graph=create_graph)
