"""route() refuses what it cannot prove it reproduces (issue 9, point 8), using in-repo look-alikes of timm's
ResPostBlock (post-norm), gated Attention, DiffAttention and Eva with RoPE: the class is refused with the
supported list; a look-alike wrongly declared as timm's layout is caught by the numeric check at route()
time; a RoPE argument is refused at the forward. Hugging Face BEiT is refused at route() time, and routing
one Hugging Face model leaves other models that share its config object alone."""

from __future__ import annotations

import pytest
import torch
from test_attention_routing import EagerAttention, EagerBlock, EagerViT
from tiny_hf import tiny_config
from torch import nn

from salguide.attention import declare_timm_layout, route
from salguide.attention.routing.proof import _DECLARED


class ResPostBlock(EagerBlock):
    """timm ResPostBlock: x + norm1(attn(x)), then x + norm2(mlp(x))."""

    def forward(self, x, attn_mask=None):
        x = x + self.drop_path1(self.norm1(self.attn(x)))
        return x + self.drop_path2(self.norm2(self.mlp(x)))


class GatedAttention(EagerAttention):
    """timm Attention(gated=True): the output is multiplied by sigmoid(gate(x)) before proj."""

    def __init__(self, dim, heads, gate_name="gate"):
        super().__init__(dim, heads)
        self.gate_name = gate_name
        setattr(self, gate_name, nn.Linear(dim, dim))

    def forward(self, x, attn_mask=None):
        B, N, C = x.shape
        q, k, v = self.qkv(x).reshape(B, N, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        o = (((q @ k.transpose(-1, -2)) * self.scale).softmax(-1) @ v).transpose(1, 2).reshape(B, N, C)
        return self.proj(o * getattr(self, self.gate_name)(x).sigmoid())


class DiffAttention(EagerAttention):
    """timm DiffAttention: softmax(q1 k1) - lambda softmax(q2 k2) over half-width heads."""

    def forward(self, x, attn_mask=None):
        B, N, C = x.shape
        q, k, v = self.qkv(x).chunk(3, dim=2)
        q = q.reshape(B, N, 2 * self.num_heads, -1).transpose(1, 2)
        k = k.reshape(B, N, 2 * self.num_heads, -1).transpose(1, 2)
        v = v.reshape(B, N, self.num_heads, -1).transpose(1, 2)
        a = ((q @ k.transpose(-1, -2)) * self.scale).softmax(-1).view(B, self.num_heads, 2, N, N)
        return self.proj(((a[:, :, 0] - 0.8 * a[:, :, 1]) @ v).transpose(1, 2).reshape(B, N, C))


def rotate(t, rope):
    """Rotary embedding on pairs of channels, rope = angles [N, D/2]."""
    t1, t2 = t[..., 0::2], t[..., 1::2]
    cos, sin = rope.cos(), rope.sin()
    return torch.stack([t1 * cos - t2 * sin, t1 * sin + t2 * cos], -1).flatten(-2)


class EvaAttention(EagerAttention):
    def forward(self, x, rope=None, attn_mask=None):
        B, N, C = x.shape
        q, k, v = self.qkv(x).reshape(B, N, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        if rope is not None:
            q, k = rotate(q, rope), rotate(k, rope)
        o = ((q @ k.transpose(-1, -2)) * self.scale).softmax(-1) @ v
        return self.proj(o.transpose(1, 2).reshape(B, N, C))


class EvaBlock(EagerBlock):
    def __init__(self, dim, heads):
        super().__init__(dim, heads)
        self.attn = EvaAttention(dim, heads)

    def forward(self, x, rope=None, attn_mask=None):
        x = x + self.drop_path1(self.ls1(self.attn(self.norm1(x), rope=rope)))
        return x + self.drop_path2(self.ls2(self.mlp(self.norm2(x))))


class EvaViT(EagerViT):
    """Eva-style: every block gets the rotary angles."""

    def __init__(self):
        super().__init__(depth=2)
        self.blocks = nn.Sequential(*[EvaBlock(64, 4) for _ in range(2)])
        self.rope = torch.rand(65, 8) * 3.0

    def forward(self, x):
        x = self.patch_embed.proj(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(len(x), -1, -1), x], 1) + self.pos_embed
        for blk in self.blocks:
            x = blk(x, rope=self.rope)
        return self.head(self.norm(x)[:, 0])


@pytest.fixture
def declared():
    """Declare look-alikes for one test only."""
    before = set(_DECLARED)
    yield declare_timm_layout
    _DECLARED.clear()
    _DECLARED.update(before)


def with_block(make_block, depth=2):
    torch.manual_seed(0)
    model = EagerViT(depth=depth).eval()
    model.blocks[1] = make_block()
    return model


def assert_unrouted(model, x, before):
    assert not hasattr(model, "salguide_router")
    assert all("forward" not in vars(m) for m in model.modules())
    torch.testing.assert_close(model(x), before)


VARIANTS = {
    "ResPostBlock": lambda: with_block(lambda: ResPostBlock(64, 4)),
    "DiffAttention": lambda: with_block(lambda: _with_attn(DiffAttention(64, 4))),
    "EvaBlock": lambda: EvaViT().eval(),
}


def _with_attn(attn):
    block = EagerBlock(64, 4)
    block.attn = attn
    return block


@pytest.mark.parametrize("name", list(VARIANTS))
def test_unknown_block_and_attention_classes_are_refused_with_the_supported_list(name):
    model = VARIANTS[name]()
    x = torch.randn(2, 1, 32, 32)
    before = model(x).detach()
    with pytest.raises(
        TypeError,
        match=rf"(?s)cannot prove that it reproduces blocks\[\d\](\.attn)? \({name}\).*"
        r"timm\.models\.vision_transformer\.Block.*timm\.layers\.attention\.Attention",
    ):
        route(model)
    assert_unrouted(model, x, before)


def test_gated_attention_is_refused_even_under_timms_attention_class(declared):
    declared(GatedAttention)
    model = with_block(lambda: _with_attn(GatedAttention(64, 4)))
    with pytest.raises(TypeError, match=r"blocks\[1\]\.attn is gated attention \(attn\.gate\)"):
        route(model)


@pytest.mark.parametrize(
    "make",
    [
        lambda: ResPostBlock(64, 4),
        lambda: _with_attn(DiffAttention(64, 4)),
        lambda: _with_attn(GatedAttention(64, 4, gate_name="out_gate")),
    ],
    ids=["post_norm", "diff_attention", "gate_under_another_name"],
)
def test_a_wrongly_declared_look_alike_is_caught_by_the_numeric_check(declared, make):
    declared(ResPostBlock, DiffAttention, GatedAttention)
    model = with_block(make)
    x = torch.randn(2, 1, 32, 32)
    before = model(x).detach()
    model.train()
    rng = torch.get_rng_state()
    with pytest.raises(ValueError, match=r"routed blocks\[1\] differs from the original on a random input"):
        route(model)
    assert all(m.training for m in model.modules())  # the check ran in eval mode and put the modes back
    assert torch.equal(torch.get_rng_state(), rng)  # and drew its input from its own generator
    assert_unrouted(model.eval(), x, before)


def test_rope_argument_is_refused_at_the_forward_when_the_classes_were_declared(declared):
    declared(EvaBlock, EvaAttention)  # the forwards match timm's when rope is None, so route() accepts them
    model = route(EvaViT().eval())
    with pytest.raises(ValueError, match="routed block cannot honour the forward argument rope=Tensor"):
        model(torch.randn(2, 1, 32, 32))


transformers = pytest.importorskip("transformers")


@pytest.mark.parametrize("extra", [{}, {"use_relative_position_bias": True}], ids=["plain", "relative_bias"])
def test_beit_is_refused_at_route_time(extra):
    cfg = tiny_config("Beit", **extra)
    model = transformers.BeitForImageClassification(cfg).eval()
    with pytest.raises(
        TypeError,
        match=r"cannot prove that it reproduces BeitForImageClassification's attention "
        r"\(BeitAttention\); supported Hugging Face attention classes: .*ViTAttention",
    ):
        route(model)
    assert not hasattr(model, "salguide_router") and model.config._attn_implementation == "eager"


def test_routing_one_hf_model_leaves_models_sharing_its_config_alone():
    from salguide.attention import unroute

    cfg = tiny_config()
    torch.manual_seed(0)
    a, b = transformers.ViTForImageClassification(cfg).eval(), transformers.ViTForImageClassification(cfg).eval()
    x = torch.randn(2, 1, 32, 32)
    ref_a, ref_b = a(pixel_values=x).logits, b(pixel_values=x).logits
    route(a)
    assert cfg._attn_implementation == "eager" and b.config is cfg
    assert all(m.config is cfg for m in b.modules() if hasattr(m, "config"))
    torch.testing.assert_close(b(pixel_values=x).logits, ref_b)  # b still runs eager, not salguide's
    torch.testing.assert_close(a(pixel_values=x).logits, ref_a, atol=1e-5, rtol=1e-5)
    assert a.config is not cfg and a.config._attn_implementation == "salguide"
    unroute(a)
    assert a.config is cfg and all(getattr(m, "config", cfg) is cfg for m in a.modules())
