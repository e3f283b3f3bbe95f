"""Two-process DDP on CPU (gloo): the mask computed from per-rank forget data is broadcast from rank 0,
so both ranks enforce the same mask; frozen weights stay bit-identical on every rank."""

import copy
from pathlib import Path

import lightning.pytorch as L
import pytest
import torch
from wsc_helpers import ForgetData, LitNet, fit, loader, params_copy

from salguide.callbacks import WeightSaliencyCallback
from salguide.io import atomic_path
from salguide.weights import WeightMask, saliency_scores

SGD = {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.1}


class RankReport(L.Callback):
    """Each rank writes its mask, weights and momentum buffers to ``out_dir/rank{r}.pt``."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = Path(out_dir)

    def on_train_end(self, trainer, pl_module) -> None:
        saliency = next(c for c in trainer.callbacks if isinstance(c, WeightSaliencyCallback))
        opt = trainer.optimizers[0]
        report = {
            "mask": saliency.mask.to_state_dict(),
            "params": params_copy(pl_module),
            "momentum": {n: opt.state[p]["momentum_buffer"].clone() for n, p in pl_module.named_parameters()},
            "steps": trainer.global_step,
        }
        with atomic_path(self.out_dir / f"rank{trainer.global_rank}.pt") as tmp:
            torch.save(report, tmp)


@pytest.mark.slow
def test_ddp_ranks_share_the_mask_and_keep_frozen_weights_exact(tmp_path):
    module = LitNet("sgd", **SGD)
    theta0 = params_copy(module)
    per_rank = [
        WeightMask.from_scores(saliency_scores(copy.deepcopy(module), loader(16, seed=3 + 100 * r)), 0.5)
        for r in (0, 1)
    ]
    assert per_rank[0] != per_rank[1]  # without the broadcast the ranks would disagree

    callbacks = [WeightSaliencyCallback(ratio=0.5, log_figure=False), RankReport(tmp_path)]
    fit(module, callbacks, datamodule=ForgetData(seed=3, per_rank=True), strategy="ddp_spawn", devices=2, max_steps=3)

    reports = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    expected = per_rank[0]
    for report in reports:
        assert report["steps"] == 3
        assert WeightMask(report["mask"]) == expected
        for name, p in report["params"].items():
            keep = expected[name]
            assert torch.equal(p[~keep], theta0[name][~keep]), name
            assert not torch.equal(p[keep], theta0[name][keep]), name
            assert not report["momentum"][name][~keep].any(), name
    for name in theta0:  # DDP kept the replicas identical
        assert torch.equal(reports[0]["params"][name], reports[1]["params"][name])
