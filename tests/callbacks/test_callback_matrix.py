"""The callback matrix (after Composer's algorithm tests): every salguide callback class (a) fits, changing
the weights if it trains and leaving them bit-identical to a plain run if it only observes; (b) resumes from
a mid-run (end of epoch 1 of 2) Lightning checkpoint to weights bit-identical to an uninterrupted run; (c)
trains under 2-process DDP on CPU (gloo) with ``ddp_spawn`` and with ``ddp`` (a launched script), every rank
ending with the same weights; (d) refuses FSDP and DeepSpeed at ``setup`` with an error that names the
callback and the strategy - unless it never touches parameters (``ANY_STRATEGY``), then it takes them.

The cases (tiny MLP / ViT / DDPM modules and data) are in ``matrix_cases.py``; docs/architecture.md has the
resulting table."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import lightning.pytorch as L
import pytest
import pytorch_lightning as PL
import torch
from matrix_cases import ANY_STRATEGY, CASES, build, fit_ddp, trainer, weights

import salguide.callbacks
from salguide._lightning import pl

NAMES = sorted(CASES)
HERE = Path(__file__).resolve().parent


def test_the_matrix_covers_every_callback_class():
    exported = {n for n in salguide.callbacks.__all__ if isinstance(getattr(salguide.callbacks, n), type)}
    assert set(NAMES) == exported


def _fit(name: str, out: Path, with_callbacks: bool = True, **kwargs):
    case = build(name, out)
    ckpt_path = kwargs.pop("ckpt_path", None)
    callbacks = [*case.callbacks, *kwargs.pop("callbacks", [])] if with_callbacks else kwargs.pop("callbacks", [])
    tr = trainer(case, callbacks=callbacks, **kwargs)
    tr.fit(case.module, datamodule=case.data, ckpt_path=ckpt_path)
    return case, tr


@pytest.mark.parametrize("name", NAMES)
def test_fits(name, tmp_path):
    effect = CASES[name][0]
    case, tr = _fit(name, tmp_path)
    assert tr.global_step == 8 and case.done(case.callbacks), name
    after = weights(case.module)
    start = weights(build(name, tmp_path / "fresh").module)
    assert any(not torch.equal(after[k], start[k]) for k in start if after[k].is_floating_point()), "nothing trained"
    if effect == "needs":
        return
    plain_case, _ = _fit(name, tmp_path / "plain", with_callbacks=False)
    plain = weights(plain_case.module)
    same = all(torch.equal(after[k], plain[k]) for k in plain)
    verdict = "equal" if same else "differ from"
    assert same == (effect == "observes"), f"{name} ({effect}): weights {verdict} a plain run"


@pytest.mark.parametrize("name", NAMES)
def test_resumes_from_a_mid_run_checkpoint_bit_identically(name, tmp_path):
    ckpts = tmp_path / "ckpt"
    keep = pl.callbacks.ModelCheckpoint(dirpath=ckpts, filename="{epoch}", save_top_k=-1, every_n_epochs=1)
    whole, _ = _fit(name, tmp_path / "whole", callbacks=[keep], enable_checkpointing=True)
    mid = ckpts / "epoch=0.ckpt"
    assert mid.is_file(), sorted(p.name for p in ckpts.iterdir())
    resumed, tr = _fit(name, tmp_path / "resumed", ckpt_path=str(mid))
    assert tr.global_step == 8
    expected, got = weights(whole.module), weights(resumed.module)
    for k in expected:
        assert torch.equal(got[k], expected[k]), f"{name}: {k} differs after resuming"


def _check_ranks(name: str, out: Path) -> None:
    reports = [torch.load(out / f"{name}.rank{r}.pt", weights_only=True) for r in (0, 1)]
    start = weights(build(name, out / "fresh").module)
    for report in reports:
        assert report["steps"] == 4, f"{name}: {report['steps']} steps"  # 2 epochs x 2 batches per rank
    w0, w1 = reports[0]["weights"], reports[1]["weights"]
    for k in w0:
        assert torch.equal(w0[k], w1[k]), f"{name}: ranks disagree on {k}"
    assert any(not torch.equal(w0[k], start[k]) for k in start if start[k].is_floating_point()), f"{name}: no training"


@pytest.mark.slow
@pytest.mark.xdist_group("callback_matrix_ddp")
@pytest.mark.parametrize("name", NAMES)
def test_ddp_spawn_two_processes(name, tmp_path):
    fit_ddp(name, tmp_path, "ddp_spawn")
    _check_ranks(name, tmp_path)


@pytest.fixture(scope="module")
def ddp_reports(tmp_path_factory) -> Path:
    """One launch of ``matrix_ddp_script.py`` under ``strategy=ddp``: every case fits in turn on both ranks."""
    out = tmp_path_factory.mktemp("ddp")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE), *sys.path]), OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, str(HERE / "matrix_ddp_script.py"), str(out), *NAMES],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    (out / "log.txt").write_text(proc.stdout + proc.stderr)
    assert proc.returncode == 0, proc.stderr[-5000:]
    return out


@pytest.mark.slow
@pytest.mark.xdist_group("callback_matrix_ddp")
@pytest.mark.parametrize("name", NAMES)
def test_ddp_two_processes(name, ddp_reports):
    _check_ranks(name, ddp_reports)


def _bare(cls):
    """An instance without running __init__ (DeepSpeed's needs the deepspeed package)."""
    return object.__new__(cls)


SHARDED = [
    L.strategies.FSDPStrategy(),
    PL.strategies.FSDPStrategy(),
    _bare(L.strategies.DeepSpeedStrategy),
    _bare(PL.strategies.DeepSpeedStrategy),
]


@pytest.mark.parametrize("strategy", SHARDED, ids=lambda s: f"{type(s).__module__.split('.')[0]}-{type(s).__name__}")
@pytest.mark.parametrize("name", NAMES)
def test_sharded_strategies_are_refused_at_setup_or_supported(name, strategy, tmp_path):
    case = build(name, tmp_path)
    stub = SimpleNamespace(strategy=strategy, datamodule=case.data, is_global_zero=True, global_rank=0)
    if name in ANY_STRATEGY:
        for cb in case.callbacks:
            cb.setup(stub, case.module, "fit")
        return
    with pytest.raises(
        ValueError,
        match=rf"{name} supports single-device and DDP strategies only, "
        rf"not {type(strategy).__name__}: ",
    ):
        for cb in case.callbacks:
            cb.setup(stub, case.module, "fit")
