"""Shared plumbing of the input-saliency core: autograd checks, target scores, buffer preservation.

Every saliency function here keeps the autograd graph (``create_graph=True`` by default) so that its map
can enter a loss, never calls ``model.train()``/``model.eval()`` and never writes ``.grad`` of parameters
(gradients are taken with ``torch.autograd.grad`` with respect to the input only).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from salguide.auxiliary import check_logits_shape

Model = Callable[[Tensor], Tensor]
Score = Literal["logit", "log_prob", "prob"]
Target = Tensor | int | None
SCORES: tuple[str, ...] = ("logit", "log_prob", "prob")


def check_grad_mode(where: str) -> None:
    """Raise a ``RuntimeError`` when autograd is off (``no_grad``/``inference_mode``): saliency needs it."""
    if torch.is_inference_mode_enabled():
        raise RuntimeError(
            f"{where}: called under torch.inference_mode(), where no gradient can be taken (Lightning runs "
            "validation and test in inference mode). Wrap the call in "
            "`with torch.inference_mode(False), torch.enable_grad():` and pass x.clone()."
        )
    if not torch.is_grad_enabled():
        raise RuntimeError(f"{where}: called under torch.no_grad(); wrap the call in `with torch.enable_grad():`.")


def grad_input(x: Tensor, where: str) -> Tensor:
    """``x`` itself when it already requires grad (its graph is kept), else a detached copy that does."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{where}: x must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{where}: x must be a floating-point tensor to take gradients, got dtype {x.dtype}")
    if x.ndim < 2:
        raise ValueError(f"{where}: x must be a batch [B, ...] with at least 2 dims, got shape {tuple(x.shape)}")
    if x.is_inference():
        raise RuntimeError(
            f"{where}: x is an inference tensor (made under torch.inference_mode); use x.clone() outside it"
        )
    check_grad_mode(where)
    return x if x.requires_grad else x.detach().requires_grad_(True)


def check_logits(logits: Tensor, batch: int, where: str) -> None:
    check_logits_shape(logits, batch, where)
    if not logits.requires_grad:
        raise RuntimeError(
            f"{where}: the model output does not require grad, so no saliency can be taken. The model "
            "detaches its input or runs under no_grad/inference_mode internally, or its parameters were "
            "made in inference mode."
        )


def target_index(logits: Tensor, target: Target, where: str) -> Tensor:
    """Class index per sample: ``target`` (int or [B] tensor) or the predicted class when ``None``."""
    batch, classes = logits.shape
    if target is None:
        return logits.detach().argmax(-1)
    if isinstance(target, int):
        target = torch.full((batch,), target, dtype=torch.long, device=logits.device)
    if not isinstance(target, Tensor) or target.shape != (batch,) or target.is_floating_point():
        raise ValueError(f"{where}: target must be None, an int or an integer tensor of shape [{batch}]")
    target = target.to(device=logits.device, dtype=torch.long)
    if target.numel() and (int(target.min()) < 0 or int(target.max()) >= classes):
        raise ValueError(f"{where}: target classes must lie in [0, {classes}), got {target.tolist()}")
    return target


def class_scores(logits: Tensor, target: Target, score: str, where: str) -> Tensor:
    """Per-sample score of the target class: its logit, log-probability or probability ([B])."""
    if score not in SCORES:
        raise ValueError(f"{where}: unknown score {score!r}; choose one of {SCORES}")
    idx = target_index(logits, target, where)
    if score == "log_prob":
        logits = F.log_softmax(logits, dim=-1)
    elif score == "prob":
        logits = F.softmax(logits, dim=-1)
    return logits.gather(1, idx[:, None]).squeeze(1)


def grad_of(output: Tensor, inputs: Tensor, create_graph: bool, where: str) -> Tensor:
    """d sum(output) / d inputs, graph kept (``retain_graph``) so the caller's forward can still backprop."""
    if not output.requires_grad:
        raise RuntimeError(f"{where}: the model output does not depend on the input through autograd")
    (g,) = torch.autograd.grad(output.sum(), inputs, create_graph=create_graph, retain_graph=True, allow_unused=True)
    if g is None:
        raise RuntimeError(
            f"{where}: the model output does not depend on the input through autograd (does the model "
            "detach its input, or use it via .data/.numpy()?)"
        )
    return g


@contextmanager
def preserve_buffers(model: object) -> Iterator[None]:
    """Let the forwards inside the block work on copies of every buffer, then put the originals back.

    Extra forwards of SmoothGrad / Integrated Gradients / Grad-CAM run noisy or interpolated copies of
    the batch; in train mode they would otherwise move BatchNorm's running statistics. The copies (not
    the originals) are what autograd saves, so a later (double) backward stays valid. The module's
    mode is never changed.
    """
    if not isinstance(model, nn.Module):
        yield
        return
    saved = []
    for module in model.modules():
        for name, buf in list(module._buffers.items()):
            if buf is not None:
                saved.append((module, name, buf))
                module._buffers[name] = buf.clone()
    try:
        yield
    finally:
        for module, name, buf in saved:
            module._buffers[name] = buf
