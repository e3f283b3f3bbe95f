"""salguide.studies: the runs below a study folder (job_results, without the sweeps' combined tables) and the
settings read back from a run's config in the current layout and in that of older recorded runs."""

from __future__ import annotations

import json

import pytest
import torch
from omegaconf import OmegaConf

from salguide.studies import job_results, net_config, run_epochs, run_lr, run_task


def test_job_results_yields_runs_and_skips_combined_sweep_tables(tmp_path):
    for job, acc in (("0", 70.0), ("1", 80.0)):
        (tmp_path / "sweep" / job / ".hydra").mkdir(parents=True)
        (tmp_path / "sweep" / job / ".hydra" / "config.yaml").write_text(f"seed: {job}\n")
        (tmp_path / "sweep" / job / "results.json").write_text(json.dumps({"test_acc": acc}))
    # what salguide.sweep.CombinedResults writes into the sweep folder: every job's rows, no .hydra
    (tmp_path / "sweep" / "results.json").write_text(json.dumps([{"test_acc": 70.0}, {"test_acc": 80.0}]))
    got = [(run.name, cfg["seed"], res["test_acc"]) for run, cfg, res in job_results(tmp_path)]
    assert got == [("0", 0, 70.0), ("1", 1, 80.0)]


# the keys the summaries read, in the current layout (model: the LightningModule, epochs in trainer:, task: a
# pipeline node) and in the layout of runs recorded before it (classify:, unlearning.lr, original.lr, task name)
CURRENT = {
    "task": {"_target_": "salguide.pipelines.unlearn.run_unlearning", "_partial_": True},
    "model": {
        "_target_": "salguide.models.ClassifierModule",
        "net": {"_target_": "salguide.models.SmallCNN", "num_classes": 10, "in_channels": 1, "width": 8},
        "optimizer": {"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.05, "momentum": 0.9},
    },
    "trainer": {"max_epochs": None},
    "original": {"epochs": 15},
    "unlearning": {"epochs": 5, "optimizer": {"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.02}},
    "retrain": {"epochs": "${original.epochs}", "optimizer": "${model.optimizer}"},
}
OLDER = {
    "task": "unlearn",
    "model": {"_target_": "salguide.models.SmallCNN", "num_classes": 10, "in_channels": 1, "width": 8},
    "trainer": {"max_epochs": None},
    "original": {"epochs": 15, "lr": 0.05, "optimizer": "sgd"},
    "unlearning": {"epochs": 5, "lr": 0.02, "optimizer": "sgd"},
    "retrain": {"epochs": "${original.epochs}", "lr": "${original.lr}", "optimizer": "${original.optimizer}"},
}


@pytest.mark.parametrize("cfg", [CURRENT, OLDER], ids=["current", "older"])
def test_unlearning_settings_of_either_layout(cfg):
    assert run_task(cfg) == "unlearn"
    assert run_epochs(cfg, "original") == 15 and run_epochs(cfg, "unlearning") == 5 and run_epochs(cfg, "retrain") == 15
    assert run_lr(cfg, "original") == 0.05 and run_lr(cfg, "unlearning") == 0.02 and run_lr(cfg, "retrain") == 0.05
    assert net_config(cfg)["_target_"] == "salguide.models.SmallCNN"
    # a set trainer.max_epochs sets every stage's epochs
    assert run_epochs({**cfg, "trainer": {"max_epochs": 2}}, "original") == 2


def test_single_stage_settings_of_either_layout():
    current = {
        "task": {"_target_": "salguide.pipelines.classify.run_classify", "_partial_": True},
        "model": {**CURRENT["model"], "optimizer": {"_target_": "torch.optim.Adam", "_partial_": True, "lr": 2e-3}},
        "trainer": {"max_epochs": 30},
    }
    older = {"task": "attention", "classify": {"epochs": 8, "lr": 2e-3}, "trainer": {"max_epochs": None}}
    assert (run_task(current), run_epochs(current), run_lr(current)) == ("classify", 30, 2e-3)
    assert (run_task(older), run_epochs(older), run_lr(older)) == ("attention", 8, 2e-3)
    assert run_task(OmegaConf.create(current)) == "classify" and run_epochs(OmegaConf.create(older)) == 8
    mine = {"task": {"_target_": "my_lab.pipelines.run_mine", "_partial_": True}}
    assert run_task(mine) == "my_lab.pipelines.run_mine"


def test_a_setting_no_layout_has_is_an_error():
    with pytest.raises(ValueError, match="the run config sets none of trainer.max_epochs, classify.epochs"):
        run_epochs({"trainer": {"max_epochs": None}})
    with pytest.raises(ValueError, match="unlearning.optimizer.lr, unlearning.lr"):
        run_lr({"unlearning": {"epochs": 5}}, "unlearning")


@pytest.mark.parametrize("cfg", [CURRENT, OLDER], ids=["current", "older"])
def test_run_model_loads_the_network_of_either_layout(tmp_path, cfg):
    from hydra.utils import instantiate

    from salguide.models import SmallCNN
    from salguide.studies import run_model
    from salguide.weights_io import save_weights

    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra" / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(cfg)))
    torch.manual_seed(0)
    module = instantiate(CURRENT["model"])  # a ClassifierModule saves its network as model.*
    save_weights(module, tmp_path / "models" / "original.safetensors")
    model = run_model(tmp_path, "original")
    assert isinstance(model, SmallCNN)
    assert all(torch.equal(v, module.model.state_dict()[k]) for k, v in model.state_dict().items())
