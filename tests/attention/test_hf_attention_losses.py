"""Hugging Face ViTs (issue 9, point 9): the patch grid comes from the actual input (a (height, width)
image_size, interpolate_pos_encoding), output_attentions=True on a routed model returns the attention
weights, and attention losses take model outputs such as ImageClassifierOutput (also with weight 0).
References: transformers' own eager attention weights and a hand-pooled background map."""

from __future__ import annotations

import pytest
import torch
from tiny_hf import hf_vit
from torch import nn

from salguide.attention import BackgroundSuppressionLoss, route, token_grid

transformers = pytest.importorskip("transformers")


class Interpolating(nn.Module):
    """A user's wrapper that runs the ViT at another resolution."""

    def __init__(self, vit: nn.Module) -> None:
        super().__init__()
        self.vit = vit

    def forward(self, x):
        return self.vit(pixel_values=x, interpolate_pos_encoding=True)


def background_mass_reference(attn: torch.Tensor, mask: torch.Tensor, patch: int) -> torch.Tensor:
    """Mean over samples and heads of the CLS row's attention on background: weight 1 - patch coverage."""
    B, _, H, W = mask.shape
    cover = mask[:, 0].reshape(B, H // patch, patch, W // patch, patch).mean((2, 4)).flatten(1)
    w = torch.cat([torch.zeros(B, 1), 1.0 - cover], 1)  # the class token's key is neutral
    return (attn[:, :, 0] * w[:, None]).sum(-1).mean()


@pytest.mark.parametrize(
    "image_size, input_hw, wrap",
    [((32, 16), (32, 16), False), (32, (48, 24), True)],
    ids=["hw_tuple", "interpolate_pos_encoding"],
)
def test_attention_loss_uses_the_grid_of_the_actual_input(image_size, input_hw, wrap):
    vit = hf_vit(image_size, seed=0)
    model = Interpolating(vit) if wrap else vit
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 1, *input_hw, generator=g)
    mask = torch.zeros(2, 1, *input_hw)
    mask[:, :, 4:20, 4:12] = 1.0
    with torch.no_grad():
        eager = vit(pixel_values=x, interpolate_pos_encoding=wrap, output_attentions=True)
    ref = background_mass_reference(eager.attentions[-1], mask, 4)
    route(vit)
    loss = BackgroundSuppressionLoss(1.0, [-1])
    pen = loss.penalty(model, x, torch.zeros(2, dtype=torch.long), mask)
    torch.testing.assert_close(pen, ref, atol=1e-6, rtol=1e-5)
    assert token_grid(vit, x) == (input_hw[0] // 4, input_hw[1] // 4)
    assert token_grid(vit) == (input_hw[0] // 4, input_hw[1] // 4)  # the latest forward's input


def test_output_attentions_on_a_routed_model_returns_the_weights():
    model = hf_vit(32, seed=0)
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        eager = model(pixel_values=x, output_attentions=True).attentions
        route(model)
        routed = model(pixel_values=x, output_attentions=True).attentions
        plain = model(pixel_values=x)
    assert len(routed) == len(eager) == 2
    for a, b in zip(routed, eager):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
    assert plain.attentions is None


@pytest.mark.parametrize("weight", [2.0, 0.0])
def test_attention_losses_take_image_classifier_outputs(weight):
    model = route(hf_vit(32, seed=0).train())
    x, y = torch.randn(2, 1, 32, 32), torch.tensor([3, 7])
    mask = torch.zeros(2, 1, 32, 32)
    mask[:, :, 8:24, 8:24] = 1.0
    loss = BackgroundSuppressionLoss(weight, [-1])
    out = loss(model, x, y, mask)  # model(x) returns an ImageClassifierOutput
    task = torch.nn.functional.cross_entropy(model(x).logits, y)
    torch.testing.assert_close(out.task_loss, task)
    pen = loss.penalty(model, x, y, mask)
    assert pen.requires_grad and (pen.item() == 0.0) == (weight == 0.0)
    out.loss.backward()
    assert model.classifier.weight.grad is not None
