"""Top-k selection of weight scores: SalUn's global rule and ANT's per-layer rule.

``topk_mask`` does not sort large score sets. Every float32 score is mapped to an int32 key whose
signed order is the order of the floats; a two-pass radix select (a 65,536-bucket histogram of the
high 16 bits, then of the low 16 bits inside the one bucket that holds the k-th key) finds the exact
threshold key, and a last pass writes the masks. Keys are recomputed per pass for groups of
consecutive tensors of at most max(largest tensor, 2^21) entries, so the extra memory is a few copies
of the largest tensor, never a concatenation of all P scores or an int64 index of them.
Below 65,536 entries (small layers in ``scope="layer"``) one stable sort of the keys is faster.

Fan et al., "SalUn: Empowering Machine Unlearning via Gradient-based Weight Saliency", ICLR 2024
(global top-k); ANT ("Set You Straight", 2025) selects per layer.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from numbers import Real

import torch
from torch import Tensor

_BUCKETS = 1 << 16
SORT_BELOW = 1 << 16  # fewer entries than this: one stable sort of their keys beats two histograms
CHUNK = 1 << 21  # entries whose keys are computed together (at least the largest tensor)
_SCOPES = ("global", "layer")


def check_ratio(ratio: float) -> float:
    """Return ``ratio`` as a float, or raise ValueError unless it is a real number in (0, 1]."""
    if isinstance(ratio, bool) or not isinstance(ratio, Real):
        raise ValueError(f"ratio must be a number in (0, 1], got {ratio!r}")
    value = float(ratio)
    if not 0.0 < value <= 1.0:  # also rejects NaN
        raise ValueError(f"ratio must be in (0, 1], got {ratio!r}")
    return value


def all_finite(t: Tensor) -> bool:
    """True when no entry is NaN or inf: one reduction, the elementwise test only if the sum overflowed."""
    return bool(torch.isfinite(t.sum())) or bool(torch.isfinite(t).all())


def check_scope(scope: str) -> str:
    if scope not in _SCOPES:
        raise ValueError(f"scope must be one of {_SCOPES}, got {scope!r}")
    return scope


def check_scores(scores: Mapping[str, Tensor]) -> None:
    """Raise ValueError for an empty score dict, a non-float tensor, or a non-finite score (naming it)."""
    if not isinstance(scores, Mapping) or not scores:
        raise ValueError("scores must be a non-empty mapping of parameter name -> tensor")
    for name, t in scores.items():
        if not isinstance(t, Tensor) or not t.is_floating_point():
            kind = t.dtype if isinstance(t, Tensor) else type(t).__name__
            raise ValueError(f"score {name!r} must be a floating-point tensor, got {kind}")
        if not all_finite(t):
            raise ValueError(f"score {name!r} contains NaN or inf")


def keep_count(ratio: float, n: int) -> int:
    """Number of entries kept out of ``n``: ``max(1, int(ratio * n))``, at most n.

    SalUn's ``generate_mask.py`` keeps ``int(len(all_elements) * ratio)`` weights (floor of the float
    product, so 0.57 * 100 keeps 56); salguide does the same and keeps at least one entry.
    """
    return min(n, max(1, int(ratio * n)))


def order_keys(tensors: Sequence[Tensor], largest: bool = True) -> Tensor:
    """Flat int32 keys of the concatenated tensors (read as float32) whose signed order is the float order.

    Negative floats have their 31 low bits flipped, so larger floats give larger keys; -0.0 is folded
    into +0.0 so equal values get equal keys. With ``largest=False`` the keys are bit-inverted, which
    reverses the order, so "the k largest keys" always means "the k entries to keep".
    """
    flat = [t.detach().reshape(-1).to(torch.float32) for t in tensors]
    x = torch.cat(flat) if len(flat) > 1 else flat[0].clone()
    keys = x.add_(0.0).view(torch.int32)  # -0.0 + 0.0 == +0.0
    flip = keys >> 31  # all ones for negative floats
    keys ^= flip.bitwise_and_(0x7FFFFFFF)
    return keys if largest else keys.bitwise_not_()


def _chunks(tensors: Sequence[Tensor]) -> list[list[Tensor]]:
    """Consecutive groups of tensors holding at most max(largest tensor, CHUNK) entries each.

    Keys are computed per group, so memory stays O(largest tensor) while the many small layers of a
    network share one kernel launch per operation instead of one each.
    """
    limit = max(CHUNK, max(t.numel() for t in tensors))
    groups: list[list[Tensor]] = [[]]
    size = 0
    for t in tensors:
        if groups[-1] and size + t.numel() > limit:
            groups.append([])
            size = 0
        groups[-1].append(t)
        size += t.numel()
    return groups


def _bucket_of_kth(hist: Tensor, k: int) -> tuple[int, int]:
    """Bucket holding the k-th largest entry of a histogram and the count in buckets above it."""
    from_top = hist.flip(0).cumsum(0)
    i = int(torch.searchsorted(from_top, k))
    bucket = _BUCKETS - 1 - i
    return bucket, int(from_top[i]) - int(hist[bucket])


def _threshold_key(groups: Sequence[Sequence[Tensor]], k: int, largest: bool) -> tuple[int, int]:
    """Exact k-th largest key over all groups and the number of keys strictly above it."""
    half = _BUCKETS >> 1
    hist = torch.zeros(_BUCKETS, dtype=torch.int64, device=groups[0][0].device)
    for group in groups:
        hist += torch.bincount((order_keys(group, largest) >> 16).add_(half), minlength=_BUCKETS)
    high, above = _bucket_of_kth(hist, k)

    hist.zero_()
    for group in groups:
        keys = order_keys(group, largest)
        hist += torch.bincount(keys[(keys >> 16) == high - half] & 0xFFFF, minlength=_BUCKETS)
    low, above_low = _bucket_of_kth(hist, k - above)
    return ((high - half) << 16) | low, above + above_low


def _split(keep: Tensor, group: Sequence[Tensor]) -> list[Tensor]:
    """Per-tensor masks of a group, each with its own storage (so they can be saved independently)."""
    if len(group) == 1:
        return [keep.view(group[0].shape)]
    return [m.view(t.shape).clone() for m, t in zip(keep.split([t.numel() for t in group]), group)]


def _select(tensors: Sequence[Tensor], k: int, largest: bool) -> list[Tensor]:
    """Masks keeping the k largest entries; ties at the threshold go to the earliest (tensor, index)."""
    if sum(t.numel() for t in tensors) < SORT_BELOW:  # small: one stable sort of all keys
        keys = order_keys(tensors, largest)
        keep = torch.zeros(keys.numel(), dtype=torch.bool, device=keys.device)
        keep[torch.sort(keys, descending=True, stable=True).indices[:k]] = True
        return _split(keep, tensors)
    groups = _chunks(tensors)
    threshold, above = _threshold_key(groups, k, largest)
    ties_left = k - above
    masks = []
    for group in groups:
        keys = order_keys(group, largest)
        keep = keys > threshold
        if ties_left > 0:
            equal = keys == threshold
            n_equal = int(equal.sum())
            if n_equal <= ties_left:
                keep |= equal
            else:
                keep[equal.nonzero().squeeze(1)[:ties_left]] = True
            ties_left -= min(n_equal, ties_left)
        masks += _split(keep, group)
    return masks


def topk_mask(
    scores: Mapping[str, Tensor], ratio: float, *, scope: str = "global", largest: bool = True
) -> dict[str, Tensor]:
    """Boolean masks keeping the ``ratio`` share of entries with the largest (or smallest) scores.

    ``scope="global"`` keeps exactly ``k = max(1, int(ratio * n))`` of all n entries (SalUn's
    ``int(len * ratio)``, see :func:`keep_count`); ``scope="layer"`` applies that rule to every tensor on
    its own (ANT; an empty tensor keeps none). Among scores equal to the threshold, the ones earliest in
    (dict order, flattened index) are kept (a stable order; SalUn's ``torch.argsort`` leaves ties unspecified).
    Scores are compared as float32. Masks are on the scores' devices, keys and shapes as in ``scores``.
    """
    ratio = check_ratio(ratio)
    check_scope(scope)
    check_scores(scores)
    names = list(scores)
    tensors = [scores[n] for n in names]
    if scope == "layer":
        masks = [_select_or_empty([t], keep_count(ratio, t.numel()), largest)[0] for t in tensors]
    else:
        masks = _select_or_empty(tensors, keep_count(ratio, sum(t.numel() for t in tensors)), largest)
    warn_if_arbitrary(scores, ratio, scope)
    return dict(zip(names, masks))


def warn_if_arbitrary(scores: Mapping[str, Tensor], ratio: float, scope: str) -> None:
    """Warn when a selection is decided by tie-breaking alone: every score in its scope is equal (all zero,
    e.g. when the loss ignored every label), so the mask keeps the first entries in parameter order."""
    groups = (
        [[n] for n, t in scores.items() if t.numel()]
        if scope == "layer"
        else [[n for n in scores if scores[n].numel()]]
    )
    tied = []
    for names in filter(None, groups):
        n = sum(scores[k].numel() for k in names)
        lo, hi = min(float(scores[k].amin()) for k in names), max(float(scores[k].amax()) for k in names)
        if lo == hi and n > keep_count(ratio, n):
            tied += names
    if tied:
        where = (
            "all scores" if scope == "global" else "the scores of " + ", ".join(tied[:5]) + (" ..." * (len(tied) > 5))
        )
        warnings.warn(
            f"{where} are equal ({float(scores[tied[0]].reshape(-1)[0]):g}): the saliency carries no information, so "
            "the mask is arbitrary (the first entries in parameter order win the tie). Did the loss ignore every label?",
            UserWarning,
            stacklevel=3,
        )


def _select_or_empty(tensors: Sequence[Tensor], k: int, largest: bool) -> list[Tensor]:
    if k == 0:  # only when every tensor is empty
        return [torch.zeros(t.shape, dtype=torch.bool, device=t.device) for t in tensors]
    if len({t.device for t in tensors}) > 1:
        raise ValueError("global selection needs all scores on one device")
    return _select(tensors, k, largest)


__all__ = ["topk_mask", "check_ratio", "check_scope", "check_scores", "all_finite", "keep_count", "order_keys"]
