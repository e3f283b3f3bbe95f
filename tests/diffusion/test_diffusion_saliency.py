"""SalUn's generation saliency and ANT's augmented map on a tiny UNet, against a naive loop."""

import copy

import pytest
import torch
from diff_helpers import T, batches, tiny

from salguide.diffusion import (
    check_mask_fits,
    diffusion_ant_mask,
    diffusion_saliency_mask,
    diffusion_saliency_scores,
    gaussian_noise,
)
from salguide.models import SmallCNN
from salguide.weights import WeightMask


def naive_scores(m, data, seed):
    """|Σ_batches ∇θ mean‖ε − ε_θ(x_t, t, y)‖²| in eval mode, t antithetic then ε, from torch's global RNG."""
    torch.manual_seed(seed)
    m.eval()
    params = list(m.parameters())
    total = [torch.zeros_like(p) for p in params]
    abar = m.noise_scheduler.alphas_cumprod
    for x, y in data:
        n = x.shape[0]
        half = torch.randint(0, T, (n // 2 + 1,))
        t = torch.cat([half, T - 1 - half])[:n]
        eps = torch.randn(x.shape)
        a = abar[t].view(-1, 1, 1, 1)
        x_t = a.sqrt() * x + (1 - a).sqrt() * eps
        loss = ((eps - m.unet(x_t, t, class_labels=y).sample) ** 2).mean()
        for acc, g in zip(total, torch.autograd.grad(loss, params, allow_unused=True)):
            if g is not None:
                acc += g
    m.train()
    return {n: g.abs() for (n, _), g in zip(m.named_parameters(), total)}


def test_scores_match_a_naive_loop_and_are_seeded():
    m, data = tiny(), batches()
    got = diffusion_saliency_scores(m, data, seed=5)
    want = naive_scores(m, data, 5)
    assert list(got) == list(want)
    for n in got:
        torch.testing.assert_close(got[n], want[n], rtol=1e-4, atol=1e-7)
    assert all(torch.equal(got[n], s) for n, s in diffusion_saliency_scores(m, data, seed=5).items())
    assert any(not torch.equal(got[n], s) for n, s in diffusion_saliency_scores(m, data, seed=6).items())
    assert m.training  # modes restored


def test_salun_mask_keeps_the_top_half_globally_and_roundtrips(tmp_path):
    m, data = tiny(), batches()
    mask = diffusion_saliency_mask(m, data, 0.5, seed=0)
    scores = diffusion_saliency_scores(m, data, seed=0)
    assert mask == WeightMask.from_scores(scores, 0.5, scope="global")
    assert abs(mask.density - 0.5) < 1e-3
    assert WeightMask.load(mask.save(tmp_path / "m.safetensors"), model=m) == mask


def test_ant_mask_is_the_intersection_of_per_run_layer_masks():
    m, data = tiny(), batches()
    got = diffusion_ant_mask(m, data, 0.5, seeds=(0, 1))
    runs = [WeightMask.from_scores(diffusion_saliency_scores(m, data, seed=s), 0.5, scope="layer") for s in (0, 1)]
    assert got == runs[0] & runs[1]
    augmented = diffusion_ant_mask(m, data, 0.5, seeds=(0, 1), augmentations=[None, gaussian_noise(0.5)])
    assert augmented.num_selected <= got.num_selected


def test_prompt_model_masks_the_unet_and_the_prompt_table():
    m = tiny(prompt=True)
    mask = diffusion_saliency_mask(m, batches(), 0.3)
    assert any(n.startswith("prompts.") for n in mask) and any(n.startswith("unet.") for n in mask)
    assert mask.num_selected > 0


def test_a_classifiers_mask_does_not_fit_the_unet():
    cnn_mask = WeightMask({n: torch.ones_like(p, dtype=torch.bool) for n, p in SmallCNN(4).named_parameters()})
    with pytest.raises(ValueError, match="does not fit DiffusionModule .*another model, e.g. a classifier"):
        check_mask_fits(cnn_mask, tiny())


def test_forget_class_outside_the_model_is_refused_by_scoring():
    with pytest.raises(ValueError, match="forget class 7 is outside the model's forget classes 0..3|outside the model"):
        diffusion_saliency_scores(tiny(), batches(label=7))
    with pytest.raises(ValueError, match="forget set is empty"):
        diffusion_saliency_scores(tiny(), [])


def test_ant_mask_can_score_the_ant_loss_itself():
    from salguide.diffusion import ANTObjective

    m, data, obj = tiny(), batches(), ANTObjective()
    got = diffusion_ant_mask(m, data, 0.5, seeds=(4,), objective=obj)
    frozen = copy.deepcopy(m).eval()
    torch.manual_seed(4)  # by hand: |Σ_b ∇θ L_ANT(θ₀)| in eval mode, one run, per-layer top half
    m.eval()
    params = [p for _, p in m.named_parameters()]
    total = [torch.zeros_like(p) for p in params]
    for x, y in data:
        loss = obj.forget_loss(m.eps, frozen.eps, m.noise_scheduler, 4, 4, x, y)
        for acc, g in zip(total, torch.autograd.grad(loss, params, allow_unused=True)):
            if g is not None:
                acc += g
    m.train()
    want = WeightMask.from_scores({n: g.abs() for (n, _), g in zip(m.named_parameters(), total)}, 0.5, scope="layer")
    assert got == want
    assert got != diffusion_ant_mask(m, data, 0.5, seeds=(4,))
    assert diffusion_ant_mask(m, data, 0.5, seeds=(4,), objective=obj, trajectory_steps=1).num_selected > 0
