"""The Python API behind the CLI's training stages: ``fit_module`` (one Lightning fit), ``train_original``
(the model to unlearn from) and ``unlearn`` (one unlearning method on a forget/retain datamodule)."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from salguide._lightning import pl
from salguide.callbacks import RandomLabelCallback, WeightSaliencyCallback
from salguide.callbacks._strategy import ReleaseSpawnedProcessGroup
from salguide.models.classifier import ClassifierModule
from salguide.unlearning.methods import MethodSpec, method_spec
from salguide.weights import WeightMask


@dataclass
class UnlearnResult:
    """The unlearned model, its wall-clock run time (RTE, seconds; mask time included) and its mask."""

    model: nn.Module
    seconds: float
    mask: WeightMask | None = None
    extras: dict[str, Any] = field(default_factory=dict)


def unlearn(
    original: nn.Module,
    datamodule: Any,
    method: str | MethodSpec = "salun",
    *,
    mask: WeightMask | None = None,
    mask_fn: Callable[[nn.Module], WeightMask] | None = None,
    model_factory: Callable[[], nn.Module] | None = None,
    seed: int = 0,
    trainer_kwargs: dict[str, Any] | None = None,
    callbacks: Sequence[Any] = (),
    logger: Any = False,
    ckpt_path: str | None = None,
) -> UnlearnResult:
    """Unlearn ``datamodule``'s forget set from a copy of ``original`` with ``method``: a MethodSpec, or the name
    of a packaged ``unlearning`` option (``method_spec(name)``; ``"retrain"`` trains from scratch with the
    presets' ``retrain:`` recipe, the CLI's: 10 epochs of SGD, lr 0.05, cosine).

    ``datamodule`` must provide ``forget_dataset``/``retain_dataset``, ``forget_dataloader()`` and a settable
    ``train_on`` (the salguide datamodules do). Methods with a weight mask (SalUn) use ``mask`` if given, else
    ``mask_fn(model)``; the time spent computing the mask counts toward the run time, as in SalUn.
    ``model_factory`` builds the freshly initialised network that Retrain trains from scratch;
    ``ckpt_path`` resumes the unlearning run from a Lightning checkpoint of it.
    The caller's ``original`` is never modified.
    """
    spec = method if isinstance(method, MethodSpec) else method_spec(method)
    if spec.from_scratch:
        if model_factory is None:
            raise ValueError(f"{spec.name} trains from scratch: pass model_factory=")
        pl.seed_everything(seed, workers=True, verbose=False)
        net = model_factory()
    else:
        net = copy.deepcopy(original)
    net.train()  # Lightning keeps submodules' eval mode at fit start; a cached original comes back in eval
    datamodule.setup("fit")
    if len(datamodule.forget_dataset) == 0:
        raise ValueError("the forget set is empty: nothing to unlearn")
    datamodule.train_on = spec.train_on

    start = time.perf_counter()
    plugin_callbacks: list[Any] = []
    if spec.weight_mask:
        if mask is None:
            if mask_fn is None:
                raise ValueError(f"{spec.name} needs a weight mask: pass mask= or mask_fn=")
            mask = mask_fn(net)
        plugin_callbacks.append(WeightSaliencyCallback(mask=mask, submodule="model", log_figure=False))
    if spec.random_labels:
        plugin_callbacks.append(RandomLabelCallback(seed=seed))

    module = ClassifierModule(
        net, optimizer=spec.optimizer, scheduler=spec.scheduler, l1_alpha=spec.l1_alpha, loss_sign=spec.loss_sign
    )
    fit_module(
        module, datamodule, spec.epochs, seed, trainer_kwargs, logger, [*plugin_callbacks, *callbacks], ckpt_path
    )
    seconds = time.perf_counter() - start
    return UnlearnResult(model=module.model.eval(), seconds=seconds, mask=mask)


def train_original(
    model: nn.Module | ClassifierModule,
    datamodule: Any,
    *,
    epochs: int = 15,
    seed: int = 0,
    trainer_kwargs: dict[str, Any] | None = None,
    logger: Any = False,
    callbacks: Sequence[Any] = (),
    **module_kwargs: Any,
) -> nn.Module:
    """Train ``model`` in place on the full training split (the model to unlearn from) and return its network in
    eval mode. ``model``: a ``ClassifierModule``, or a network wrapped in one with ``module_kwargs``
    (``optimizer=``, ``scheduler=``; default SGD, lr 0.05, cosine)."""
    if isinstance(model, ClassifierModule) and module_kwargs:
        raise ValueError(f"train_original: {sorted(module_kwargs)} apply to a network, not to a ClassifierModule")
    module = model if isinstance(model, ClassifierModule) else ClassifierModule(model, **module_kwargs)
    datamodule.setup("fit")
    datamodule.train_on = "full"
    module.model.train()
    fit_module(module, datamodule, epochs, seed, trainer_kwargs, logger, list(callbacks))
    return module.model.eval()


def fit_module(
    module: Any,
    datamodule: Any,
    epochs: int,
    seed: int | None,
    trainer_kwargs: dict[str, Any] | None,
    logger: Any,
    callbacks: list[Any],
    ckpt_path: str | None = None,
) -> Any:
    """Fit the LightningModule ``module`` for ``epochs`` (seeded by ``seed`` once the Trainer is built;
    None: not reseeded) with salguide's quiet Trainer defaults under ``trainer_kwargs``; ``ckpt_path``
    resumes from a checkpoint. Returns the Trainer (e.g. for its test loop). Every salguide Trainer is
    built here: the Python API's and the stage runner's alike; each ends with ``ReleaseSpawnedProcessGroup``."""
    kwargs = {**QUIET, **(trainer_kwargs or {}), "max_epochs": epochs}
    trainer = pl.Trainer(logger=logger, callbacks=[*callbacks, ReleaseSpawnedProcessGroup()], **kwargs)
    if seed is not None:
        pl.seed_everything(seed, workers=True, verbose=False)
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    return trainer


# salguide's quiet Trainer defaults; a caller's trainer arguments override them
QUIET = {"enable_checkpointing": False, "num_sanity_val_steps": 0, "enable_model_summary": False}
