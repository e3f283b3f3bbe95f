"""AttentionMaskingCallback crosses ddp_spawn (its generator pickles) and hands its teacher back through
``save_teacher_to`` / ``load_teacher`` (a spawned fit leaves this process's callback untouched)."""

from __future__ import annotations

import pytest
import torch
import torch.multiprocessing as mp
from test_attention_masking import _dataset, _tiny_module, _trainer
from torch.utils.data import DataLoader

from salguide.callbacks.attention_masking import AttentionMaskingCallback


def _draw(rank: int, cb: AttentionMaskingCallback, out: str) -> None:
    torch.save(torch.rand(6, generator=cb.generator), out)


@pytest.mark.slow
def test_callback_crosses_spawn_and_its_mask_generator_continues_the_same_stream(tmp_path) -> None:
    cb = AttentionMaskingCallback("random", ratio=0.5, seed=5)
    torch.rand(4, generator=cb.generator)  # move the stream away from its seed
    mp.start_processes(_draw, args=(cb, str(tmp_path / "drawn.pt")), nprocs=1, start_method="spawn")
    assert torch.equal(torch.load(tmp_path / "drawn.pt", weights_only=True), torch.rand(6, generator=cb.generator))


def test_teacher_saved_at_fit_end_is_the_callbacks_teacher(tmp_path) -> None:
    from salguide.callbacks.attention_masking import load_teacher

    path = tmp_path / "teacher.safetensors"
    cb = AttentionMaskingCallback("high", ratio=0.5, ema=0.5, save_teacher_to=path)
    module = _tiny_module(lr=0.01)
    _trainer(max_epochs=1, callbacks=[cb]).fit(module, DataLoader(_dataset(8), batch_size=4))
    teacher = load_teacher(path, module)
    expected = cb.teacher.state_dict()
    assert teacher.state_dict().keys() == expected.keys()
    assert all(torch.equal(v, expected[k]) for k, v in teacher.state_dict().items())
    assert not any(p.requires_grad for p in teacher.parameters()) and not teacher.training
