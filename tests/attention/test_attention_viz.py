"""Attention maps to pixels (hand-computed) and the PNG callback end to end."""

from __future__ import annotations

import torch
from cpu_trainer import cpu_trainer
from torch.utils.data import DataLoader, TensorDataset

from salguide.attention.policies import EViTPolicy
from salguide.callbacks.attention_maps import AttentionMapCallback
from salguide.callbacks.token_pruning import TokenPruningCallback
from salguide.models import ClassifierModule
from salguide.models.optim import sgd
from salguide.models.vit import vit_digits
from salguide.viz.attention import kept_tokens_map, tokens_to_image


def test_tokens_to_image_hand_computed() -> None:
    values = torch.tensor([[9.0, 1.0, 2.0, 3.0]])  # CLS + 3 tokens on a 2x2 grid
    positions = torch.tensor([[0, 4, 1, -1]])  # patch 3 (pos 4) first, patch 0 (pos 1), one fused token
    img = tokens_to_image(values, positions, (2, 2), (4, 4))
    expected = torch.tensor([[2.0, 0.0], [0.0, 1.0]]).repeat_interleave(2, 0).repeat_interleave(2, 1)
    torch.testing.assert_close(img[0], expected)
    kept = kept_tokens_map(positions, (2, 2), (2, 2), 1)
    torch.testing.assert_close(kept[0], torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    assert kept_tokens_map(None, (2, 2), (2, 2), 3).shape == (3, 2, 2)


def test_attention_map_callback_writes_png_with_kept_tokens(tmp_path) -> None:
    g = torch.Generator().manual_seed(0)
    ds = TensorDataset(torch.rand(8, 1, 32, 32, generator=g), torch.randint(0, 10, (8,), generator=g))
    loader = DataLoader(ds, batch_size=4)
    torch.manual_seed(0)
    module = ClassifierModule(vit_digits(depth=2, embed_dim=32), optimizer=sgd(lr=0.1), scheduler=None)
    cb = AttentionMapCallback(layers=[0, 1], num_images=3, out_dir=str(tmp_path))
    trainer = cpu_trainer(
        max_epochs=1, callbacks=[TokenPruningCallback(EViTPolicy([0], 0.5)), cb], num_sanity_val_steps=0
    )
    trainer.fit(module, loader, loader)
    assert len(cb.paths) == 1 and cb.paths[0].exists() and cb.paths[0].stat().st_size > 1000
    assert cb.paths[0].read_bytes()[:4] == b"\x89PNG"
