"""The functional masked-update core and MaskedUpdate in a plain torch loop, checked bit for bit and
against a naive reference (masked_fill on gradients, torch.where restore, state multiplied by the mask)."""

import pytest
import torch
from torch import nn

from salguide.weights.masked_update import (
    MaskedUpdate,
    mask_gradients_,
    mask_optimizer_state_,
    restore_frozen_,
    snapshot_frozen,
)

SPECIAL = torch.tensor([float("nan"), -0.0, float("inf"), -float("inf"), 1e-45, -3.5, 2.0, 7.0])
SPECIAL_KEEP = torch.tensor([False, False, False, False, False, True, True, True])


def bits(t: torch.Tensor) -> torch.Tensor:
    return t.detach().view(torch.int32)


def net(dtype=torch.float32) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 2)).to(dtype)


def scattered_mask(module: nn.Module, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {n: torch.rand(p.shape, generator=g) < 0.5 for n, p in module.named_parameters()}


def test_snapshot_and_restore_are_bit_exact_for_special_values():
    p = nn.Parameter(SPECIAL.clone())
    mask = {"w": SPECIAL_KEEP}
    snap = snapshot_frozen([("w", p)], mask)
    assert torch.equal(bits(snap["w"]), bits(SPECIAL[~SPECIAL_KEEP]))
    with torch.no_grad():
        p.fill_(123.0)
    restore_frozen_([("w", p)], mask, snap)
    assert torch.equal(bits(p)[~SPECIAL_KEEP], bits(SPECIAL)[~SPECIAL_KEEP])  # nan, -0.0, inf, subnormal kept
    assert torch.all(p.detach()[SPECIAL_KEEP] == 123.0)  # trainable entries untouched


def test_mask_gradients_zeroes_inf_and_nan_without_touching_the_rest():
    p = nn.Parameter(torch.zeros(8))
    p.grad = SPECIAL.clone()
    q = nn.Parameter(torch.zeros(3))  # no grad: must be skipped
    mask_gradients_([("w", p), ("q", q)], {"w": ~SPECIAL_KEEP, "q": torch.ones(3, dtype=torch.bool)})
    assert torch.equal(bits(p.grad)[SPECIAL_KEEP], torch.zeros(3, dtype=torch.int32))  # exactly +0.0
    assert torch.equal(bits(p.grad)[~SPECIAL_KEEP], bits(SPECIAL)[~SPECIAL_KEEP])
    assert q.grad is None


def test_mask_optimizer_state_zeroes_per_entry_state_and_keeps_step():
    model = net()
    mask = scattered_mask(model)
    opt = torch.optim.Adam(model.parameters(), lr=0.1, amsgrad=True)
    model(torch.randn(4, 6)).sum().backward()
    opt.step()
    before = {p: {k: v.clone() for k, v in opt.state[p].items()} for p in model.parameters()}
    by_param = {p: mask[n] for n, p in model.named_parameters()}
    mask_optimizer_state_(opt, by_param)
    for p, keep in by_param.items():
        state = opt.state[p]
        assert torch.equal(state["step"], before[p]["step"])
        for key in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"):
            assert torch.equal(state[key], torch.where(keep, before[p][key], 0.0)), key
            assert before[p][key][~keep].any()  # there was something to zero


OPTIMIZERS = [
    (torch.optim.SGD, {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.2, "nesterov": True}),
    (torch.optim.Adam, {"lr": 0.05, "weight_decay": 0.1}),
    (torch.optim.AdamW, {"lr": 0.05, "weight_decay": 0.5, "amsgrad": True}),
    (torch.optim.RMSprop, {"lr": 0.01, "momentum": 0.5, "weight_decay": 0.1, "centered": True}),
]


def _train(model, opt, steps, before_step=None):
    g = torch.Generator().manual_seed(1)
    for _ in range(steps):
        opt.zero_grad()
        model(torch.randn(8, 6, generator=g)).pow(2).mean().backward()
        if before_step:
            before_step()
        opt.step()


@pytest.mark.parametrize("opt_cls, kwargs", OPTIMIZERS, ids=lambda x: getattr(x, "__name__", ""))
def test_masked_update_matches_naive_reference(opt_cls, kwargs):
    model, ref = net(), net()
    mask = scattered_mask(model)
    theta0 = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = opt_cls(model.parameters(), **kwargs)
    MaskedUpdate(model.named_parameters(), mask).attach(opt)
    _train(model, opt, steps=5)

    ref_opt = opt_cls(ref.parameters(), **kwargs)
    ref_params = dict(ref.named_parameters())

    def naive_mask():
        for n, p in ref_params.items():
            p.grad.masked_fill_(~mask[n], 0.0)

    def naive_restore(*_):
        with torch.no_grad():
            for n, p in ref_params.items():
                p.copy_(torch.where(mask[n], p, theta0[n]))
                for v in ref_opt.state[p].values():
                    if v.shape == p.shape:
                        v.mul_(mask[n])

    ref_opt.register_step_post_hook(naive_restore)
    _train(ref, ref_opt, steps=5, before_step=naive_mask)
    for n, p in model.named_parameters():
        keep = mask[n]
        assert torch.equal(p.detach()[~keep], theta0[n][~keep])
        assert not torch.equal(p.detach()[keep], theta0[n][keep])
        torch.testing.assert_close(p.detach(), ref_params[n].detach())
        for key, v in opt.state[p].items():
            if v.shape == p.shape:
                assert not v[~keep].any(), key
                torch.testing.assert_close(v, ref_opt.state[ref_params[n]][key])


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float64])
def test_other_element_widths(dtype):
    model = net(dtype)
    mask = scattered_mask(model)
    theta0 = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.AdamW(model.parameters(), lr=0.05, weight_decay=0.5)
    MaskedUpdate(model.named_parameters(), mask).attach(opt)
    g = torch.Generator().manual_seed(1)
    for _ in range(3):
        opt.zero_grad()
        model(torch.randn(8, 6, generator=g).to(dtype)).float().pow(2).mean().backward()
        opt.step()
    for n, p in model.named_parameters():
        assert torch.equal(p.detach()[~mask[n]], theta0[n][~mask[n]])
        assert not torch.equal(p.detach()[mask[n]], theta0[n][mask[n]])


def test_remove_handle_stops_enforcement():
    model = net()
    mask = scattered_mask(model)
    theta0 = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.AdamW(model.parameters(), lr=0.05, weight_decay=0.5)
    MaskedUpdate(model.named_parameters(), mask).attach(opt).remove()
    _train(model, opt, steps=1)
    w = model[0].weight.detach()
    assert not torch.equal(w[~mask["0.weight"]], theta0["0.weight"][~mask["0.weight"]])


def test_attach_all_holds_optimizers_created_later_and_leaves_others_alone():
    model, other = net(), net()
    mask = scattered_mask(model)
    theta0 = {n: p.detach().clone() for n, p in model.named_parameters()}
    handle = MaskedUpdate(model.named_parameters(), mask).attach_all()
    try:
        for _ in range(2):  # two optimizers, both created after attach_all, momentum and weight decay
            opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=0.2)
            _train(model, opt, steps=3)
            for n, p in model.named_parameters():
                assert torch.equal(p.detach()[~mask[n]], theta0[n][~mask[n]])
                assert not opt.state[p]["momentum_buffer"][~mask[n]].any()
        other_opt = torch.optim.SGD(other.parameters(), lr=0.1)
        other_before = {n: p.detach().clone() for n, p in other.named_parameters()}
        _train(other, other_opt, steps=1)  # not masked: every entry moves
        for n, p in other.named_parameters():
            assert (p.detach() != other_before[n]).all(), n
    finally:
        handle.remove()
    _train(model, torch.optim.SGD(model.parameters(), lr=0.1), steps=1)  # removed: frozen entries move again
    w = model[0].weight.detach()
    assert not torch.equal(w[~mask["0.weight"]], theta0["0.weight"][~mask["0.weight"]])


def test_snapshot_round_trip_and_fully_trainable_or_frozen_tensors():
    model = net()
    mask = scattered_mask(model)
    mask["0.bias"] = torch.ones(5, dtype=torch.bool)  # fully trainable
    mask["2.bias"] = torch.zeros(2, dtype=torch.bool)  # fully frozen
    theta0 = snapshot_frozen(model.named_parameters(), mask)
    assert theta0["0.bias"].numel() == 0 and theta0["2.bias"].numel() == 2
    with torch.no_grad():  # the model moves on; an update built from the old snapshot restores θ₀
        for p in model.parameters():
            p.add_(1.0)
    update = MaskedUpdate(model.named_parameters(), mask, snapshot=theta0)
    for n, values in update.snapshot().items():
        assert torch.equal(values, theta0[n])
    assert "0.bias" not in update.snapshot()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=0.1)
    update.attach(opt)
    _train(model, opt, steps=2)
    assert torch.equal(snapshot_frozen(model.named_parameters(), mask)["2.weight"], theta0["2.weight"])
    assert torch.equal(model[2].bias.detach(), theta0["2.bias"])


def test_strict_false_trains_parameters_missing_from_mask():
    model = net()
    mask = scattered_mask(model)
    del mask["0.bias"]
    with pytest.raises(ValueError, match=r"1 missing \[0.bias\]"):
        MaskedUpdate(model.named_parameters(), mask)
    before = model[0].bias.detach().clone()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    MaskedUpdate(model.named_parameters(), mask, strict=False).attach(opt)
    _train(model, opt, steps=1)
    assert (model[0].bias.detach() != before).all()


def test_bad_masks_and_snapshots_are_named():
    model = net()
    mask = scattered_mask(model)
    bad_shape = dict(mask, **{"0.weight": torch.ones(6, 5, dtype=torch.bool)})
    with pytest.raises(ValueError, match=r"shape mismatches \[0.weight \(6, 5\) vs \(5, 6\)\]"):
        MaskedUpdate(model.named_parameters(), bad_shape)
    with pytest.raises(ValueError, match="'2.bias' must be a torch.bool tensor"):
        MaskedUpdate(model.named_parameters(), dict(mask, **{"2.bias": torch.ones(2)}))
    with pytest.raises(ValueError, match="carry an extra prefix 'model.'"):
        MaskedUpdate(model.named_parameters(), {f"model.{n}": m for n, m in mask.items()})
    wrapped = nn.Sequential()
    wrapped.add_module("backbone", model)
    with pytest.raises(ValueError, match="under 'backbone'"):
        MaskedUpdate(wrapped.named_parameters(), mask)
    with pytest.raises(ValueError, match="non-empty mapping"):
        MaskedUpdate(model.named_parameters(), {})
    with pytest.raises(ValueError, match="no parameters"):
        MaskedUpdate([], mask)
    short = dict(snapshot_frozen(model.named_parameters(), mask))
    short["0.weight"] = short["0.weight"][:-1]
    with pytest.raises(ValueError, match="snapshot of '0.weight' must be a 1-D torch.float32 tensor of"):
        MaskedUpdate(model.named_parameters(), mask, snapshot=short)
    del short["0.weight"]
    with pytest.raises(ValueError, match="no frozen values for parameter '0.weight'"):
        restore_frozen_(model.named_parameters(), mask, short)


def test_sparse_gradients_are_refused_naming_the_parameter():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Embedding(10, 4, sparse=True), nn.Flatten(), nn.Linear(8, 2))
    mask = scattered_mask(model)
    theta0 = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    MaskedUpdate(model.named_parameters(), mask).attach(opt)
    model(torch.tensor([[1, 2], [3, 4]])).sum().backward()
    assert model[0].weight.grad.is_sparse
    with pytest.raises(ValueError, match=r"parameter '0\.weight' has a sparse gradient.*sparse=False"):
        opt.step()
    assert all(torch.equal(p.detach(), theta0[n]) for n, p in model.named_parameters())  # refused before any update
    with pytest.raises(ValueError, match=r"'0\.weight' has a sparse gradient"):
        mask_gradients_(model.named_parameters(), mask)
