"""The DDPM loss, guidance, timesteps and sampling against naive reimplementations."""

from functools import partial

import pytest
import torch
from diff_helpers import T, tiny

from salguide.diffusion import DiffusionModule, check_guidance, check_t_range, denoising_loss, guided_eps, sample_images
from salguide.diffusion.core import draw_timesteps
from salguide.diffusion.module import ddpm_scheduler


def linear_eps(x, t, c):
    """A toy denoiser with a known closed form: ε(x, t, c) = (c + 1) · x / (t + 1)."""
    return x * (c.float() + 1).view(-1, 1, 1, 1) / (t.float() + 1).view(-1, 1, 1, 1)


def test_denoising_loss_matches_the_ddpm_formula():
    sched = ddpm_scheduler(T)
    x0, c = torch.randn(5, 1, 4, 4), torch.tensor([0, 1, 2, 3, 1])
    loss = denoising_loss(linear_eps, sched, x0, c, generator=torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)  # the same draws, by hand: antithetic t, then ε
    half = torch.randint(0, T, (3,), generator=g)
    t = torch.cat([half, T - 1 - half])[:5]
    eps = torch.randn(x0.shape, generator=g)
    betas = torch.tensor([1 - a for a in sched.alphas], dtype=torch.float64)
    abar = torch.cumprod(1 - betas, 0).float()[t].view(-1, 1, 1, 1)
    x_t = abar.sqrt() * x0 + (1 - abar).sqrt() * eps
    want = ((eps - linear_eps(x_t, t, c)) ** 2).mean()
    torch.testing.assert_close(loss, want, rtol=1e-5, atol=1e-6)


def test_timesteps_are_antithetic_and_inside_the_range():
    t = draw_timesteps(7, 3, 11, torch.Generator().manual_seed(0))
    assert t.min() >= 3 and t.max() < 11
    assert torch.equal(t[4:7], 3 + 11 - 1 - t[:3])


def test_guidance_combines_conditional_and_null():
    x, t, c = torch.randn(3, 1, 2, 2), torch.tensor([1, 2, 3]), torch.tensor([0, 2, 1])
    got = guided_eps(linear_eps, x, t, c, null=4, scale=2.5)
    e_c, e_u = linear_eps(x, t, c), linear_eps(x, t, torch.full_like(c, 4))
    torch.testing.assert_close(got, e_u + 2.5 * (e_c - e_u))


def test_ddim_sampling_matches_a_naive_loop_and_is_seeded():
    sched = ddpm_scheduler(T)
    c = torch.tensor([0, 1])
    got = sample_images(linear_eps, sched, c, 3, (1, 2, 2), guidance_scale=1.5, steps=4, seed=7)
    # naive DDIM (eta = 0) with diffusers' 'leading' spacing: t = 15, 10, 5, 0
    abar = sched.alphas_cumprod
    x = torch.randn((2, 1, 2, 2), generator=torch.Generator().manual_seed(7))
    for t in (15, 10, 5, 0):
        tt = torch.full((2,), t)
        e = guided_eps(linear_eps, x, tt, c, 3, 1.5)
        a_t = abar[t]
        a_prev = abar[t - 5] if t - 5 >= 0 else torch.tensor(1.0)  # set_alpha_to_one
        x0 = (x - (1 - a_t).sqrt() * e) / a_t.sqrt()
        x = a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * e
    torch.testing.assert_close(got, x, rtol=1e-4, atol=1e-5)
    again = sample_images(linear_eps, sched, c, 3, (1, 2, 2), guidance_scale=1.5, steps=4, seed=7)
    other = sample_images(linear_eps, sched, c, 3, (1, 2, 2), guidance_scale=1.5, steps=4, seed=8)
    assert torch.equal(got, again) and not torch.equal(got, other)


def test_module_sampling_is_seeded_for_ddpm_and_ddim():
    m = tiny()
    for sampler in ("ddim", "ddpm"):
        a = m.sample([0, 3], steps=3, sampler=sampler, seed=1)
        assert a.shape == (2, 1, 8, 8) and torch.equal(a, m.sample([0, 3], steps=3, sampler=sampler, seed=1))


@pytest.mark.parametrize("scale", [0, -1.0, float("nan"), True])
def test_guidance_scale_must_be_positive(scale):
    with pytest.raises(ValueError, match="guidance_scale must be a finite number > 0"):
        check_guidance(scale)
    with pytest.raises(ValueError, match="guidance_scale"):
        tiny().sample([0], guidance_scale=scale, steps=2)


@pytest.mark.parametrize("bad", [(-1, 5), (5, 5), (0, T + 1), (3,)])
def test_timestep_range_outside_the_schedule(bad):
    with pytest.raises(ValueError, match="t_range"):
        check_t_range(bad, ddpm_scheduler(T))


def test_sampling_refuses_unknown_classes_and_samplers():
    m = tiny()
    with pytest.raises(ValueError, match="class 4 is outside the model's classes 0..3"):
        m.sample([4], steps=2)
    with pytest.raises(ValueError, match="sampler"):
        m.sample([0], steps=2, sampler="euler")
    with pytest.raises(ValueError, match="exceeds the schedule"):
        m.sample([0], steps=T + 1)


def test_training_step_drops_conditions_to_the_null_class():
    m = tiny(cond_drop_prob=0.5)
    torch.manual_seed(0)
    dropped = m.drop_conditions(torch.zeros(1000, dtype=torch.long))
    assert set(dropped.tolist()) == {0, m.null_condition} and 400 < int((dropped == 4).sum()) < 600
    x, y = torch.randn(4, 1, 8, 8), torch.tensor([0, 1, 2, 3])
    assert torch.isfinite(m.training_step((x, y), 0))
    with pytest.raises(ValueError, match="outside the model's classes"):
        m.training_step((x, torch.tensor([0, 1, 2, 9])), 0)


def test_module_reads_classes_and_shape_from_its_net_and_keeps_it_as_unet():
    from salguide.diffusion import PromptDiffusionModule, PromptTable, class_unet, prompt_unet

    m = tiny()
    assert (m.num_conditions, m.null_condition, m.sample_shape) == (4, 4, (1, 8, 8))
    assert all(k.startswith("unet.") for k in m.state_dict())  # the parameter names of caches and masks
    assert "net" not in m.hparams and "optimizer" not in m.hparams  # checkpoints load with weights_only=True
    p = tiny(prompt=True)
    assert (p.num_conditions, p.null_condition) == (4, 4)
    assert {k.split(".")[0] for k in p.state_dict()} == {"unet", "prompts"}
    opt = m.configure_optimizers()
    assert isinstance(opt, torch.optim.AdamW) and opt.defaults["lr"] == 2e-3 and opt.defaults["weight_decay"] == 0
    net = class_unet(4, sample_size=8, block_out_channels=(8, 16), norm_num_groups=4)
    with pytest.raises(ValueError, match="cond_drop_prob must lie in"):
        DiffusionModule(net, cond_drop_prob=1.0)
    with pytest.raises(ValueError, match="optimizer lr must be positive, got 0"):
        DiffusionModule(net, optimizer=partial(torch.optim.AdamW, lr=0))
    with pytest.raises(ValueError, match="net must be a diffusers UNet whose config has num_class_embeds"):
        DiffusionModule(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="dim=4 must equal the net's cross_attention_dim=8"):
        PromptDiffusionModule(prompt_unet(8, 1, (8, 16), 1, 4, cross_attention_dim=8), PromptTable(4, dim=4))
