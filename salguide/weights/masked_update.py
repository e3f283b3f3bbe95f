"""The masked-update guarantee of SalUn (Fan et al., ICLR 2024): θ_u = m ⊙ (θ₀ + Δθ) + (1 − m) ⊙ θ₀.

Masking gradients is not enough (SalUn issue #32): momentum, weight decay (AdamW decays the parameter
itself, SGD adds wd·θ into its momentum buffer) and clipping still move frozen weights. Here frozen
gradients are zeroed before each step, and after it frozen entries are written back to θ₀ bit for bit
and every optimizer state tensor shaped like its parameter is zeroed at frozen positions.

Every operation is an integer bit mask: a *word mask* has all bits set where a weight may change and
none where it is frozen, in the element width of the tensor it masks. Zeroing is
``x.view(int) &= words`` and restoring is ``p.view(int) = (p.view(int) & words) | bits((1 − m) ⊙ θ₀)``.
Both are exact for every value (NaN and inf included, unlike multiplying by 0) and branch-free, about
ten times faster on CPU than ``masked_fill_`` with a scattered mask.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import torch
from torch import Tensor
from torch.optim import Optimizer
from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook
from torch.utils.hooks import RemovableHandle

from .mask import name_shape_mismatches

NamedParameters = Iterable[tuple[str, Tensor]]
_INT = {1: torch.int8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


# ---- kernels on one tensor -------------------------------------------------------------------
def word_mask(keep: Tensor, like: Tensor) -> Tensor:
    """Integer words as wide as ``like``'s elements, on its device: all bits set where ``keep``, else 0."""
    words = torch.zeros(keep.shape, dtype=_INT[like.element_size()], device=like.device)
    return words.masked_fill_(keep.to(like.device), -1)


def _bits(t: Tensor) -> Tensor:
    return t.detach().view(_INT[t.element_size()])


def zero_frozen_(t: Tensor, words: Tensor) -> None:
    """Set ``t`` to +0.0 wherever ``words`` is 0 (exact, in place)."""
    _bits(t).bitwise_and_(words)


def write_frozen_(p: Tensor, words: Tensor, frozen_bits: Tensor) -> None:
    """``p ← m ⊙ p + (1 − m) ⊙ θ₀`` bitwise; ``frozen_bits`` holds θ₀'s bits where frozen and 0 elsewhere."""
    _bits(p).bitwise_and_(words).bitwise_or_(frozen_bits)


def _frozen_bits(p: Tensor, frozen: Tensor, values: Tensor) -> Tensor:
    """Bits of ``(1 − m) ⊙ θ₀`` from θ₀'s compact frozen ``values``."""
    return _bits(torch.zeros_like(p).masked_scatter_(frozen.to(p.device), values.to(p.device)))


def _is_param_state(value: object, p: Tensor, key: object) -> bool:
    """Per-entry optimizer state (momentum_buffer, exp_avg, ...): floating, shaped like ``p``, not a step count."""
    return isinstance(value, Tensor) and value.is_floating_point() and value.shape == p.shape and key != "step"


# ---- checks ----------------------------------------------------------------------------------
def _prefix_hint(mask_names: list[str], param_names: list[str]) -> str:
    """Suggest the prefix that makes the mask's names match (``submodule`` / ``named_parameters(prefix=)``)."""
    params = set(param_names)
    first = mask_names[0]
    for name in param_names:
        if name.endswith("." + first):
            prefix = name[: -len(first) - 1]
            if all(f"{prefix}.{n}" in params for n in mask_names):
                return (
                    f" The mask's names match the parameters under {prefix!r}: mask only that submodule "
                    f"(e.g. WeightSaliencyCallback(submodule={prefix!r}) or model.{prefix}.named_parameters())."
                )
    if "." in first:
        prefix = first.split(".", 1)[0]
        if all(n.startswith(prefix + ".") and n[len(prefix) + 1 :] in params for n in mask_names):
            return f" The mask's names carry an extra prefix {prefix + '.'!r}: it was made for a wrapper of this model."
    return ""


def pair_masks(
    named_parameters: NamedParameters, mask: Mapping[str, Tensor], strict: bool = True
) -> list[tuple[str, Tensor, Tensor]]:
    """``(name, parameter, bool mask)`` per masked parameter, or ValueError if ``mask`` does not fit.

    ``strict=True``: every parameter must be in the mask. ``strict=False``: a parameter missing from the
    mask is fully trainable. Names in the mask that are not parameters, shape mismatches and non-bool
    masks are always errors.
    """
    if not isinstance(mask, Mapping) or not mask:
        raise ValueError(
            f"mask must be a non-empty mapping of parameter name -> bool tensor, got {type(mask).__name__}"
        )
    params = dict(named_parameters)
    if not params:
        raise ValueError("there are no parameters to mask")
    for name, m in mask.items():
        if not isinstance(m, Tensor) or m.dtype != torch.bool:
            raise ValueError(f"mask {name!r} must be a torch.bool tensor, got {getattr(m, 'dtype', type(m).__name__)}")
    problems = name_shape_mismatches(
        {n: tuple(m.shape) for n, m in mask.items()}, {n: tuple(p.shape) for n, p in params.items()}, strict=strict
    )
    if problems:
        hint = _prefix_hint(list(mask), list(params))
        raise ValueError(f"the weight mask was made for another model: {problems}.{hint}")
    return [(n, params[n], mask[n]) for n in mask]


# ---- functional API --------------------------------------------------------------------------
def snapshot_frozen(named_parameters: NamedParameters, mask: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """θ₀ at frozen positions: ``{name: p[~mask[name]]}`` (1-D, row-major order, exact copies).

    Parameters missing from ``mask`` are fully trainable and get no entry.
    """
    return {n: p.detach()[~m.to(p.device)].clone() for n, p, m in pair_masks(named_parameters, mask, strict=False)}


def dense_grad(name: str, p: Tensor) -> Tensor | None:
    """``p.grad`` (None when absent), or ValueError for a sparse gradient: it has no per-entry layout to
    mask in place, and sparse optimizers keep no per-entry state this module could clear."""
    g = p.grad
    if g is not None and g.layout != torch.strided:
        raise ValueError(
            f"parameter {name!r} has a sparse gradient ({g.layout}, e.g. from nn.Embedding(sparse=True)); the "
            "masked update needs dense gradients: build that layer with sparse=False"
        )
    return g


def mask_gradients_(named_parameters: NamedParameters, mask: Mapping[str, Tensor]) -> None:
    """Zero ``.grad`` in place where ``mask`` is False (exact even for inf/NaN); skips ``None`` grads and
    refuses sparse ones (ValueError naming the parameter)."""
    for name, p, m in pair_masks(named_parameters, mask, strict=False):
        g = dense_grad(name, p)
        if g is not None:
            zero_frozen_(g, word_mask(m, g))


def restore_frozen_(
    named_parameters: NamedParameters, mask: Mapping[str, Tensor], snapshot: Mapping[str, Tensor]
) -> None:
    """Write θ₀ from ``snapshot_frozen`` back into the frozen entries, bit for bit (in place)."""
    for n, p, m in pair_masks(named_parameters, mask, strict=False):
        frozen = ~m
        values = _check_snapshot_entry(n, p, frozen, snapshot)
        if values is not None:
            write_frozen_(p, word_mask(m, p), _frozen_bits(p, frozen, values))


def mask_optimizer_state_(optimizer: Optimizer, mask_by_param: Mapping[Tensor, Tensor]) -> None:
    """Zero, where the parameter's bool mask is False, every state tensor shaped like the parameter.

    Covers ``momentum_buffer`` (SGD), ``exp_avg``/``exp_avg_sq``/``max_exp_avg_sq`` (Adam, AdamW) and
    any other per-entry floating state; scalar entries such as ``step`` are left alone.
    """
    for p, m in mask_by_param.items():
        for key, value in optimizer.state.get(p, {}).items():
            if _is_param_state(value, p, key):
                zero_frozen_(value, word_mask(m, value))


def _check_snapshot_entry(name: str, p: Tensor, frozen: Tensor, snapshot: Mapping[str, Tensor]) -> Tensor | None:
    """Frozen values of ``name`` from ``snapshot`` (None if nothing is frozen), or ValueError if they do not fit."""
    count = int(frozen.sum())
    if count == 0:
        return None
    values = snapshot.get(name)
    if values is None:
        raise ValueError(f"snapshot has no frozen values for parameter {name!r} ({count} frozen entries)")
    if not isinstance(values, Tensor) or values.dim() != 1 or values.numel() != count or values.dtype != p.dtype:
        got = f"{tuple(values.shape)} {values.dtype}" if isinstance(values, Tensor) else type(values).__name__
        raise ValueError(f"snapshot of {name!r} must be a 1-D {p.dtype} tensor of {count} values, got {got}")
    return values


# ---- the thin class --------------------------------------------------------------------------
@dataclass
class _Slot:
    """Everything precomputed for one parameter with at least one frozen entry."""

    name: str
    param: Tensor
    frozen: Tensor  # bool, on the parameter's device
    words: Tensor  # word mask in the parameter's width
    frozen_bits: Tensor  # bits of (1 - m) * θ₀
    state_words: dict[tuple[int, torch.device], Tensor] = field(default_factory=dict)

    def words_for(self, t: Tensor) -> Tensor:
        """Word mask matching ``t``'s element width and device (built once per kind)."""
        if t.element_size() == self.param.element_size() and t.device == self.param.device:
            return self.words
        key = (t.element_size(), t.device)
        if key not in self.state_words:
            self.state_words[key] = word_mask(~self.frozen, t)
        return self.state_words[key]


class MaskedUpdateHandle:
    """Returned by ``MaskedUpdate.attach``; ``remove()`` detaches both optimizer hooks."""

    def __init__(self, *handles: RemovableHandle) -> None:
        self._handles = handles

    def remove(self) -> None:
        for h in self._handles:
            h.remove()


class MaskedUpdate:
    """Keep the weights outside ``mask`` bit-identical to θ₀ through any optimizer (SalUn's update rule).

    Build it after the model is on its device; θ₀ is read now (or taken from ``snapshot``, the output
    of ``snapshot_frozen`` / ``snapshot()``, e.g. when resuming). ``attach(optimizer)`` registers a step
    pre-hook (zero frozen gradients) and a step post-hook (write θ₀ back, zero optimizer state there).
    Plain torch loop::

        update = MaskedUpdate(model.named_parameters(), mask)
        handle = update.attach(optimizer)
        for x, y in loader:
            optimizer.zero_grad()
            loss_fn(model(x), y).backward()
            update.mask_gradients_()   # optional: lets clip_grad_norm_ see only trainable gradients
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()           # hooks fire here
        handle.remove()

    Memory: for every parameter with a frozen entry, a bool mask, a word mask and θ₀'s frozen bits
    (about two extra copies of it); fully trainable parameters cost nothing.
    """

    def __init__(
        self,
        named_parameters: NamedParameters,
        mask: Mapping[str, Tensor],
        strict: bool = True,
        snapshot: Mapping[str, Tensor] | None = None,
    ) -> None:
        self._slots: dict[Tensor, _Slot] = {}
        for name, p, m in pair_masks(named_parameters, mask, strict):
            frozen = ~m.to(p.device)
            if snapshot is None:
                values = p.detach()[frozen] if bool(frozen.any()) else None
            else:
                values = _check_snapshot_entry(name, p, frozen, snapshot)
            if values is not None:
                bits = _frozen_bits(p, frozen, values)
                self._slots[p] = _Slot(name, p, frozen, word_mask(m, p), bits)

    def snapshot(self) -> dict[str, Tensor]:
        """θ₀ at frozen positions in the format of ``snapshot_frozen`` (for checkpoints)."""
        return {s.name: s.frozen_bits.view(s.param.dtype)[s.frozen].clone() for s in self._slots.values()}

    def mask_gradients_(self) -> None:
        """Zero the gradients of frozen entries (``None`` grads are skipped, sparse ones refused)."""
        for s in self._slots.values():
            g = dense_grad(s.name, s.param)
            if g is not None:
                zero_frozen_(g, s.words_for(g))

    def enforce_(self, optimizer: Optimizer) -> None:
        """After a step of ``optimizer``: restore θ₀ in its frozen entries and zero its state there."""
        for group in optimizer.param_groups:
            for p in group["params"]:
                s = self._slots.get(p)
                if s is None:
                    continue
                write_frozen_(p, s.words, s.frozen_bits)
                for key, value in optimizer.state.get(p, {}).items():
                    if _is_param_state(value, p, key):
                        zero_frozen_(value, s.words_for(value))

    def attach(self, optimizer: Optimizer) -> MaskedUpdateHandle:
        """Hook ``optimizer.step``: frozen gradients are zeroed before it, θ₀ and zero state enforced after."""
        pre = optimizer.register_step_pre_hook(lambda opt, args, kwargs: self.mask_gradients_())
        post = optimizer.register_step_post_hook(lambda opt, args, kwargs: self.enforce_(opt))
        return MaskedUpdateHandle(pre, post)

    def holds(self, optimizer: Optimizer) -> bool:
        """Whether ``optimizer`` updates at least one parameter with a frozen entry."""
        return any(p in self._slots for group in optimizer.param_groups for p in group["params"])

    def attach_all(self) -> MaskedUpdateHandle:
        """Hook the step of *every* optimizer (torch's global step hooks) that holds a masked parameter,
        including optimizers created after this call. Remove the handle when done: until then the hooks
        run (and keep this object alive) for every optimizer step in the process."""

        def pre(opt: Optimizer, args: object, kwargs: object) -> None:
            if self.holds(opt):
                self.mask_gradients_()

        pre_handle = register_optimizer_step_pre_hook(pre)
        post_handle = register_optimizer_step_post_hook(lambda opt, args, kwargs: self.enforce_(opt))
        return MaskedUpdateHandle(pre_handle, post_handle)


__all__ = [
    "MaskedUpdate",
    "MaskedUpdateHandle",
    "snapshot_frozen",
    "mask_gradients_",
    "restore_frozen_",
    "mask_optimizer_state_",
    "pair_masks",
    "word_mask",
    "zero_frozen_",
    "write_frozen_",
]
