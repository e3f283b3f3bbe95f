"""saliency_scores against a naive per-batch ``.backward()`` loop in eval mode."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from salguide.weights import saliency_scores


def naive_scores(model, loader, train_mode=False, loss_fn=F.cross_entropy):
    ref = copy.deepcopy(model).train(train_mode)
    for p in ref.parameters():
        p.requires_grad_(True)
        p.grad = None
    for x, y in loader:
        loss_fn(ref(x), y).backward()  # .grad sums over batches
    return {n: (p.grad if p.grad is not None else torch.zeros_like(p)).abs() for n, p in ref.named_parameters()}


def assert_scores_equal(got, want):
    assert list(got) == list(want)
    for n in want:
        assert got[n].dtype == torch.float32 and got[n].shape == want[n].shape
        torch.testing.assert_close(got[n], want[n], rtol=1e-5, atol=1e-7, msg=n)


def test_matches_naive_eval_mode_sum_of_batch_gradients(model, loader):
    got = saliency_scores(model, loader, progress=False)
    assert_scores_equal(got, naive_scores(model, loader))
    assert got["conv.bias"].abs().sum() > 0  # frozen parameters are scored too
    assert torch.all(got["unused.weight"] == 0)
    train_mode = naive_scores(model, loader, train_mode=True)  # dropout + batch statistics
    assert not torch.allclose(got["fc.weight"], train_mode["fc.weight"])
    single = naive_scores(model, [next(iter(loader))])
    assert not torch.allclose(got["fc.weight"], single["fc.weight"])  # every batch counts


def test_custom_loss_fn(model, loader):
    def loss_fn(logits, y):
        return -3.0 * F.cross_entropy(logits, y)

    got = saliency_scores(model, loader, loss_fn, progress=False)
    assert_scores_equal(got, naive_scores(model, loader, loss_fn=loss_fn))


def test_batch_formats_agree(model, data):
    x, y = data
    tuples = saliency_scores(model, [(x, y)], progress=False)
    for batch in ([x, y, "extra", 3], {"x": x, "y": y}, {"input": x, "target": y, "meta": 0}):
        assert_scores_equal(saliency_scores(model, [batch], progress=False), tuples)
    with pytest.raises(ValueError, match=r"\['image', 'label'\]"):
        saliency_scores(model, [{"image": x, "label": y}], progress=False)
    with pytest.raises(ValueError, match="Tensor"):
        saliency_scores(model, [x], progress=False)


def snapshot(model):
    return (
        [m.training for m in model.modules()],
        [p.requires_grad for p in model.parameters()],
        [None if p.grad is None else p.grad.clone() for p in model.parameters()],
        {k: v.clone() for k, v in model.state_dict().items()},
    )


def assert_untouched(model, before):
    modes, flags, grads, state = snapshot(model)
    assert modes == before[0] and flags == before[1]
    for g, g0 in zip(grads, before[2]):
        assert (g is None and g0 is None) or torch.equal(g, g0)
    assert all(torch.equal(state[k], before[3][k]) for k in state)


def test_restores_modes_flags_grads_and_buffers(model, loader):
    model.train()
    model.bn.eval()  # mixed modes must come back per submodule
    model.fc.weight.grad = torch.full_like(model.fc.weight, 7.0)
    before = snapshot(model)
    saliency_scores(model, loader, progress=False)
    assert_untouched(model, before)


def test_restores_state_when_the_loss_raises(model, loader):
    model.train()
    before = snapshot(model)

    def broken(logits, y):
        assert not model.training, "scores must be computed in eval mode"
        raise RuntimeError("loss exploded")

    with pytest.raises(RuntimeError, match="loss exploded"):
        saliency_scores(model, loader, broken, progress=False)
    assert_untouched(model, before)


def test_works_under_no_grad(model, loader):
    with torch.no_grad():
        got = saliency_scores(model, loader, progress=False)
    assert_scores_equal(got, naive_scores(model, loader))


def test_empty_loader_and_non_finite_scores(model, data):
    empty = DataLoader(TensorDataset(data[0][:0], data[1][:0]), batch_size=4)
    with pytest.raises(ValueError, match="forget set is empty"):
        saliency_scores(model, empty, progress=False)

    def nan_in_fc_bias_only(logits, y):
        return F.cross_entropy(logits, y) + (model.fc.bias * float("nan")).sum()

    with pytest.raises(ValueError, match="'fc.bias'.*NaN or inf"):
        saliency_scores(model, [data], nan_in_fc_bias_only, progress=False)


def test_loss_must_be_scalar(model, data):
    with pytest.raises(ValueError, match="scalar"):
        saliency_scores(model, [data], lambda logits, y: F.cross_entropy(logits, y, reduction="none"), progress=False)
