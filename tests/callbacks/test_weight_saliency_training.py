"""WeightSaliencyCallback on an unmodified LightningModule: frozen weights stay bit-identical to θ₀
under every optimizer / clipping / precision / accumulation setting, and trainable weights follow a
naive masked reference loop (mask gradients, clip, step, write θ₀ back with torch.where)."""

import lightning.pytorch as L
import pytest
import pytorch_lightning as PL
import torch
import torch.nn.functional as F
from lightning.pytorch.plugins import MixedPrecision
from wsc_helpers import OPTIMIZERS, LitNet, PLNet, check_guarantee, fit, loader, make_net, params_copy, random_mask

from salguide.callbacks import WeightSaliencyCallback

SGD = ("sgd", {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.1})
ADAM = ("adam", {"lr": 0.05, "weight_decay": 0.1})
ADAMW = ("adamw", {"lr": 0.05, "weight_decay": 0.5})
PACKAGES = {"lightning": (L, LitNet), "pytorch_lightning": (PL, PLNet)}


def reference_run(optimizer, kwargs, mask, steps, accumulate=1, clip_val=None, clip_algo="norm", recreate_at=None):
    """Plain torch: the same init and batches, masking done the obvious (slow) way; a fresh optimizer
    replaces the first one before step ``recreate_at``."""
    torch.manual_seed(0)
    net = make_net()
    theta0 = params_copy(net)
    opt = OPTIMIZERS[optimizer](net.parameters(), **kwargs)
    batches = list(loader())
    for step in range(steps):
        if step == recreate_at:
            opt = OPTIMIZERS[optimizer](net.parameters(), **kwargs)
        opt.zero_grad()
        for x, y in batches[step * accumulate : (step + 1) * accumulate]:
            (F.cross_entropy(net(x), y) / accumulate).backward()
        for name, p in net.named_parameters():
            p.grad[~mask["net." + name]] = 0.0
        if clip_val is not None and clip_algo == "norm":
            torch.nn.utils.clip_grad_norm_(net.parameters(), clip_val)
        elif clip_val is not None:
            torch.nn.utils.clip_grad_value_(net.parameters(), clip_val)
        opt.step()
        with torch.no_grad():
            for name, p in net.named_parameters():
                keep = mask["net." + name]
                p.copy_(torch.where(keep, p, theta0[name]))
                for value in opt.state[p].values():
                    if value.shape == p.shape:
                        value.mul_(keep)
    return {"net." + n: p.detach() for n, p in net.named_parameters()}


@pytest.mark.parametrize(
    "package, opt, trainer_kwargs, steps",
    [
        ("lightning", SGD, {}, 4),
        ("pytorch_lightning", SGD, {}, 4),
        ("lightning", ADAM, {}, 4),
        ("lightning", ADAMW, {}, 4),
        ("pytorch_lightning", ADAMW, {}, 4),
        ("lightning", SGD, {"gradient_clip_val": 0.05}, 4),
        ("pytorch_lightning", ADAMW, {"gradient_clip_val": 1e-3, "gradient_clip_algorithm": "value"}, 4),
        ("lightning", SGD, {"accumulate_grad_batches": 3}, 2),
        ("lightning", ADAMW, {"accumulate_grad_batches": 3, "gradient_clip_val": 0.05}, 2),
    ],
)
def test_frozen_exact_and_trainable_match_reference(package, opt, trainer_kwargs, steps):
    pkg, module_cls = PACKAGES[package]
    name, kwargs = opt
    module = module_cls(name, **kwargs)
    theta0, mask = params_copy(module), random_mask(module)
    callback = WeightSaliencyCallback(mask, log_figure=False)
    trainer = fit(module, callback, pkg=pkg, max_steps=steps, **trainer_kwargs)
    assert trainer.global_step == steps
    check_guarantee(module, theta0, mask, trainer.optimizers)
    expected = reference_run(
        name,
        kwargs,
        mask,
        steps,
        accumulate=trainer_kwargs.get("accumulate_grad_batches", 1),
        clip_val=trainer_kwargs.get("gradient_clip_val"),
        clip_algo=trainer_kwargs.get("gradient_clip_algorithm", "norm"),
    )
    for n, p in module.named_parameters():
        torch.testing.assert_close(p.detach(), expected[n], msg=lambda m, n=n: f"{n}: {m}")
    assert callback.mask is not None and {n: callback.mask[n] for n in mask}.keys() == mask.keys()


@pytest.mark.parametrize(
    "package, precision",
    [
        ("lightning", "bf16-mixed"),
        ("pytorch_lightning", "bf16-mixed"),
        ("lightning", "16-mixed-scaler"),
        ("pytorch_lightning", "16-mixed"),
    ],
)
def test_mixed_precision_keeps_frozen_exact(package, precision):
    """16-mixed with a real GradScaler runs the unscale -> step path; the string '16-mixed' falls back on CPU."""
    pkg, module_cls = PACKAGES[package]
    module = module_cls(*ADAMW[:1], **ADAMW[1])
    theta0, mask = params_copy(module), random_mask(module)
    if precision == "16-mixed-scaler":
        plugin = MixedPrecision("16-mixed", device="cpu", scaler=torch.amp.GradScaler("cpu"))
        trainer = fit(module, WeightSaliencyCallback(mask, log_figure=False), pkg=pkg, plugins=[plugin])
    else:
        trainer = fit(module, WeightSaliencyCallback(mask, log_figure=False), pkg=pkg, precision=precision)
    check_guarantee(module, theta0, mask, trainer.optimizers)


def test_hooks_removed_after_fit():
    from torch.optim.optimizer import _global_optimizer_post_hooks, _global_optimizer_pre_hooks

    before = (len(_global_optimizer_pre_hooks), len(_global_optimizer_post_hooks))
    module = LitNet(*SGD[:1], **SGD[1])
    callback = WeightSaliencyCallback(random_mask(module), log_figure=False)
    trainer = fit(module, callback, max_steps=1)
    opt = trainer.optimizers[0]
    assert not opt._optimizer_step_pre_hooks and not opt._optimizer_step_post_hooks
    assert (len(_global_optimizer_pre_hooks), len(_global_optimizer_post_hooks)) == before


class RecreateOptimizer(L.Callback):
    """Re-create the optimizers mid-fit, as a user's callback (or a tuner) may do."""

    def __init__(self, at_step: int) -> None:
        self.at_step = at_step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.at_step and batch_idx == self.at_step:
            trainer.strategy.setup_optimizers(trainer)


@pytest.mark.parametrize("opt", [SGD, ADAMW], ids=["sgd_momentum_wd", "adamw"])
def test_an_optimizer_recreated_during_fit_is_held_to_the_mask(opt):
    name, kwargs = opt
    module = LitNet(name, **kwargs)
    theta0, mask = params_copy(module), random_mask(module)
    trainer = fit(module, [WeightSaliencyCallback(mask, log_figure=False), RecreateOptimizer(2)], max_steps=4)
    check_guarantee(module, theta0, mask, trainer.optimizers)
    expected = reference_run(name, kwargs, mask, 4, recreate_at=2)
    for n, p in module.named_parameters():
        torch.testing.assert_close(p.detach(), expected[n], msg=lambda m, n=n: f"{n}: {m}")
