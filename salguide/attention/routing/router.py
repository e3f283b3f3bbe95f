"""Per-model routing state shared by every routed attention layer, and how a model gets and loses it.

A :class:`Router` is attached (as a plain attribute, never a submodule) to each routed attention module
and block. It resolves layer indices, holds the active :class:`~salguide.attention.recorder.AttentionRecorder`
and token policy (EViT / DynamicViT masking / ToMe), and the per-forward token state. ``attach_router`` /
``unroute`` install and remove it (the adapters in this package call them), ``router_of`` / ``find_routed``
look it up.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from salguide._checks import as_int, as_ints


@dataclass
class TokenState:
    """What a forward carries between blocks besides the tokens.

    key_mask: bool [B, N] or None (DynamicViT-style masking: every token attends to the unmasked tokens
        and to itself).
    size: float [B, N] or None (ToMe token sizes; attention adds log size to the keys' scores).
    positions: long [B, N] or None: original token index of each current token (0 = CLS, p + 1 = patch p,
        -1 = an EViT fused token; a ToMe-merged token keeps the index of the token it was merged into);
        None while no token was dropped or moved.
    cls_attn: float [B, H, N] CLS-row attention of the latest routed layer that computed it.
    keys: float [B, H, N, D] keys of the latest routed layer whose policy asked for them (ToMe's metric).
    """

    key_mask: Tensor | None = None
    size: Tensor | None = None
    positions: Tensor | None = None
    cls_attn: Tensor | None = None
    keys: Tensor | None = None


class Router:
    """Shared by the routed layers of one model; ``backend`` and ``validate`` are passed to
    :func:`salguide.kernels.attention`."""

    def __init__(self, num_layers: int, backend: str | None = None, validate: bool | None = None) -> None:
        if num_layers < 1:
            raise ValueError(f"a routed model needs at least one attention layer, got {num_layers}")
        self.num_layers = num_layers
        self.backend = backend
        self.validate = validate  # the kernel's data checks (None: on for CPU, off for CUDA; one sync per layer)
        self.recorder: Any = None
        self.policy: Any = None
        self.state = TokenState()
        self.supports_tokens = True  # False for adapters that cannot change the token set (Hugging Face)
        self.input_size: tuple[int, int] | None = None  # (H, W) of the latest forward's image input
        self.hook: Any = None  # the model's forward pre-hook (attach_router)
        self.undo: Callable[[], None] | None = None  # restores the model's original forwards (set by route())

    def layer(self, index: int) -> int:
        """``index`` as a non-negative layer number (negative counts from the end); error when out of range."""
        try:
            index = as_int(index, "a layer index")  # any integral type (np.int64, ...)
        except ValueError as err:
            raise TypeError(str(err)) from None
        if not -self.num_layers <= index < self.num_layers:
            raise IndexError(
                f"block index {index} is out of range for a model with {self.num_layers} attention layers "
                f"(valid: {-self.num_layers} .. {self.num_layers - 1})"
            )
        return index % self.num_layers

    def layers(self, indices: Iterable[int] | int) -> tuple[int, ...]:
        try:
            indices = as_ints(indices, "layer indices")
        except ValueError as err:
            raise TypeError(str(err)) from None
        out = tuple(sorted({self.layer(i) for i in indices}))
        if not out:
            raise ValueError("choose at least one layer")
        return out

    def begin(self, input_size: tuple[int, int] | None = None) -> None:
        """Reset the per-forward token state (called before every forward of the routed model, with the
        spatial size of its image input)."""
        self.state = TokenState()
        self.input_size = input_size

    def wants_cls(self, index: int) -> bool:
        return bool(
            (self.recorder is not None and self.recorder.wants(index, "cls"))
            or (self.policy is not None and self.policy.wants_cls(index))
        )


def router_of(model: Any) -> Router:
    """The :class:`Router` of a routed model (see :func:`salguide.attention.route`)."""
    router = getattr(model, "salguide_router", None)
    if not isinstance(router, Router):
        raise ValueError(
            f"{type(model).__name__} is not routed through salguide.kernels; build salguide.models.VisionTransformer "
            "or call salguide.attention.route(model) first"
        )
    return router


def find_routed(model: nn.Module) -> nn.Module:
    """``model`` or its first submodule routed through salguide.kernels (e.g. inside a LightningModule)."""
    for m in model.modules():
        if getattr(m, "salguide_router", None) is not None:
            return m
    router_of(model)  # raises the explanatory error
    raise AssertionError  # pragma: no cover


def attach_router(model: Any, router: Router, blocks: Any = None) -> Router:
    """Attach ``router`` to ``model`` and to each timm-layout block / attention module (index = position)."""
    blocks = model.blocks if blocks is None else blocks
    for i, block in enumerate(blocks):
        block.attn.salguide_router, block.attn.salguide_index = router, i
    model.salguide_router = router
    router.hook = model.register_forward_pre_hook(begin_forward, with_kwargs=True)
    return router


def begin_forward(model: Any, args: Any, kwargs: dict[str, Any]) -> None:
    """Forward pre-hook of a routed model: reset its router's per-forward state and note the spatial size
    of the image input (the first positional argument or ``pixel_values``), from which ``token_grid``
    takes the patch grid (a module-level function, so that the model still pickles, e.g. for ``ddp_spawn``)."""
    x = args[0] if args else kwargs.get("pixel_values")
    model.salguide_router.begin(tuple(x.shape[-2:]) if isinstance(x, Tensor) and x.dim() == 4 else None)


def unroute(model: nn.Module) -> nn.Module:
    """Undo :func:`salguide.attention.route` (restores the original forwards / attention implementation)."""
    router = getattr(model, "salguide_router", None)
    if not isinstance(router, Router) or router.undo is None:
        raise ValueError(f"{type(model).__name__} was not routed by salguide.attention.route")
    router.undo()
    router.hook.remove()
    del model.salguide_router
    return model
