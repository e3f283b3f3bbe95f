"""ANT masks: per-run scores vs manual augmented runs, intersection vs manual intersection, trajectory."""

import copy

import pytest
import torch
import torch.nn.functional as F

from salguide.weights import WeightMask, ant_mask, ant_scores, saliency_scores, topk_mask


def add_noise(x, generator):
    return x + 0.3 * torch.randn(x.shape, generator=generator)


def flip(x, generator):
    return x.flip(-1)


def manual_run(model, loader, seed, aug):
    gen = torch.Generator().manual_seed(seed)
    batches = [(x if aug is None else aug(x, gen), y) for x, y in loader]
    return saliency_scores(model, batches, progress=False)


def test_runs_match_manually_augmented_scores(model, loader):
    runs = ant_scores(model, loader, seeds=(0, 5), augmentations=[add_noise, None], progress=False)
    expected = [manual_run(model, loader, s, a) for s in (0, 5) for a in (add_noise, None)]
    assert len(runs) == 4
    for got, want in zip(runs, expected):
        assert list(got) == list(want)
        for n in want:
            torch.testing.assert_close(got[n], want[n], msg=n)
    assert not torch.allclose(runs[0]["fc.weight"], runs[2]["fc.weight"])  # seeds draw different noise
    torch.testing.assert_close(runs[1]["fc.weight"], runs[3]["fc.weight"])  # identity ignores the seed


def test_mask_is_intersection_of_per_layer_topk(model, loader):
    augs = [add_noise, flip]
    got = ant_mask(model, loader, 0.3, seeds=(1, 2), augmentations=augs, progress=False)
    per_run = [topk_mask(manual_run(model, loader, s, a), 0.3, scope="layer") for s in (1, 2) for a in augs]
    assert isinstance(got, WeightMask) and list(got) == list(per_run[0])
    for n in got:
        manual = per_run[0][n] & per_run[1][n] & per_run[2][n] & per_run[3][n]
        assert torch.equal(got[n], manual), n
    assert got.density <= 0.3 + 1e-9
    assert got.num_selected < WeightMask(per_run[0]).num_selected  # the runs disagree somewhere
    glob = ant_mask(model, loader, 0.3, scope="global", seeds=(1,), augmentations=flip, progress=False)
    assert glob == WeightMask.from_scores(manual_run(model, loader, 1, flip), 0.3, scope="global")


def test_trajectory_sums_scores_along_descent_and_leaves_model_untouched(model, loader):
    model.train()
    model.fc.weight.grad = torch.ones_like(model.fc.weight)
    state = copy.deepcopy(model.state_dict())
    flags = [p.requires_grad for p in model.parameters()]
    lr = 0.5
    got = ant_scores(model, loader, seeds=(0,), trajectory_steps=2, lr=lr, progress=False)[0]

    walker = copy.deepcopy(model)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    expected = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    for _ in range(3):
        walker.zero_grad(set_to_none=True)
        walker.eval()
        for p in walker.parameters():
            p.requires_grad_(True)
        for x, y in loader:
            F.cross_entropy(walker(x), y).backward()
        with torch.no_grad():
            for n, p in walker.named_parameters():
                g = p.grad if p.grad is not None else torch.zeros_like(p)
                expected[n] += g.abs()
                if n in trainable:
                    p -= lr * g / len(loader)  # mean batch gradient
    for n in expected:
        torch.testing.assert_close(got[n], expected[n], msg=n)
    assert not torch.allclose(got["fc.weight"], 3 * saliency_scores(model, loader, progress=False)["fc.weight"])

    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert model.training and [p.requires_grad for p in model.parameters()] == flags
    assert torch.equal(model.fc.weight.grad, torch.ones_like(model.fc.weight))


def test_caller_rng_state_is_restored(model, loader):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    ant_scores(model, loader, seeds=(7,), augmentations=add_noise, progress=False)
    assert torch.equal(torch.rand(3), expected)


class ExplodingLoader:
    def __iter__(self):
        raise AssertionError("arguments must be checked before any scoring")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"seeds": ()}, "seeds"),
        ({"seeds": (0.5,)}, "seeds"),
        ({"trajectory_steps": -1}, "trajectory_steps"),
        ({"lr": 0.0}, "lr"),
        ({"lr": float("nan")}, "lr"),
        ({"augmentations": []}, "augmentations"),
        ({"augmentations": [flip, "crop"]}, "augmentation 1"),
        ({"ratio": 0.0}, "ratio"),
        ({"ratio": 1.5}, "ratio"),
        ({"scope": "row"}, "scope"),
    ],
)
def test_bad_arguments_fail_before_scoring(model, kwargs, message):
    kwargs = {"ratio": 0.5, **kwargs}
    with pytest.raises(ValueError, match=message):
        ant_mask(model, ExplodingLoader(), kwargs.pop("ratio"), progress=False, **kwargs)


def test_augmentation_must_return_a_tensor(model, loader):
    with pytest.raises(ValueError, match="expected a Tensor"):
        ant_scores(model, loader, seeds=(0,), augmentations=lambda x, g: x.numpy(), progress=False)
