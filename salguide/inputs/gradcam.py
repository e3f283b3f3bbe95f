"""Grad-CAM for a named layer (conv feature maps or ViT tokens), batched and differentiable.

Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via Gradient-based Localization",
ICCV 2017: weights a_k = mean_{ij} d score / d A_k(i, j), map = ReLU(sum_k a_k A_k). Token outputs
[B, N, D] of a ViT block are reshaped to a [B, D, h, w] grid after dropping prefix (class) tokens, as
is usual for Grad-CAM on ViTs.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch.nn.functional as F
from torch import Tensor, nn

from ._common import Target, check_logits, class_scores, grad_input, grad_of, preserve_buffers


def layer_names(model: nn.Module) -> list[str]:
    """Names accepted as ``layer`` (``model.named_modules()`` without the root)."""
    return [name for name, _ in model.named_modules() if name]


def find_layer(model: nn.Module, layer: str) -> nn.Module:
    """The submodule called ``layer``; a ``ValueError`` listing the valid names when there is none."""
    modules = dict(model.named_modules())
    if not layer or layer not in modules:
        raise ValueError(f"grad_cam: model has no layer {layer!r}; valid layer names: {layer_names(model)}")
    return modules[layer]


@contextmanager
def capture_output(module: nn.Module, layer: str) -> Iterator[list[tuple[Tensor, int]]]:
    """Collect ``(output, version counter at capture)`` of ``module`` during the ``with`` block (graph kept)."""
    seen: list[tuple[Tensor, int]] = []

    def hook(_: nn.Module, __: object, out: object) -> None:
        if isinstance(out, (tuple, list)) and out and isinstance(out[0], Tensor):
            out = out[0]
        if not isinstance(out, Tensor):
            raise TypeError(f"grad_cam: layer {layer!r} returns {type(out).__name__}, not a tensor")
        seen.append((out, out._version))

    handle = module.register_forward_hook(hook)
    try:
        yield seen
    finally:
        handle.remove()


def tokens_to_grid(acts: Tensor, num_prefix_tokens: int | None = None) -> Tensor:
    """[B, N, D] tokens -> [B, D, h, w], dropping ``num_prefix_tokens`` leading tokens (auto: 0 if N is a
    square, 1 if N - 1 is)."""
    if acts.dim() != 3:
        raise ValueError(f"grad_cam: token activations must be [B, N, D], got {tuple(acts.shape)}")
    n = acts.shape[1]
    if num_prefix_tokens is not None and not 0 <= num_prefix_tokens < n:
        raise ValueError(f"grad_cam: num_prefix_tokens must lie in [0, {n}) for {n} tokens, got {num_prefix_tokens}")
    if num_prefix_tokens is None:
        if math.isqrt(n) ** 2 == n:
            num_prefix_tokens = 0
        elif math.isqrt(n - 1) ** 2 == n - 1:
            num_prefix_tokens = 1
        else:
            raise ValueError(f"grad_cam: cannot infer the token grid from {n} tokens; pass num_prefix_tokens")
    side = math.isqrt(n - num_prefix_tokens)
    if side * side != n - num_prefix_tokens:
        raise ValueError(f"grad_cam: {n} tokens minus {num_prefix_tokens} prefix tokens do not form a square grid")
    return acts[:, num_prefix_tokens:].transpose(1, 2).reshape(acts.shape[0], acts.shape[2], side, side)


def grad_cam(
    model: nn.Module,
    x: Tensor,
    target: Target = None,
    *,
    layer: str,
    score: str = "logit",
    relu: bool = True,
    upsample: bool = True,
    num_prefix_tokens: int | None = None,
    create_graph: bool = True,
) -> Tensor:
    """Grad-CAM map of ``layer`` for the target class: [B, H, W] (input size) or [B, h, w] if not ``upsample``.

    ``layer`` is a name from ``layer_names(model)``; its output must be a conv map [B, C, h, w] or tokens
    [B, N, D], used once per forward and not modified in place afterwards. ``target=None`` explains the
    predicted class. BatchNorm statistics are not moved and the model's mode is not changed.
    """
    where = "grad_cam"
    module = find_layer(model, layer)
    xg = grad_input(x, where)
    with capture_output(module, layer) as seen, preserve_buffers(model):
        logits = model(xg)
    check_logits(logits, xg.shape[0], where)
    if len(seen) != 1:
        raise RuntimeError(f"{where}: layer {layer!r} ran {len(seen)} times in one forward; pick a layer used once")
    acts, version = seen[0]
    if acts._version != version:
        raise RuntimeError(
            f"{where}: the output of layer {layer!r} was modified in place later in the forward (e.g. by "
            "ReLU(inplace=True)); pick the enclosing block instead"
        )
    if acts.ndim not in (3, 4) or acts.shape[0] != xg.shape[0]:
        raise ValueError(f"{where}: layer {layer!r} output must be [B, C, h, w] or [B, N, D], got {tuple(acts.shape)}")
    grads = grad_of(class_scores(logits, target, score, where), acts, create_graph, where)
    if acts.ndim == 3:
        acts, grads = tokens_to_grid(acts, num_prefix_tokens), tokens_to_grid(grads, num_prefix_tokens)
    cam = (grads.mean(dim=(2, 3), keepdim=True) * acts).sum(1)
    if relu:
        cam = F.relu(cam)
    if upsample and xg.ndim == 4 and cam.shape[-2:] != xg.shape[-2:]:
        cam = F.interpolate(cam[:, None], size=xg.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    return cam
