"""CLS-attention maps and kept-token overlays of fixed validation images: PNG files + W&B images."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from salguide._lightning import Callback
from salguide.attention.recorder import AttentionRecorder
from salguide.attention.routing import find_routed
from salguide.attention.targets import token_grid
from salguide.callbacks._strategy import refuse_sharded
from salguide.viz.attention import kept_tokens_map, plot_attention_maps, tokens_to_image

from .explanation_metrics import fixed_val_batch


class AttentionMapCallback(Callback):
    """Every ``every_n_epochs`` validation epochs, draw the head-averaged CLS attention of ``layers`` (and,
    when a token policy removed tokens, which patches are still present at the last of them) over the first
    ``num_images`` validation images; write ``{out_dir}/attention_epoch{E:03d}.png`` (default out_dir:
    ``<default_root_dir>/attention``) and log it with every logger's ``log_image`` as ``attention/maps``."""

    def __init__(
        self, layers: Sequence[int] = (-1,), every_n_epochs: int = 1, num_images: int = 8, out_dir: str | None = None
    ) -> None:
        if int(every_n_epochs) < 1 or int(num_images) < 1:
            raise ValueError("every_n_epochs and num_images must be >= 1")
        self.layers, self.every_n_epochs, self.num_images = list(layers), int(every_n_epochs), int(num_images)
        self.out_dir = out_dir
        self.paths: list[Path] = []

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
        batch = fixed_val_batch(trainer, self.num_images)
        x, y = batch[0].to(pl_module.device), batch[1]
        model = find_routed(pl_module)
        with torch.inference_mode(False), torch.no_grad(), AttentionRecorder(model, self.layers, cls=True) as rec:
            preds = pl_module(x.clone()).argmax(-1).cpu()
        grid, size = token_grid(model, x), (int(x.shape[-2]), int(x.shape[-1]))
        maps = {}
        for i in rec.layers:
            s = rec[i]
            pos = None if s.positions is None else s.positions.cpu()
            cls = s.cls
            assert cls is not None  # recorded with cls=True
            maps[f"layer {i}"] = tokens_to_image(cls.mean(1).cpu(), pos, grid, size)
        last = rec[rec.layers[-1]]
        if last.positions is not None:
            maps["kept tokens"] = kept_tokens_map(last.positions.cpu(), grid, size, len(x))
        out_dir = Path(self.out_dir or Path(trainer.default_root_dir) / "attention")
        path = plot_attention_maps(
            x.cpu(),
            maps,
            out_dir / f"attention_epoch{trainer.current_epoch:03d}.png",
            labels=y.tolist(),
            preds=preds.tolist(),
            title=f"epoch {trainer.current_epoch}",
        )
        self.paths.append(path)
        for logger in trainer.loggers:
            if hasattr(logger, "log_image"):
                logger.log_image(key="attention/maps", images=[str(path)], step=trainer.global_step)
