"""What salguide's callbacks read from a user's LightningDataModule and its batches, as typed Protocols.

Each callback needs only a few attributes; any datamodule that has them works (it need not subclass a
salguide class). ``require`` checks one Protocol at run time and raises an error that names the missing
attribute, the callback that needs it and how to do without it. ``docs/data.md`` lists who reads what.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal, Protocol, TypeAlias, TypeVar, runtime_checkable

from torch import Tensor
from torch.utils.data import Dataset

MaskSemantics = Literal["irrelevant", "relevant"]
MASK_SEMANTICS: tuple[str, ...] = ("irrelevant", "relevant")

#: ``[x, y]``: the list PyTorch's default collate makes of ``(x, y)`` samples (``RandomLabelCallback``
#: appends forget samples to both; ``AttentionMaskingCallback`` appends the patch mask).
ClassBatch: TypeAlias = list[Tensor]
#: ``(x, y, mask)`` by position, or a mapping with the keys given to the callback (input and attention losses).
AnnotatedBatch: TypeAlias = Sequence[Tensor] | Mapping[str, Tensor]


@runtime_checkable
class ForgetLoaderData(Protocol):
    """Forget data as a loader of ``(x, y, ...)`` batches: ``WeightSaliencyCallback(mask=None)`` scores
    saliency on it, ``DiffusionUnlearningCallback`` takes its forget term from it (unless the callback was
    given ``forget_dataloader=``)."""

    def forget_dataloader(self) -> Iterable[Any]: ...


@runtime_checkable
class ForgetSetData(Protocol):
    """Forget samples one by one, and the class count: ``RandomLabelCallback`` gives every forget sample
    ``(x, y, ...)`` a fixed random label in ``[0, num_classes)`` (unless given ``forget_dataset=`` and
    ``num_classes=``). ``forget_dataset`` may be ``None`` when the datamodule holds no forget split."""

    forget_dataset: Dataset | None
    num_classes: int


@runtime_checkable
class AnnotatedData(Protocol):
    """Optional for ``InputSaliencyCallback``, ``AttentionLossCallback`` and ``ExplanationMetricsCallback``:
    what the batch mask marks. Without it (and without the callback's ``mask_semantics=``) the mask is taken
    to mark what the loss needs (input losses) or the relevant region (explanation metrics)."""

    mask_semantics: MaskSemantics


@runtime_checkable
class SplitData(Protocol):
    """``DataSamplesCallback``: ``train_dataset`` of ``(x, y[, mask])`` samples; also counted, when present:
    ``val_dataset``, ``forget_dataset``, ``retain_dataset``, ``test_dataset``, ``full_test_dataset``; and
    ``class_names`` (a sequence of str) for the labels of the table and figure."""

    train_dataset: Dataset


P = TypeVar("P")
_MISSING = object()


def _protocol_classes(protocol: Any) -> list[type]:
    return [c for c in reversed(protocol.__mro__) if getattr(c, "_is_protocol", False) and c is not Protocol]


def protocol_methods(protocol: Any) -> tuple[str, ...]:
    """The public method names a Protocol declares (its own and its Protocol bases')."""
    return tuple(dict.fromkeys(k for c in _protocol_classes(protocol) for k, v in vars(c).items()
                               if callable(v) and not k.startswith("_")))  # fmt: skip


def protocol_members(protocol: Any) -> tuple[str, ...]:
    """The attribute and method names a Protocol declares (its own and its Protocol bases')."""
    attrs = (a for c in _protocol_classes(protocol) for a in vars(c).get("__annotations__", {}))
    return tuple(dict.fromkeys([*attrs, *protocol_methods(protocol)]))


def has_member(obj: Any, name: str, method: bool = False) -> bool:
    """Whether ``obj`` has ``name`` (callable, for a method), without running a property (some raise before
    ``setup()``)."""
    own = getattr(obj, "__dict__", {})
    found = own[name] if name in own else getattr(type(obj), name, _MISSING)
    return found is not _MISSING and (not method or callable(found))


def require(datamodule: Any, protocol: Callable[..., P], *, by: str, need: str = "", instead: str = "") -> P:
    """Return ``datamodule`` typed as ``protocol`` (a Protocol class of this module), or raise a ValueError
    naming each missing member.

    ``by`` names the callback (and case) that needs it, ``need`` what for (e.g. "forget data"), and
    ``instead`` how to do without the datamodule (e.g. "pass forget_dataloader=...").
    """
    head = f"{by} needs {need}: " if need else f"{by} needs "
    hint = f"; or {instead}" if instead else ""
    name = f"salguide.data.protocols.{getattr(protocol, '__name__', protocol)}"
    if datamodule is None:
        raise ValueError(f"{head}a datamodule implementing {name}, got none{hint}")
    methods = protocol_methods(protocol)
    missing = [m for m in protocol_members(protocol) if not has_member(datamodule, m, m in methods)]
    if missing:
        what = ", ".join(f"{m}()" if m in methods else repr(m) for m in missing)
        raise ValueError(f"{head}{what} on the datamodule, which {type(datamodule).__name__} lacks "
                         f"({name}; docs/data.md){hint}")  # fmt: skip
    return datamodule  # type: ignore[return-value]


def mask_semantics_of(datamodule: Any, *, by: str) -> MaskSemantics | None:
    """The datamodule's ``mask_semantics`` (``AnnotatedData``), checked; ``None`` when it declares none."""
    value = getattr(datamodule, "mask_semantics", None) if datamodule is not None else None
    if value is not None and value not in MASK_SEMANTICS:
        raise ValueError(
            f"{by}: {type(datamodule).__name__}.mask_semantics must be one of {MASK_SEMANTICS}, got {value!r}"
        )
    return value


__all__ = [
    "MASK_SEMANTICS",
    "AnnotatedBatch",
    "AnnotatedData",
    "ClassBatch",
    "ForgetLoaderData",
    "ForgetSetData",
    "MaskSemantics",
    "SplitData",
    "mask_semantics_of",
    "protocol_members",
    "protocol_methods",
    "require",
]
