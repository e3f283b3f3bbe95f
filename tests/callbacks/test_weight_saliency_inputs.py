"""Where WeightSaliencyCallback's mask comes from (object, file, forget data), what it logs, and the
clear errors it gives for bad inputs and unsupported strategies."""

import copy
import csv
from types import SimpleNamespace

import lightning.pytorch as L
import pytest
import pytorch_lightning as PL
import torch
from lightning.pytorch.loggers import CSVLogger
from wsc_helpers import ForgetData, LitNet, check_guarantee, fit, loader, make_net, params_copy, random_mask

from salguide.callbacks import WeightSaliencyCallback
from salguide.callbacks.weight_saliency import FIGURE_NAME, SPARSITY_KEY, check_strategy
from salguide.weights import WeightMask, saliency_scores

SGD = {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.1}


def test_mask_from_file(tmp_path):
    module = LitNet("sgd", **SGD)
    theta0, mask = params_copy(module), random_mask(module)
    path = WeightMask(mask).save(tmp_path / "mask.safetensors")
    callback = WeightSaliencyCallback(path, log_figure=False)
    trainer = fit(module, callback)
    assert callback.mask == WeightMask(mask)
    check_guarantee(module, theta0, mask, trainer.optimizers)


@pytest.mark.parametrize("source, scope", [("datamodule", "global"), ("argument", "layer")])
def test_mask_computed_from_forget_data_at_theta0(tmp_path, source, scope):
    module = LitNet("sgd", **SGD)
    theta0 = params_copy(module)
    reference_model = copy.deepcopy(module)  # θ₀, before any step
    data = ForgetData(seed=3)
    if source == "datamodule":
        callback = WeightSaliencyCallback(
            ratio=0.3, scope=scope, save_mask_to=tmp_path / "m.safetensors", log_figure=False
        )
        trainer = fit(module, callback, datamodule=data)
    else:
        forget = loader(n=16, seed=3)
        callback = WeightSaliencyCallback(forget_dataloader=forget, ratio=0.3, scope=scope, log_figure=False)
        trainer = fit(module, callback)
    expected = WeightMask.from_scores(saliency_scores(reference_model, loader(n=16, seed=3)), 0.3, scope)
    assert callback.mask == expected
    assert abs(expected.density - 0.3) < 0.01
    check_guarantee(module, theta0, expected, trainer.optimizers)
    if source == "datamodule":
        assert WeightMask.load(tmp_path / "m.safetensors") == expected


def test_sparsity_logged_and_figure_written(tmp_path):
    module = LitNet("sgd", **SGD)
    mask = random_mask(module)
    logger = CSVLogger(tmp_path, name="run")
    fit(module, WeightSaliencyCallback(mask), logger=logger, max_steps=1)
    frozen = sum(int((~m).sum()) for m in mask.values()) / sum(m.numel() for m in mask.values())
    with open(f"{logger.log_dir}/metrics.csv") as f:
        logged = [float(row[SPARSITY_KEY]) for row in csv.DictReader(f) if row.get(SPARSITY_KEY)]
    assert logged == pytest.approx([frozen])
    png = tmp_path / "run" / "version_0" / "figures" / FIGURE_NAME
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_figure_without_a_logger_stays_out_of_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fit(LitNet("sgd", **SGD), WeightSaliencyCallback(random_mask(LitNet())), logger=False, max_steps=1)
    assert [p.name for p in tmp_path.iterdir()] == ["figures"]  # the log dir is the CWD: a subfolder only
    assert (tmp_path / "figures" / FIGURE_NAME).read_bytes()[:4] == b"\x89PNG"


def test_mask_for_another_model_suggests_submodule():
    module = LitNet("sgd", **SGD)
    bare_mask = random_mask(make_net())  # names "0.weight", ... vs the module's "net.0.weight", ...
    with pytest.raises(ValueError, match=r"made for another model.*submodule='net'"):
        fit(module, WeightSaliencyCallback(bare_mask, log_figure=False))
    theta0 = params_copy(module.net)
    trainer = fit(module, WeightSaliencyCallback(bare_mask, submodule="net", log_figure=False))
    check_guarantee(module.net, theta0, bare_mask, trainer.optimizers)


def test_missing_file_and_missing_forget_data(tmp_path):
    with pytest.raises(FileNotFoundError, match="weight mask file not found"):
        fit(LitNet(), WeightSaliencyCallback(tmp_path / "nope.safetensors", log_figure=False))
    with pytest.raises(ValueError, match="needs forget data"):
        fit(LitNet(), WeightSaliencyCallback(log_figure=False))
    no_forward = type("NoForward", (LitNet,), {"forward": torch.nn.Module.forward})()
    with pytest.raises(ValueError, match="NoForward defines no forward.*submodule="):
        fit(no_forward, WeightSaliencyCallback(forget_dataloader=loader(), log_figure=False))
    with pytest.raises(ValueError, match="no submodule 'backbone'"):
        fit(LitNet(), WeightSaliencyCallback(random_mask(make_net()), submodule="backbone", log_figure=False))


def test_bad_arguments():
    mask = random_mask(make_net())
    with pytest.raises(ValueError, match="ratio must be in"):
        WeightSaliencyCallback(ratio=1.5)
    with pytest.raises(ValueError, match="ratio must be in"):
        WeightSaliencyCallback(ratio=0.0)
    with pytest.raises(ValueError, match="scope must be one of"):
        WeightSaliencyCallback(scope="row")
    with pytest.raises(ValueError, match="either mask or forget_dataloader"):
        WeightSaliencyCallback(mask, forget_dataloader=loader())
    with pytest.raises(TypeError, match="mask must be a WeightMask"):
        WeightSaliencyCallback(3)
    with pytest.raises(ValueError, match="must be a torch.bool tensor"):
        fit(LitNet(), WeightSaliencyCallback({n: m.float() for n, m in random_mask(LitNet()).items()}))


def _bare(cls):
    """An instance without running __init__ (DeepSpeed's needs the deepspeed package installed)."""
    return object.__new__(cls)


@pytest.mark.parametrize(
    "strategy",
    [
        L.strategies.FSDPStrategy(),
        PL.strategies.FSDPStrategy(),
        _bare(L.strategies.DeepSpeedStrategy),
        _bare(PL.strategies.DeepSpeedStrategy),
        _bare(L.strategies.XLAStrategy),
    ],
    ids=lambda s: f"{type(s).__module__.split('.')[0]}-{type(s).__name__}",
)
def test_unsupported_strategies_are_refused(strategy):
    with pytest.raises(ValueError, match="single-device and DDP strategies only"):
        check_strategy(strategy)
    trainer = SimpleNamespace(strategy=strategy)
    with pytest.raises(ValueError, match=type(strategy).__name__):
        WeightSaliencyCallback(log_figure=False).setup(trainer, LitNet(), "fit")


@pytest.mark.parametrize(
    "strategy",
    [
        L.strategies.DDPStrategy(),
        PL.strategies.DDPStrategy(start_method="spawn"),
        L.strategies.SingleDeviceStrategy(torch.device("cpu")),
    ],
)
def test_supported_strategies_pass(strategy):
    check_strategy(strategy)
