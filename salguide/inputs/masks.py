"""Annotation masks: shape checks and conversion to per-feature or per-pixel form."""

from __future__ import annotations

from torch import Tensor


def check_annotation(mask: Tensor, where: str) -> None:
    """An annotation mask: a tensor whose float values lie in [0, 1] (TypeError / ValueError naming ``where``)."""
    if not isinstance(mask, Tensor):
        raise TypeError(f"{where}: the annotation mask must be a torch.Tensor, got {type(mask).__name__}")
    if mask.is_floating_point() and mask.numel() and not bool(((mask >= 0) & (mask <= 1)).all()):
        raise ValueError(f"{where}: annotation mask values must lie in [0, 1] (NaN is not a mask value)")


def feature_mask(mask: Tensor, x: Tensor, where: str = "mask") -> Tensor:
    """``mask`` expanded to ``x``'s shape. Images [B, C, H, W] accept [B, C, H, W], [B, 1, H, W] or
    [B, H, W]; other inputs need the exact shape. Raises ``ValueError`` on any other shape."""
    check_annotation(mask, where)
    ok = mask.shape == x.shape
    if not ok and x.ndim == 4:
        b, _, h, w = x.shape
        if mask.shape == (b, h, w):
            mask, ok = mask[:, None], True
        elif mask.shape == (b, 1, h, w):
            ok = True
    if not ok:
        accepted = f"{tuple(x.shape)}" + (
            f", {(x.shape[0], 1, *x.shape[2:])} or {(x.shape[0], *x.shape[2:])}" if x.ndim == 4 else ""
        )
        raise ValueError(
            f"{where}: annotation mask of shape {tuple(mask.shape)} does not match the input of shape "
            f"{tuple(x.shape)}; expected {accepted}"
        )
    return mask.to(dtype=x.dtype, device=x.device).expand_as(x)


def pixel_mask(mask: Tensor, batch: int, size: tuple[int, ...], where: str = "mask") -> Tensor:
    """``mask`` as [B, H, W] for pixel-level maps: accepts [B, H, W], [B, 1, H, W], or [B, C, H, W] (any
    channel set counts)."""
    check_annotation(mask, where)
    if mask.ndim == 4 and mask.shape[0] == batch and tuple(mask.shape[2:]) == tuple(size):
        mask = mask.amax(1)
    if tuple(mask.shape) != (batch, *size):
        raise ValueError(
            f"{where}: mask of shape {tuple(mask.shape)} does not match the saliency maps; expected "
            f"[{batch}, {', '.join(map(str, size))}] (or with a channel dim)"
        )
    return mask.float() if not mask.is_floating_point() else mask


def to_pixel_map(attr: Tensor) -> Tensor:
    """Pixel-level saliency [B, H, W] from attributions [B, C, H, W] (sum of |.| over channels) or a map."""
    if attr.ndim == 4:
        return attr.abs().sum(1)
    if attr.ndim == 3:
        return attr.abs()
    raise ValueError(f"expected attributions [B, C, H, W] or a map [B, H, W], got shape {tuple(attr.shape)}")


def invert(mask: Tensor) -> Tensor:
    """Relevant <-> irrelevant region."""
    check_annotation(mask, "invert")
    return 1 - mask if mask.is_floating_point() else ~mask.bool()


__all__ = ["feature_mask", "invert", "pixel_mask", "to_pixel_map"]
