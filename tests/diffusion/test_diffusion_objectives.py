"""The forget terms of SalUn, ESD and ANT against hand-written formulas on toy denoisers."""

import pytest
import torch
import torch.nn.functional as F
from diff_helpers import T

from salguide.diffusion import ANTObjective, ESDObjective, FTObjective, SalUnObjective
from salguide.diffusion.module import ddpm_scheduler
from salguide.diffusion.objectives import ant_loss, esd_loss, misaligned, salun_forget_loss


class Toy(torch.nn.Module):
    """ε(x, t, c) = w[c] · x + b[c]: every prediction is known in closed form."""

    def __init__(self, seed):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.w = torch.nn.Parameter(torch.randn(5, generator=g))
        self.b = torch.nn.Parameter(torch.randn(5, generator=g))

    def forward(self, x, t, c):
        return self.w[c].view(-1, 1, 1, 1) * x + self.b[c].view(-1, 1, 1, 1)


X, TT, Y = torch.randn(3, 1, 2, 2), torch.tensor([1, 5, 9]), torch.tensor([1, 1, 2])


def test_salun_target_is_the_detached_misaligned_prediction():
    net = Toy(0)
    loss = salun_forget_loss(net, X, TT, Y, misaligned(Y, 4))
    assert torch.equal(misaligned(Y, 4), torch.tensor([2, 2, 3]))
    w, b = net.w.detach(), net.b.detach()
    want = (
        (
            net.w[Y].view(-1, 1, 1, 1) * X
            + net.b[Y].view(-1, 1, 1, 1)
            - (w[Y + 1].view(-1, 1, 1, 1) * X + b[Y + 1].view(-1, 1, 1, 1))
        )
        ** 2
    ).mean()
    torch.testing.assert_close(loss, want)
    loss.backward()
    assert net.w.grad[3] == 0 and net.w.grad[1] != 0  # no gradient through the target class


def test_misaligned_random_never_returns_the_true_class():
    y = torch.randint(0, 4, (500,), generator=torch.Generator().manual_seed(0))
    other = misaligned(y, 4, "random", torch.Generator().manual_seed(1))
    assert not torch.any(other == y) and set(other.tolist()) == {0, 1, 2, 3}


def test_esd_targets_the_originals_negative_guidance():
    net, orig = Toy(0), Toy(1)
    loss = esd_loss(net, orig, X, TT, Y, 4, 2.0)
    e_c, e_u = orig(X, TT, Y).detach(), orig(X, TT, torch.full_like(Y, 4)).detach()
    torch.testing.assert_close(loss, F.mse_loss(net(X, TT, Y), e_u - 2.0 * (e_c - e_u)))
    sched, g = ddpm_scheduler(T), torch.Generator().manual_seed(0)
    x_t = sched.add_noise(X, torch.randn(X.shape, generator=torch.Generator().manual_seed(9)), TT)
    concept = ESDObjective(eta=2.0, anchor="concept")
    seen = []
    got = concept.forget_loss(lambda x, t, c: (seen.append((x, t)), net(x, t, c))[1], orig, sched, 4, 4, X, Y, g)
    x_t, t = seen[0]  # the noised batch the objective drew
    e_c, e_u = orig(x_t, t, Y).detach(), orig(x_t, t, torch.full_like(Y, 4)).detach()
    torch.testing.assert_close(got, F.mse_loss(net(x_t, t, Y), e_c - 2.0 * (e_c - e_u)))


def test_ant_reverses_guidance_late_and_keeps_it_early():
    net, orig = Toy(0), Toy(1)
    xe, te, xl, tl = (
        torch.randn(3, 1, 2, 2),
        torch.tensor([18, 19, 17]),
        torch.randn(3, 1, 2, 2),
        torch.tensor([1, 2, 3]),
    )
    got = ant_loss(net, orig, (xe, te), (xl, tl), Y, 4, eta=1.5, alpha1=0.3, alpha2=0.7)
    null = torch.full_like(Y, 4)

    def term(x, t, sign):
        e_c, e_u = orig(x, t, Y).detach(), orig(x, t, null).detach()
        cond = ((net(x, t, Y) - (e_u + sign * 1.5 * (e_c - e_u))) ** 2).mean()
        return cond + 0.7 * ((net(x, t, null) - e_u) ** 2).mean()

    torch.testing.assert_close(got, term(xl, tl, -1) + 0.3 * term(xe, te, +1))


def test_ant_splits_timesteps_at_the_early_fraction():
    sched = ddpm_scheduler(T)
    obj = ANTObjective(early_fraction=0.25)
    assert obj.split(sched) == 15
    seen = {}

    def spy(x, t, c):
        seen.setdefault("t", []).append(t.clone())
        return x

    obj.forget_loss(
        spy,
        spy,
        sched,
        4,
        4,
        torch.randn(6, 1, 2, 2),
        torch.zeros(6, dtype=torch.long),
        torch.Generator().manual_seed(0),
    )
    late, early = seen["t"][0], seen["t"][5]  # five calls per range: the late range first
    assert late.max() < 15 and early.min() >= 15


def test_objectives_refuse_bad_settings():
    sched = ddpm_scheduler(T)
    for bad in (0, -1.0):
        with pytest.raises(ValueError, match="eta"):
            ESDObjective(eta=bad)
        with pytest.raises(ValueError, match="eta"):
            ANTObjective(eta=bad)
    with pytest.raises(ValueError, match="t_split=25 must lie strictly inside the schedule"):
        ANTObjective(t_split=25).check(sched, 4)
    with pytest.raises(ValueError, match="outside the schedule"):
        SalUnObjective(t_range=(0, 50)).check(sched, 4)
    with pytest.raises(ValueError, match="beta"):
        SalUnObjective(beta=-1)
    with pytest.raises(ValueError, match="early_fraction"):
        ANTObjective(early_fraction=1.0)
    with pytest.raises(ValueError, match="anchor"):
        ESDObjective(anchor="x")
    with pytest.raises(ValueError, match="pseudo"):
        SalUnObjective(pseudo="any")
    assert FTObjective().forget_loss(None, None, sched, 4, 4, X, Y).item() == 0
