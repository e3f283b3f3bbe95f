"""Routing: salguide's ViT, the timm-layout adapter and the Hugging Face adapter compute the same function
as a naive eager implementation that materialises the attention matrix."""

from __future__ import annotations

import pytest
import torch
from tiny_hf import hf_vit
from torch import nn

from salguide.attention import declare_timm_layout, route, unroute
from salguide.attention.recorder import AttentionRecorder
from salguide.models.vit import vit_digits


class EagerAttention(nn.Module):
    """timm's Attention layout with the textbook softmax(q k^T / sqrt(d)) v."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.num_heads, self.scale = heads, (dim // heads) ** -0.5
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.attn_drop = nn.Dropout(0.0)
        self.last_attn: torch.Tensor | None = None

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        B, N, C = x.shape
        q, k, v = self.qkv(x).reshape(B, N, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        a = ((q @ k.transpose(-1, -2)) * self.scale).softmax(-1)
        self.last_attn = a
        return self.proj((a @ v).transpose(1, 2).reshape(B, N, C))


class EagerMlp(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class EagerBlock(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim, eps=1e-6), EagerAttention(dim, heads)
        self.norm2, self.mlp = nn.LayerNorm(dim, eps=1e-6), EagerMlp(dim)
        self.ls1 = self.ls2 = self.drop_path1 = self.drop_path2 = nn.Identity()

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.drop_path1(self.ls1(self.attn(self.norm1(x))))
        return x + self.drop_path2(self.ls2(self.mlp(self.norm2(x))))


class EagerViT(nn.Module):
    """An in-repo module with timm VisionTransformer's attribute layout and eager attention."""

    def __init__(self, dim: int = 64, depth: int = 4, heads: int = 4) -> None:
        super().__init__()
        self.global_pool = "token"
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(1, dim, 4, stride=4)
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.randn(1, 65, dim) * 0.02)
        self.blocks = nn.Sequential(*[EagerBlock(dim, heads) for _ in range(depth)])
        self.norm, self.head = nn.LayerNorm(dim, eps=1e-6), nn.Linear(dim, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed.proj(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(len(x), -1, -1), x], 1) + self.pos_embed
        return self.head(self.norm(self.blocks(x))[:, 0])


declare_timm_layout(EagerBlock, EagerAttention)  # in-repo look-alikes of timm's Block and Attention


def _grads(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    model.zero_grad()
    model(x).square().sum().backward()
    return {n: p.grad.clone() for n, p in model.named_parameters()}


def test_salguide_vit_matches_eager_vit_with_same_weights() -> None:
    torch.manual_seed(0)
    vit, eager = vit_digits().eval(), EagerViT().eval()
    missing = eager.load_state_dict(vit.state_dict(), strict=True)
    assert not missing.missing_keys
    x = torch.randn(3, 1, 32, 32)
    torch.testing.assert_close(vit(x), eager(x), atol=1e-5, rtol=1e-5)
    gv, ge = _grads(vit, x), _grads(eager, x)
    for name in ge:
        torch.testing.assert_close(gv[name], ge[name], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("kind", ["salguide", "timm_layout"])
def test_routed_vit_pickles_with_its_router_for_spawned_workers(kind) -> None:
    """ddp_spawn and DataLoader workers pickle the module: the copy must stay routed, record, and unroute."""
    import pickle

    torch.manual_seed(0)
    model = vit_digits().eval() if kind == "salguide" else route(EagerViT().eval())
    x = torch.randn(2, 1, 32, 32)
    copy = pickle.loads(pickle.dumps(model))
    assert copy.salguide_router is copy.blocks[0].attn.salguide_router is not model.salguide_router
    with torch.no_grad(), AttentionRecorder(copy, [0], cls=True) as rec:
        out = copy(x)
    assert torch.equal(out, model(x).detach())
    assert rec[0].cls.shape == (2, 4, 65)
    if kind == "timm_layout":
        unroute(copy)
        copy.blocks[0].attn.last_attn = None
        torch.testing.assert_close(copy(x), out, atol=1e-5, rtol=1e-5)
        assert copy.blocks[0].attn.last_attn is not None  # the eager forward runs again


def test_route_timm_layout_keeps_outputs_and_gradients_and_unroute_restores() -> None:
    torch.manual_seed(1)
    model = EagerViT().eval()
    x = torch.randn(2, 1, 32, 32)
    before, g_before = model(x).detach(), _grads(model, x)
    route(model)
    assert model.blocks[0].attn.salguide_index == 0
    model.blocks[0].attn.last_attn = None
    torch.testing.assert_close(model(x), before, atol=1e-5, rtol=1e-5)
    assert model.blocks[0].attn.last_attn is None  # the eager forward no longer runs
    g_after = _grads(model, x)
    for name in g_before:
        torch.testing.assert_close(g_after[name], g_before[name], atol=1e-5, rtol=1e-4)
    unroute(model)
    model(x)
    assert model.blocks[0].attn.last_attn is not None
    assert not hasattr(model, "salguide_router")


def test_readme_import_path_of_route_still_works() -> None:
    from salguide.models import adapters

    assert (adapters.route, adapters.unroute, adapters.declare_timm_layout) == (route, unroute, declare_timm_layout)


def test_recorder_on_routed_timm_model_matches_eager_attention() -> None:
    torch.manual_seed(2)
    model = EagerViT().eval()
    x = torch.randn(2, 1, 32, 32)
    model(x)
    eager_attn = model.blocks[2].attn.last_attn.detach()  # [B, H, N, N]
    route(model)
    target = torch.rand(2, 65)
    with AttentionRecorder(model, [2], target=target, colsum=True, cls=True) as rec:
        model(x)
    s = rec[2]
    torch.testing.assert_close(s.cls, eager_attn[:, :, 0], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(s.colsum, eager_attn.sum(-2), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(s.mass, (eager_attn * target[:, None, None]).sum(-1), atol=1e-6, rtol=1e-5)


def test_route_refuses_unsupported_models_listing_what_is_supported() -> None:
    with pytest.raises(TypeError, match="(?s)supported models are.*timm-layout.*Hugging Face"):
        route(nn.Sequential(nn.Linear(3, 3)))
    model = EagerViT()
    model.blocks[1].attn.attn_drop = nn.Dropout(0.1)
    with pytest.raises(ValueError, match=r"blocks\[1\].*attention dropout"):
        route(model)
    with pytest.raises(ValueError, match="not routed"):
        unroute(EagerViT())


def test_block_index_out_of_range_is_a_clear_error() -> None:
    vit = vit_digits(depth=2)
    with pytest.raises(IndexError, match="block index 2 is out of range .* 2 attention layers"):
        AttentionRecorder(vit, [2], cls=True)
    with pytest.raises(ValueError, match="not routed"):
        AttentionRecorder(EagerViT(), [0], cls=True)
    assert AttentionRecorder(vit, [-1], cls=True).layers == (1,)


def test_target_of_wrong_shape_is_a_clear_error() -> None:
    vit = vit_digits(depth=1).eval()
    with AttentionRecorder(vit, [0], target=torch.rand(2, 64)):
        with pytest.raises(ValueError, match="64 tokens but the layer has N = 65"):
            vit(torch.randn(2, 1, 32, 32))


transformers = pytest.importorskip("transformers")


def test_route_hf_vit_same_logits_and_stats_match_eager_weights() -> None:
    torch.manual_seed(3)
    model = hf_vit()
    x = torch.randn(2, 1, 32, 32)
    ref = model(pixel_values=x, output_attentions=True)
    eager_attn = ref.attentions[1].detach()
    route(model)
    target = torch.rand(2, 65)
    with AttentionRecorder(model, [-1], target=target, cls=True) as rec:
        out = model(pixel_values=x).logits
    torch.testing.assert_close(out, ref.logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(rec[1].cls, eager_attn[:, :, 0], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(rec[1].mass, (eager_attn * target[:, None, None]).sum(-1), atol=1e-6, rtol=1e-5)
    from salguide.attention.policies import EViTPolicy, use_policy

    with pytest.raises(TypeError, match="Hugging Face models support attention statistics and losses only"):
        use_policy(model, EViTPolicy([0], 0.5))
    unroute(model)
    assert model.config._attn_implementation == "eager"
    torch.testing.assert_close(model(pixel_values=x).logits, ref.logits)


def test_route_real_timm_vit_same_logits() -> None:
    """Runs where timm is installed (e.g. a GPU box); on CUDA the routed model uses the Triton kernels."""
    timm = pytest.importorskip("timm")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    model = timm.create_model("vit_small_patch16_224", pretrained=False, num_classes=10, img_size=64).to(device).eval()
    x = torch.randn(2, 3, 64, 64, device=device)
    with torch.no_grad():
        before = model(x)
        route(model)
        with AttentionRecorder(model, [-1], cls=True) as rec:
            after = model(x)
    torch.testing.assert_close(after, before, atol=2e-4, rtol=2e-4)
    torch.testing.assert_close(rec[-1].cls.sum(-1), torch.ones(2, 6, device=device), atol=1e-4, rtol=0)


def test_routed_hf_vit_unpickled_in_a_fresh_process_still_runs_routed(tmp_path) -> None:
    """A spawned worker has not called route(): unpickling must register salguide's attention there."""
    import pickle
    import subprocess
    import sys

    torch.manual_seed(4)
    model = route(hf_vit())
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        ref = model(pixel_values=x).logits
    (tmp_path / "m.pkl").write_bytes(pickle.dumps((model, x, ref)))
    code = (
        "import pickle, sys, torch\n"
        "m, x, ref = pickle.loads(open(sys.argv[1], 'rb').read())\n"
        "with torch.no_grad():\n"
        "    out = m(pixel_values=x).logits\n"
        "assert m.config._attn_implementation == 'salguide', m.config._attn_implementation\n"
        "torch.testing.assert_close(out, ref)\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "m.pkl")], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]
