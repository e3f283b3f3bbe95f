"""Saliency overlays of a fixed set of validation images every N epochs: PNG files + W&B images."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from salguide._lightning import Callback
from salguide.callbacks._strategy import refuse_sharded
from salguide.metrics import explain
from salguide.viz.saliency import plot_saliency_overlays

from .explanation_metrics import fixed_val_batch


class SaliencyOverlayCallback(Callback):
    """Every ``every_n_epochs`` validation epochs, draw ``methods``' maps (for the true class) over the
    first ``num_images`` validation images, write ``{out_dir}/saliency_epoch{E:03d}.png`` and log it to
    every logger with ``log_image`` (W&B) as ``saliency/overlays``.

    ``out_dir`` defaults to ``<trainer.default_root_dir>/saliency``. ``method_kwargs`` maps a method name
    to its keyword arguments (e.g. ``{"gradcam": {"layer": "features.3"}}``).
    """

    def __init__(
        self,
        methods: Sequence[str] = ("gradient", "integrated_gradients"),
        every_n_epochs: int = 1,
        num_images: int = 8,
        out_dir: str | None = None,
        method_kwargs: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        if int(every_n_epochs) < 1 or int(num_images) < 1:
            raise ValueError("every_n_epochs and num_images must be >= 1")
        if not methods:
            raise ValueError("give at least one saliency method")
        self.methods, self.every_n_epochs, self.num_images = list(methods), int(every_n_epochs), int(num_images)
        self.out_dir, self.method_kwargs = out_dir, dict(method_kwargs or {})
        self.paths: list[Path] = []
        self._batch: tuple[torch.Tensor, ...] | None = None

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        refuse_sharded(
            self,
            trainer,
            "only rank 0 runs the module on fixed validation images, outside the strategy's "
            "wrapper; a sharded module (FSDP, DeepSpeed) needs every rank for a forward",
        )

    def on_validation_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        if trainer.sanity_checking or (trainer.current_epoch + 1) % self.every_n_epochs or not trainer.is_global_zero:
            return
        if self._batch is None:
            self._batch = fixed_val_batch(trainer, self.num_images)
        x, y = self._batch[0].to(pl_module.device), self._batch[1].to(pl_module.device)
        maps = {m: explain(pl_module, x, y, m, **self.method_kwargs.get(m, {})).cpu() for m in self.methods}
        with torch.inference_mode(False), torch.no_grad():
            preds = pl_module(x.clone()).argmax(-1).cpu()
        out_dir = Path(self.out_dir or Path(trainer.default_root_dir) / "saliency")
        path = plot_saliency_overlays(
            x.cpu(),
            maps,
            out_dir / f"saliency_epoch{trainer.current_epoch:03d}.png",
            labels=y.cpu().tolist(),
            preds=preds.tolist(),
            title=f"epoch {trainer.current_epoch}",
        )
        self.paths.append(path)
        for logger in trainer.loggers:
            if hasattr(logger, "log_image"):
                logger.log_image(key="saliency/overlays", images=[str(path)], step=trainer.global_step)
