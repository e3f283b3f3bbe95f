"""Attention-guided masking (AttMask high / low / hint, ACMIL, random) and the EMA-teacher callback."""

from __future__ import annotations

import copy
from functools import partial

import pytest
import torch
from cpu_trainer import cpu_trainer
from torch.utils.data import DataLoader, TensorDataset

from salguide._lightning import pl
from salguide.attention.masking import attention_guided_mask, mask_patches, patchify
from salguide.callbacks.attention_masking import AttentionMaskingCallback
from salguide.models.mim import MaskedReconstructionModule
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
    # default top_k = round(ratio * P / drop_prob): m = 4, k = 5 -> the top 5 {1, 7, 3, 6, 4}, 4 hidden on average
    masks = attention_guided_mask(SCORES.expand(4000, 8), 0.5, "acmil", drop_prob=0.8, generator=g)
    assert not masks[:, [0, 2, 5]].any() and abs(masks.sum(1).float().mean().item() - 4.0) < 0.1
    assert not attention_guided_mask(SCORES, 0.5, "acmil", drop_prob=0.0).any()


def test_masking_bad_inputs() -> None:
    with pytest.raises(ValueError, match="unknown masking mode"):
        attention_guided_mask(SCORES, 0.5, "middle")
    with pytest.raises(ValueError, match=r"mask ratio must lie in \[0, 1\)"):
        attention_guided_mask(SCORES, 1.0, "high")
    with pytest.raises(ValueError, match=r"\[B, P\]"):
        attention_guided_mask(SCORES[0], 0.5)
    with pytest.raises(ValueError, match="drop_prob"):
        attention_guided_mask(SCORES, 0.5, "acmil", drop_prob=1.5)
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
    trainer = cpu_trainer(max_epochs=1, callbacks=[cb, Spy()])
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


def _tiny_module(lr: float = 1e-3) -> MaskedReconstructionModule:
    torch.manual_seed(0)
    return MaskedReconstructionModule(
        vit_digits(depth=2, embed_dim=32), optimizer=partial(torch.optim.AdamW, lr=lr, weight_decay=0.05)
    )


def _trainer(**kw) -> pl.Trainer:
    base = dict(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    return pl.Trainer(**{**base, **kw})


def _dataset(n: int = 8) -> TensorDataset:
    g = torch.Generator().manual_seed(0)
    return TensorDataset(torch.rand(n, 1, 32, 32, generator=g), torch.randint(0, 10, (n,), generator=g))


def test_ema_teacher_moves_once_per_optimizer_step_under_gradient_accumulation() -> None:
    module = _tiny_module(lr=0.01)
    start = [p.detach().clone() for p in module.model.parameters()]
    after_batch = []

    class Spy(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            after_batch.append([p.detach().clone() for p in pl_module.model.parameters()])

    d = 0.5
    cb = AttentionMaskingCallback("random", ratio=0.5, ema=d)
    _trainer(max_epochs=1, accumulate_grad_batches=2, callbacks=[cb, Spy()]).fit(
        module, DataLoader(_dataset(8), batch_size=2)
    )
    assert len(after_batch) == 4
    s1, s2 = after_batch[1], after_batch[3]  # the student after optimizer steps 1 and 2
    assert all(a.equal(b) for a, b in zip(after_batch[0], start))  # no step after the first batch
    for t, t0, p1, p2 in zip(cb.teacher.parameters(), start, s1, s2):
        torch.testing.assert_close(t, d * (d * t0 + (1 - d) * p1) + (1 - d) * p2)
    # the per-batch update (4 lerps: student t0, s1, s1, s2) gives a measurably different teacher
    per_batch = [
        d * (d * (d * (d * t0 + (1 - d) * t0) + (1 - d) * p1) + (1 - d) * p1) + (1 - d) * p2
        for t0, p1, p2 in zip(start, s1, s2)
    ]
    assert max((t - r).abs().max().item() for t, r in zip(cb.teacher.parameters(), per_batch)) > 1e-4


def test_resume_from_checkpoint_restores_teacher_and_mask_generator(tmp_path) -> None:
    data = DataLoader(_dataset(8), batch_size=4)
    cb = AttentionMaskingCallback("hint", ratio=0.5, ema=0.5, seed=3)
    trainer = _trainer(max_epochs=1, callbacks=[cb])
    trainer.fit(_tiny_module(lr=0.01), data)
    ckpt = tmp_path / "last.ckpt"
    trainer.save_checkpoint(ckpt)
    saved_teacher = {k: v.clone() for k, v in cb.teacher.state_dict().items()}
    saved_gen = cb.generator.get_state().clone()
    fresh_init = _tiny_module().model.state_dict()
    assert any(not v.equal(fresh_init[k]) for k, v in saved_teacher.items())  # the teacher did move

    seen = {}

    class Spy(pl.Callback):
        def on_train_start(self, trainer, pl_module):
            seen["teacher"] = {k: v.clone() for k, v in cb2.teacher.state_dict().items()}
            seen["gen"], seen["step"] = cb2.generator.get_state().clone(), trainer.global_step

    cb2 = AttentionMaskingCallback("hint", ratio=0.5, ema=0.5, seed=99)
    _trainer(max_epochs=2, callbacks=[cb2, Spy()]).fit(_tiny_module(lr=0.01), data, ckpt_path=ckpt)
    assert seen["step"] == 2 and seen["gen"].equal(saved_gen)
    assert all(seen["teacher"][k].equal(v) for k, v in saved_teacher.items())


def test_cls_attention_scores_match_a_naive_attention() -> None:
    from salguide.attention.masking import cls_attention_scores

    torch.manual_seed(0)
    vit = vit_digits(depth=2, embed_dim=32).eval()
    x = torch.randn(3, 1, 32, 32)
    with torch.no_grad():
        h = vit.patch_embed(x)
        h = torch.cat([vit.cls_token.expand(3, -1, -1), h], 1) + vit.pos_embed
        h = vit.blocks[0](h)
        blk = vit.blocks[1]
        q, k, _ = blk.attn.qkv(blk.norm1(h)).view(3, 65, 3, blk.attn.num_heads, -1).permute(2, 0, 3, 1, 4)
        attn = (q[:, :, :1] @ k.transpose(-1, -2) * blk.attn.scale).softmax(-1)  # [B, H, 1, N]
        ref = attn[:, :, 0, 1:].mean(1)
    torch.testing.assert_close(cls_attention_scores(vit, x, -1), ref, rtol=1e-4, atol=1e-6)


def test_evaluate_masked_matches_a_per_image_reference() -> None:
    from salguide.models.mim import evaluate_masked

    module = _tiny_module()
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(5, 1, 32, 32, generator=g), torch.randint(0, 10, (5,), generator=g)
    mask = torch.rand(5, 64, generator=g) < 0.5
    errs, hits = [], 0
    with torch.no_grad():
        for i in range(5):
            xi = x[i : i + 1].clone()
            for p in torch.nonzero(mask[i]).flatten().tolist():  # hide patch p: rows 4*(p//8), cols 4*(p%8)
                xi[..., 4 * (p // 8) : 4 * (p // 8) + 4, 4 * (p % 8) : 4 * (p % 8) + 4] = 0.0
            feats = module.model.forward_features(xi)
            hits += int(module.model.head(feats[:, 0]).argmax(-1).item() == y[i].item())
            pred = module.decoder(feats[0, 1:])
            for p in torch.nonzero(mask[i]).flatten().tolist():
                true = x[i, 0, 4 * (p // 8) : 4 * (p // 8) + 4, 4 * (p % 8) : 4 * (p % 8) + 4].reshape(-1)
                errs.append((pred[p] - true).pow(2).mean().item())
    out = evaluate_masked(module, x, y, mask, batch_size=2)
    assert out["acc"] == pytest.approx(100.0 * hits / 5)
    assert out["recon_mse"] == pytest.approx(sum(errs) / len(errs), rel=1e-5)
    assert module.training  # the module's mode is restored
    with pytest.raises(ValueError, match="mask must be bool"):
        evaluate_masked(module, x, y, mask.float())
