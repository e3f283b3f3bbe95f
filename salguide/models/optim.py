"""Optimiser and learning-rate schedule factories of the LightningModules (the ``_partial_`` nodes of ``model:``).

A module takes ``optimizer(params) -> Optimizer`` and ``scheduler(optimizer) -> LRScheduler`` (or None), as
in the lightning-hydra-template: ``{_target_: torch.optim.AdamW, _partial_: true, lr: 1e-3}``. A schedule
that needs the length of the run takes it as ``max_epochs`` (``cosine``); the module passes its Trainer's.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any

import torch

from salguide._checks import as_int

OptimizerFactory = Callable[[Iterable[torch.nn.Parameter]], torch.optim.Optimizer]
SchedulerFactory = Callable[..., Any]


def cosine(optimizer: torch.optim.Optimizer, max_epochs: int) -> torch.optim.lr_scheduler.CosineAnnealingLR:
    """Cosine annealing from the optimiser's learning rate to 0 over ``max_epochs`` epochs (Loshchilov & Hutter,
    ICLR 2017, without restarts): the recipe of the SalUn classifiers and of the ViTs."""
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=as_int(max_epochs, "cosine: max_epochs", 1))


def sgd(lr: float = 0.05, momentum: float = 0.9, weight_decay: float = 5e-4) -> OptimizerFactory:
    """``torch.optim.SGD`` with these settings, as a factory of the parameters (ClassifierModule's default)."""
    return partial(torch.optim.SGD, lr=lr, momentum=momentum, weight_decay=weight_decay)


def adamw(lr: float = 2e-3, weight_decay: float = 0.0) -> OptimizerFactory:
    """``torch.optim.AdamW`` with these settings, as a factory of the parameters (DiffusionModule's default)."""
    return partial(torch.optim.AdamW, lr=lr, weight_decay=weight_decay)


def build_optimizers(
    params: Iterable[torch.nn.Parameter],
    optimizer: OptimizerFactory,
    scheduler: SchedulerFactory | None,
    max_epochs: int | None,
) -> Any:
    """What ``configure_optimizers`` returns: the optimiser over ``params`` and, with a ``scheduler``, the
    schedule (stepped each epoch). A schedule taking ``max_epochs`` gets the Trainer's; without a bound
    run length (``max_epochs`` None) it is left out."""
    opt = optimizer(params)
    if not isinstance(opt, torch.optim.Optimizer):
        raise TypeError(f"optimizer must build a torch.optim.Optimizer from the parameters, got {type(opt).__name__}")
    if scheduler is None:
        return opt
    if "max_epochs" in inspect.signature(scheduler).parameters:
        if not max_epochs or max_epochs < 0:
            return opt
        return {"optimizer": opt, "lr_scheduler": scheduler(opt, max_epochs=int(max_epochs))}
    return {"optimizer": opt, "lr_scheduler": scheduler(opt)}


def module_optimizers(module: Any) -> Any:
    """``configure_optimizers`` of a module keeping ``make_optimizer`` / ``make_scheduler``: its trainable
    parameters, the schedule over its Trainer's ``max_epochs``."""
    trainer = module._trainer  # None before the module is attached (module.trainer would raise)
    params = [p for p in module.parameters() if p.requires_grad]
    return build_optimizers(params, module.make_optimizer, module.make_scheduler, trainer and trainer.max_epochs)


def check_factories(optimizer: Any, scheduler: Any, owner: str) -> None:
    """A module's ``optimizer`` and ``scheduler`` arguments: None or factories (a TypeError naming ``owner``
    otherwise) that build (``check_optimizer``, ``check_scheduler``)."""
    for name, factory, call in (
        ("optimizer", optimizer, "optimizer(params)"),
        ("scheduler", scheduler, "scheduler(optimizer)"),
    ):
        if factory is not None and not callable(factory):
            raise TypeError(
                f"{owner}: {name} must be a factory {call} (e.g. a _partial_ node) or None, got {factory!r}"
            )
    check_optimizer(optimizer, owner)
    check_scheduler(scheduler, owner)


def check_scheduler(scheduler: Any, owner: str) -> None:
    """Fail now, naming ``owner``, when the schedule factory cannot build a schedule (tried on one parameter's
    SGD over one epoch): a misspelt keyword fails before training, not when its stage starts."""
    if scheduler is None:
        return
    if not callable(scheduler):
        raise ValueError(f"{owner}: scheduler must be a factory scheduler(optimizer) or null, got {scheduler!r}")
    try:
        build_optimizers([torch.nn.Parameter(torch.zeros(1))], sgd(), scheduler, 1)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{owner}: the scheduler factory {scheduler!r} does not build: {e}") from e


def check_optimizer(optimizer: Any, owner: str) -> None:
    """Fail now, naming ``owner``, when the factory cannot build an optimiser: a ``lr`` that is not a positive
    number, or settings the optimiser rejects (a misspelt keyword, a negative momentum), tried on one parameter."""
    if optimizer is None:
        return
    lr = getattr(optimizer, "keywords", {}).get("lr")
    if lr is not None and not (isinstance(lr, (int, float)) and not isinstance(lr, bool) and lr > 0):
        raise ValueError(f"{owner}: optimizer lr must be positive, got {lr!r}")
    try:
        optimizer([torch.nn.Parameter(torch.zeros(1))])
    except (TypeError, ValueError) as e:
        raise ValueError(f"{owner}: the optimizer factory {optimizer!r} does not build: {e}") from e
