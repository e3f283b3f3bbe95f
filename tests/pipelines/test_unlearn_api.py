"""salguide.pipelines.fit.unlearn on digits: each method does what it claims, SalUn keeps frozen weights."""

from __future__ import annotations

import pytest
import torch

from salguide.data import DigitsDataModule
from salguide.models import SmallCNN, sgd
from salguide.pipelines.fit import train_original, unlearn
from salguide.unlearning import accuracy, method_spec
from salguide.weights import WeightMask, saliency_scores

TRAINER = {"accelerator": "cpu", "enable_progress_bar": False}


@pytest.fixture(scope="module")
def setup():
    dm = DigitsDataModule(batch_size=64, seed=0, forget="class", forget_class=0)
    dm.setup("fit")
    torch.manual_seed(0)
    original = train_original(SmallCNN(width=16), dm, epochs=4, trainer_kwargs=TRAINER, optimizer=sgd(lr=0.05))
    return dm, original


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_original_learned_and_is_not_modified_by_unlearning(setup):
    dm, original = setup
    assert accuracy(original, dm.forget_dataloader()) > 80
    before = _state(original)
    res = unlearn(original, dm, method_spec("ga", epochs=1, lr=1e-3), trainer_kwargs=TRAINER)
    assert all(torch.equal(before[k], v) for k, v in original.state_dict().items())
    assert res.model is not original and res.seconds > 0


def test_gradient_ascent_raises_forget_loss(setup):
    dm, original = setup

    def forget_ce(m):
        m.eval()
        with torch.no_grad():
            return sum(
                torch.nn.functional.cross_entropy(m(x), y, reduction="sum").item() for x, y in dm.forget_dataloader()
            )

    res = unlearn(original, dm, method_spec("ga", epochs=2, lr=5e-3), trainer_kwargs=TRAINER)
    assert forget_ce(res.model) > 2 * forget_ce(original)


def test_salun_moves_only_masked_weights_and_forgets(setup):
    dm, original = setup
    calls = []

    def mask_fn(net):
        calls.append(1)
        return WeightMask.from_scores(saliency_scores(net, dm.forget_dataloader(), progress=False), ratio=0.3)

    res = unlearn(original, dm, method_spec("salun", epochs=3, lr=0.02), mask_fn=mask_fn, trainer_kwargs=TRAINER)
    assert calls == [1] and res.mask is not None
    params = dict(original.named_parameters())
    for name, p in res.model.named_parameters():
        frozen = ~res.mask[name]
        assert torch.equal(p.detach()[frozen], params[name].detach()[frozen]), name
    moved = sum(int((p.detach() != params[n].detach()).sum()) for n, p in res.model.named_parameters())
    assert moved > 0
    assert accuracy(res.model, dm.forget_dataloader()) < accuracy(original, dm.forget_dataloader()) - 30


def test_retrain_needs_a_model_factory_and_salun_a_mask(setup):
    dm, original = setup
    with pytest.raises(ValueError, match="model_factory"):
        unlearn(original, dm, "retrain", trainer_kwargs=TRAINER)
    with pytest.raises(ValueError, match="needs a weight mask"):
        unlearn(original, dm, "salun", trainer_kwargs=TRAINER)
    with pytest.raises(ValueError, match="unknown unlearning method"):
        unlearn(original, dm, "forget-it", trainer_kwargs=TRAINER)


def test_unlearning_trains_in_train_mode_even_from_an_eval_mode_original(setup):
    """Lightning keeps submodules' eval mode at fit start; unlearn() must switch the copy to train mode
    (a cached original comes back in eval mode, and frozen BatchNorm statistics made FT diverge)."""
    from salguide._lightning import Callback

    dm, original = setup
    original.eval()
    seen = []

    class Probe(Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            seen.append(all(m.training for m in pl_module.modules()))

    unlearn(original, dm, method_spec("ft", epochs=1, lr=1e-3), trainer_kwargs=TRAINER, callbacks=[Probe()])
    assert seen and all(seen)
    assert not original.training  # the caller's model keeps its own mode
