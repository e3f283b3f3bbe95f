"""torch.compile(fullgraph=True) of a routed ViT: no graph break on the SDPA path (traced as torch's own
ops) nor on the Triton path (one custom op; Triton's interpreter on CPU), with and without attention
statistics; outputs and gradients equal eager mode."""

from __future__ import annotations

import os

import pytest
import torch

from salguide.attention.recorder import AttentionRecorder
from salguide.models.vit import vit_digits

BACKENDS = ["sdpa"] + (["triton"] if os.environ.get("TRITON_INTERPRET") == "1" else [])


def _step(model, x, target, stats):
    model.zero_grad()
    if stats:
        with AttentionRecorder(model, [0], target=target, cls=True, lse=True) as rec:
            out = model(x)
        s = rec[0]
        loss = out.square().sum() + s.mass.sum() + s.cls[:, :, 1:].square().sum() + s.lse.sum()
    else:
        loss = model(x).square().sum()
    loss.backward()
    return [loss.detach()] + [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("stats", [False, True], ids=["plain", "mass_cls_lse"])
def test_routed_vit_compiles_fullgraph_and_matches_eager(backend, stats):
    torch._dynamo.reset()
    torch.manual_seed(0)
    vit = vit_digits(img_size=16, embed_dim=32, depth=1, backend=backend)
    x, target = torch.randn(2, 1, 16, 16), torch.rand(2, 17)
    compiled = torch.compile(vit, fullgraph=True, backend="aot_eager")
    for got, want in zip(_step(compiled, x, target, stats), _step(vit, x, target, stats)):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("backend", ["reference", *BACKENDS])
def test_column_sums_carry_no_gradient_compiled_or_not(backend):
    """Column sums are a statistic without a gradient (the card's contract); a compiled call must not
    hand back a colsum that asks for one and then silently gets zeros."""
    from salguide.kernels import attention_stats

    torch._dynamo.reset()
    q, k, v = (torch.randn(2, 2, 9, 8, requires_grad=True) for _ in range(3))

    def call(q, k, v):
        return attention_stats(q, k, v, target=torch.rand(2, 9), return_colsum=True, backend=backend)

    for fn in (call, torch.compile(call, fullgraph=True, backend="aot_eager")):
        res = fn(q, k, v)
        assert res.out.requires_grad and res.mass.requires_grad
        assert not res.colsum.requires_grad
