"""Attention-guided masking for MIM: a teacher (EMA of the student's routed ViT) gives CLS attention on
the clean batch; the chosen policy (AttMask high / low / hint, ACMIL top-K, random) hides patches; the
patch mask [B, P] is appended to the batch (which must be a list) in ``on_train_batch_start``; after each
optimizer step (not each batch: under gradient accumulation only batches that end with a step, seen as a
rise of ``trainer.global_step``) the teacher moves towards the student: t <- decay t + (1 - decay) s.
The teacher and the mask generator are saved in checkpoints and restored on resume; the generator
pickles, so the callback crosses ``ddp_spawn``. A fit in spawned processes leaves this process's callback
untouched: ``save_teacher_to`` writes the final teacher (rank 0) for ``load_teacher``."""

from __future__ import annotations

import copy
import os
from typing import Any

import torch
from safetensors.torch import load_file
from torch import nn

from salguide._lightning import Callback
from salguide._rng import Generator
from salguide.attention.masking import MASK_MODES, attention_guided_mask, cls_attention_scores
from salguide.attention.routing import find_routed
from salguide.attention.schedules import Schedule
from salguide.callbacks._strategy import refuse_sharded
from salguide.weights_io import save_weights


class AttentionMaskingCallback(Callback):
    """``mode`` in MASK_MODES; mask ratio from ``ratio`` (end value) optionally ramped from ``ratio_start``
    over ``ratio_steps``; ``layer``: teacher layer whose CLS attention ranks the patches; ``ema``: decay;
    ``save_teacher_to``: a safetensors path for the teacher at fit end (rank 0)."""

    def __init__(
        self,
        mode: str = "high",
        ratio: float = 0.5,
        ratio_start: float | None = None,
        ratio_steps: int = 0,
        layer: int = -1,
        ema: float = 0.99,
        seed: int = 0,
        save_teacher_to: str | os.PathLike | None = None,
        **mask_kwargs: Any,
    ) -> None:
        if mode not in MASK_MODES:
            raise ValueError(f"unknown masking mode {mode!r}; choose one of {MASK_MODES}")
        if not 0.0 <= ema <= 1.0:
            raise ValueError(f"ema decay must lie in [0, 1], got {ema}")
        for r in (ratio, ratio if ratio_start is None else ratio_start):
            if not 0.0 <= r < 1.0:
                raise ValueError(f"mask ratio must lie in [0, 1), got {r}")
        self.mode, self.layer, self.ema, self.kwargs = mode, layer, ema, mask_kwargs
        self.schedule = Schedule(ratio, ratio_start, ratio_steps, "linear")
        self.generator = Generator(seed)
        self.save_teacher_to = save_teacher_to
        self.teacher: Any = None
        self._student: Any = None
        self._pending: dict[str, Any] | None = None
        self._step_at_batch_start = 0

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        refuse_sharded(
            self,
            trainer,
            "the EMA teacher is a copy of the student's whole parameters, which sharded "
            "strategies (FSDP, DeepSpeed) split across ranks",
        )

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        self._student = find_routed(pl_module)
        self.teacher = copy.deepcopy(self._student).eval().requires_grad_(False)
        self._load_pending()

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        self._load_pending()  # strategies that restore checkpoints after setup call load_state_dict late

    def _load_pending(self) -> None:
        if self._pending is not None and self.teacher is not None:  # resumed from a checkpoint
            self.teacher.load_state_dict(self._pending)
            self._pending = None

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        self._step_at_batch_start = int(trainer.global_step)
        if not isinstance(batch, list):
            raise TypeError(f"AttentionMaskingCallback appends the mask to list batches, got {type(batch).__name__}")
        scores = cls_attention_scores(self.teacher, batch[0], self.layer)
        ratio = self.schedule(trainer.global_step)
        batch.append(attention_guided_mask(scores, ratio, self.mode, generator=self.generator, **self.kwargs))
        pl_module.log("train/mask_ratio", ratio, on_step=True, on_epoch=False)

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        if int(trainer.global_step) == self._step_at_batch_start:  # accumulating: no optimizer step yet
            return
        with torch.no_grad():
            for t, s in zip(self.teacher.parameters(), self._student.parameters()):
                t.lerp_(s.detach(), 1.0 - self.ema)

    def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
        if self.save_teacher_to is not None and trainer.is_global_zero:
            save_weights(self.teacher, self.save_teacher_to)

    def state_dict(self) -> dict[str, Any]:
        return {
            "teacher": None if self.teacher is None else self.teacher.state_dict(),
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
        self._pending = state["teacher"]


def load_teacher(path: str | os.PathLike, pl_module: nn.Module) -> nn.Module:
    """The teacher saved by ``save_teacher_to``, as a frozen copy of ``pl_module``'s routed ViT."""
    teacher = copy.deepcopy(find_routed(pl_module)).eval().requires_grad_(False)
    teacher.load_state_dict(load_file(str(path)))
    return teacher
