"""Attention-guided masking (AttMask high / low / hint, ACMIL, random) and the EMA-teacher callback."""

from __future__ import annotations

import copy

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from salguide._lightning import pl
from salguide.attention.masking import attention_guided_mask, mask_patches, patchify
from salguide.attention.mim import MaskedReconstructionModule
from salguide.callbacks.attention_masking import AttentionMaskingCallback
from salguide.models.vit import vit_digits

SCORES = torch.tensor([[0.05, 0.4, 0.1, 0.3, 0.15, 0.0, 0.2, 0.35]])  # P = 8


def hidden(mask: torch.Tensor) -> set[int]:
    return set(torch.nonzero(mask[0]).flatten().tolist())


def test_high_low_random_hand_computed() -> None:
    assert hidden(attention_guided_mask(SCORES, 0.5, "high")) == {1, 7, 3, 6}
    assert hidden(attention_guided_mask(SCORES, 0.25, "low")) == {5, 0}
    g = torch.Generator().manual_seed(0)
    r = attention_guided_mask(SCORES.expand(64, 8), 0.5, "random", generator=g)
    assert (r.sum(1) == 4).all() and len({tuple(row.tolist()) for row in r}) > 1
    assert not attention_guided_mask(SCORES, 0.0, "high").any()


def test_hint_hides_m_of_the_top_m_plus_h() -> None:
    g = torch.Generator().manual_seed(0)
    masks = attention_guided_mask(SCORES.expand(200, 8), 0.5, "hint", hint_ratio=0.5, generator=g)
    # m = 4, h = 2: hide 4 of the 6 most attended {1, 7, 3, 6, 4, 2}; the others never
    assert (masks.sum(1) == 4).all()
    assert not masks[:, [0, 5]].any()
    assert masks[:, [1, 7, 3, 6, 4, 2]].float().mean(0).min() > 0.4  # every top-6 patch is sometimes a hint


def test_acmil_masks_only_top_k_with_probability() -> None:
    g = torch.Generator().manual_seed(1)
    masks = attention_guided_mask(SCORES.expand(4000, 8), 0.5, "acmil", top_k=3, drop_prob=0.3, generator=g)
    assert not masks[:, [0, 2, 4, 5, 6]].any()  # only the top 3 {1, 7, 3}
    rate = masks[:, [1, 7, 3]].float().mean().item()
    assert abs(rate - 0.3) < 0.03


def test_masking_bad_inputs() -> None:
    with pytest.raises(ValueError, match="unknown masking mode"):
        attention_guided_mask(SCORES, 0.5, "middle")
    with pytest.raises(ValueError, match=r"mask ratio must lie in \[0, 1\)"):
        attention_guided_mask(SCORES, 1.0, "high")
    with pytest.raises(ValueError, match=r"\[B, P\]"):
        attention_guided_mask(SCORES[0], 0.5)
    with pytest.raises(ValueError, match="mask must have shape"):
        mask_patches(torch.zeros(1, 1, 4, 4), torch.zeros(1, 3, dtype=torch.bool), (2, 2))


def test_mask_patches_and_patchify_hand_computed() -> None:
    x = torch.arange(16.0).view(1, 1, 4, 4)
    out = mask_patches(x, torch.tensor([[False, True, False, False]]), (2, 2), value=-1.0)
    assert out[0, 0, :2, 2:].eq(-1).all() and out[0, 0, :2, :2].equal(x[0, 0, :2, :2])
    assert patchify(x, (2, 2))[0, 1].tolist() == [2.0, 3.0, 6.0, 7.0]


def test_callback_appends_teacher_guided_masks_and_updates_the_ema_teacher() -> None:
    g = torch.Generator().manual_seed(0)
    ds = TensorDataset(torch.rand(8, 1, 32, 32, generator=g), torch.randint(0, 10, (8,), generator=g))
    torch.manual_seed(0)
    module = MaskedReconstructionModule(vit_digits(depth=2, embed_dim=32))
    seen = []

    class Spy(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            seen.append((batch[-1].clone(), copy.deepcopy(cb.teacher), copy.deepcopy(pl_module.model)))

    cb = AttentionMaskingCallback("high", ratio=0.5, ratio_start=0.25, ratio_steps=1, ema=0.9)
    trainer = pl.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=[cb, Spy()])
    trainer.fit(module, DataLoader(ds, batch_size=4))
    (m0, t0, s0), (m1, t1, s1) = seen
    assert (m0.sum(1) == 16).all() and (m1.sum(1) == 32).all()  # ratio 0.25 then 0.5 of 64 patches
    with torch.no_grad():
        x = ds.tensors[0][4:]
        from salguide.attention.recorder import AttentionRecorder

        with AttentionRecorder(t1, [-1], cls=True) as rec:
            t1(x)
        top = rec[-1].cls[:, :, 1:].mean(1).topk(32, dim=1).indices
    assert torch.zeros_like(m1).scatter(1, top, True).equal(m1)  # hides the teacher's most attended patches
    for pt, pt0, ps0 in zip(t1.parameters(), t0.parameters(), s1.parameters()):
        torch.testing.assert_close(pt, 0.9 * pt0 + 0.1 * ps0)  # EMA after the first step
    with pytest.raises(ValueError, match="ema decay"):
        AttentionMaskingCallback(ema=1.5)
