"""Double backward through routed attention: input-saliency losses (RRR, gradient energy) differentiate an
input gradient, so every path must be twice differentiable. They must give the same penalty and the same
parameter gradients as the unrouted model (textbook softmax attention, same weights), and train."""

from __future__ import annotations

import os

import pytest
import torch
from attention_cases import make_case
from tiny_hf import hf_vit

from salguide.inputs import EnergyLoss, RRRLoss
from salguide.kernels import attention_reference, attention_stats
from salguide.models.vit import VisionTransformer, vit_digits

BACKENDS = ["sdpa", "reference"] + (["triton"] if os.environ.get("TRITON_INTERPRET") == "1" else [])


def eager_vit(vit: VisionTransformer, x: torch.Tensor) -> torch.Tensor:
    """salguide's ViT with the same weights, attention as softmax(q k^T * scale) v (the unrouted model)."""
    x = vit.patch_embed(x)
    x = torch.cat([vit.cls_token.expand(len(x), -1, -1), x], 1) + vit.pos_embed
    for blk in vit.blocks:
        B, N, C = x.shape
        q, k, v = blk.attn.qkv(blk.norm1(x)).reshape(B, N, 3, blk.attn.num_heads, -1).permute(2, 0, 3, 1, 4)
        a = (q @ k.transpose(-1, -2) * blk.attn.scale).softmax(-1)
        x = x + blk.attn.proj((a @ v).transpose(1, 2).reshape(B, N, C))
        x = x + blk.mlp(blk.norm2(x))
    return vit.head(vit.norm(x)[:, 0])


def small_vit(**kw) -> VisionTransformer:
    """The digits ViT at 16 x 16 px (17 tokens), one block of width 32: fast enough for every backend."""
    return vit_digits(img_size=16, embed_dim=32, depth=1, **kw)


def _batch(seed: int = 0, B: int = 2):
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(B, 1, 16, 16, generator=g), torch.arange(B) % 10
    mask = torch.zeros(B, 1, 16, 16, dtype=torch.bool)
    mask[:, :, :4, :4] = True  # a corner region
    return x, y, mask


def _penalty_and_grads(loss, model, params, x, y, mask):
    out = loss(model, x, y, mask)
    grads = torch.autograd.grad(out.loss, params)
    return out.penalty.detach(), grads


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("make_loss", [lambda: RRRLoss(10.0), lambda: EnergyLoss(1.0)], ids=["rrr", "energy"])
def test_input_saliency_loss_on_routed_vit_equals_unrouted(backend, make_loss):
    torch.manual_seed(0)
    vit = small_vit(backend=backend)
    params = list(vit.parameters())
    x, y, mask = _batch()
    loss = make_loss()
    pen, grads = _penalty_and_grads(loss, vit, params, x, y, mask)
    pen_ref, grads_ref = _penalty_and_grads(loss, lambda t: eager_vit(vit, t), params, x, y, mask)
    assert pen.item() > 0
    torch.testing.assert_close(pen, pen_ref, atol=1e-6, rtol=1e-4)
    for g, r in zip(grads, grads_ref):
        torch.testing.assert_close(g, r, atol=1e-5, rtol=1e-3)


def test_rrr_trains_routed_vit():
    """Adam steps on CE + RRR fit the batch while keeping the input gradient in the masked region far
    below what the same steps on CE alone leave there."""
    x, y, mask = _batch(1, B=8)
    rrr = RRRLoss(weight=1e3)
    final = {}
    for weight in (0.0, 1e3):
        torch.manual_seed(1)
        vit = small_vit()
        opt = torch.optim.Adam(vit.parameters(), lr=3e-3)
        loss = RRRLoss(weight=weight)
        first = loss(vit, x, y, mask).task_loss.item()
        for _ in range(8):
            out = loss(vit, x, y, mask)
            opt.zero_grad()
            out.loss.backward()
            opt.step()
        end = rrr(vit, x, y, mask)
        assert end.task_loss.item() < first
        final[weight] = end.penalty.item()
    assert final[1e3] < 0.1 * final[0.0]


transformers = pytest.importorskip("transformers")


def test_rrr_on_routed_hf_vit_equals_unrouted():
    from salguide.attention import route, unroute

    model = hf_vit(16, seed=2)
    params = list(model.parameters())
    x, y, mask = _batch(2)

    def logits(t):
        return model(pixel_values=t).logits

    pen_ref, grads_ref = _penalty_and_grads(RRRLoss(10.0), logits, params, x, y, mask)
    route(model)
    pen, grads = _penalty_and_grads(RRRLoss(10.0), logits, params, x, y, mask)
    unroute(model)
    torch.testing.assert_close(pen, pen_ref, atol=1e-6, rtol=1e-4)
    for g, r in zip(grads, grads_ref):
        torch.testing.assert_close(g, r, atol=1e-5, rtol=1e-3)


@pytest.mark.skipif("triton" not in BACKENDS, reason="needs triton (interpreter on CPU)")
def test_triton_create_graph_recomputes_a_differentiable_gradient():
    """With create_graph the Triton path's gradient has a graph, and its second derivative equals the oracle's."""
    leaves, kwargs = make_case(2, 2, 9, 16, keys="mask", always_self=True, bias=True, target="shared", seed=4)
    second = []
    for fn in (lambda *a, **k: attention_stats(*a, backend="triton", **k), attention_reference):
        t = {n: x.detach().clone().requires_grad_() for n, x in leaves.items()}
        r = fn(t["q"], t["k"], t["v"], key_bias=t["key_bias"], target=t["target"], return_lse=True, **kwargs)
        loss = (r.out**2).sum() + (r.mass**2).sum() + torch.where(torch.isfinite(r.lse), r.lse, 0).sum()
        g = torch.autograd.grad(loss, list(t.values()), create_graph=True)
        assert all(x.requires_grad for x in g)
        second.append(torch.autograd.grad(sum((x**2).sum() for x in g), list(t.values())))
    for got, want in zip(*second):
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-3)
