"""``DiffusionUnlearningCallback``: SalUn / ANT / ESD / FT objectives on an unmodified diffusion LightningModule.

The module's own ``training_step`` on the retain batch is the retain term (its noise-prediction MSE); the
callback wraps ``training_step`` for the duration of ``fit`` and returns
``objective.forget_loss(forget batch) + objective.beta × training_step(retain batch)`` (the retain step is
skipped when ``beta == 0``). Lightning receives one loss, so AMP, accumulation, clipping and DDP treat it
like a hand-written sum. The forget term's generator state and the number of forget batches drawn travel in
the checkpoint, so a fit resumed with ``ckpt_path=`` draws what the uninterrupted fit draws (exactly, when
the forget loader's order is fixed). Pair it with ``WeightSaliencyCallback(mask)`` to restrict the update to a
weight-saliency mask (SalUn, ANT). The module follows ``salguide.diffusion.DiffusionModule``'s protocol:
``eps(x_t, t, cond)``, ``noise_scheduler``, ``num_conditions``, ``null_condition``.
Everything that can be checked (the module's protocol, the objective's timesteps, the forget set: not
empty, classes inside the model's) is checked in ``setup``, before the first step. The wrapper and the
frozen copy of θ₀ are dropped at ``teardown`` and when ``fit`` raises.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator, Sized
from typing import Any

import torch

from salguide._checks import as_int
from salguide._lightning import Callback
from salguide._rng import Generator
from salguide.callbacks._step_wrap import TrainingStepWrapper, map_loss
from salguide.callbacks._strategy import refuse_sharded
from salguide.data.protocols import ForgetLoaderData, require
from salguide.diffusion.core import check_conditions
from salguide.diffusion.module import denoiser_parts
from salguide.diffusion.objectives import DiffusionObjective


def check_forget_loader(loader: Iterable, num_conditions: int) -> int:
    """Number of forget samples; ValueError for an empty forget set or a class outside the model's."""
    n = 0
    for batch in loader:
        y = batch[1]
        check_conditions(torch.as_tensor(y), num_conditions, "forget class")
        n += len(y)
    if n == 0:
        raise ValueError("the forget set is empty: there is nothing to unlearn")
    return n


class DiffusionUnlearningCallback(TrainingStepWrapper, Callback):
    """Turn the module's retain-data training into generative unlearning with ``objective``.

    Args:
        objective: a ``salguide.diffusion`` objective (``SalUnObjective``, ``ANTObjective``, ``ESDObjective``,
            ``FTObjective``).
        forget_dataloader: forget data ``(x, y, ...)``; default ``trainer.datamodule.forget_dataloader()``.
        seed: seeds the timesteps and noise of the forget term (a pickling generator, ``ddp_spawn``-safe).
    """

    def __init__(self, objective: DiffusionObjective, forget_dataloader: Iterable | None = None, seed: int = 0) -> None:
        if not isinstance(objective, DiffusionObjective):
            raise TypeError(f"objective must be a salguide.diffusion objective, got {type(objective).__name__}")
        self.objective = objective
        self.forget_dataloader = forget_dataloader
        self.seed = as_int(seed, "seed", 0)
        self.generator = Generator(self.seed)
        self._loader: Iterable | None = None
        self._iter: Iterator | None = None
        self._original: Any = None
        self._drawn = 0  # forget batches drawn in this fit (checkpointed)
        self._skip = 0  # after a resume: batches to skip so the loader continues where the checkpoint left it

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_iter"] = None  # a live DataLoader iterator does not pickle; it restarts
        return state

    # ---- hooks -----------------------------------------------------------------------------
    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        if stage != "fit":
            return
        refuse_sharded(
            self,
            trainer,
            "ESD and ANT keep a copy of the whole module (θ₀) and every objective calls "
            "the denoiser outside the strategy's wrapper; sharded strategies (FSDP, DeepSpeed) split "
            "its parameters across ranks",
        )
        self._check_automatic(pl_module)
        _, scheduler, num_conditions, _ = denoiser_parts(pl_module)
        self.objective.check(scheduler, num_conditions)
        loader = self.forget_dataloader
        if loader is None:
            dm: ForgetLoaderData = require(trainer.datamodule, ForgetLoaderData, by="DiffusionUnlearningCallback",
                                           need="forget data", instead="pass forget_dataloader=...")  # fmt: skip
            loader = dm.forget_dataloader()
        check_forget_loader(loader, num_conditions)
        self._loader = loader
        self._drawn = self._skip = 0  # a resume sets them after setup (load_state_dict)
        self._wrap(pl_module)

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        """Freeze a copy of θ₀ for objectives that compare with the original (ESD, ANT)."""
        if self.objective.needs_original:
            self._original = copy.deepcopy(pl_module).eval().requires_grad_(False)

    def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None:
        if stage == "fit":
            self._release()

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        self._release()

    def _release(self) -> None:
        self._unwrap()
        self._original, self._iter = None, None

    # ---- checkpoint ------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state(), "forget_batches": self._drawn}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.generator.set_state(state_dict["generator"])
        self._drawn = int(state_dict["forget_batches"])
        size = len(self._loader) if isinstance(self._loader, Sized) else 0
        self._skip = self._drawn % size if size else self._drawn  # the loader restarts when it runs out

    # ---- the wrapped step ------------------------------------------------------------------
    def _next_forget(self) -> Any:
        while self._skip > 0:  # resumed: pass over what the checkpointed fit had drawn
            self._skip -= 1
            self._draw()
        self._drawn += 1
        return self._draw()

    def _draw(self) -> Any:
        if self._loader is None:
            raise RuntimeError("DiffusionUnlearningCallback: no forget loader (setup has not run)")
        if self._iter is None:
            self._iter = iter(self._loader)
        try:
            return next(self._iter)
        except StopIteration:
            self._iter = iter(self._loader)
            return next(self._iter)

    def _step(self, pl_module: Any, original: Any, batch: Any, *args: Any, **kwargs: Any) -> Any:
        eps, scheduler, num_conditions, null = denoiser_parts(pl_module)
        fx, fy = self._next_forget()[:2]
        fx, fy = fx.to(pl_module.device), fy.to(pl_module.device)
        frozen = self._original.eps if self._original is not None else None
        loss = self.objective.forget_loss(eps, frozen, scheduler, null, num_conditions, fx, fy, self.generator)
        pl_module.log("train/forget_loss", loss.detach(), on_step=True, on_epoch=True)
        if self.objective.beta == 0:
            return loss
        out = original(batch, *args, **kwargs)
        if out is None:
            return loss
        return map_loss(out, lambda retain_loss: loss + self.objective.beta * retain_loss)


__all__ = ["DiffusionUnlearningCallback", "check_forget_loader"]
