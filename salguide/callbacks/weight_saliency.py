"""``WeightSaliencyCallback``: train only the salient weights, keep all others bit-identical to θ₀.

SalUn (Fan et al., "SalUn: Empowering Machine Unlearning via Gradient-based Weight Saliency", ICLR
2024) updates θ_u = m ⊙ (θ₀ + Δθ) + (1 − m) ⊙ θ₀. The callback gets the mask m (given, read from a
safetensors file, or computed at fit start from forget data), snapshots θ₀ and enforces the rule on
every optimizer of an unmodified LightningModule through ``salguide.weights.MaskedUpdate``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from torch import nn

from salguide._lightning import Callback, installed
from salguide.callbacks._strategy import check_strategy as _check_strategy
from salguide.data.protocols import ForgetLoaderData, require
from salguide.viz import plot_mask_sparsity
from salguide.weights.mask import WeightMask
from salguide.weights.masked_update import MaskedUpdate, MaskedUpdateHandle, pair_masks
from salguide.weights.scores import saliency_scores
from salguide.weights.select import check_ratio, check_scope

FIGURE_DIR, FIGURE_NAME = "figures", "weight_saliency_sparsity.png"
SPARSITY_KEY = "weight_saliency/sparsity"
SHARDED_WHY = (
    "sharded strategies (FSDP, DeepSpeed) split parameters and optimizer state across ranks, so a "
    "per-weight mask cannot be enforced on whole tensors; XLA is untested"
)


def check_strategy(strategy: Any) -> None:
    """Accept single-device and DDP-family strategies; refuse sharded or XLA ones with a ValueError."""
    _check_strategy(strategy, "WeightSaliencyCallback", SHARDED_WHY)


class WeightSaliencyCallback(Callback):
    """Restrict training to a weight-saliency mask and keep every other weight exactly at θ₀ (SalUn).

    Args:
        mask: a ``WeightMask`` (or mapping name -> bool tensor, True = may change), a path to one saved
            with ``WeightMask.save``, or ``None`` to compute it at fit start: SalUn gradient saliency on
            the forget data at θ₀, keeping the ``ratio`` share of weights with the largest scores.
        forget_dataloader: forget data for ``mask=None``; default ``trainer.datamodule.forget_dataloader()``.
        ratio, scope: share of weights kept, and ``"global"`` (SalUn) or ``"layer"`` (per tensor, ANT).
        submodule: mask ``pl_module.get_submodule(submodule)`` (e.g. ``"model"``) instead of the whole module.
        save_mask_to: write the mask used for the fit there (safetensors, rank 0, atomically).
        strict: every parameter must be in the mask; ``False`` trains missing parameters fully.
        log_figure: write a per-tensor sparsity PNG to ``<trainer.log_dir>/figures/`` (``log_dir`` is the
            default root dir, the working directory by default, when there is no logger) and to a
            ``WandbLogger`` if present.

    After fit start ``callback.mask`` is the mask in use. Gradients are zeroed at frozen positions in
    ``on_before_optimizer_step`` (after AMP unscaling, before Lightning clips) and again in a step
    pre-hook; a step post-hook writes θ₀ back and zeroes optimizer state. The hooks are torch's global
    optimizer step hooks, filtered to optimizers holding masked parameters, so an optimizer re-created
    during fit (``trainer.strategy.setup_optimizers``) is held to the mask too; they are removed at
    teardown and when fit raises. The mask and θ₀
    travel in the checkpoint, so ``trainer.fit(ckpt_path=...)`` resumes with both unchanged. Single
    device and DDP only.
    """

    def __init__(
        self,
        mask: WeightMask | Mapping | str | os.PathLike | None = None,
        *,
        forget_dataloader: Iterable | None = None,
        ratio: float = 0.5,
        scope: str = "global",
        submodule: str | None = None,
        save_mask_to: str | os.PathLike | None = None,
        strict: bool = True,
        log_figure: bool = True,
    ) -> None:
        if mask is not None and not isinstance(mask, (Mapping, str, os.PathLike)):
            raise TypeError(f"mask must be a WeightMask, a mapping or a path to a mask file, got {type(mask).__name__}")
        if mask is not None and forget_dataloader is not None:
            raise ValueError("pass either mask or forget_dataloader (to compute the mask), not both")
        self.ratio, self.scope = check_ratio(ratio), check_scope(scope)
        self.forget_dataloader = forget_dataloader
        self.submodule = submodule
        self.save_mask_to = save_mask_to
        self.strict, self.log_figure = strict, log_figure
        self.mask: WeightMask | None = None
        self._source = mask
        self._given: WeightMask | None = None
        self._resumed: Mapping[str, Any] | None = None
        self._update: MaskedUpdate | None = None
        self._handles: list[MaskedUpdateHandle] = []

    @property
    def state_key(self) -> str:
        return self._generate_state_key(submodule=self.submodule)

    def _target(self, pl_module: nn.Module) -> nn.Module:
        if self.submodule is None:
            return pl_module
        try:
            return pl_module.get_submodule(self.submodule)
        except AttributeError as e:
            raise ValueError(f"{type(pl_module).__name__} has no submodule {self.submodule!r}: {e}") from e

    # ---- hooks -----------------------------------------------------------------------------
    def setup(self, trainer: Any, pl_module: nn.Module, stage: str) -> None:
        """Refuse unsupported strategies; read and check a given mask before any work is done."""
        if stage != "fit":
            return
        check_strategy(trainer.strategy)
        if self._source is None:
            return
        if isinstance(self._source, WeightMask):
            self._given = self._source
        elif isinstance(self._source, Mapping):
            self._given = WeightMask(self._source)
        else:
            self._given = WeightMask.load(self._source)
        pair_masks(self._target(pl_module).named_parameters(), self._given, self.strict)

    def on_fit_start(self, trainer: Any, pl_module: nn.Module) -> None:
        """Choose the mask (checkpoint > given > computed), snapshot θ₀ and hook every optimizer that steps."""
        module = self._target(pl_module)
        snapshot = None
        if self._resumed is not None:
            mask, snapshot = WeightMask.from_state_dict(self._resumed["mask"]), self._resumed["frozen_values"]
            if self._given is not None and mask != self._given:
                raise ValueError("the checkpoint was trained with a different weight mask than the one passed")
            made = self._resumed.get("computed_with")  # (ratio, scope) of a mask computed from the forget set
            if self._given is None and made is not None and tuple(made) != (self.ratio, self.scope):
                raise ValueError(
                    f"the checkpoint's mask was computed with ratio={made[0]}, scope={made[1]!r}, but this callback "
                    f"has ratio={self.ratio}, scope={self.scope!r}: resume with the checkpoint's settings"
                )
        elif self._given is not None:
            mask = self._given
        else:
            mask = self._compute(trainer, module)
        self._resumed = None
        self._update = MaskedUpdate(module.named_parameters(), mask, strict=self.strict, snapshot=snapshot)
        self.mask = mask
        self._detach()
        self._handles = [self._update.attach_all()]  # also optimizers re-created during fit
        if self.save_mask_to is not None and trainer.is_global_zero:
            mask.save(self.save_mask_to)
        self._report(trainer, mask)

    def on_before_optimizer_step(self, trainer: Any, pl_module: nn.Module, optimizer: Any) -> None:
        """Zero frozen gradients after backward/unscale, so gradient clipping sees only trainable ones."""
        if self._update is not None:
            self._update.mask_gradients_()

    def teardown(self, trainer: Any, pl_module: nn.Module, stage: str) -> None:
        if stage == "fit":
            self._detach()

    def on_exception(self, trainer: Any, pl_module: nn.Module, exception: BaseException) -> None:
        self._detach()

    def _detach(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    # ---- mask and logging ------------------------------------------------------------------
    def _compute(self, trainer: Any, module: nn.Module) -> WeightMask:
        """SalUn mask from forget data, computed on every rank; rank 0's copy is broadcast so all agree."""
        loader = self.forget_dataloader
        if loader is None:
            dm: ForgetLoaderData = require(trainer.datamodule, ForgetLoaderData, by="WeightSaliencyCallback(mask=None)",
                                           need="forget data", instead="pass forget_dataloader=... or a mask")  # fmt: skip
            loader = dm.forget_dataloader()
        if type(module).forward is nn.Module.forward:
            raise ValueError(
                f"{type(module).__name__} defines no forward() to score the forget data with: "
                "pass submodule= the network inside it (e.g. submodule='model')"
            )
        scores = saliency_scores(module, loader, progress=trainer.is_global_zero)
        mask = WeightMask.from_scores(scores, self.ratio, self.scope)
        return WeightMask.from_state_dict(trainer.strategy.broadcast(mask.to_state_dict(), src=0))

    def _report(self, trainer: Any, mask: WeightMask) -> None:
        """Log the total sparsity to every logger, and a per-tensor sparsity figure (rank 0)."""
        for logger in trainer.loggers:
            logger.log_metrics({SPARSITY_KEY: mask.sparsity}, step=trainer.global_step)
        if not self.log_figure:
            return
        root = trainer.log_dir or trainer.default_root_dir  # log_dir broadcasts: every rank calls it
        if not trainer.is_global_zero:
            return
        path = plot_mask_sparsity(mask, Path(root) / FIGURE_DIR / FIGURE_NAME)  # never straight into the CWD
        wandb_loggers = installed("WandbLogger", module="loggers")
        for logger in trainer.loggers:
            if isinstance(logger, wandb_loggers):
                wandb_logger: Any = logger  # a WandbLogger (installed() returns a tuple of classes)
                wandb_logger.log_image(key=SPARSITY_KEY, images=[str(path)])

    # ---- checkpoint ------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The mask and θ₀'s frozen values (CPU tensors), so a resumed fit enforces the same rule."""
        if self._update is None or self.mask is None:
            return {}
        frozen = {name: t.cpu() for name, t in self._update.snapshot().items()}
        state: dict[str, Any] = {"mask": self.mask.to_state_dict(), "frozen_values": frozen}
        if self._source is None:
            state["computed_with"] = [self.ratio, self.scope]
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Keep the checkpoint's mask and θ₀ for ``on_fit_start`` (which runs after this on resume)."""
        if not state_dict:
            return
        if not {"mask", "frozen_values"} <= set(state_dict) <= {"mask", "frozen_values", "computed_with"}:
            raise ValueError(f"not a WeightSaliencyCallback state: keys {sorted(state_dict)}")
        self._resumed = state_dict


__all__ = ["WeightSaliencyCallback", "check_strategy"]
